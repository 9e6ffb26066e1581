/* Tests for core/metrics/history: sampling a registry, raw retention, rollup math, queries, the
 * SQLite round trip across close/reopen, the loss bound of a crash after a flush, the
 * asynchronous flush, and a memory/time measurement (HISTORY_BENCH_SERIES series, default
 * 2000; the figures in the report come from HISTORY_BENCH_SERIES=100000). */
#define _GNU_SOURCE
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <uv.h>

#include "metrics/history.h"
#include "metrics/metrics.h"
#include "test_support.h"

static char err[256];
static const int64_t T0 = 1700000000000LL - 1700000000000LL % 60000; /* a minute boundary */

static bg_history *open_h(int64_t raw_ms, uint32_t chunk_n, const char *dir) {
  bg_history_opts o = {raw_ms, 0, chunk_n, 0, dir};
  bg_history *h = NULL;
  int rc = bg_history_open(&h, &o, err, sizeof err);
  if (rc != 0) fprintf(stderr, "open: %s\n", err);
  ASSERT_EQ_INT(rc, 0);
  return h;
}

/* The single value of fn over name (no matchers); asserts exactly one series answers. */
static double q1(bg_history *h, int fn, double arg, const char *name, int64_t end, int64_t range) {
  bg_hq_result *r;
  ASSERT_EQ_INT(bg_history_query(h, fn, arg, name, NULL, 0, end, range, &r, err, sizeof err), 0);
  if (r->n != 1) fprintf(stderr, "%s: %d series\n", name, r->n);
  ASSERT_EQ_INT(r->n, 1);
  double v = r->items[0].value;
  bg_hq_result_free(r);
  return v;
}

static int qn(bg_history *h, int fn, const char *name, const char *const *m, int nm, int64_t end,
              int64_t range) {
  bg_hq_result *r;
  ASSERT_EQ_INT(bg_history_query(h, fn, 0, name, m, nm, end, range, &r, err, sizeof err), 0);
  int n = r->n;
  bg_hq_result_free(r);
  return n;
}

static char *mkdtemp_dir(void) {
  static char buf[64];
  strcpy(buf, "/tmp/beagle-history.XXXXXX");
  ASSERT(mkdtemp(buf) != NULL);
  return buf;
}

static void rm_dir(const char *dir) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ASSERT_EQ_INT(system(cmd), 0);
}

static void test_sampling(void) {
  bg_registry *reg = bg_registry_new();
  const char *kv[] = {"route", "/a"};
  bg_series *c = bg_series_get(reg, BG_COUNTER, "api.requests", NULL, kv, 1, NULL, 0, err, 256);
  bg_series *g =
      bg_series_get(reg, BG_GAUGE, "system.cpu.percent", NULL, NULL, 0, NULL, 0, err, 256);
  bg_series *hi = bg_series_get(reg, BG_HISTOGRAM, "api.latency", NULL, NULL, 0, NULL, 0, err, 256);
  ASSERT(c && g && hi);
  bg_history *h = open_h(0, 0, NULL);
  for (int i = 0; i < 8; i++) {
    bg_counter_add(c, 10);
    bg_gauge_set(g, i * 1.5);
    bg_histogram_observe(hi, 0.25);
    ASSERT_EQ_INT(bg_history_sample(h, reg, T0 + i * 15000), 0);
  }
  int64_t end = T0 + 7 * 15000;
  ASSERT_EQ_INT(bg_history_now(h), end);
  ASSERT_NEAR(q1(h, BG_HQ_LAST, 0, "api.requests", end, 300000), 80);
  ASSERT_NEAR(q1(h, BG_HQ_LAST, 0, "api_requests_total", end, 300000), 80);
  ASSERT_NEAR(q1(h, BG_HQ_COUNT, 0, "api.requests", end, 300000), 8);
  ASSERT_NEAR(q1(h, BG_HQ_MAX, 0, "system.cpu.percent", end, 300000), 10.5);
  ASSERT_NEAR(q1(h, BG_HQ_MIN, 0, "system.cpu.percent", end, 300000), 0);
  ASSERT_NEAR(q1(h, BG_HQ_AVG, 0, "system_cpu_percent", end, 300000), 5.25);
  ASSERT_NEAR(q1(h, BG_HQ_LAST, 0, "api.latency_count", end, 300000), 8);
  ASSERT_NEAR(q1(h, BG_HQ_LAST, 0, "api_latency_sum", end, 300000), 2);
  /* a range ending before the data: nothing; (end-range, end] excludes the start */
  ASSERT_EQ_INT(qn(h, BG_HQ_LAST, "api.requests", NULL, 0, T0 - 1, 1000), 0);
  ASSERT_NEAR(q1(h, BG_HQ_COUNT, 0, "api.requests", end, 15000), 1);
  ASSERT_EQ_INT(qn(h, BG_HQ_LAST, "no.such", NULL, 0, end, 1000), 0);
  /* an old or repeated timestamp is dropped */
  ASSERT_EQ_INT(bg_history_sample(h, reg, end), 0);
  bg_history_stats st;
  bg_history_stats_get(h, &st);
  ASSERT_EQ_INT(st.dropped, 4);
  ASSERT_EQ_INT(st.series, 4);
  ASSERT_EQ_INT(st.raw_samples, 32);
  bg_history_close(h);
  bg_registry_free(reg);
}

/* The value the history holds last for the series of name with label k = v. */
static double last_of(bg_history *h, const char *name, const char *v, int64_t end) {
  const char *m[] = {"k", v};
  bg_hq_result *r;
  ASSERT_EQ_INT(bg_history_query(h, BG_HQ_LAST, 0, name, m, 1, end, 600000, &r, err, sizeof err),
                0);
  ASSERT_EQ_INT(r->n, 1);
  double x = r->items[0].value;
  bg_hq_result_free(r);
  return x;
}

/* Sampling finds each series' history by its registry id after the first sample: across the
 * shortcut's growth (300 series), a series removed and re-created (a new id, the same labels),
 * and a second registry sampled into the same history. */
static void test_sampling_by_id(void) {
  bg_registry *reg = bg_registry_new(), *other = bg_registry_new();
  bg_series *g[300];
  char v[300][8];
  for (int i = 0; i < 300; i++) {
    snprintf(v[i], sizeof v[i], "%d", i);
    const char *kv[] = {"k", v[i]};
    g[i] = bg_series_get(reg, BG_GAUGE, "queue.depth", NULL, kv, 1, NULL, 0, err, 256);
    ASSERT(g[i] != NULL);
  }
  const char *kv7[] = {"k", "7"};
  bg_series *o = bg_series_get(other, BG_GAUGE, "queue.depth", NULL, kv7, 1, NULL, 0, err, 256);
  bg_history *h = open_h(0, 0, NULL);
  int64_t t = T0;
  for (int round = 0; round < 4; round++, t += 15000) {
    for (int i = 0; i < 300; i++)
      bg_gauge_set(g[i], round * 1000 + i);
    ASSERT_EQ_INT(bg_history_sample(h, reg, t), 0);
  }
  ASSERT_NEAR(last_of(h, "queue.depth", "7", t - 15000), 3007);
  ASSERT_NEAR(last_of(h, "queue.depth", "299", t - 15000), 3299);
  /* k=7 removed and created again: a new registry id, still the same history series */
  bg_series_remove(reg, g[7]);
  g[7] = bg_series_get(reg, BG_GAUGE, "queue.depth", NULL, kv7, 1, NULL, 0, err, 256);
  bg_gauge_set(g[7], -7);
  ASSERT_EQ_INT(bg_history_sample(h, reg, t), 0);
  ASSERT_NEAR(last_of(h, "queue.depth", "7", t), -7);
  ASSERT_NEAR(last_of(h, "queue.depth", "8", t), 3008);
  /* another registry (its ids mean other series): k=7 there is k=7 here */
  t += 15000;
  bg_gauge_set(o, 77);
  ASSERT_EQ_INT(bg_history_sample(h, other, t), 0);
  ASSERT_NEAR(last_of(h, "queue.depth", "7", t), 77);
  t += 15000;
  bg_gauge_set(g[8], 88);
  ASSERT_EQ_INT(bg_history_sample(h, reg, t), 0);
  ASSERT_NEAR(last_of(h, "queue.depth", "8", t), 88);
  ASSERT_NEAR(last_of(h, "queue.depth", "7", t), -7);
  bg_history_stats st;
  bg_history_stats_get(h, &st);
  ASSERT_EQ_INT(st.series, 300);
  ASSERT_EQ_INT(st.raw_samples, 300 * 6 + 1);
  /* the per-series count is kept between reads, and counted again after the next change */
  bg_history_stats_get(h, &st);
  ASSERT_EQ_INT(st.raw_samples, 300 * 6 + 1);
  ASSERT_EQ_INT(bg_history_sample(h, reg, t + 15000), 0);
  bg_history_stats_get(h, &st);
  ASSERT_EQ_INT(st.raw_samples, 300 * 7 + 1);
  ASSERT_EQ_INT(bg_history_append(h, "queue.depth{k=\"new\"}", t + 15000, 1), 0);
  bg_history_stats_get(h, &st);
  ASSERT_EQ_INT(st.series, 301);
  bg_history_close(h);
  bg_registry_free(reg);
  bg_registry_free(other);
}

static void test_rate(void) {
  bg_history *h = open_h(0, 0, NULL);
  /* 0,10,20 then a reset to 5, 15: increase over the samples is 20 + 15 = 35 */
  const double v[] = {0, 10, 20, 5, 15};
  for (int i = 0; i < 5; i++)
    ASSERT_EQ_INT(bg_history_append(h, "req_total{a=\"x\"}", T0 + 15000 * (i + 1), v[i]), 0);
  int64_t end = T0 + 75000;
  /* samples cover (T0, end] from T0+15 s: the first is one interval from the start, but the
   * counter is zero there, so nothing is extrapolated before it */
  double inc = q1(h, BG_HQ_INCREASE, 0, "req", end, 75000);
  ASSERT_NEAR(inc, 35.0 * 60 / 60);
  ASSERT_NEAR(q1(h, BG_HQ_RATE, 0, "req", end, 75000), 35.0 / 75);
  /* over 60 s: samples 10,20,5,15 at +30..+75 s; 10 + 5 + 10 = 25 over 45 s, extrapolated by
   * 15 s at the start (before the zero point, 18 s back) and 0 at the end */
  ASSERT_NEAR(q1(h, BG_HQ_INCREASE, 0, "req", end, 60000), 25.0 * 60 / 45);
  ASSERT_NEAR(q1(h, BG_HQ_RATE, 0, "req", end, 60000), 25.0 / 45);
  /* one sample: no rate */
  ASSERT_EQ_INT(qn(h, BG_HQ_RATE, "req", NULL, 0, end, 15000), 0);
  bg_history_close(h);
}

static void test_matchers(void) {
  bg_history *h = open_h(0, 0, NULL);
  const char *keys[] = {"http_requests_total{code=\"200\",route=\"/a\"}",
                        "http_requests_total{code=\"500\",route=\"/a\"}",
                        "http_requests_total{code=\"503\",route=\"/b\"}", "http_requests_total"};
  for (int k = 0; k < 4; k++)
    for (int i = 0; i < 3; i++)
      ASSERT_EQ_INT(bg_history_append(h, keys[k], T0 + 15000 * i, i * (k + 1)), 0);
  int64_t end = T0 + 30000;
  ASSERT_EQ_INT(qn(h, BG_HQ_LAST, "http.requests", NULL, 0, end, 60000), 4);
  const char *m1[] = {"code", "~5.."};
  ASSERT_EQ_INT(qn(h, BG_HQ_LAST, "http.requests", m1, 1, end, 60000), 2);
  const char *m2[] = {"code", "~5..", "route", "/a"};
  ASSERT_EQ_INT(qn(h, BG_HQ_LAST, "http.requests", m2, 2, end, 60000), 1);
  const char *m3[] = {"code", "!~5.."};
  ASSERT_EQ_INT(qn(h, BG_HQ_LAST, "http.requests", m3, 1, end, 60000), 2); /* 200 and none */
  const char *m4[] = {"route", "!/a"};
  ASSERT_EQ_INT(qn(h, BG_HQ_LAST, "http.requests", m4, 1, end, 60000), 2);
  const char *m5[] = {"code", ""}; /* the series without the label */
  ASSERT_EQ_INT(qn(h, BG_HQ_LAST, "http.requests", m5, 1, end, 60000), 1);
  const char *m6[] = {"code", "~5"}; /* anchored: "5" is not "500" */
  ASSERT_EQ_INT(qn(h, BG_HQ_LAST, "http.requests", m6, 1, end, 60000), 0);
  const char *bad[] = {"code", "~("};
  bg_hq_result *r = NULL;
  ASSERT_EQ_INT(
      bg_history_query(h, BG_HQ_LAST, 0, "http.requests", bad, 1, end, 60000, &r, err, sizeof err),
      BG_EINVAL);
  ASSERT(strstr(err, "bad regex") != NULL);
  ASSERT_EQ_INT(bg_history_query(h, BG_HQ_LAST, 0, "x", NULL, 0, end, 0, &r, err, sizeof err),
                BG_EINVAL);
  /* results come sorted by labels, with the labels */
  ASSERT_EQ_INT(bg_history_query(h, BG_HQ_LAST, 0, "http_requests_total", m1, 1, end, 60000, &r,
                                 err, sizeof err),
                0);
  ASSERT_EQ_INT(r->n, 2);
  ASSERT_EQ_STR(r->items[0].name, "http_requests_total");
  ASSERT_EQ_INT(r->items[0].nlabels, 2);
  ASSERT_EQ_STR(r->items[0].kv[0], "code");
  ASSERT_EQ_STR(r->items[0].kv[1], "500");
  ASSERT_EQ_STR(r->items[1].kv[1], "503");
  ASSERT_EQ_STR(r->items[1].kv[3], "/b");
  ASSERT_NEAR(r->items[1].value, 6);
  bg_hq_result_free(r);
  ASSERT_EQ_INT(bg_history_append(h, "bad{", T0, 1), BG_EINVAL);
  ASSERT_EQ_INT(bg_history_append(h, "bad{b=\"1\",a=\"2\"}", T0, 1), BG_EINVAL);
  bg_history_close(h);
}

/* `last` answers from the minute accumulator when the newest sample is in range, and decodes
 * the chunk otherwise: both must give the sample a full scan would. Series ids are stable. */
static void test_last_and_ids(void) {
  bg_history *h = open_h(0, 0, NULL);
  /* samples across two minutes, the last one mid-minute */
  for (int i = 0; i < 7; i++)
    ASSERT_EQ_INT(bg_history_append(h, "lat{k=\"a\"}", T0 + 15000 * i, 10 + i), 0);
  ASSERT_EQ_INT(bg_history_append(h, "lat{k=\"b\"}", T0, 99), 0);
  int64_t newest = T0 + 15000 * 6;
  ASSERT_NEAR(q1(h, BG_HQ_LAST, 0, "lat", newest, 60000), 16); /* only k=a in range */
  ASSERT_NEAR(q1(h, BG_HQ_LAST, 0, "lat", newest + 5000, 30000), 16);
  /* an end before the newest sample: the one before it, from the chunk */
  ASSERT_NEAR(q1(h, BG_HQ_LAST, 0, "lat", newest - 1, 30000), 15);
  ASSERT_NEAR(q1(h, BG_HQ_LAST, 0, "lat", T0 + 20000, 10000), 11);
  /* a range that ends before the newest and starts after the one before: nothing */
  ASSERT_EQ_INT(qn(h, BG_HQ_LAST, "lat", NULL, 0, newest - 1, 10000), 0);

  bg_hq_result *r1, *r2;
  int64_t end = newest;
  ASSERT_EQ_INT(
      bg_history_query(h, BG_HQ_LAST, 0, "lat", NULL, 0, end, 600000, &r1, err, sizeof err), 0);
  ASSERT_EQ_INT(
      bg_history_query(h, BG_HQ_LAST, 0, "lat", NULL, 0, end, 600000, &r2, err, sizeof err), 0);
  ASSERT_EQ_INT(r1->n, 2);
  ASSERT_EQ_INT(r2->n, 2);
  ASSERT(r1->items[0].id != 0 && r1->items[1].id != 0);
  ASSERT(r1->items[0].id != r1->items[1].id);
  ASSERT_EQ_INT(r1->items[0].id, r2->items[0].id);
  ASSERT_EQ_INT(r1->items[1].id, r2->items[1].id);
  bg_hq_result_free(r1);
  bg_hq_result_free(r2);
  bg_history_close(h);
}

static void test_retention(void) {
  bg_history *h = open_h(60000, 4, NULL); /* 1 min raw, chunks of 4 samples */
  for (int i = 0; i < 40; i++)
    ASSERT_EQ_INT(bg_history_append(h, "g", T0 + 15000 * i, i), 0);
  bg_history_stats st;
  bg_history_stats_get(h, &st);
  /* kept: the chunks whose last sample is within the minute, plus the open one */
  ASSERT(st.raw_samples >= 4 && st.raw_samples <= 8);
  int64_t end = T0 + 15000 * 39;
  ASSERT_NEAR(q1(h, BG_HQ_COUNT, 0, "g", end, 60000), 4);
  ASSERT_NEAR(q1(h, BG_HQ_MIN, 0, "g", end, 60000), 36);
  bg_history_close(h);
}

static void test_rollups(void) {
  bg_history *h = open_h(60000, 0, NULL);
  /* 10 minutes, 4 samples a minute, values minute*10 + k */
  for (int mnt = 0; mnt < 10; mnt++)
    for (int k = 0; k < 4; k++)
      ASSERT_EQ_INT(bg_history_append(h, "g{x=\"1\"}", T0 + mnt * 60000 + k * 15000, mnt * 10 + k),
                    0);
  int64_t end = T0 + 10 * 60000 - 1; /* the last minute's end */
  /* 10 minutes > raw 1 min: rollups. Minutes 0..9 all inside (end - 10 min, end] */
  ASSERT_NEAR(q1(h, BG_HQ_COUNT, 0, "g", end, 600000), 40);
  ASSERT_NEAR(q1(h, BG_HQ_MIN, 0, "g", end, 600000), 0);
  ASSERT_NEAR(q1(h, BG_HQ_MAX, 0, "g", end, 600000), 93);
  ASSERT_NEAR(q1(h, BG_HQ_SUM, 0, "g", end, 600000), 4 * 450 + 10 * 6);
  ASSERT_NEAR(q1(h, BG_HQ_AVG, 0, "g", end, 600000), (4 * 450 + 10 * 6) / 40.0);
  ASSERT_NEAR(q1(h, BG_HQ_LAST, 0, "g", end, 600000), 93);
  /* the median of the minute means 1.5, 11.5, ..., 91.5 */
  ASSERT_NEAR(q1(h, BG_HQ_QUANTILE, 0.5, "g", end, 600000), 46.5);
  /* 5 minutes: minutes 5..9 */
  ASSERT_NEAR(q1(h, BG_HQ_MIN, 0, "g", end, 300000), 50);
  /* the flush writes them; the same answers come back from SQLite */
  ASSERT_EQ_INT(bg_history_flush(h), 0);
  bg_history_stats st;
  bg_history_stats_get(h, &st);
  ASSERT_EQ_INT(st.pending_rows, 0);
  ASSERT_EQ_INT(st.flushed_rows, 10);
  ASSERT_NEAR(q1(h, BG_HQ_SUM, 0, "g", end, 600000), 4 * 450 + 10 * 6);
  ASSERT_NEAR(q1(h, BG_HQ_MAX, 0, "g", end, 600000), 93);
  bg_history_close(h);
}

static void test_rollup_rate(void) {
  bg_history *h = open_h(60000, 0, NULL);
  /* a counter +1 per 15 s for 10 minutes, reset to 0 at minute 5 */
  double c = 0;
  for (int i = 0; i < 40; i++) {
    if (i == 20) c = 0;
    ASSERT_EQ_INT(bg_history_append(h, "c_total", T0 + 15000 * i, c), 0);
    c += 1;
  }
  int64_t end = T0 + 600000 - 1;
  /* true increase: 19 before the reset, 19 after; the rollups see min/last per minute */
  double inc = q1(h, BG_HQ_INCREASE, 0, "c", end, 600000);
  ASSERT(inc >= 38 && inc <= 42);
  bg_history_close(h);
}

static double sum_in(const char *dir, int64_t end) {
  bg_history *h = open_h(60000, 0, dir);
  bg_hq_result *r;
  ASSERT_EQ_INT(
      bg_history_query(h, BG_HQ_COUNT, 0, "p", NULL, 0, end, 3600000, &r, err, sizeof err), 0);
  double v = r->n ? r->items[0].value : 0;
  bg_hq_result_free(r);
  bg_history_close(h);
  return v;
}

static void test_persistence(void) {
  char *dir = mkdtemp_dir();
  bg_history *h = open_h(60000, 0, dir);
  for (int i = 0; i < 10; i++) /* 2.5 minutes */
    ASSERT_EQ_INT(bg_history_append(h, "p{k=\"a \\\"q\\\" \\\\ \\n\"}", T0 + 15000 * i, i), 0);
  bg_history_close(h); /* flushes */
  int64_t end = T0 + 3 * 60000 - 1;
  h = open_h(60000, 0, dir);
  const char *m[] = {"k", "a \"q\" \\ \n"};
  ASSERT_EQ_INT(qn(h, BG_HQ_COUNT, "p", m, 1, end, 3600000), 1);
  ASSERT_NEAR(q1(h, BG_HQ_COUNT, 0, "p", end, 3600000), 10);
  ASSERT_NEAR(q1(h, BG_HQ_SUM, 0, "p", end, 3600000), 45);
  ASSERT_NEAR(q1(h, BG_HQ_MAX, 0, "p", end, 3600000), 9);
  /* the minute being filled at close goes on filling after the reopen */
  ASSERT_EQ_INT(bg_history_append(h, "p{k=\"a \\\"q\\\" \\\\ \\n\"}", T0 + 15000 * 10 + 5000, 100),
                0);
  bg_history_close(h);
  ASSERT_NEAR(sum_in(dir, end), 11);
  rm_dir(dir);
}

/* A process that flushes and then dies without closing loses only what came after the flush. */
static void test_crash_loses_one_interval(void) {
  char *dir = mkdtemp_dir();
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    bg_history *h = open_h(60000, 0, dir);
    for (int i = 0; i < 8; i++)
      bg_history_append(h, "p", T0 + 15000 * i, i);
    if (bg_history_flush(h) != 0) _exit(2);
    bg_history_append(h, "p", T0 + 15000 * 8, 8); /* after the flush: lost */
    kill(getpid(), SIGKILL);
  }
  int status;
  ASSERT(waitpid(pid, &status, 0) == pid);
  ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  ASSERT_NEAR(sum_in(dir, T0 + 3 * 60000), 8);
  rm_dir(dir);
}

static void test_async_flush(void) {
  char *dir = mkdtemp_dir();
  uv_loop_t loop;
  ASSERT_EQ_INT(uv_loop_init(&loop), 0);
  bg_history *h = open_h(60000, 0, dir);
  for (int i = 0; i < 8; i++)
    bg_history_append(h, "p", T0 + 15000 * i, i);
  ASSERT_EQ_INT(bg_history_flush_async(h, &loop), 0);
  ASSERT_EQ_INT(bg_history_flush_async(h, &loop), BG_EBUSY);
  ASSERT_EQ_INT(bg_history_flush(h), BG_EBUSY);
  /* rows in flight are still read by queries */
  ASSERT_NEAR(q1(h, BG_HQ_COUNT, 0, "p", T0 + 180000, 3600000), 8);
  bg_history_append(h, "p", T0 + 15000 * 8, 8);
  ASSERT_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  bg_history_stats st;
  bg_history_stats_get(h, &st);
  ASSERT_EQ_INT(st.flushed_rows, 2);
  ASSERT_EQ_INT(st.pending_rows, 0);
  ASSERT_NEAR(q1(h, BG_HQ_COUNT, 0, "p", T0 + 180000, 3600000), 9);
  /* a close while a flush runs completes on the loop */
  ASSERT_EQ_INT(bg_history_flush_async(h, &loop), 0);
  bg_history_close(h);
  ASSERT_EQ_INT(uv_run(&loop, UV_RUN_DEFAULT), 0);
  ASSERT_EQ_INT(uv_loop_close(&loop), 0);
  ASSERT_NEAR(sum_in(dir, T0 + 180000), 9);
  rm_dir(dir);
}

static long rss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = 0;
  while (f && fgets(line, sizeof line, f))
    if (sscanf(line, "VmRSS: %ld", &kib) == 1) break;
  if (f) fclose(f);
  return kib;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return rng;
}

/* Half counters growing by ~100 a sample, half gauges with two decimals moving slightly, 240
 * samples at 15 s (one hour), each series with two labels. */
static void test_memory(void) {
  const char *env = getenv("HISTORY_BENCH_SERIES");
  int n = env ? atoi(env) : 2000;
  bg_registry *reg = bg_registry_new();
  bg_registry_set_limits(reg, (size_t)n + 10, 0);
  bg_series **s = calloc((size_t)n, sizeof *s);
  double *g = calloc((size_t)n, sizeof *g);
  for (int i = 0; i < n; i++) {
    char inst[32], route[32];
    snprintf(inst, sizeof inst, "host-%d", i / 100);
    snprintf(route, sizeof route, "/api/v1/r%d", i % 100);
    const char *kv[] = {"instance", inst, "route", route};
    char name[32]; /* 1000 series a metric, under the per-metric limit */
    snprintf(name, sizeof name, "bench.%s%d", i % 2 ? "g" : "c", i / 2000);
    s[i] = bg_series_get(reg, i % 2 ? BG_GAUGE : BG_COUNTER, name, NULL, kv, 2, NULL, 0, err,
                         sizeof err);
    ASSERT(s[i] != NULL);
    g[i] = 20 + (double)(rnd() % 6000) / 100;
  }
  long rss0 = rss_kib();
  char *dir = mkdtemp_dir();
  bg_history *h = open_h(3600000, 0, dir);
  uint64_t walk_ns = 0, flush_ns = 0;
  int nflush = 0;
  for (int k = 0; k < 240; k++) {
    for (int i = 0; i < n; i++) {
      if (i % 2 == 0) {
        bg_counter_add(s[i], (double)(80 + rnd() % 41));
      } else {
        g[i] += (double)((int)(rnd() % 21) - 10) / 100;
        bg_gauge_set(s[i], round(g[i] * 100) / 100);
      }
    }
    uint64_t t = bg_now_ns();
    ASSERT_EQ_INT(bg_history_sample(h, reg, T0 + 15000LL * k), 0);
    walk_ns += bg_now_ns() - t;
    if (k % 4 == 3) { /* the agent flushes every 15 s; once a minute keeps the bench short */
      t = bg_now_ns();
      ASSERT_EQ_INT(bg_history_flush(h), 0);
      flush_ns += bg_now_ns() - t;
      nflush++;
    }
  }
  ASSERT_EQ_INT(bg_history_flush(h), 0);
  long rss1 = rss_kib();
  bg_history_stats st;
  bg_history_stats_get(h, &st);
  ASSERT_EQ_INT(st.series, n);
  ASSERT_EQ_INT(st.raw_samples, 240 * n);
  double flush_ms = (double)flush_ns / nflush / 1e6;
  bg_hq_result *r;
  uint64_t t = bg_now_ns();
  ASSERT_EQ_INT(bg_history_query(h, BG_HQ_RATE, 0, "bench.c0", NULL, 0, T0 + 15000LL * 239, 300000,
                                 &r, err, sizeof err),
                0);
  double q_ms = (double)(bg_now_ns() - t) / 1e6;
  int nq = r->n;
  ASSERT_EQ_INT(nq, (n < 2000 ? n : 2000) / 2);
  bg_hq_result_free(r);
  fprintf(stderr,
          "  %d series x 240 samples: streams %.2f bytes/sample; all history memory %.1f MiB "
          "(%.0f bytes/series, %.2f bytes/sample); RSS +%.1f MiB\n"
          "  sample walk %.2f ms/call; synchronous flush of %d rows to a WAL file %.1f ms; "
          "rate over 5m of %d series %.1f ms\n",
          n, (double)st.raw_bytes / (double)st.raw_samples, (double)st.mem_bytes / 1048576.0,
          (double)st.mem_bytes / n, (double)st.mem_bytes / (double)st.raw_samples,
          (double)(rss1 - rss0) / 1024.0, (double)walk_ns / 240 / 1e6, 2 * n, flush_ms, nq, q_ms);
  bg_history_close(h);
  rm_dir(dir);
  bg_registry_free(reg);
  free(s);
  free(g);
}

/* A file-backed flush of many rows, to state how long the synchronous path blocks. */
static void test_flush_time(void) {
  const char *env = getenv("HISTORY_BENCH_SERIES");
  int n = env ? atoi(env) : 2000;
  char *dir = mkdtemp_dir();
  bg_history *h = open_h(60000, 0, dir);
  char key[64];
  for (int i = 0; i < n; i++) {
    snprintf(key, sizeof key, "f{i=\"%d\"}", i);
    bg_history_append(h, key, T0, i);
  }
  uint64_t t = bg_now_ns();
  ASSERT_EQ_INT(bg_history_flush(h), 0);
  fprintf(stderr, "  flush of %d rows to a WAL file: %.1f ms\n", n,
          (double)(bg_now_ns() - t) / 1e6);
  bg_history_close(h);
  rm_dir(dir);
}

int main(void) {
  RUN(test_sampling);
  RUN(test_sampling_by_id);
  RUN(test_rate);
  RUN(test_matchers);
  RUN(test_last_and_ids);
  RUN(test_retention);
  RUN(test_rollups);
  RUN(test_rollup_rate);
  RUN(test_persistence);
  RUN(test_crash_loses_one_interval);
  RUN(test_async_flush);
  RUN(test_memory);
  RUN(test_flush_time);
  fprintf(stderr, "ok\n");
  return 0;
}
