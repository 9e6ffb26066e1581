/* delta: a backend instance's previous cumulative values, for the formats that send differences
 * (StatsD counters, Datadog counts and rates). The registry's counters and histograms are
 * cumulative; a delta keeps, per series id (bg_sample.id), the last two points it was asked
 * about (time, counter value or histogram count, sum and buckets) and answers the difference
 * between them.
 *
 * The rules, after Datadog's OpenMetrics check (monotonic_count with its process start time
 * heuristic) and OpenTelemetry's cumulativetodelta processor:
 *   - first sight of a series that was created before the delta (bg_sample.created < start):
 *     nothing to send, its value holds increments from before we watched; the next point
 *     sends the difference;
 *   - first sight of a series created since the delta's start: its whole value (it all
 *     happened while we watched), covering the time since its creation;
 *   - a value that went down (a reset: a counter's value, a histogram's count): the new value,
 *     as if counted from zero;
 *   - the same series at the same time again (a batch retried after a failed send): the same
 *     difference again, so a retry is idempotent;
 *   - a time older than the last one seen for the series (batches out of order): nothing;
 *   - a series is its id and its creation time: a batch kept on disk across a restart numbers
 *     its series from 1 like the new process, so the same id created at another time is
 *     another series, seen for the first time;
 *   - a series not seen for BG_DELTA_FORGET collections (distinct batch times) is forgotten.
 *     Ids are never reused, so a forgotten series is one the registry removed: memory stays
 *     bounded by the live series plus those removed in the last BG_DELTA_FORGET collections.
 *
 * Gauges have no difference: callers send their value and never ask. Loop thread only (one
 * delta per backend instance, used from its plugin state). */
#ifndef BG_DELTA_H
#define BG_DELTA_H

#include "export/batch.h"
#include "export/encode.h"

#define BG_DELTA_FORGET 10 /* collections a series may be missing before it is forgotten */

/* An empty delta whose watch started at wall time start (epoch seconds). NULL when out of
 * memory. */
bg_delta *bg_delta_new(double start);
void bg_delta_free(bg_delta *d); /* NULL is fine */
/* Series it holds (for tests and the memory report). */
size_t bg_delta_size(const bg_delta *d);

typedef struct bg_delta_val {
  double value;            /* counter: the increase; histogram: the sum's */
  uint64_t count;          /* histogram: observations since the previous point */
  const uint64_t *buckets; /* histogram: nbuckets + 1 non-cumulative increases, owned by the
                              delta and valid until its next call */
  double elapsed;          /* seconds the difference covers (> 0) */
} bg_delta_val;

/* The difference for counter or histogram sample s at batch time t: 1 with out filled, 0 when
 * there is nothing to send (see the rules above), BG_ENOMEM (nothing recorded), BG_EINVAL for
 * a gauge. Records the point: call it once per sample and encode. */
int bg_delta_diff(bg_delta *d, const bg_sample *s, double t, bg_delta_val *out);

#endif
