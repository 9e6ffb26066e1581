/* The C side of the metrics benchmarks (issue 3), built and run by bench/metrics_c_bench.sh
 * against libbeagle_core.so, pinned to one core:
 *   - the plain-C counter add, the denominator of the FFI ratios in bench/metrics_ffi.lua:
 *     bg_counter_add(series, 1) in a loop, once as a direct call into the shared library (a
 *     PLT call: the compiler cannot inline or hoist it) and once through a function pointer
 *     read from a volatile (an indirect call);
 *   - histogram observe with 11 (default) and 16 buckets, every histogram carrying its
 *     quantile sketch; next to it observe's bucket part alone (the same inline search,
 *     bg__histogram_bucket, on bounds padded as the registry pads them, plus the count and
 *     sum a histogram without a sketch would keep; same indirect call) and bg_sketch_add
 *     alone, so the sketch's share shows;
 *   - the Prometheus 0.0.4 render (bg_expo_prometheus) of 100,000 series, and OpenMetrics,
 *     JSON, gzip;
 *   - memory per idle series: mallinfo2() in-use bytes (and RSS) before and after creating
 *     100,000 series with two labels in a fresh registry, for gauges, counters and histograms.
 * Each timing is repeated REPS times (argv[2], default 5); the output is one line per
 * measurement, tab-separated:  key  median  min  unit  description
 * (for memory: key  bytes-per-series  rss-bytes-per-series  unit  description). */
#include <malloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "metrics/expo.h"
#include "metrics/metrics.h"
#include "metrics/sketch.h"

static int REPS = 5;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void report(const char *key, double *v, int n, const char *unit, const char *desc) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  printf("%s\t%.3f\t%.3f\t%s\t%s\n", key, med, v[0], unit, desc);
  fflush(stdout);
}

/* Runs body n times per rep (after a warm-up of n/10) and reports ns/op. */
#define TIME_NS(key, desc, n, body)                                                                \
  do {                                                                                             \
    double v_[64];                                                                                 \
    for (long i = 0; i < (n) / 10; i++) {                                                          \
      body;                                                                                        \
    }                                                                                              \
    for (int r_ = 0; r_ < REPS; r_++) {                                                            \
      double t0_ = now();                                                                          \
      for (long i = 0; i < (n); i++) {                                                             \
        body;                                                                                      \
      }                                                                                            \
      v_[r_] = (now() - t0_) / (double)(n)*1e9;                                                    \
    }                                                                                              \
    report(key, v_, REPS, "ns/op", desc);                                                          \
  } while (0)

static void (*volatile counter_add_ptr)(bg_series *, double) = bg_counter_add;
static void (*volatile observe_ptr)(bg_series *, double) = bg_histogram_observe;

/* bg_histogram_observe's bucket part (core/metrics/metrics.c) on a struct of the same shape: NaN
 * check, the search observe calls (bg__histogram_bucket, metrics.h), bucket increment, and
 * the count and sum increments that observe leaves to the sketch; without the sketch. Called
 * the same way (indirect, not inlined). */
typedef struct {
  double value;
  uint64_t count;
  uint64_t *buckets;
  const double *bounds;
  int nb;
  uint64_t misuse;
} bucket_only;

__attribute__((noinline)) static void bucket_only_observe(bucket_only *s, double v) {
  if (v != v) {
    s->misuse++;
    return;
  }
  s->buckets[bg__histogram_bucket(s->bounds, s->nb, v)]++;
  s->count++;
  s->value += v;
}
static void (*volatile bucket_only_ptr)(bucket_only *, double) = bucket_only_observe;

/* Padded to BG__BOUNDS_PAD with +Inf, as the registry keeps them. */
static const double b11[BG__BOUNDS_PAD] = {.005,     .01,      .025,     .05,     .1, .25,
                                           .5,       1,        2.5,      5,       10, INFINITY,
                                           INFINITY, INFINITY, INFINITY, INFINITY};
static const double b16[BG__BOUNDS_PAD] = {.001, .002, .005, .01, .02, .05, .1, .2,
                                           .3,   .4,   .5,   .6,  .7,  .8,  .9, 1};

static long rss_bytes(void) {
  long pages = 0, rss = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (f == NULL) return 0;
  if (fscanf(f, "%ld %ld", &pages, &rss) != 2) rss = 0;
  fclose(f);
  return rss * sysconf(_SC_PAGESIZE);
}

/* 1,000 families of 100 series with labels instance="host-NN.example", code="NNN", the shape
 * of the render benchmark. type -1: counters and gauges alternating by family. */
static bg_registry *populate(int type, int observe) {
  char err[256], name[64], inst[32], code[16];
  bg_registry *r = bg_registry_new();
  bg_registry_set_limits(r, 200000, 1000);
  for (int f = 0; f < 1000; f++) {
    int t = type >= 0 ? type : (f % 2 ? BG_GAUGE : BG_COUNTER);
    snprintf(name, sizeof name, "bench.family_%03d%s", f, t == BG_HISTOGRAM ? "_seconds" : "");
    for (int s = 0; s < 100; s++) {
      snprintf(inst, sizeof inst, "host-%02d.example", s % 50);
      snprintf(code, sizeof code, "%d", 200 + s / 50 * 100 + f % 7);
      const char *kv[] = {"instance", inst, "code", code};
      bg_series *x = bg_series_get(r, t, name, NULL, kv, 2, NULL, 0, err, sizeof err);
      if (x == NULL) {
        fprintf(stderr, "series: %s\n", err);
        exit(1);
      }
      if (t == BG_COUNTER)
        bg_counter_add(x, f * 100 + s);
      else if (t == BG_GAUGE)
        bg_gauge_set(x, (f * 100 + s) * 0.37);
      else if (observe)
        bg_histogram_observe(x, 0.001 * (1 + s));
    }
  }
  return r;
}

static void memory(const char *key, int type, int observe, const char *desc) {
  malloc_trim(0);
  struct mallinfo2 m0 = mallinfo2();
  long rss0 = rss_bytes();
  bg_registry *r = populate(type, observe);
  struct mallinfo2 m1 = mallinfo2();
  long rss1 = rss_bytes();
  double n = (double)bg_registry_series_count(r);
  printf("%s\t%.1f\t%.1f\tbytes/series\t%s\n", key,
         (double)(m1.uordblks + m1.hblkhd - m0.uordblks - m0.hblkhd) / n, (double)(rss1 - rss0) / n,
         desc);
  fflush(stdout);
  bg_registry_free(r);
}

int main(int argc, char **argv) {
  long n = argc > 1 ? atol(argv[1]) : 100000000L;
  if (argc > 2) REPS = atoi(argv[2]);
  if (REPS < 1 || REPS > 64) REPS = 5;
  char err[256];

  /* Memory first, on a fresh heap. */
  memory("mem_gauge", BG_GAUGE, 0,
         "memory per idle gauge series, 2 labels (malloc in-use bytes; RSS delta)");
  memory("mem_counter", BG_COUNTER, 0, "memory per idle counter series, 2 labels");
  memory("mem_histogram", BG_HISTOGRAM, 0,
         "memory per idle histogram series, 11 buckets + empty sketch, 2 labels");
  memory("mem_histogram_used", BG_HISTOGRAM, 1,
         "memory per histogram series after one observation (sketch store allocated)");

  bg_registry *r = bg_registry_new();
  bg_series *c =
      bg_series_get(r, BG_COUNTER, "bench.c_add", NULL, NULL, 0, NULL, 0, err, sizeof err);
  TIME_NS("c_add_direct", "C: bg_counter_add(c, 1), direct call into libbeagle_core.so", n,
          bg_counter_add(c, 1));
  void (*add)(bg_series *, double) = counter_add_ptr;
  static volatile double floor_v;
  TIME_NS("c_add_indirect", "C: bg_counter_add(c, 1) through a function pointer", n, add(c, 1));
  TIME_NS("c_add_floor", "C: x += 1 on a volatile double, no call (the memory-dependency floor)", n,
          floor_v += 1);

  /* Histogram observe. Values: seq = (i % 1000) * 0.001 as in the Lua bench (the search
   * length repeats in long runs: branches predict well); mix = the same 1000 values in a
   * scrambled order (the search length changes every call). */
  static double seq[1024], mix[1024];
  for (int i = 0; i < 1024; i++) {
    seq[i] = (i % 1000) * 0.001;
    mix[i] = 0.001 * ((i * 977) % 1000);
  }
  long m = n / 4;
  bg_series *h11 =
      bg_series_get(r, BG_HISTOGRAM, "bench.h11_seconds", NULL, NULL, 0, NULL, 0, err, sizeof err);
  bg_series *h16 =
      bg_series_get(r, BG_HISTOGRAM, "bench.h16_seconds", NULL, NULL, 0, b16, 16, err, sizeof err);
  void (*obs)(bg_series *, double) = observe_ptr;
  void (*bo)(bucket_only *, double) = bucket_only_ptr;
  uint64_t bk[17] = {0};
  bucket_only o11 = {0, 0, bk, b11, 11, 0}, o16 = {0, 0, bk, b16, 16, 0};
  TIME_NS("c_observe11_seq", "C: bg_histogram_observe, 11 buckets + sketch, seq values", m,
          obs(h11, seq[i % 1000]));
  TIME_NS("c_observe16_seq", "C: bg_histogram_observe, 16 buckets + sketch, seq values", m,
          obs(h16, seq[i % 1000]));
  TIME_NS("c_observe16_mix", "C: bg_histogram_observe, 16 buckets + sketch, scrambled values", m,
          obs(h16, mix[i & 1023]));
  TIME_NS("c_bucket11_seq", "C: observe's bucket search + increments, no sketch, 11 b, seq", m,
          bo(&o11, seq[i % 1000]));
  TIME_NS("c_bucket16_seq", "C: observe's bucket search + increments, no sketch, 16 b, seq", m,
          bo(&o16, seq[i % 1000]));
  TIME_NS("c_bucket16_mix", "C: observe's bucket search + increments, no sketch, 16 b, scrambled",
          m, bo(&o16, mix[i & 1023]));
  bg_sketch sk;
  bg_sketch_init(&sk, 0);
  TIME_NS("c_sketch_seq", "C: bg_sketch_add alone (inlined), seq values", m,
          bg_sketch_add(&sk, seq[i % 1000]));
  TIME_NS("c_sketch_mix", "C: bg_sketch_add alone (inlined), scrambled values", m,
          bg_sketch_add(&sk, mix[i & 1023]));
  fprintf(stderr, "(checks: sketch p99 %.4f, counter %.0f, h16 count %llu, bucket-only %llu)\n",
          bg_sketch_quantile(&sk, 0.99), bg_series_value(c),
          (unsigned long long)bg_series_count(h16), (unsigned long long)(o11.count + o16.count));
  bg_sketch_reset(&sk);
  bg_registry_free(r);

  /* /metrics for 100,000 series: 1,000 families (counters and gauges alternating) of 100
   * series with two labels each. */
  double t0 = now();
  r = populate(-1, 0);
  double created = now() - t0;
  size_t ns = bg_registry_series_count(r);
  double v[64];
  v[0] = created / (double)ns * 1e9;
  int reps = REPS;
  REPS = 1;
  report("c_create", v, 1, "ns/series", "creating 100,000 series with 2 labels (bg_series_get)");
  REPS = reps;
  int nr = REPS * 2 + 1; /* renders are cheap: 11 by default */
  if (nr > 64) nr = 64;
  static const struct {
    int format;
    const char *key, *label;
  } fmts[] = {{BG_EXPO_PROMETHEUS, "render_prom", "Prometheus 0.0.4"},
              {BG_EXPO_OPENMETRICS, "render_om", "OpenMetrics 1.0"},
              {BG_EXPO_JSON, "render_json", "JSON"}};
  bg_buf out = {0};
  for (size_t k = 0; k < sizeof fmts / sizeof fmts[0]; k++) {
    double ms[64], per[64];
    for (int rep = 0; rep < nr; rep++) { /* buffer kept warm, as the server keeps it */
      bg_buf_reset(&out);
      t0 = now();
      int rc = fmts[k].format == BG_EXPO_PROMETHEUS ? bg_expo_prometheus(r, &out)
                                                    : bg_expo_render(r, fmts[k].format, &out);
      if (rc != 0) return 1;
      ms[rep] = (now() - t0) * 1e3;
      per[rep] = ms[rep] * 1e6 / (double)ns;
    }
    char key[64], desc[160];
    snprintf(desc, sizeof desc, "render %s of %zu series (%zu bytes), %d runs", fmts[k].label, ns,
             out.len, nr);
    report(fmts[k].key, ms, nr, "ms", desc);
    snprintf(key, sizeof key, "%s_per_series", fmts[k].key);
    snprintf(desc, sizeof desc, "render %s per series", fmts[k].label);
    report(key, per, nr, "ns/series", desc);
    if (k == 0) {
      printf("render_prom_bytes\t%zu\t%zu\tbytes\tsize of the 0.0.4 body\n", out.len, out.len);
      bg_buf z = {0};
      for (int level = 1; level <= 6; level += 5) {
        double g[64];
        for (int rep = 0; rep < REPS; rep++) {
          bg_buf_reset(&z);
          t0 = now();
          bg_gzip(out.data, out.len, level, &z);
          g[rep] = (now() - t0) * 1e3;
        }
        snprintf(key, sizeof key, "gzip%d", level);
        snprintf(desc, sizeof desc, "gzip level %d of the 0.0.4 body (%zu -> %zu bytes)", level,
                 out.len, z.len);
        report(key, g, REPS, "ms", desc);
      }
      bg_buf_free(&z);
    }
  }
  bg_buf_free(&out);
  bg_registry_free(r);
  return 0;
}
