/* history: per-series windows of samples that rules, analytics and the dashboard read through
 * one query API. It owns, for each series it has seen in a registry walk, the raw samples of
 * the last `raw_ms` (tsz-compressed chunks, see tsz.h) and 1-minute rollups (min, max, sum,
 * count, last) for `retention_days`. Rollups live in SQLite (history_store.c): a file in
 * data_dir in WAL mode, or a private in-memory database when there is no data_dir; memory
 * holds only the minute being filled and rows not yet flushed, because 30 days of minutes
 * would be 1.7 MB per series.
 *
 * Series keys are the exposition name plus the sorted labels, `name{k="v",...}`: counters as
 * "<name>_total", gauges as "<name>", histograms as two series "<name>_count" and
 * "<name>_sum" so that rate and averages work on them.
 *
 * Time is explicit: every call takes a wall-clock timestamp in milliseconds, so tests need no
 * sleeps. Single-threaded: the loop thread owns a history; only bg_history_flush_async hands
 * a copy of the pending rows to a threadpool worker. */
#ifndef BG_HISTORY_H
#define BG_HISTORY_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "base/bg.h"
#include "metrics/metrics.h"

typedef struct bg_history bg_history;

typedef struct bg_history_opts {
  int64_t raw_ms;         /* raw samples kept; 0 means 1 h */
  int retention_days;     /* rollups kept; 0 means 30 */
  uint32_t chunk_samples; /* a raw chunk closes at this many samples; 0 means 120 */
  int64_t chunk_span_ms;  /* ... or when this much time has passed; 0 means 30 min */
  const char *data_dir;   /* rollups go to <data_dir>/history.db; NULL: memory only */
} bg_history_opts;

/* Opens a history and loads the series and latest rollup of each from data_dir's database,
 * so that the minute being filled when the agent stopped goes on filling. opts may be NULL.
 * Returns 0 and *out, or a BG_E* code with a reason in err. Not thread-safe with itself. */
BG_EXPORT int bg_history_open(bg_history **out, const bg_history_opts *opts, char *err,
                              size_t errlen);

/* Flushes what is pending and frees the history. NULL is a no-op. When an asynchronous flush
 * is running, the free happens in its completion on the loop (which must go on running). */
BG_EXPORT void bg_history_close(bg_history *h);

/* Walks r and appends (now_ms, value) to every counter and gauge series, and (now_ms, count)
 * and (now_ms, sum) to the two series of every histogram. A sample not newer than its
 * series' last one is dropped and counted. Drops raw chunks older than raw_ms. Returns 0 or
 * BG_ENOMEM (the series that fit were sampled). */
BG_EXPORT int bg_history_sample(bg_history *h, bg_registry *r, int64_t now_ms);

/* Appends one sample to the series with this key (`name{k="v"}` as above). For loaders and
 * tests; the agent uses bg_history_sample. Returns 0, BG_EINVAL (bad key) or BG_ENOMEM. */
BG_EXPORT int bg_history_append(bg_history *h, const char *key, int64_t ts_ms, double v);

/* Writes the rollups finished since the last flush and a snapshot of every minute still
 * filling, in one transaction, on the calling thread. Returns 0, BG_EBUSY while an
 * asynchronous flush runs, or BG_EIO (the rows stay pending and go with the next flush). */
BG_EXPORT int bg_history_flush(bg_history *h);

/* The same on loop's threadpool: the worker gets a copy of the rows and its own database
 * connection, and touches nothing else. One flush at a time (BG_EBUSY otherwise); a history
 * without data_dir flushes synchronously instead. */
int bg_history_flush_async(bg_history *h, uv_loop_t *loop);

/* The timestamp of the latest bg_history_sample, or 0 before the first. */
BG_EXPORT int64_t bg_history_now(const bg_history *h);

/* The history the agent registered for Lua (beagle.query), or NULL. */
BG_EXPORT bg_history *bg_history_default(void);
void bg_history_set_default(bg_history *h);

typedef struct bg_history_stats {
  size_t series;         /* series known (sampled now, or with rollups on disk) */
  size_t chunks;         /* sealed raw chunks */
  size_t raw_samples;    /* raw samples held, sealed and open */
  size_t raw_bytes;      /* bytes of their compressed streams */
  size_t mem_bytes;      /* everything the history allocated, with 16 bytes a malloc */
  size_t pending_rows;   /* finished minutes not yet flushed (and in flight) */
  uint64_t dropped;      /* samples dropped as out of order */
  uint64_t flushed_rows; /* rows written since open */
  uint64_t flush_errors;
  double last_flush_ms; /* how long the last flush took */
} bg_history_stats;

/* Fills st (zeros for h NULL). The per-series part is counted once after each change (a sample,
 * an append) and kept, so that reading the stats on every scrape costs nothing more. */
BG_EXPORT void bg_history_stats_get(bg_history *h, bg_history_stats *st);

/* Query functions, after PromQL's <fn>_over_time and rate/increase. */
enum {
  BG_HQ_RATE = 0,     /* per-second increase, counter resets handled, extrapolated */
  BG_HQ_INCREASE = 1, /* the same without dividing by the range */
  BG_HQ_AVG = 2,
  BG_HQ_MIN = 3,
  BG_HQ_MAX = 4,
  BG_HQ_SUM = 5,
  BG_HQ_COUNT = 6,
  BG_HQ_QUANTILE = 7, /* arg is the quantile, 0..1 */
  BG_HQ_LAST = 8,
  BG_HQ_STDDEV = 9, /* population standard deviation */
  /* anomaly scores of the newest sample against the ones before it in the range; arg is the
   * fewest earlier samples that make a score (at least 3); no value below that */
  BG_HQ_ZSCORE = 10,   /* (last - mean) / stddev */
  BG_HQ_MADSCORE = 11, /* (last - median) / (1.4826 * median absolute deviation) */
  BG_HQ_EWMASCORE = 12 /* (last - ewma) / sqrt(ew variance), alpha 0.3 */
};

typedef struct bg_hq_item {
  const char *name;      /* the series' stored name, e.g. "api_requests_total" */
  const char *const *kv; /* label pairs, sorted by key */
  int nlabels;
  uint32_t id; /* the series' id: the same for the same series in every result of this history,
                  never reused by another series (a series removed and re-created gets a new one) */
  double value;
} bg_hq_item;

typedef struct bg_hq_result {
  int n;
  bg_hq_item *items; /* n items in key order; owned by the result */
} bg_hq_result;

/* The same evaluation as bg_history_query for callers that keep each series' labels by id (the
 * agent's rule evaluation): no allocation, no label strings, series in creation order. Fills
 * ids[i], vals[i] and refs[i] (an opaque handle for bg_history_series_labels, valid until the
 * history is next sampled, appended to or flushed) for the first cap series that have a value;
 * returns how many have one (more than cap: call again with room), or an error code < 0. */
BG_EXPORT int bg_history_query_ids(bg_history *h, int fn, double arg, const char *name,
                                   const char *const *m, int nm, int64_t end_ms, int64_t range_ms,
                                   uint32_t *ids, double *vals, const void **refs, int cap,
                                   char *err, size_t errlen);
/* The label pairs of a series from bg_history_query_ids into kv (2 * max pointers into the
 * history, same validity as ref), sorted by key; returns the number of labels. */
BG_EXPORT int bg_history_series_labels(const void *ref, const char **kv, int max);

/* Evaluates fn over the samples in (end_ms - range_ms, end_ms] of every series of metric
 * `name` whose labels match. name is a guide name ("api.requests") or an exposition name;
 * dots and dashes become underscores and "<name>_total" is tried when "<name>" has no series.
 * matchers: nm pairs (label, spec) in m[0..2*nm); spec "v" is equality, "!v" inequality,
 * "~re" and "!~re" a POSIX extended regex anchored at both ends, "=v" the literal v; a label
 * a series lacks reads "". Ranges up to raw_ms read raw samples; longer ones read rollups
 * (quantile then works on the per-minute means). Series with too few samples (rate and
 * increase need two) yield no item. Returns 0 and *out (free with bg_hq_result_free), or
 * BG_EINVAL with a reason in err (bad fn, range or regex), or BG_ENOMEM. */
BG_EXPORT int bg_history_query(bg_history *h, int fn, double arg, const char *name,
                               const char *const *m, int nm, int64_t end_ms, int64_t range_ms,
                               bg_hq_result **out, char *err, size_t errlen);
BG_EXPORT void bg_hq_result_free(bg_hq_result *r); /* NULL is a no-op */

#endif
