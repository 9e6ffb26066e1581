/* window: 1/5/15-minute stats of histograms from per-minute snapshots. */
#include <math.h>

#include "metrics/metrics.h"
#include "metrics/window.h"
#include "test_support.h"

static bg_series *hist(bg_registry *r, const char *name) {
  char err[256];
  bg_series *s = bg_series_get(r, BG_HISTOGRAM, name, NULL, NULL, 0, NULL, 0, err, sizeof err);
  if (s == NULL) fprintf(stderr, "%s\n", err);
  ASSERT(s != NULL);
  return s;
}

typedef struct find_ctx {
  const bg_series *want;
  bg_series_view view;
  int found;
} find_ctx;

static void find_cb(void *ud, const bg_family_view *f, const bg_series_view *s) {
  (void)f;
  find_ctx *c = ud;
  if (s->series == c->want) c->view = *s, c->found = 1;
}

static bg_window_stats stats(bg_window *w, bg_registry *r, bg_series *s, double secs, double now) {
  find_ctx c = {s, {0}, 0};
  bg_registry_walk(r, NULL, find_cb, &c);
  ASSERT(c.found);
  bg_window_stats st;
  ASSERT_EQ_INT(bg_window_stats_of(w, &c.view, secs, now, &st), 0);
  return st;
}

static int near(double a, double b) {
  return fabs(a - b) <= 0.011 * fabs(b);
}

static void test_windows(void) {
  bg_registry *r = bg_registry_new();
  bg_window *w = bg_window_new();
  bg_series *s = hist(r, "op.duration");
  /* synthetic times after the series' creation, one second into a minute, so that the
   * once-a-minute snapshots fall where the assertions expect them */
  double t0 = floor(bg_wall_time() / 60) * 60 + 61;
  for (int i = 0; i < 100; i++)
    bg_histogram_observe(s, 1.0);
  ASSERT_EQ_INT(bg_window_tick(w, r, t0), 0);
  for (int i = 0; i < 100; i++)
    bg_histogram_observe(s, 10.0);
  ASSERT_EQ_INT(bg_window_tick(w, r, t0 + 60), 0);
  ASSERT_EQ_INT(bg_window_tick(w, r, t0 + 61), 0); /* same minute: no new snapshot */
  for (int i = 0; i < 50; i++)
    bg_histogram_observe(s, 100.0);

  bg_window_stats m1 = stats(w, r, s, 60, t0 + 90);
  ASSERT_EQ_INT(m1.count, 150);
  ASSERT(near(m1.sum, 100 * 10.0 + 50 * 100.0));
  ASSERT(near(m1.min, 10.0));
  ASSERT(near(m1.max, 100.0));
  ASSERT(near(m1.p50, 10.0));
  ASSERT(near(m1.p99, 100.0));
  ASSERT(near(m1.seconds, 90));

  /* the series was created inside the 5 m window: everything counts */
  bg_window_stats m5 = stats(w, r, s, 300, t0 + 90);
  ASSERT_EQ_INT(m5.count, 250);
  ASSERT(m5.min == 1.0);
  ASSERT(near(m5.mean, (100 * 1.0 + 100 * 10.0 + 50 * 100.0) / 250));

  /* a minute later only the newest observations are in the last minute */
  bg_window_stats late = stats(w, r, s, 60, t0 + 150);
  ASSERT_EQ_INT(late.count, 50);
  ASSERT(near(late.p50, 100.0));

  /* a window without observations */
  ASSERT_EQ_INT(bg_window_tick(w, r, t0 + 120), 0);
  bg_window_stats empty = stats(w, r, s, 60, t0 + 185);
  ASSERT_EQ_INT(empty.count, 0);
  ASSERT(isnan(empty.p50));

  bg_buf b = {0};
  ASSERT_EQ_INT(bg_window_render_json(w, r, t0 + 90, &b), 0);
  ASSERT(strstr(b.data, "\"windows\":{\"1m\":{\"count\":150,") != NULL);
  ASSERT(strstr(b.data, "\"5m\":{\"count\":250,") != NULL);
  bg_buf_free(&b);

  /* a removed series is forgotten at the next tick */
  bg_series_remove(r, s);
  ASSERT_EQ_INT(bg_window_tick(w, r, t0 + 180), 0);
  bg_window_free(w);
  bg_registry_free(r);
}

int main(void) {
  RUN(test_windows);
  return 0;
}
