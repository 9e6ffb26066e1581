/* window: recent-window statistics of histograms (count, sum, min, max, mean, p50, p90, p95,
 * p99 over the last 1, 5 and 15 minutes) at no cost on the observe path. Once a minute
 * bg_window_tick copies every histogram's cumulative sketch; a window's distribution is the
 * current sketch minus the copy taken at the window's start, bucket by bucket (DDSketch
 * buckets are counts, so the difference is exact; min and max of a window are read from its
 * lowest and highest non-empty bucket, within the sketch's 1%). Memory: at most
 * BG_WINDOW_SLOTS copies of each histogram's non-empty bucket range. Single-threaded. */
#ifndef BG_WINDOW_H
#define BG_WINDOW_H

#include <stdint.h>

#include "base/bg.h"
#include "metrics/metrics.h"

#define BG_WINDOW_SLOTS 16 /* one snapshot a minute: covers 15-minute windows */

typedef struct bg_window bg_window;

typedef struct bg_window_stats {
  uint64_t count;
  double sum, min, max, mean, p50, p90, p95, p99; /* NaN when count is 0 */
  double seconds; /* the span actually covered (shorter while the agent is young) */
} bg_window_stats;

/* The process-wide window store the agent ticks. Never NULL unless out of memory. */
BG_EXPORT bg_window *bg_window_default(void);
bg_window *bg_window_new(void);
void bg_window_free(bg_window *w); /* NULL is a no-op */

/* Takes the snapshot of every histogram of r for the minute containing now (wall seconds), if
 * not taken yet; forgets series that no longer exist. Returns 0 or BG_ENOMEM. */
BG_EXPORT int bg_window_tick(bg_window *w, bg_registry *r, double now);

/* Stats of histogram series s over the last `seconds` before now. Returns 0, or BG_EINVAL when s
 * is not a histogram, or BG_ENOMEM. */
int bg_window_stats_of(bg_window *w, const bg_series_view *s, double seconds, double now,
                       bg_window_stats *out);

/* JSON of every series of r (the expo JSON shape) where each histogram also carries
 * "windows":{"1m":{...},"5m":{...},"15m":{...}}. Appends to out; 0 or BG_ENOMEM. */
int bg_window_render_json(bg_window *w, bg_registry *r, double now, bg_buf *out);

/* The same as a malloc'ed string for the FFI; free with bg_expo_free. NULL on ENOMEM. */
BG_EXPORT char *bg_window_render_json_string(bg_window *w, bg_registry *r, double now, size_t *len);

#endif
