/* The C side of the metrics benchmarks: the same counter add the FFI bench times from Lua,
 * here from plain C through a function pointer (so the compiler cannot inline or hoist it),
 * histogram observe with and without the sketch, and the render of /metrics for 100,000
 * series in each format. Built and run by bench/metrics_c_bench.sh against
 * libbeagle_core.so. Output lines are "label  value unit", one per measurement. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "expo.h"
#include "metrics.h"
#include "sketch.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void report(const char *label, double value, const char *unit) {
  printf("%-52s %10.2f %s\n", label, value, unit);
}

static void (*volatile counter_add)(bg_series *, double) = bg_counter_add;
static void (*volatile observe)(bg_series *, double) = bg_histogram_observe;

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 200000000L;
  char err[256];
  bg_registry *r = bg_registry_new();
  bg_series *c =
      bg_series_get(r, BG_COUNTER, "bench.c_add", NULL, NULL, 0, NULL, 0, err, sizeof err);
  void (*add)(bg_series *, double) = counter_add;
  for (long i = 0; i < n / 100; i++)
    add(c, 1);
  double t0 = now();
  for (long i = 0; i < n; i++)
    add(c, 1);
  report("C: bg_counter_add via function pointer", (now() - t0) / (double)n * 1e9, "ns/op");

  /* Histogram observe: 11 default buckets (linear search) + sketch, on a latency-like
   * spread of values (1 ms .. 1 s, cycling). */
  bg_series *h = bg_series_get(r, BG_HISTOGRAM, "bench.c_latency_seconds", NULL, NULL, 0, NULL, 0,
                               err, sizeof err);
  void (*obs)(bg_series *, double) = observe;
  long m = n / 4;
  double vals[1024];
  for (int i = 0; i < 1024; i++)
    vals[i] = 0.001 * (1 + (i * 977) % 1000);
  for (long i = 0; i < m / 100; i++)
    obs(h, vals[i & 1023]);
  t0 = now();
  for (long i = 0; i < m; i++)
    obs(h, vals[i & 1023]);
  report("C: bg_histogram_observe, 11 buckets + sketch", (now() - t0) / (double)m * 1e9, "ns/op");
  bg_sketch sk;
  bg_sketch_init(&sk, 0);
  t0 = now();
  for (long i = 0; i < m; i++)
    bg_sketch_add(&sk, vals[i & 1023]);
  double dt = now() - t0;
  report("C: bg_sketch_add alone (inlined)", dt / (double)m * 1e9, "ns/op");
  printf("(sketch p99 %.4f, counter %.0f)\n", bg_sketch_quantile(&sk, 0.99), bg_series_value(c));
  bg_sketch_reset(&sk);
  bg_registry_free(r);

  /* /metrics for 100,000 series: 1,000 families (counters and gauges alternating) of 100
   * series with two labels each. */
  r = bg_registry_new();
  bg_registry_set_limits(r, 200000, 1000);
  char name[64], inst[32], code[16];
  for (int f = 0; f < 1000; f++) {
    snprintf(name, sizeof name, "bench.family_%03d", f);
    for (int s = 0; s < 100; s++) {
      snprintf(inst, sizeof inst, "host-%02d.example", s % 50);
      snprintf(code, sizeof code, "%d", 200 + s / 50 * 100 + f % 7);
      const char *kv[] = {"instance", inst, "code", code};
      int type = f % 2 ? BG_GAUGE : BG_COUNTER;
      bg_series *x = bg_series_get(r, type, name, NULL, kv, 2, NULL, 0, err, sizeof err);
      if (x == NULL) {
        fprintf(stderr, "series: %s\n", err);
        return 1;
      }
      if (type == BG_COUNTER)
        bg_counter_add(x, f * 100 + s);
      else
        bg_gauge_set(x, (f * 100 + s) * 0.37);
    }
  }
  size_t ns = bg_registry_series_count(r);
  static const struct {
    int format;
    const char *label;
  } fmts[] = {{BG_EXPO_PROMETHEUS, "render 0.0.4"},
              {BG_EXPO_OPENMETRICS, "render OpenMetrics"},
              {BG_EXPO_JSON, "render JSON"}};
  bg_buf out = {0};
  for (size_t k = 0; k < sizeof fmts / sizeof fmts[0]; k++) {
    double best = 1e9;
    for (int rep = 0; rep < 7; rep++) { /* best of 7, buffer warm (as a server keeps it) */
      bg_buf_reset(&out);
      t0 = now();
      if (bg_expo_render(r, fmts[k].format, &out) != 0) return 1;
      dt = now() - t0;
      if (dt < best) best = dt;
    }
    char label[96];
    snprintf(label, sizeof label, "%s, %zu series (%zu bytes)", fmts[k].label, ns, out.len);
    report(label, best * 1e3, "ms");
    snprintf(label, sizeof label, "%s per series", fmts[k].label);
    report(label, best / (double)ns * 1e9, "ns/series");
    if (k == 0) {
      bg_buf z = {0};
      for (int level = 1; level <= 6; level += 5) {
        t0 = now();
        bg_gzip(out.data, out.len, level, &z);
        dt = now() - t0;
        snprintf(label, sizeof label, "gzip level %d of the 0.0.4 body (%zu -> %zu bytes)", level,
                 out.len, z.len);
        report(label, dt * 1e3, "ms");
        bg_buf_reset(&z);
      }
      bg_buf_free(&z);
    }
  }
  bg_buf_free(&out);
  bg_registry_free(r);
  return 0;
}
