/* The metric backends' encoders alone (core/export/encode_*.c): the cost per sample of each
 * format on the same batches, a harness figure beside the agent's own (bench/remote_write.sh
 * measures the agent sending to a real Prometheus).
 *
 * The registry: SERIES series in the shape of a service's metrics (60 % counters, 30 % gauges,
 * 10 % histograms of the default 11 buckets; four labels each: service, route, method, code),
 * snapshotted once and cut into batches of BATCH samples. Each format encodes every batch RUNS
 * times; the best run's time per sample and bytes per sample are printed. A histogram counts
 * as one sample (its buckets, sum and count are what formats such as remote write expand into
 * 14 series). The formats that send differences (statsd, datadog) are timed in their steady
 * state: their delta has seen the series at the collection before (a second snapshot 15 s on).
 *   encode_bench [series (20000)] [batch (2000)] [runs (7)] [format (all)]
 * One format alone suits callgrind: valgrind --tool=callgrind --toggle-collect='bg_encode_*'
 * build/encode_bench 20000 2000 1 influx (instructions per sample: the total over the series).
 * Output: tab-separated lines  format  ns_per_sample  bytes_per_sample  samples_per_second */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "export/batch.h"
#include "export/delta.h"
#include "export/encode.h"
#include "export/encode_datadog.h"
#include "export/encode_otlp.h"
#include "export/encode_remote_write.h"
#include "export/encode_statsd.h"
#include "export/encode_text.h"

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static const char *ROUTES[] = {"/api/v1/users",  "/api/v1/orders", "/health", "/metrics",
                               "/api/v1/search", "/login",         "/logout", "/static/app.js"};
static const char *METHODS[] = {"GET", "POST", "PUT", "DELETE"};

static bg_registry *fill(int n) {
  bg_registry *r = bg_registry_new();
  bg_registry_set_limits(r, (size_t)n * 2, (size_t)n * 2);
  char err[256], code[8], svc[32];
  for (int i = 0; i < n; i++) {
    snprintf(code, sizeof code, "%d", 200 + (i % 5) * 100);
    snprintf(svc, sizeof svc, "svc-%d", i / 64);
    const char *kv[] = {"service", svc, "route", ROUTES[i % 8], "method", METHODS[(i / 8) % 4],
                        "code",    code};
    int k = i % 10;
    int type = k < 6 ? BG_COUNTER : k < 9 ? BG_GAUGE : BG_HISTOGRAM;
    const char *name = type == BG_COUNTER ? "http.requests"
                       : type == BG_GAUGE ? "http.in_flight"
                                          : "http.duration";
    char full[64];
    snprintf(full, sizeof full, "%s_%d", name, i / 512); /* families of at most 512 series */
    bg_series *s =
        bg_series_get(r, type, full, "a benchmark series", kv, 4, NULL, 0, err, sizeof err);
    if (s == NULL) {
      fprintf(stderr, "encode_bench: %s\n", err);
      exit(1);
    }
    if (type == BG_COUNTER) bg_counter_add(s, (double)(i * 7 % 1000));
    if (type == BG_GAUGE) bg_gauge_set(s, (double)(i % 97) * 1.5);
    if (type == BG_HISTOGRAM)
      for (int j = 0; j < 20; j++)
        bg_histogram_observe(s, 0.001 * (double)((i + j * 37) % 3000));
  }
  return r;
}

int main(int argc, char **argv) {
  int series = argc > 1 ? atoi(argv[1]) : 20000;
  int per = argc > 2 ? atoi(argv[2]) : 2000;
  int runs = argc > 3 ? atoi(argv[3]) : 7;
  const char *only = argc > 4 ? argv[4] : NULL;
  bg_registry *r = fill(series);
  bg_snapshot *snap = bg_snapshot_take(r, 1796679137.25);
  size_t n = bg_snapshot_size(snap);
  size_t nb = (n + (size_t)per - 1) / (size_t)per;
  bg_batch **batches = calloc(nb, sizeof *batches), **before = calloc(nb, sizeof *before);
  bg_snapshot *prev = bg_snapshot_take(r, 1796679137.25 - 15);
  for (size_t i = 0; i < nb; i++) {
    batches[i] = bg_batch_new(snap, i * (size_t)per, (size_t)per);
    before[i] = bg_batch_new(prev, i * (size_t)per, (size_t)per);
  }
  bg_snapshot_unref(prev);
  /* the snapshot itself, for the record: what every backend pays once per collection */
  double best = 1e300;
  for (int k = 0; k < runs; k++) {
    double t0 = now_ns();
    bg_snapshot *s = bg_snapshot_take(r, 1);
    double dt = now_ns() - t0;
    bg_snapshot_unref(s);
    if (dt < best) best = dt;
  }
  printf("snapshot\t%.1f\t%.0f\t%.0f\n", best / (double)n,
         (double)bg_snapshot_bytes(snap) / (double)n, (double)n / (best / 1e9));
  static const struct {
    const char *name;
    bg_encoder fn;
    const char *flavor;
    int delta;
  } formats[] = {
      {"remote_write", bg_encode_remote_write, NULL, 0},
      {"prometheus", bg_encode_prometheus, NULL, 0},
      {"influx", bg_encode_influx, NULL, 0},
      {"graphite", bg_encode_graphite, NULL, 0},
      {"statsd", bg_encode_statsd, NULL, 1},
      {"dogstatsd", bg_encode_statsd, "dogstatsd", 1},
      {"datadog", bg_encode_datadog, NULL, 1},
      {"otlp", bg_encode_otlp, NULL, 0},
  };
  const char *labels[] = {"cluster", "eu-1", "env", "prod"};
  for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
    if (only != NULL && strcmp(only, formats[f].name) != 0) continue;
    bg_buf out = {0};
    best = 1e300;
    size_t bytes = 0;
    int failed = 0;
    for (int k = 0; k < runs && !failed; k++) {
      bg_delta *d = formats[f].delta ? bg_delta_new(1796679137.25 - 30) : NULL;
      for (size_t i = 0; d != NULL && i < nb; i++) { /* the collection before: not timed */
        bg_encode_opts o = {.labels = labels,
                            .nlabels = 2,
                            .flavor = formats[f].flavor,
                            .interval = 15,
                            .delta = d};
        char err[256];
        bg_buf_reset(&out);
        formats[f].fn(before[i], &o, &out, err, sizeof err);
      }
      bytes = 0;
      double t0 = now_ns();
      for (size_t i = 0; i < nb; i++) {
        bg_encode_opts o = {.labels = labels,
                            .nlabels = 2,
                            .flavor = formats[f].flavor,
                            .interval = 15,
                            .delta = d};
        char err[256] = "";
        bg_buf_reset(&out);
        if (formats[f].fn(batches[i], &o, &out, err, sizeof err) != 0) {
          fprintf(stderr, "encode_bench: %s: %s\n", formats[f].name, err);
          failed = 1;
          break;
        }
        bytes += out.len;
      }
      double dt = now_ns() - t0;
      bg_delta_free(d);
      if (dt < best) best = dt;
    }
    if (!failed)
      printf("%s\t%.1f\t%.1f\t%.0f\n", formats[f].name, best / (double)n, (double)bytes / (double)n,
             (double)n / (best / 1e9));
    bg_buf_free(&out);
  }
  for (size_t i = 0; i < nb; i++) {
    bg_batch_unref(batches[i]);
    bg_batch_unref(before[i]);
  }
  free(batches);
  free(before);
  bg_snapshot_unref(snap);
  bg_registry_free(r);
  return 0;
}
