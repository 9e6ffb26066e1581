#include "metrics/looplag.h"

#include <stdlib.h>

/* Why a prepare handle and the poll's idle time, and not a timer or a check/prepare pair:
 * - A timer that measures how late it fires samples one instant per period; it phase-locks
 *   with schedules of the same period (a 1 s timer next to 1 s checks fires in the gaps
 *   between their runs) and never sees the stall it sits beside.
 * - A uv_check/uv_prepare pair alone brackets the wrong part: check runs after the poll *and*
 *   the I/O callbacks, so check-to-prepare misses every I/O callback (HTTP requests, a
 *   plugin's run resumed by its I/O), which is where much of the work is.
 * - uv_prepare runs once a turn, just before the poll. Between two prepares the loop did
 *   exactly one poll plus every callback of one turn (I/O, check, close, timers, pending,
 *   idle, prepare). libuv's idle-time metric (UV_METRICS_IDLE_TIME) is the time spent inside
 *   the poll waiting, so wall time minus idle time is the time the turn held the loop, with
 *   no sampling and nothing to phase-lock. It costs two clock reads and a mutex-guarded read
 *   a turn, and libuv adds one non-blocking poll to a turn that would otherwise sleep.
 * The check handle is there for one libuv flaw (1.44, Debian 12's): when a signal interrupts
 * epoll_wait (EINTR: SIGCHLD of every process a check runs, SIGHUP, SIGPROF of the profiler,
 * SIGCONT), the poll restarts and its idle time so far is dropped, so a turn that slept 5 s
 * waiting for a child would read as 5 s of lag. The loop's cached time (uv_now) is updated
 * when the poll returns and read at the check, so it says when the poll ended; the poll
 * started at the prepare, so it waited at least that long, within the cached clock's
 * millisecond. The idle time used is the larger of the two. (A callback that called
 * uv_update_time between the poll and the check would move that estimate past itself and
 * hide its own time; nothing in the agent does.) */
struct bg_looplag {
  uv_prepare_t prepare;
  uv_check_t check;
  int open;           /* handles not closed yet */
  bg_series *hist;    /* beagle_loop_lag_seconds */
  bg_series *max;     /* beagle_loop_lag_max_seconds */
  uint64_t last;      /* uv_hrtime at the previous prepare (at the start before the first) */
  uint64_t last_idle; /* uv_metrics_idle_time then */
  uint64_t poll_end;  /* uv_now at the last check, in ns */
  uint64_t window_ns;
  uint64_t window; /* index (time / window_ns) of the current window */
  double cur_max, prev_max;
};

static void on_check(uv_check_t *h) {
  bg_looplag *l = h->data;
  l->poll_end = uv_now(h->loop) * 1000000u;
}

static void on_prepare(uv_prepare_t *h) {
  bg_looplag *l = h->data;
  uint64_t now = uv_hrtime();
  uint64_t idle = uv_metrics_idle_time(h->loop);
  uint64_t wall = now - l->last, slept = idle - l->last_idle;
  if (l->poll_end > l->last && l->poll_end - l->last > slept) slept = l->poll_end - l->last;
  double lag = wall > slept ? (double)(wall - slept) / 1e9 : 0.0;
  l->last = now;
  l->last_idle = idle;
  bg_histogram_observe(l->hist, lag);
  uint64_t w = now / l->window_ns;
  if (w != l->window) {
    l->prev_max = w == l->window + 1 ? l->cur_max : 0.0;
    l->cur_max = 0.0;
    l->window = w;
  }
  if (lag > l->cur_max) l->cur_max = lag;
  bg_gauge_set(l->max, bg_looplag_max(l));
}

int bg_looplag_start(uv_loop_t *loop, bg_registry *r, double window_s, bg_looplag **out) {
  static const double buckets[] = {BG_LOOPLAG_BUCKETS};
  *out = NULL;
  bg_looplag *l = calloc(1, sizeof *l);
  if (l == NULL) return BG_ENOMEM;
  char err[160];
  l->hist =
      bg_series_get_own(r, BG_HISTOGRAM, "beagle_loop_lag_seconds",
                        "Time each loop turn spent outside the poll (in callbacks), seconds", NULL,
                        0, buckets, (int)(sizeof buckets / sizeof buckets[0]), err, sizeof err);
  l->max = bg_series_get_own(r, BG_GAUGE, "beagle_loop_lag_max_seconds",
                             "Longest loop turn in the current and the previous window, seconds",
                             NULL, 0, NULL, 0, err, sizeof err);
  if (l->hist == NULL || l->max == NULL) {
    free(l);
    return BG_ELIMIT;
  }
  if (window_s <= 0) window_s = BG_LOOPLAG_WINDOW_S;
  l->window_ns = (uint64_t)(window_s * 1e9);
  if (l->window_ns == 0) l->window_ns = 1;
  /* Only fails for an unknown option; without it the idle time reads 0 and every turn would
   * count its sleep as lag, so it is required. */
  int rc = uv_loop_configure(loop, UV_METRICS_IDLE_TIME);
  if (rc != 0) {
    free(l);
    return rc;
  }
  /* neither can fail on a live loop */
  uv_prepare_init(loop, &l->prepare);
  uv_check_init(loop, &l->check);
  l->open = 2;
  l->prepare.data = l->check.data = l;
  l->last = uv_hrtime();
  l->last_idle = uv_metrics_idle_time(loop);
  l->window = l->last / l->window_ns;
  uv_prepare_start(&l->prepare, on_prepare);
  uv_check_start(&l->check, on_check);
  /* a measurement must not keep the loop alive */
  uv_unref((uv_handle_t *)&l->prepare);
  uv_unref((uv_handle_t *)&l->check);
  *out = l;
  return 0;
}

static void on_close(uv_handle_t *h) {
  bg_looplag *l = h->data;
  if (--l->open == 0) free(l);
}

void bg_looplag_stop(bg_looplag *l) {
  if (l == NULL) return;
  uv_close((uv_handle_t *)&l->prepare, on_close);
  uv_close((uv_handle_t *)&l->check, on_close);
}

double bg_looplag_max(const bg_looplag *l) {
  return l->cur_max > l->prev_max ? l->cur_max : l->prev_max;
}

bg_series *bg_looplag_histogram(const bg_looplag *l) {
  return l->hist;
}
