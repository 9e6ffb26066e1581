/* The encoding cost per sample of the text backends (issue 15), built and run by
 * bench/encode_text_bench.sh against libbeagle_core.so, pinned to one core: a registry of
 * 10,000 series taken as one snapshot and encoded whole, again and again, by each format
 * (influx metric version 1 and 2, graphite with tags and with labels in the path, prometheus
 * text for a Pushgateway), into a buffer reused across runs as a backend's would not be (the
 * plugin side allocates one per send: the first run of each format is left out, so what is
 * timed is the encoder and not realloc's growth).
 *   scalar     counters and gauges, 3 labels each (method, route, status: short values)
 *   histogram  histograms with the 11 default latency buckets, the same 3 labels
 * Each timing is repeated REPS times (argv[1], default 5); one line per measurement,
 * tab-separated:  key  median  min  unit  description  (ns per sample; bytes per sample).
 * argv[2], when given, runs only the measurements whose key contains it: under callgrind
 * (--toggle-collect='bg_encode_*'), the instructions of one encoder over 20 (REPS + 1)
 * encodes of 10,000 samples, a number that does not move with the machine's load. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "export/batch.h"
#include "export/encode_text.h"
#include "metrics/metrics.h"

#define SERIES 10000

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static bg_registry *registry(int histograms) {
  bg_registry *r = bg_registry_new();
  char err[256], route[32], status[8];
  static const char *const methods[] = {"GET", "POST", "PUT", "DELETE"};
  for (int i = 0; i < SERIES; i++) {
    snprintf(route, sizeof route, "/api/v1/items/%d", i / 40);
    snprintf(status, sizeof status, "%d", 200 + (i % 10));
    const char *kv[] = {"method", methods[i % 4], "route", route, "status", status};
    char name[32];
    snprintf(name, sizeof name, "app.metric_%d", i % 50);
    if (histograms) {
      bg_series *s =
          bg_series_get(r, BG_HISTOGRAM, name, "Latency.", kv, 3, NULL, 0, err, sizeof err);
      for (int k = 0; k < 5; k++)
        bg_histogram_observe(s, 0.001 * (double)(k * 37 + i % 97));
    } else if (i % 2) {
      bg_counter_add(
          bg_series_get(r, BG_COUNTER, name, "Requests.", kv, 3, NULL, 0, err, sizeof err),
          (double)i * 3);
    } else {
      bg_series *s = bg_series_get(r, BG_GAUGE, name, "Depth.", kv, 3, NULL, 0, err, sizeof err);
      bg_gauge_set(s, (double)i / 7.0);
    }
  }
  return r;
}

static int REPS = 5;
static const char *ONLY;

static void bench(const char *key, const char *desc, bg_encoder fn, const bg_batch *b,
                  const char *flavor, const char *const *labels, int nlabels) {
  if (ONLY != NULL && strstr(key, ONLY) == NULL) return;
  double v[64];
  bg_buf out = {0};
  char err[256];
  size_t bytes = 0;
  int loops = 20;
  for (int r = -1; r < REPS; r++) {
    double t0 = now();
    for (int l = 0; l < loops; l++) {
      bg_encode_opts o = {.labels = labels, .nlabels = nlabels, .flavor = flavor};
      out.len = 0;
      if (fn(b, &o, &out, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", key, err);
        exit(1);
      }
    }
    double dt = now() - t0;
    bytes = out.len;
    if (r >= 0) v[r] = dt * 1e9 / ((double)loops * (double)bg_batch_len(b));
  }
  qsort(v, (size_t)REPS, sizeof v[0], cmp_double);
  double med = REPS % 2 ? v[REPS / 2] : (v[REPS / 2 - 1] + v[REPS / 2]) / 2;
  printf("%s\t%.1f\t%.1f\tns/sample\t%s (%.0f bytes/sample)\n", key, med, v[0], desc,
         (double)bytes / (double)bg_batch_len(b));
  fflush(stdout);
  bg_buf_free(&out);
}

int main(int argc, char **argv) {
  if (argc > 1) REPS = atoi(argv[1]) > 0 && atoi(argv[1]) <= 64 ? atoi(argv[1]) : 5;
  if (argc > 2) ONLY = argv[2];
  static const char *const extra[] = {"env", "prod", "host", "web-1"};
  const char *const kinds[] = {"scalar", "histogram"};
  for (int h = 0; h < 2; h++) {
    bg_registry *r = registry(h);
    bg_snapshot *snap = bg_snapshot_take(r, 1764300000.25);
    bg_batch *b = bg_batch_new(snap, 0, bg_snapshot_size(snap));
    char key[64], desc[128];
#define RUN(name, fn, flavor)                                                                      \
  snprintf(key, sizeof key, "%s_%s", name, kinds[h]);                                              \
  snprintf(desc, sizeof desc, "%s of %d %s series, 2 extra labels", name, SERIES, kinds[h]);       \
  bench(key, desc, fn, b, flavor, extra, 2)
    RUN("influx_v1", bg_encode_influx, "v1");
    RUN("influx_v2", bg_encode_influx, "v2");
    RUN("graphite_tags", bg_encode_graphite, "tags");
    RUN("graphite_path", bg_encode_graphite, "path");
    RUN("prometheus", bg_encode_prometheus, NULL);
    bg_batch_unref(b);
    bg_snapshot_unref(snap);
    bg_registry_free(r);
  }
  return 0;
}
