/* looplag: how long each turn of a loop holds it. Owns a uv_prepare and a uv_check handle on
 * a loop and two series in a registry: the histogram beagle_loop_lag_seconds (one observation
 * per turn: the time the turn spent outside the poll, i.e. in callbacks of any kind) and the
 * gauge beagle_loop_lag_max_seconds (the longest turn of the current and the previous
 * BG_LOOPLAG_WINDOW_S window, so a stall stays visible for one to two windows whoever
 * scrapes, and how often). Nothing is allocated per turn. Single-threaded: the loop's thread.
 * How and why it measures so: core/metrics/looplag.c. */
#ifndef BG_LOOPLAG_H
#define BG_LOOPLAG_H

#include <uv.h>

#include "metrics/metrics.h"

typedef struct bg_looplag bg_looplag;

/* The gauge's window: one minute, Prometheus' default scrape interval, so every scrape at
 * that interval or faster sees every stall at least once. */
#define BG_LOOPLAG_WINDOW_S 60

/* Upper bounds of the histogram's buckets, in seconds (+Inf implied): 0.5 ms to 5 s. */
#define BG_LOOPLAG_BUCKETS 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5

/* Starts measuring loop's turns into r (the series are created there; they are not removed
 * by bg_looplag_stop). window_s is the gauge's window (<= 0: BG_LOOPLAG_WINDOW_S). Turns on
 * UV_METRICS_IDLE_TIME for the loop. The first turn is measured from this call: make it just
 * before uv_run. Returns 0 and *out, or BG_ENOMEM, or BG_ELIMIT when r refuses a series. */
int bg_looplag_start(uv_loop_t *loop, bg_registry *r, double window_s, bg_looplag **out);

/* Stops measuring and frees l once its handle has closed (the loop must run once more).
 * NULL is a no-op. */
void bg_looplag_stop(bg_looplag *l);

/* The gauge's value: the longest turn in seconds of the current and the previous window
 * (0 before the first observed turn). Can't fail. */
double bg_looplag_max(const bg_looplag *l);

/* The histogram series (borrowed; lives as long as the registry). */
bg_series *bg_looplag_histogram(const bg_looplag *l);

#endif
