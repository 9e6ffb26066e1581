/* metrics: the series registry. Owns metric families (name, type, help, buckets) and their
 * labelled series: counters, gauges and histograms. A series pointer is a stable handle for
 * the registry's lifetime; adding to it is one call, reached from Lua through the LuaJIT FFI
 * (lua/agent/metrics.lua owns the cdef). Names are validated and mapped from the guide's
 * dotted form ("api.response_time") to the Prometheus form ("api_response_time"; counters
 * exposed with "_total"). Single-threaded: the loop thread owns every registry.
 *
 * Cardinality: a registry holds at most max_series series in all and max_series_per_metric
 * per family; a series past either limit is not created (bg_series_get returns NULL and
 * says which limit), existing series keep working, and the drop is counted in the
 * registry's own counter beagle_series_dropped_total{reason="max_series"|
 * "max_series_per_metric"} (created lazily, exempt from the limits, like every series made
 * through bg_series_get_own: the agent's own). Label values longer
 * than BG_METRICS_MAX_LABEL_VALUE bytes are cut there (on a UTF-8 boundary) and counted in
 * beagle_label_values_truncated_total. Every histogram series also carries a quantile
 * sketch (core/metrics/sketch.h, 1% relative error). */
#ifndef BG_METRICS_H
#define BG_METRICS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/bg.h"
#include "metrics/sketch.h"

typedef struct bg_registry bg_registry;
typedef struct bg_series bg_series;

enum { BG_COUNTER = 0, BG_GAUGE = 1, BG_HISTOGRAM = 2 };

#define BG_METRICS_MAX_LABELS 16
#define BG_METRICS_MAX_BUCKETS 64
#define BG_METRICS_MAX_LABEL_VALUE 256 /* bytes; longer values are cut */
#define BG_DEFAULT_MAX_SERIES 100000
#define BG_DEFAULT_MAX_SERIES_PER_METRIC 2000

/* Why a series was dropped: the index of beagle_series_dropped_total's reason label. */
enum { BG_DROP_MAX_SERIES = 0, BG_DROP_MAX_SERIES_PER_METRIC = 1 };

/* The process-wide registry every Lua state and the agent share, created on first use.
 * Never NULL unless out of memory. */
BG_EXPORT bg_registry *bg_registry_default(void);

bg_registry *bg_registry_new(void);    /* with the default limits */
void bg_registry_free(bg_registry *r); /* NULL is a no-op; every series handle dies with it */

/* Sets the cardinality limits; 0 means the default (BG_DEFAULT_MAX_SERIES...). Lowering them
 * removes nothing: existing series keep working, new ones are refused. */
BG_EXPORT void bg_registry_set_limits(bg_registry *r, size_t max_series, size_t max_per_metric);

/* Finds or creates the series of metric `name` with these labels (nlabels key/value
 * pairs in kv[0..2*nlabels)). `type` must match the family's type when it exists. help may
 * be NULL. buckets (ascending upper bounds, +Inf implied) apply to a new histogram family;
 * NULL/0 means the default latency buckets. On error returns NULL and writes a message
 * saying what was wrong into err (errlen bytes, may be 0). Strings are copied. Past a limit
 * the message is `series limit reached for metric "x" (2000 series)` or `total series limit
 * reached (100000)`, and a later call may succeed once series were removed. */
BG_EXPORT bg_series *bg_series_get(bg_registry *r, int type, const char *name, const char *help,
                                   const char *const *kv, int nlabels, const double *buckets,
                                   int nbuckets, char *err, size_t errlen);

/* Like bg_series_get, for the agent's own series (beagle_*): one it creates is outside the
 * limits, neither counted against max_series nor refused by either limit, so a flood of user
 * series never hides the agent's. A series that exists already is returned as it is. Only
 * trusted code calls it: lua/agent/metrics.lua for beagle_* names in the agent's state,
 * statsd and looplag for their counters. */
BG_EXPORT bg_series *bg_series_get_own(bg_registry *r, int type, const char *name, const char *help,
                                       const char *const *kv, int nlabels, const double *buckets,
                                       int nbuckets, char *err, size_t errlen);

/* What bg_series_get(r, type, name, NULL, kv, nlabels, ...) would meet, creating nothing:
 * exists 1 (the series is there), 0 (it would be new: family_room more series fit in its
 * family, total_room in the registry, either 0 when full) or -1 (refused for its name, labels
 * or type, whatever the limits; err says why). Returns exists. For callers that check a batch
 * before recording any of it (POST /metrics/custom). */
typedef struct bg_series_probe_t {
  int exists;
  size_t family_room, total_room;
} bg_series_probe_t;
BG_EXPORT int bg_series_probe(bg_registry *r, int type, const char *name, const char *const *kv,
                              int nlabels, bg_series_probe_t *out, char *err, size_t errlen);

/* Like bg_series_get but never creates: the existing series, or NULL (also for bad input). */
BG_EXPORT bg_series *bg_series_find(bg_registry *r, int type, const char *name,
                                    const char *const *kv, int nlabels);

/* Hot paths. s must be a live handle of the matching type; they can't fail.
 * A counter ignores negative increments (and counts them as a misuse). A counter's or gauge's
 * value is the first member of its series (a double), so Lua adds and sets it with an FFI
 * field write (lua/agent/metrics.lua); a histogram's sum and count are its sketch's. */
BG_EXPORT void bg_counter_add(bg_series *s, double v);
BG_EXPORT void bg_gauge_set(bg_series *s, double v);
BG_EXPORT void bg_gauge_add(bg_series *s, double v);
BG_EXPORT void bg_histogram_observe(bg_series *s, double v);
BG_EXPORT double bg_series_value(const bg_series *s);   /* counter/gauge value; histogram sum */
BG_EXPORT uint64_t bg_series_count(const bg_series *s); /* histogram count; 0 otherwise */

/* Histogram quantile from the series' sketch, within 1% relative error of the exact
 * quantile of everything observed; q in [0, 1]. NaN when empty, q is out of range or s is
 * not a histogram. min/max are exact (NaN when empty). */
BG_EXPORT double bg_histogram_quantile(const bg_series *s, double q);
BG_EXPORT double bg_histogram_min(const bg_series *s);
BG_EXPORT double bg_histogram_max(const bg_series *s);
/* The sketch itself (NULL unless a histogram), e.g. to merge a copy; borrowed. */
const bg_sketch *bg_histogram_sketch(const bg_series *s);

/* A per-series id, unique within the registry and never reused (a removed series' id stays
 * dead; ids start at 1 and grow by one per series created). For history: key per-series
 * state by it, and see a series that was removed and re-created as a new one. */
BG_EXPORT uint32_t bg_series_id(const bg_series *s);

/* Removes one series (e.g. a plugin that was unloaded). The handle dies; Lua caches that
 * hold it must be dropped (agent.metrics.remove does). */
BG_EXPORT void bg_series_remove(bg_registry *r, bg_series *s);

/* Maps a guide-style name to the exposition name for type into out (NUL-terminated).
 * Returns 0, or BG_EINVAL with a reason in err when it cannot be mapped. */
int bg_metric_name_map(const char *name, int type, char *out, size_t outlen, char *err,
                       size_t errlen);

size_t bg_registry_series_count(const bg_registry *r);
/* How many hot-path calls were ignored as misuse (negative or NaN counter adds, NaN
 * observations) since the registry was created. */
BG_EXPORT uint64_t bg_registry_misuse_count(const bg_registry *r);

/* Series refused for reason (BG_DROP_*) since the registry was created, and label values
 * cut to BG_METRICS_MAX_LABEL_VALUE bytes. */
BG_EXPORT uint64_t bg_registry_dropped(const bg_registry *r, int reason);
BG_EXPORT uint64_t bg_registry_truncated(const bg_registry *r);

/* Which metrics hit a limit, for /health/detailed. */
typedef struct bg_limit_hit {
  const char *name; /* exposition base name, borrowed (lives as long as the registry); NULL
                       for drops of metrics that had no series yet when the total was hit */
  uint64_t dropped; /* series refused */
  uint64_t series;  /* series it has now */
  int reason;       /* BG_DROP_*: the last limit it hit */
} bg_limit_hit;

/* Fills out[0..max) with the families that had series dropped, sorted by name, then the NULL
 * entry if any. Returns how many there are (which may exceed max). */
BG_EXPORT int bg_registry_limits_hit(bg_registry *r, bg_limit_hit *out, int max);

/* Walks every family and series, in a stable order (families sorted by exposition name,
 * series in creation order), for the renderers in expo and for history. The callbacks must
 * not create or remove series. Cost: one indirect call per series, no allocation (after a
 * family was added, one sort). See expo.h. */
typedef struct bg_family_view {
  const char *name; /* exposition base name, e.g. "api_requests" (no _total) */
  const char *help;
  int type;
  const double *buckets;
  int nbuckets;
} bg_family_view;

/* An OpenMetrics exemplar: the last observation a histogram bucket took while the current
 * trace context (core/trace) was sampled. time 0: none yet. */
typedef struct bg_exemplar {
  uint8_t trace_id[16], span_id[8];
  double value;
  double time; /* wall clock, seconds */
} bg_exemplar;

typedef struct bg_series_view {
  const char *const *kv; /* label pairs, sorted by key; valid during the callback; the strings
                            are contiguous, each NUL-terminated, in pair order (one copy takes
                            them all: kv[0] up to the end of kv[2 * nlabels - 1]) */
  int nlabels;
  const char *labels; /* the pairs escaped for the text formats, k1="v1",k2="v2" (no braces,
                         not NUL-terminated) */
  size_t labels_len;
  double value;                  /* counter/gauge; histogram sum */
  uint64_t count;                /* histogram */
  const uint64_t *bucket_counts; /* histogram, non-cumulative, nbuckets + 1 (last is +Inf) */
  double created;                /* wall time the series was created */
  uint32_t id;                   /* bg_series_id */
  const bg_series *series;
  const bg_sketch *sketch;      /* histogram */
  const bg_exemplar *exemplars; /* histogram: nbuckets + 1, or NULL when it never had one */
} bg_series_view;

/* The bucket of v among bounds b[0..nb) (ascending, +Inf implied): the first i with v <= b[i],
 * nb when none. When nb <= BG__BOUNDS_PAD, b must hold BG__BOUNDS_PAD entries padded with
 * +Inf (the registry keeps its bounds so): the bucket is then the number of bounds below v,
 * counted without a branch two at a time (GCC/Clang vector extensions: SSE2 on x86-64, NEON
 * on arm64), which costs the same whatever v is; more bounds, a binary search. v must not be
 * NaN. Inline so that bench/metrics_c_bench.c times this very search. */
#define BG__BOUNDS_PAD 16
typedef double bg__v2d __attribute__((vector_size(16)));
typedef int64_t bg__v2i __attribute__((vector_size(16)));
static inline int bg__histogram_bucket(const double *b, int nb, double v) {
  if (nb <= BG__BOUNDS_PAD) {
    bg__v2d x = {v, v};
    bg__v2i n = {0, 0};
#pragma GCC unroll 8
    for (int k = 0; k < BG__BOUNDS_PAD; k += 2) {
      bg__v2d bk;
      memcpy(&bk, b + k, sizeof bk);
      n += x > bk; /* -1 where true */
    }
    return (int)-(n[0] + n[1]);
  }
  int lo = 0, hi = nb;
  while (lo < hi) {
    int mid = (lo + hi) >> 1;
    if (v > b[mid])
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

typedef void (*bg_family_cb)(void *ud, const bg_family_view *f);
typedef void (*bg_series_cb)(void *ud, const bg_family_view *f, const bg_series_view *s);
void bg_registry_walk(bg_registry *r, bg_family_cb fam, bg_series_cb ser, void *ud);
/* The same walk for callbacks that read only the escaped label text: the view's kv is NULL
 * (the text renderers; no pointer array is filled per series). */
void bg_registry_walk_text(bg_registry *r, bg_family_cb fam, bg_series_cb ser, void *ud);

#endif
