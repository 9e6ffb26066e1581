/* Tests for core/metrics/metrics: name mapping, label validation, series identity, hot-path
 * semantics, buckets, cardinality limits and label truncation (the exposition formats are
 * test_expo.c's). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/expo.h"
#include "metrics/metrics.h"
#include "test_check.h"

static char err[256];

static bg_series *get(bg_registry *r, int type, const char *name, const char *const *kv, int n) {
  return bg_series_get(r, type, name, NULL, kv, n, NULL, 0, err, sizeof err);
}

static void test_name_map(void) {
  char out[256];
  CHECK_INT(bg_metric_name_map("api.response_time", BG_HISTOGRAM, out, sizeof out, err, sizeof err),
            0);
  CHECK_STR(out, "api_response_time");
  CHECK_INT(bg_metric_name_map("system.cpu_percent", BG_GAUGE, out, sizeof out, err, sizeof err),
            0);
  CHECK_STR(out, "system_cpu_percent");
  CHECK_INT(bg_metric_name_map("api.requests", BG_COUNTER, out, sizeof out, err, sizeof err), 0);
  CHECK_STR(out, "api_requests_total");
  CHECK_INT(bg_metric_name_map("http-requests_total", BG_COUNTER, out, sizeof out, err, sizeof err),
            0);
  CHECK_STR(out, "http_requests_total");
  CHECK_INT(bg_metric_name_map("ns:rule_x", BG_GAUGE, out, sizeof out, err, sizeof err), 0);
  CHECK_STR(out, "ns:rule_x");

  CHECK_INT(bg_metric_name_map("9abc", BG_GAUGE, out, sizeof out, err, sizeof err), BG_EINVAL);
  CHECK_STR(err, "metric name \"9abc\" must start with a letter or underscore");
  CHECK_INT(bg_metric_name_map("", BG_GAUGE, out, sizeof out, err, sizeof err), BG_EINVAL);
  CHECK_STR(err, "metric name is empty");
  CHECK_INT(bg_metric_name_map(NULL, BG_GAUGE, out, sizeof out, err, sizeof err), BG_EINVAL);
  CHECK_INT(bg_metric_name_map(".x", BG_GAUGE, out, sizeof out, err, sizeof err), BG_EINVAL);
  CHECK_INT(bg_metric_name_map("a b", BG_GAUGE, out, sizeof out, err, sizeof err), BG_EINVAL);
  CHECK_ERR(err, "invalid character ' '");
  CHECK_INT(bg_metric_name_map("a\xc3\xa9", BG_GAUGE, out, sizeof out, err, sizeof err), BG_EINVAL);
  CHECK_ERR(err, "\\xc3");
  CHECK_INT(bg_metric_name_map("_total", BG_COUNTER, out, sizeof out, err, sizeof err), BG_EINVAL);
  CHECK_INT(bg_metric_name_map("abc", BG_GAUGE, out, 3, err, sizeof err), BG_EINVAL);
  CHECK_INT(bg_metric_name_map("abc", BG_COUNTER, out, 5, err, sizeof err), BG_EINVAL);
  CHECK_INT(bg_metric_name_map("abc", 7, out, sizeof out, err, sizeof err), BG_EINVAL);
  char long_name[300];
  memset(long_name, 'a', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  CHECK_INT(bg_metric_name_map(long_name, BG_GAUGE, out, sizeof out, err, sizeof err), BG_EINVAL);
  CHECK_ERR(err, "too long");
  /* A zero-length err buffer is allowed. */
  CHECK_INT(bg_metric_name_map("9", BG_GAUGE, out, sizeof out, NULL, 0), BG_EINVAL);
}

static void test_labels(void) {
  bg_registry *r = bg_registry_new();
  const char *bad_start[] = {"1a", "v"};
  CHECK(get(r, BG_GAUGE, "g", bad_start, 1) == NULL);
  CHECK_ERR(err, "label name \"1a\" must start with a letter or underscore");
  const char *bad_char[] = {"a.b", "v"};
  CHECK(get(r, BG_GAUGE, "g", bad_char, 1) == NULL);
  CHECK_ERR(err, "invalid character '.'");
  const char *reserved[] = {"__name__", "v"};
  CHECK(get(r, BG_GAUGE, "g", reserved, 1) == NULL);
  CHECK_ERR(err, "reserved");
  const char *le[] = {"le", "1"};
  CHECK(get(r, BG_HISTOGRAM, "h", le, 1) == NULL);
  CHECK_ERR(err, "\"le\" is reserved");
  const char *empty[] = {"", "v"};
  CHECK(get(r, BG_GAUGE, "g", empty, 1) == NULL);
  CHECK_ERR(err, "label name is empty");
  const char *dup[] = {"b", "1", "a", "2", "b", "3"};
  CHECK(get(r, BG_GAUGE, "g", dup, 3) == NULL);
  CHECK_ERR(err, "duplicate label name \"b\"");
  const char *nullv[] = {"a", NULL};
  CHECK(get(r, BG_GAUGE, "g", nullv, 1) == NULL);
  CHECK_ERR(err, "has no value");
  const char *bad_utf8[] = {"a", "\xff\xfe"};
  CHECK(get(r, BG_GAUGE, "g", bad_utf8, 1) == NULL);
  CHECK_ERR(err, "not valid UTF-8");
  const char *surrogate[] = {"a", "\xed\xa0\x80"};
  CHECK(get(r, BG_GAUGE, "g", surrogate, 1) == NULL);
  const char *overlong[] = {"a", "\xc0\xaf"};
  CHECK(get(r, BG_GAUGE, "g", overlong, 1) == NULL);
  const char *utf8[] = {"a", "caf\xc3\xa9 \xf0\x9f\x90\xb6 \"q\" \\ \n"};
  CHECK(get(r, BG_GAUGE, "g", utf8, 1) != NULL);

  const char *many[2 * (BG_METRICS_MAX_LABELS + 1)];
  char names[BG_METRICS_MAX_LABELS + 1][8];
  for (int i = 0; i <= BG_METRICS_MAX_LABELS; i++) {
    snprintf(names[i], sizeof names[i], "l%d", i);
    many[2 * i] = names[i];
    many[2 * i + 1] = "v";
  }
  CHECK(get(r, BG_GAUGE, "many", many, BG_METRICS_MAX_LABELS) != NULL);
  CHECK(get(r, BG_GAUGE, "many", many, BG_METRICS_MAX_LABELS + 1) == NULL);
  CHECK_ERR(err, "at most 16");
  CHECK(get(r, BG_GAUGE, "g", NULL, 1) == NULL);
  CHECK(get(r, BG_GAUGE, "g", NULL, -1) == NULL);
  CHECK(bg_series_get(NULL, BG_GAUGE, "g", NULL, NULL, 0, NULL, 0, err, sizeof err) == NULL);
  CHECK(get(r, 3, "g", NULL, 0) == NULL);
  CHECK_ERR(err, "unknown metric type");
  bg_registry_free(r);
}

static void test_identity(void) {
  bg_registry *r = bg_registry_new();
  const char *ab[] = {"method", "POST", "endpoint", "/optimize"};
  const char *ba[] = {"endpoint", "/optimize", "method", "POST"};
  const char *other[] = {"endpoint", "/health", "method", "POST"};
  bg_series *s1 = get(r, BG_COUNTER, "api.requests", ab, 2);
  bg_series *s2 = get(r, BG_COUNTER, "api.requests", ba, 2);
  bg_series *s3 = get(r, BG_COUNTER, "api_requests_total", ab, 2);
  bg_series *s4 = get(r, BG_COUNTER, "api.requests", other, 2);
  CHECK(s1 != NULL);
  CHECK(s1 == s2);
  CHECK(s1 == s3);
  CHECK(s4 != NULL && s4 != s1);
  CHECK_INT(bg_registry_series_count(r), 2);

  /* Label sets that would hash alike if keys and values were simply concatenated. */
  const char *x1[] = {"ab", "c"};
  const char *x2[] = {"a", "bc"};
  CHECK(get(r, BG_GAUGE, "x", x1, 1) != get(r, BG_GAUGE, "x", x2, 1));

  /* Many series: the table grows and every one is still found. */
  char v[16];
  const char *kv[] = {"i", v};
  bg_series *first = NULL;
  for (int i = 0; i < 1000; i++) {
    snprintf(v, sizeof v, "%d", i);
    bg_series *s = get(r, BG_GAUGE, "wide", kv, 1);
    bg_gauge_set(s, i);
    if (i == 0) first = s;
  }
  snprintf(v, sizeof v, "%d", 0);
  CHECK(get(r, BG_GAUGE, "wide", kv, 1) == first);
  snprintf(v, sizeof v, "%d", 777);
  CHECK_DBL(bg_series_value(get(r, BG_GAUGE, "wide", kv, 1)), 777);
  CHECK_INT(bg_registry_series_count(r), 1004);

  /* Many families too. */
  char name[32];
  for (int i = 0; i < 300; i++) {
    snprintf(name, sizeof name, "fam.%03d", i);
    CHECK(get(r, BG_GAUGE, name, NULL, 0) != NULL);
  }
  CHECK(get(r, BG_GAUGE, "fam.000", NULL, 0) == get(r, BG_GAUGE, "fam_000", NULL, 0));

  bg_series_remove(r, s4);
  CHECK_INT(bg_registry_series_count(r), 1303);
  bg_series *s5 = get(r, BG_COUNTER, "api.requests", other, 2);
  CHECK(s5 != NULL);
  CHECK_DBL(bg_series_value(s5), 0);
  bg_registry_free(r);
}

static void test_types(void) {
  bg_registry *r = bg_registry_new();
  CHECK(get(r, BG_COUNTER, "x", NULL, 0) != NULL);
  CHECK(get(r, BG_GAUGE, "x", NULL, 0) == NULL);
  CHECK_STR(err, "metric \"x\" is a counter, not a gauge");
  CHECK(get(r, BG_HISTOGRAM, "x_total", NULL, 0) == NULL); /* counter x writes x_total */
  CHECK_STR(err, "metric \"x_total\" would expose x_total, which counter x_total already writes");
  CHECK(get(r, BG_GAUGE, "h", NULL, 0) != NULL);
  CHECK(get(r, BG_COUNTER, "h_total", NULL, 0) == NULL);
  CHECK_STR(err, "metric \"h_total\" is a gauge, not a counter");

  /* Names that would collide on the wire. */
  CHECK(get(r, BG_GAUGE, "c_total", NULL, 0) != NULL);
  CHECK(get(r, BG_COUNTER, "c", NULL, 0) == NULL);
  CHECK_ERR(err, "would expose c_total");
  CHECK(get(r, BG_HISTOGRAM, "lat", NULL, 0) != NULL);
  CHECK(get(r, BG_GAUGE, "lat_count", NULL, 0) == NULL);
  CHECK_ERR(err, "histogram lat already writes");
  CHECK(get(r, BG_COUNTER, "lat_sum", NULL, 0) == NULL);

  /* Buckets. */
  const double asc[] = {1, 2, 4};
  const double desc[] = {1, 3, 2};
  const double dupb[] = {1, 1};
  const double nan[] = {1, NAN};
  const double inf_tail[] = {1, 2, 4, INFINITY};
  CHECK(bg_series_get(r, BG_HISTOGRAM, "b1", NULL, NULL, 0, desc, 3, err, sizeof err) == NULL);
  CHECK_ERR(err, "increasing order");
  CHECK(bg_series_get(r, BG_HISTOGRAM, "b1", NULL, NULL, 0, dupb, 2, err, sizeof err) == NULL);
  CHECK(bg_series_get(r, BG_HISTOGRAM, "b1", NULL, NULL, 0, nan, 2, err, sizeof err) == NULL);
  CHECK_ERR(err, "not a finite number");
  CHECK(bg_series_get(r, BG_GAUGE, "b2", NULL, NULL, 0, asc, 3, err, sizeof err) == NULL);
  CHECK_ERR(err, "only to histograms");
  double big[BG_METRICS_MAX_BUCKETS + 1];
  for (int i = 0; i <= BG_METRICS_MAX_BUCKETS; i++)
    big[i] = i;
  CHECK(bg_series_get(r, BG_HISTOGRAM, "b3", NULL, NULL, 0, big, BG_METRICS_MAX_BUCKETS + 1, err,
                      sizeof err) == NULL);
  bg_series *b = bg_series_get(r, BG_HISTOGRAM, "b1", NULL, NULL, 0, asc, 3, err, sizeof err);
  CHECK(b != NULL);
  CHECK(bg_series_get(r, BG_HISTOGRAM, "b1", NULL, NULL, 0, inf_tail, 4, err, sizeof err) == b);
  CHECK(bg_series_get(r, BG_HISTOGRAM, "b1", NULL, NULL, 0, NULL, 0, err, sizeof err) == b);
  CHECK(bg_series_get(r, BG_HISTOGRAM, "b1", NULL, NULL, 0, asc, 2, err, sizeof err) == NULL);
  CHECK_ERR(err, "different buckets");
  bg_registry_free(r);
}

static void test_hot_paths(void) {
  bg_registry *r = bg_registry_new();
  bg_series *c = get(r, BG_COUNTER, "c", NULL, 0);
  bg_counter_add(c, 5);
  bg_counter_add(c, 3);
  CHECK_DBL(bg_series_value(c), 8);
  bg_counter_add(c, -1);
  bg_counter_add(c, NAN);
  CHECK_DBL(bg_series_value(c), 8);
  CHECK_INT(bg_registry_misuse_count(r), 2);
  CHECK_INT(bg_series_count(c), 0);

  bg_series *g = get(r, BG_GAUGE, "g", NULL, 0);
  bg_gauge_set(g, 42);
  bg_gauge_set(g, 24);
  CHECK_DBL(bg_series_value(g), 24);
  bg_gauge_add(g, -30);
  CHECK_DBL(bg_series_value(g), -6);

  bg_series *h = get(r, BG_HISTOGRAM, "h", NULL, 0);
  for (int i = 1; i <= 5; i++)
    bg_histogram_observe(h, i);
  bg_histogram_observe(h, NAN);
  CHECK_DBL(bg_series_value(h), 15);
  CHECK_INT(bg_series_count(h), 5);
  CHECK_INT(bg_registry_misuse_count(r), 3);

  bg_registry_free(r);
}

/* Non-cumulative counts of one histogram series, captured by a walk. */
typedef struct capture {
  const char *name;
  uint64_t counts[BG_METRICS_MAX_BUCKETS + 1];
  int n;
  int families;
  int series;
  char order[512];
} capture;

static void cap_family(void *ud, const bg_family_view *f) {
  capture *c = ud;
  c->families++;
  strncat(c->order, f->name, sizeof c->order - strlen(c->order) - 2);
  strcat(c->order, " ");
}

static void cap_series(void *ud, const bg_family_view *f, const bg_series_view *s) {
  capture *c = ud;
  c->series++;
  if (c->name && strcmp(f->name, c->name) == 0 && f->type == BG_HISTOGRAM) {
    c->n = f->nbuckets + 1;
    memcpy(c->counts, s->bucket_counts, (size_t)c->n * sizeof(uint64_t));
  }
}

/* The branch-free count (<= 16 bounds, padded) and the binary search (more) against a plain
 * linear search, at every bound, its neighbours, the infinities and random values. */
static void test_bucket_search(void) {
  const int sizes[] = {1, 2, 11, 15, 16, 17, 40, BG_METRICS_MAX_BUCKETS};
  uint64_t x = 0x2545f4914f6cdd1dULL;
  for (size_t t = 0; t < sizeof sizes / sizeof sizes[0]; t++) {
    int nb = sizes[t];
    double b[BG_METRICS_MAX_BUCKETS];
    uint64_t want[BG_METRICS_MAX_BUCKETS + 1] = {0};
    for (int i = 0; i < nb; i++)
      b[i] = (i - nb / 3) * 0.37 + (i % 3) * 0.01;
    bg_registry *r = bg_registry_new();
    bg_series *h = bg_series_get(r, BG_HISTOGRAM, "search", NULL, NULL, 0, b, nb, err, sizeof err);
    CHECK(h != NULL);
    if (h == NULL) break;
    for (int i = 0; i < 4 * nb + 2000; i++) {
      double v;
      if (i < 3 * nb) {
        v = i % 3 == 0 ? b[i / 3] : nextafter(b[i / 3], i % 3 == 1 ? -INFINITY : INFINITY);
      } else if (i < 3 * nb + 2) {
        v = i % 2 ? INFINITY : -INFINITY;
      } else {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        v = ((double)(x % 100000) / 100000 - 0.4) * nb;
      }
      int k = 0;
      while (k < nb && v > b[k])
        k++;
      want[k]++;
      bg_histogram_observe(h, v);
    }
    capture c = {.name = "search"};
    bg_registry_walk(r, cap_family, cap_series, &c);
    CHECK_INT(c.n, nb + 1);
    for (int k = 0; k <= nb; k++) {
      if (c.counts[k] != want[k]) {
        fprintf(stderr, "%d bounds: bucket %d has %llu, want %llu\n", nb, k,
                (unsigned long long)c.counts[k], (unsigned long long)want[k]);
        failures++;
      }
    }
    bg_registry_free(r);
  }
}

/* Series keep no back pointer: removing the first, a middle and the last one keeps the
 * creation order, and a series made after that goes last. */
static void test_remove_order(void) {
  bg_registry *r = bg_registry_new();
  bg_series *s[5];
  char v[8];
  const char *kv[] = {"n", v};
  for (int i = 0; i < 5; i++) {
    snprintf(v, sizeof v, "%d", i);
    s[i] = get(r, BG_GAUGE, "order", kv, 1);
    bg_gauge_set(s[i], i);
  }
  bg_series_remove(r, s[0]);
  bg_series_remove(r, s[2]);
  bg_series_remove(r, s[4]);
  snprintf(v, sizeof v, "%d", 9);
  bg_gauge_set(get(r, BG_GAUGE, "order", kv, 1), 9);
  bg_buf out = {0};
  CHECK_INT(bg_expo_prometheus(r, &out), 0);
  CHECK_STR(out.data, "# HELP order Metric recorded by beagle.\n# TYPE order gauge\n"
                      "order{n=\"1\"} 1\norder{n=\"3\"} 3\norder{n=\"9\"} 9\n");
  bg_series_remove(r, s[1]);
  bg_series_remove(r, s[3]);
  bg_series_remove(r, bg_series_find(r, BG_GAUGE, "order", kv, 1));
  bg_buf_reset(&out);
  CHECK_INT(bg_expo_prometheus(r, &out), 0);
  CHECK_STR(out.data, "");
  bg_gauge_set(get(r, BG_GAUGE, "order", kv, 1), 1);
  bg_buf_reset(&out);
  CHECK_INT(bg_expo_prometheus(r, &out), 0);
  CHECK(strstr(out.data, "order{n=\"9\"} 1\n") != NULL);
  bg_buf_free(&out);
  bg_registry_free(r);
}

static void test_buckets(void) {
  bg_registry *r = bg_registry_new();
  double many[40];
  for (int i = 0; i < 40; i++)
    many[i] = i + 1;
  const double few[] = {1, 2, 3};
  bg_series *hl = bg_series_get(r, BG_HISTOGRAM, "hl", NULL, NULL, 0, few, 3, err, sizeof err);
  bg_series *hb = bg_series_get(r, BG_HISTOGRAM, "hb", NULL, NULL, 0, many, 40, err, sizeof err);
  const double obs[] = {-1, 0.5, 1, 1.0000001, 2, 3, 3.5, 40, 41, INFINITY, -INFINITY};
  for (size_t i = 0; i < sizeof obs / sizeof obs[0]; i++) {
    bg_histogram_observe(hl, obs[i]);
    bg_histogram_observe(hb, obs[i]);
  }
  capture c = {.name = "hl"};
  bg_registry_walk(r, cap_family, cap_series, &c);
  CHECK_INT(c.n, 4);
  CHECK_INT(c.counts[0], 4); /* -1 0.5 1 -Inf */
  CHECK_INT(c.counts[1], 2); /* 1.0000001 2 */
  CHECK_INT(c.counts[2], 1); /* 3 */
  CHECK_INT(c.counts[3], 4); /* 3.5 40 41 +Inf */
  CHECK_STR(c.order, "hb hl ");
  capture d = {.name = "hb"};
  bg_registry_walk(r, cap_family, cap_series, &d);
  CHECK_INT(d.n, 41);
  CHECK_INT(d.counts[0], 4);
  CHECK_INT(d.counts[1], 2);
  CHECK_INT(d.counts[2], 1);
  CHECK_INT(d.counts[3], 1);  /* 3.5 */
  CHECK_INT(d.counts[39], 1); /* 40 */
  CHECK_INT(d.counts[40], 2); /* 41 +Inf */
  bg_registry_free(r);
}

static char *render(bg_registry *r) {
  bg_buf b = {0};
  CHECK_INT(bg_expo_prometheus(r, &b), 0);
  return b.data;
}

static void test_limits(void) {
  bg_registry *r = bg_registry_new();
  bg_registry_set_limits(r, 4, 3);
  char v[8];
  bg_series *kept[3];
  for (int i = 0; i < 3; i++) {
    snprintf(v, sizeof v, "%d", i);
    const char *kv[] = {"k", v};
    kept[i] = get(r, BG_COUNTER, "lim.a", kv, 1);
    CHECK(kept[i] != NULL);
  }
  const char *kv3[] = {"k", "3"};
  CHECK(get(r, BG_COUNTER, "lim.a", kv3, 1) == NULL);
  CHECK_STR(err, "series limit reached for metric \"lim.a\" (3 series)");
  CHECK(get(r, BG_COUNTER, "lim.a", kv3, 1) == NULL);
  /* Existing series keep working, and are still found. */
  const char *kv0[] = {"k", "0"};
  CHECK(get(r, BG_COUNTER, "lim.a", kv0, 1) == kept[0]);
  bg_counter_add(kept[0], 1);
  CHECK_DBL(bg_series_value(kept[0]), 1);
  CHECK_INT(bg_registry_dropped(r, BG_DROP_MAX_SERIES_PER_METRIC), 2);
  /* The drop counter is a series of the registry's own, outside the limits: 3 + 1 now. */
  CHECK_INT(bg_registry_series_count(r), 4);
  CHECK(get(r, BG_GAUGE, "lim.b", NULL, 0) != NULL); /* the fourth */
  CHECK(get(r, BG_GAUGE, "lim.c", NULL, 0) == NULL); /* no family yet */
  CHECK_STR(err, "total series limit reached (4)");
  const char *kv1[] = {"k", "x"};
  CHECK(get(r, BG_GAUGE, "lim.b", kv1, 1) == NULL); /* family exists */
  CHECK_STR(err, "total series limit reached (4)");
  CHECK_INT(bg_registry_dropped(r, BG_DROP_MAX_SERIES), 2);
  CHECK_INT(bg_registry_series_count(r), 6); /* both drop counters exist now, outside limits */
  CHECK(get(r, BG_GAUGE, "lim.b", NULL, 0) != NULL);

  bg_limit_hit hits[4];
  CHECK_INT(bg_registry_limits_hit(r, hits, 4), 3);
  CHECK_STR(hits[0].name, "lim_a");
  CHECK_INT(hits[0].dropped, 2);
  CHECK_INT(hits[0].series, 3);
  CHECK_INT(hits[0].reason, BG_DROP_MAX_SERIES_PER_METRIC);
  CHECK_STR(hits[1].name, "lim_b");
  CHECK_INT(hits[1].dropped, 1);
  CHECK_INT(hits[1].reason, BG_DROP_MAX_SERIES);
  CHECK(hits[2].name == NULL);
  CHECK_INT(hits[2].dropped, 1);
  CHECK_INT(bg_registry_limits_hit(r, hits, 1), 3); /* fills only one */

  /* A removed series makes room again. */
  bg_series_remove(r, kept[2]);
  CHECK(get(r, BG_COUNTER, "lim.a", kv3, 1) != NULL);

  char *text = render(r);
  CHECK(strstr(text, "# TYPE beagle_series_dropped_total counter\n"
                     "beagle_series_dropped_total{reason=\"max_series_per_metric\"} 2\n"
                     "beagle_series_dropped_total{reason=\"max_series\"} 2\n") != NULL);
  free(text);
  /* Removing the registry's own counter is allowed; it comes back on the next drop. */
  const char *rk[] = {"reason", "max_series"};
  bg_series *ds = get(r, BG_COUNTER, "beagle_series_dropped", rk, 1);
  CHECK(ds != NULL);
  bg_series_remove(r, ds);
  CHECK(get(r, BG_GAUGE, "lim.d", NULL, 0) == NULL);
  ds = bg_series_find(r, BG_COUNTER, "beagle_series_dropped", rk, 1);
  CHECK(ds != NULL);
  CHECK_DBL(ds ? bg_series_value(ds) : -1, 1);
  bg_registry_free(r);

  r = bg_registry_new(); /* defaults */
  for (int i = 0; i < BG_DEFAULT_MAX_SERIES_PER_METRIC; i++) {
    char b[16];
    snprintf(b, sizeof b, "%d", i);
    const char *kv[] = {"id", b};
    CHECK(get(r, BG_GAUGE, "lim.many", kv, 1) != NULL);
  }
  const char *kvx[] = {"id", "x"};
  CHECK(get(r, BG_GAUGE, "lim.many", kvx, 1) == NULL);
  CHECK_STR(err, "series limit reached for metric \"lim.many\" (2000 series)");
  bg_registry_free(r);
}

/* The agent's own series (bg_series_get_own) are outside both limits: a registry full of
 * user series still takes them, they don't count toward max_series, and removing one gives
 * its place back to nobody but its own kind (issue 14: a StatsD name flood hid 14 of 20
 * beagle_* series). */
static void test_own_series(void) {
  bg_registry *r = bg_registry_new();
  bg_registry_set_limits(r, 3, 2);
  CHECK(get(r, BG_GAUGE, "user.a", NULL, 0) != NULL);
  CHECK(get(r, BG_GAUGE, "user.b", NULL, 0) != NULL);
  CHECK(get(r, BG_GAUGE, "user.c", NULL, 0) != NULL);
  CHECK(get(r, BG_GAUGE, "user.d", NULL, 0) == NULL); /* full */
  char v[16];
  bg_series *own[5];
  for (int i = 0; i < 5; i++) { /* past max_series_per_metric and max_series both */
    snprintf(v, sizeof v, "p%d", i);
    const char *kv[] = {"plugin", v};
    own[i] =
        bg_series_get_own(r, BG_GAUGE, "beagle_plugin_up", NULL, kv, 1, NULL, 0, err, sizeof err);
    CHECK(own[i] != NULL);
  }
  CHECK(bg_series_get_own(r, BG_GAUGE, "beagle_resident_memory_bytes", NULL, NULL, 0, NULL, 0, err,
                          sizeof err) != NULL);
  CHECK_INT(bg_registry_series_count(r), 3 + 5 + 1 + 1); /* + beagle_series_dropped */
  /* still full for users: the own series took no user's place ... */
  CHECK(get(r, BG_GAUGE, "user.e", NULL, 0) == NULL);
  CHECK_STR(err, "total series limit reached (3)");
  /* ... and removing one frees no user's place either */
  bg_series_remove(r, own[0]);
  CHECK(get(r, BG_GAUGE, "user.e", NULL, 0) == NULL);
  /* an own lookup of an existing series returns it */
  const char *kv1[] = {"plugin", "p1"};
  CHECK(bg_series_get_own(r, BG_GAUGE, "beagle_plugin_up", NULL, kv1, 1, NULL, 0, err,
                          sizeof err) == own[1]);
  /* the probe sees what bg_series_get would: full, a clash, an existing series */
  bg_series_probe_t pr;
  CHECK_INT(bg_series_probe(r, BG_GAUGE, "user.z", NULL, 0, &pr, err, sizeof err), 0);
  CHECK_INT((int)pr.total_room, 0);
  CHECK_INT((int)pr.family_room, 2);
  CHECK_INT(bg_series_probe(r, BG_COUNTER, "user.a", NULL, 0, &pr, err, sizeof err), -1);
  CHECK_STR(err, "metric \"user.a\" is a gauge, not a counter");
  CHECK_INT(bg_series_probe(r, BG_GAUGE, "user.a", NULL, 0, &pr, err, sizeof err), 1);
  CHECK_INT(bg_series_probe(r, BG_GAUGE, "9x", NULL, 0, &pr, err, sizeof err), -1);
  CHECK(bg_series_find(r, BG_GAUGE, "user.z", NULL, 0) == NULL); /* created nothing */
  /* a user series removed gives its place back */
  bg_series_remove(r, bg_series_find(r, BG_GAUGE, "user.a", NULL, 0));
  CHECK_INT(bg_series_probe(r, BG_GAUGE, "user.e", NULL, 0, &pr, err, sizeof err), 0);
  CHECK_INT((int)pr.total_room, 1);
  CHECK(get(r, BG_GAUGE, "user.e", NULL, 0) != NULL);
  bg_registry_free(r);
}

static void test_truncation(void) {
  bg_registry *r = bg_registry_new();
  char long_v[400], want[300];
  /* 255 ASCII bytes then a 3-byte character straddling the 256-byte cut. */
  memset(long_v, 'a', 255);
  strcpy(long_v + 255, "\xe2\x82\xac tail");
  const char *kv[] = {"path", long_v};
  bg_series *s = get(r, BG_COUNTER, "trunc.requests", kv, 1);
  CHECK(s != NULL);
  memset(want, 'a', 255);
  want[255] = '\0';
  const char *kvw[] = {"path", want};
  CHECK(get(r, BG_COUNTER, "trunc.requests", kvw, 1) == s); /* the cut value is the key */
  CHECK(get(r, BG_COUNTER, "trunc.requests", kv, 1) == s);
  CHECK(bg_series_find(r, BG_COUNTER, "trunc.requests", kv, 1) == s);
  CHECK_INT(bg_registry_truncated(r), 1); /* counted once, when the series was made */
  /* Exactly 256 bytes are kept as they are. */
  char exact[257];
  memset(exact, 'b', 256);
  exact[256] = '\0';
  const char *kve[] = {"path", exact};
  bg_series *e = get(r, BG_COUNTER, "trunc.requests", kve, 1);
  CHECK(e != NULL && e != s);
  CHECK_INT(bg_registry_truncated(r), 1);
  const char *both[] = {"a", long_v, "b", long_v};
  CHECK(get(r, BG_COUNTER, "trunc.two", both, 2) != NULL);
  CHECK_INT(bg_registry_truncated(r), 3);
  bg_series *t = bg_series_find(r, BG_COUNTER, "beagle_label_values_truncated", NULL, 0);
  CHECK(t != NULL);
  CHECK_DBL(t ? bg_series_value(t) : -1, 3);
  char *text = render(r);
  CHECK(strstr(text, "\nbeagle_label_values_truncated_total 3\n") != NULL);
  char line[400];
  snprintf(line, sizeof line, "trunc_requests_total{path=\"%s\"} 0\n", want);
  CHECK(strstr(text, line) != NULL);
  free(text);
  bg_registry_free(r);
}

static void test_ids_and_quantiles(void) {
  bg_registry *r = bg_registry_new();
  bg_series *a = get(r, BG_GAUGE, "id.a", NULL, 0);
  bg_series *b = get(r, BG_HISTOGRAM, "id.b", NULL, 0);
  CHECK_INT(bg_series_id(a), 1);
  CHECK_INT(bg_series_id(b), 2);
  bg_series_remove(r, a);
  a = get(r, BG_GAUGE, "id.a", NULL, 0);
  CHECK_INT(bg_series_id(a), 3); /* never reused */
  CHECK(isnan(bg_histogram_quantile(b, 0.5)));
  CHECK(isnan(bg_histogram_quantile(a, 0.5)));
  CHECK(isnan(bg_histogram_min(b)));
  for (int i = 1; i <= 1000; i++)
    bg_histogram_observe(b, i * 0.001);
  double p50 = bg_histogram_quantile(b, 0.5), p99 = bg_histogram_quantile(b, 0.99);
  CHECK(fabs(p50 - 0.5) <= 0.01 * 0.5);
  CHECK(fabs(p99 - 0.99) <= 0.01 * 0.99);
  CHECK_DBL(bg_histogram_min(b), 0.001);
  CHECK_DBL(bg_histogram_max(b), 1.0);
  CHECK(bg_histogram_sketch(b) != NULL && bg_sketch_count(bg_histogram_sketch(b)) == 1000);
  bg_registry_free(r);
}

static void test_default_registry(void) {
  bg_registry *r = bg_registry_default();
  CHECK(r != NULL);
  CHECK(bg_registry_default() == r);
  bg_counter_add(get(r, BG_COUNTER, "default.thing", NULL, 0), 2);
  size_t len;
  char *s = bg_expo_prometheus_string(NULL, &len);
  CHECK(s && strstr(s, "default_thing_total 2\n"));
  bg_expo_free(s);
  bg_registry_free(r);
  CHECK(bg_registry_default() != NULL);
  bg_registry_free(bg_registry_default());
}

int main(void) {
  test_name_map();
  test_labels();
  test_identity();
  test_types();
  test_hot_paths();
  test_buckets();
  test_bucket_search();
  test_remove_order();
  test_limits();
  test_own_series();
  test_truncation();
  test_ids_and_quantiles();
  test_default_registry();
  if (failures) {
    fprintf(stderr, "test_metrics: %d failure(s)\n", failures);
    return 1;
  }
  puts("test_metrics: ok");
  return 0;
}
