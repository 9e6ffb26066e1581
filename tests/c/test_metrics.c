/* Tests for core/metrics/metrics and core/metrics/expo: name mapping, label validation, series
 * identity, hot-path semantics, cardinality limits and label truncation, exact exposition text
 * (0.0.4, OpenMetrics, JSON), `promtool check metrics` on the output, content negotiation
 * and a gzip round trip through zlib. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "metrics/expo.h"
#include "metrics/metrics.h"

static int failures;

#define CHECK(c)                                                                                   \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c);                        \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

#define CHECK_INT(a, b)                                                                            \
  do {                                                                                             \
    long long a_ = (long long)(a), b_ = (long long)(b);                                            \
    if (a_ != b_) {                                                                                \
      fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, a_,    \
              b_);                                                                                 \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

#define CHECK_DBL(a, b)                                                                            \
  do {                                                                                             \
    double a_ = (a), b_ = (b);                                                                     \
    if (!(a_ == b_)) {                                                                             \
      fprintf(stderr, "%s:%d: %s == %s failed: %.17g != %.17g\n", __FILE__, __LINE__, #a, #b, a_,  \
              b_);                                                                                 \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

#define CHECK_STR(a, b)                                                                            \
  do {                                                                                             \
    const char *a_ = (a), *b_ = (b);                                                               \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                                         \
      fprintf(stderr, "%s:%d: %s == %s failed:\n--- got\n%s\n--- want\n%s\n---\n", __FILE__,       \
              __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                           \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

/* err contains needle */
#define CHECK_ERR(err, needle)                                                                     \
  do {                                                                                             \
    if (strstr((err), (needle)) == NULL) {                                                         \
      fprintf(stderr, "%s:%d: error \"%s\" does not mention \"%s\"\n", __FILE__, __LINE__, (err),  \
              (needle));                                                                           \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

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

static void test_exposition(void) {
  bg_registry *r = bg_registry_new();
  char *empty = render(r);
  CHECK_STR(empty, "");
  free(empty);

  const char *post[] = {"method", "POST", "endpoint", "/optimize"};
  const char *get_[] = {"method", "GET", "endpoint", "/health"};
  bg_counter_add(bg_series_get(r, BG_COUNTER, "api.requests", "Requests served.", post, 2, NULL, 0,
                               err, sizeof err),
                 3);
  bg_counter_add(get(r, BG_COUNTER, "api.requests", get_, 2), 1);
  bg_gauge_set(get(r, BG_GAUGE, "system.cpu_percent", NULL, 0), 67.5);
  const double bounds[] = {0.1, 0.5, 1};
  const char *health[] = {"endpoint", "/health"};
  bg_series *h = bg_series_get(r, BG_HISTOGRAM, "api.response_time_seconds", "Latency.\nIn s\\.",
                               health, 1, bounds, 3, err, sizeof err);
  bg_histogram_observe(h, 0.045);
  bg_histogram_observe(h, 0.3);
  bg_histogram_observe(h, 0.1);
  bg_histogram_observe(h, 2);
  const char *esc[] = {"path", "a\\b \"c\"\nd"};
  bg_gauge_set(get(r, BG_GAUGE, "weird", esc, 1), 0.1);
  bg_gauge_set(get(r, BG_GAUGE, "big", NULL, 0), 1e21);
  bg_gauge_set(get(r, BG_GAUGE, "neg_inf", NULL, 0), -INFINITY);
  bg_gauge_set(get(r, BG_GAUGE, "not_a_number", NULL, 0), NAN);
  bg_gauge_set(get(r, BG_GAUGE, "third", NULL, 0), 1.0 / 3);
  bg_gauge_set(get(r, BG_GAUGE, "large_int", NULL, 0), 123456789012);
  bg_series *gone = get(r, BG_GAUGE, "removed", NULL, 0);
  bg_series_remove(r, gone);

  char *text = render(r);
  CHECK_STR(text, "# HELP api_requests_total Requests served.\n"
                  "# TYPE api_requests_total counter\n"
                  "api_requests_total{endpoint=\"/optimize\",method=\"POST\"} 3\n"
                  "api_requests_total{endpoint=\"/health\",method=\"GET\"} 1\n"
                  "# HELP api_response_time_seconds Latency.\\nIn s\\\\.\n"
                  "# TYPE api_response_time_seconds histogram\n"
                  "api_response_time_seconds_bucket{endpoint=\"/health\",le=\"0.1\"} 2\n"
                  "api_response_time_seconds_bucket{endpoint=\"/health\",le=\"0.5\"} 3\n"
                  "api_response_time_seconds_bucket{endpoint=\"/health\",le=\"1\"} 3\n"
                  "api_response_time_seconds_bucket{endpoint=\"/health\",le=\"+Inf\"} 4\n"
                  "api_response_time_seconds_sum{endpoint=\"/health\"} 2.445\n"
                  "api_response_time_seconds_count{endpoint=\"/health\"} 4\n"
                  "# HELP big Metric recorded by beagle.\n"
                  "# TYPE big gauge\n"
                  "big 1e+21\n"
                  "# HELP large_int Metric recorded by beagle.\n"
                  "# TYPE large_int gauge\n"
                  "large_int 123456789012\n"
                  "# HELP neg_inf Metric recorded by beagle.\n"
                  "# TYPE neg_inf gauge\n"
                  "neg_inf -Inf\n"
                  "# HELP not_a_number Metric recorded by beagle.\n"
                  "# TYPE not_a_number gauge\n"
                  "not_a_number NaN\n"
                  "# HELP system_cpu_percent Metric recorded by beagle.\n"
                  "# TYPE system_cpu_percent gauge\n"
                  "system_cpu_percent 67.5\n"
                  "# HELP third Metric recorded by beagle.\n"
                  "# TYPE third gauge\n"
                  "third 0.3333333333333333\n"
                  "# HELP weird Metric recorded by beagle.\n"
                  "# TYPE weird gauge\n"
                  "weird{path=\"a\\\\b \\\"c\\\"\\nd\"} 0.1\n");

  /* Default buckets and a label-less histogram. */
  bg_histogram_observe(get(r, BG_HISTOGRAM, "db.query_time_seconds", NULL, 0), 0.007);
  size_t len = 0;
  char *s = bg_expo_prometheus_string(r, &len);
  CHECK(s != NULL && strlen(s) == len);
  CHECK(strstr(s, "db_query_time_seconds_bucket{le=\"0.005\"} 0\n"
                  "db_query_time_seconds_bucket{le=\"0.01\"} 1\n"
                  "db_query_time_seconds_bucket{le=\"0.025\"} 1\n") != NULL);
  CHECK(strstr(s, "db_query_time_seconds_bucket{le=\"10\"} 1\n"
                  "db_query_time_seconds_bucket{le=\"+Inf\"} 1\n"
                  "db_query_time_seconds_sum 0.007\n"
                  "db_query_time_seconds_count 1\n") != NULL);

  /* promtool must accept it without a single lint warning. */
  char path[] = "/tmp/beagle_test_metrics_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fwrite(s, 1, len, f);
  fclose(f);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
  FILE *p = popen(cmd, "r");
  char out[4096] = "";
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = '\0';
  int status = pclose(p);
  CHECK_STR(out, "");
  CHECK_INT(status, 0);
  unlink(path);

  bg_expo_free(s);
  free(text);
  bg_registry_free(r);
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

static void cap_created(void *ud, const bg_family_view *f, const bg_series_view *s) {
  (void)f;
  double *out = ud;
  while (*out != 0)
    out++;
  *out = s->created;
}

/* promtool's lint output on text ("" when clean) and its exit status. */
static int promtool(const char *text, char *out, size_t outlen) {
  char path[] = "/tmp/beagle_test_metrics_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fputs(text, f);
  fclose(f);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
  FILE *p = popen(cmd, "r");
  size_t n = fread(out, 1, outlen - 1, p);
  out[n] = '\0';
  int status = pclose(p);
  unlink(path);
  return status;
}

static void test_openmetrics(void) {
  bg_registry *r = bg_registry_new();
  const double b[] = {0.1, 1};
  const char *kvh[] = {"path", "a\"b\\c\nd"};
  bg_series *h =
      bg_series_get(r, BG_HISTOGRAM, "om.latency_seconds", NULL, kvh, 1, b, 2, err, sizeof err);
  const char *kvc[] = {"code", "200"};
  bg_series *c = bg_series_get(r, BG_COUNTER, "om.requests_total", "Requests \"served\" \\ ok", kvc,
                               1, NULL, 0, err, sizeof err);
  bg_series *g = get(r, BG_GAUGE, "om.temp_celsius", NULL, 0);
  bg_histogram_observe(h, 0.25);
  bg_histogram_observe(h, 0.5);
  bg_histogram_observe(h, 4);
  bg_counter_add(c, 3);
  bg_gauge_set(g, -1.5);
  double created[4] = {0};
  bg_registry_walk(r, NULL, cap_created, created);
  char want[2048];
  snprintf(want, sizeof want,
           "# TYPE om_latency_seconds histogram\n"
           "# UNIT om_latency_seconds seconds\n"
           "# HELP om_latency_seconds Metric recorded by beagle.\n"
           "om_latency_seconds_bucket{path=\"a\\\"b\\\\c\\nd\",le=\"0.1\"} 0\n"
           "om_latency_seconds_bucket{path=\"a\\\"b\\\\c\\nd\",le=\"1\"} 2\n"
           "om_latency_seconds_bucket{path=\"a\\\"b\\\\c\\nd\",le=\"+Inf\"} 3\n"
           "om_latency_seconds_count{path=\"a\\\"b\\\\c\\nd\"} 3\n"
           "om_latency_seconds_sum{path=\"a\\\"b\\\\c\\nd\"} 4.75\n"
           "om_latency_seconds_created{path=\"a\\\"b\\\\c\\nd\"} %.3f\n"
           "# TYPE om_requests counter\n"
           "# HELP om_requests Requests \\\"served\\\" \\\\ ok\n"
           "om_requests_total{code=\"200\"} 3\n"
           "om_requests_created{code=\"200\"} %.3f\n"
           "# TYPE om_temp_celsius gauge\n"
           "# UNIT om_temp_celsius celsius\n"
           "# HELP om_temp_celsius Metric recorded by beagle.\n"
           "om_temp_celsius -1.5\n"
           "# EOF\n",
           created[0], created[1]);
  bg_buf out = {0};
  CHECK_INT(bg_expo_openmetrics(r, &out), 0);
  CHECK_STR(out.data, want);
  CHECK(created[0] > 1.6e9);
  /* The Python client's strict OpenMetrics parser (Debian python3-prometheus-client) reads it
   * back, labels and all; skipped where that package is missing. */
  if (system("/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null") == 0) {
    char path[] = "/tmp/beagle_test_om_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, out.data, out.len) == (ssize_t)out.len);
    close(fd);
    char cmd[512];
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 -c 'import sys; from prometheus_client.openmetrics.parser import "
             "text_string_to_metric_families as p; f = list(p(open(sys.argv[1]).read())); "
             "assert [x.name for x in f] == [\"om_latency_seconds\", \"om_requests\", "
             "\"om_temp_celsius\"]; assert f[0].samples[0].labels[\"path\"] == "
             "\"a\\\"b\\\\c\\nd\", f[0].samples[0]' %s",
             path);
    CHECK_INT(system(cmd), 0);
    unlink(path);
  } else {
    fprintf(stderr, "  (no python3-prometheus-client: OpenMetrics parse check skipped)\n");
  }
  bg_buf_reset(&out);
  /* The same registry in 0.0.4 stays promtool-clean; OpenMetrics promtool can't lint (it reads
   * only the 0.0.4 text format), so the test above pins it byte for byte. */
  CHECK_INT(bg_expo_render(r, BG_EXPO_PROMETHEUS, &out), 0);
  char lint[4096];
  CHECK_INT(promtool(out.data, lint, sizeof lint), 0);
  CHECK_STR(lint, "");
  bg_buf_free(&out);

  bg_registry *empty = bg_registry_new();
  CHECK_INT(bg_expo_openmetrics(empty, &out), 0);
  CHECK_STR(out.data, "# EOF\n");
  bg_buf_free(&out);
  CHECK_INT(bg_expo_json(empty, &out, NULL, NULL), 0);
  CHECK_STR(out.data, "{\"metrics\":[]}");
  bg_buf_free(&out);
  CHECK_INT(bg_expo_render(empty, 7, &out), BG_EINVAL);
  bg_buf_free(&out);
  bg_registry_free(empty);
  bg_registry_free(r);
}

static int json_extra(void *ud, const bg_family_view *f, const bg_series_view *s, bg_buf *out) {
  (*(int *)ud)++;
  return bg_buf_printf(out, ",\"windows\":{\"id\":%u,\"type\":%d}", s->id, f->type);
}

static void test_json(void) {
  bg_registry *r = bg_registry_new();
  const double b[] = {1, 2.5};
  bg_series *h =
      bg_series_get(r, BG_HISTOGRAM, "js.size", "Sizes \"x\"", NULL, 0, b, 2, err, sizeof err);
  const char *kv[] = {"k", "v\"\n"};
  bg_gauge_set(get(r, BG_GAUGE, "js.level", kv, 1), 0.5);
  bg_gauge_set(get(r, BG_GAUGE, "js.level", NULL, 0), INFINITY);
  bg_buf out = {0};
  CHECK_INT(bg_expo_json(r, &out, NULL, NULL), 0);
  CHECK_STR(out.data,
            "{\"metrics\":[{\"name\":\"js_level\",\"type\":\"gauge\",\"help\":null,\"series\":["
            "{\"labels\":{\"k\":\"v\\\"\\n\"},\"value\":0.5},{\"labels\":{},\"value\":null}]},"
            "{\"name\":\"js_size\",\"type\":\"histogram\",\"help\":\"Sizes \\\"x\\\"\","
            "\"series\":[{\"labels\":{},\"count\":0,\"sum\":0,\"min\":null,\"max\":null,"
            "\"mean\":null,\"p50\":null,\"p90\":null,\"p95\":null,\"p99\":null,"
            "\"buckets\":[[1,0],[2.5,0],[\"+Inf\",0]]}]}]}");
  for (int i = 1; i <= 100; i++)
    bg_histogram_observe(h, i);
  bg_buf_reset(&out);
  int calls = 0;
  CHECK_INT(bg_expo_json(r, &out, json_extra, &calls), 0);
  CHECK_INT(calls, 3);
  CHECK(strstr(out.data, "\"count\":100,\"sum\":5050,\"min\":1,\"max\":100,\"mean\":50.5,"
                         "\"p50\":") != NULL);
  CHECK(strstr(out.data, "\"buckets\":[[1,1],[2.5,2],[\"+Inf\",100]],\"windows\":{\"id\":1,"
                         "\"type\":2}}") != NULL);
  CHECK(fabs(bg_histogram_quantile(h, 0.99) - 99) <= 0.99);
  bg_buf_free(&out);
  bg_registry_free(r);
}

static void test_negotiate(void) {
  CHECK_INT(bg_expo_negotiate(NULL), BG_EXPO_PROMETHEUS);
  CHECK_INT(bg_expo_negotiate(""), BG_EXPO_PROMETHEUS);
  CHECK_INT(bg_expo_negotiate("*/*"), BG_EXPO_PROMETHEUS);
  CHECK_INT(bg_expo_negotiate("text/plain;version=0.0.4"), BG_EXPO_PROMETHEUS);
  /* What Prometheus 2.x sends. */
  CHECK_INT(bg_expo_negotiate("application/openmetrics-text;version=1.0.0,application/"
                              "openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;"
                              "q=0.5,*/*;q=0.1"),
            BG_EXPO_OPENMETRICS);
  CHECK_INT(bg_expo_negotiate("application/openmetrics-text; version=1.0.0"), BG_EXPO_OPENMETRICS);
  CHECK_INT(bg_expo_negotiate("application/json"), BG_EXPO_JSON);
  CHECK_INT(bg_expo_negotiate("Application/JSON; charset=utf-8"), BG_EXPO_JSON);
  CHECK_INT(bg_expo_negotiate("text/plain;q=0.5, application/json"), BG_EXPO_JSON);
  CHECK_INT(bg_expo_negotiate("application/json;q=0.2, text/plain;q=0.9"), BG_EXPO_PROMETHEUS);
  CHECK_INT(bg_expo_negotiate("application/json, text/plain"), BG_EXPO_JSON); /* tie: first */
  CHECK_INT(bg_expo_negotiate("application/json;q=0"), BG_EXPO_PROMETHEUS);
  /* A browser. */
  CHECK_INT(bg_expo_negotiate("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
            BG_EXPO_PROMETHEUS);
  CHECK_INT(bg_expo_negotiate("application/jsonx, ,;;q=,"), BG_EXPO_PROMETHEUS);
  CHECK_STR(bg_expo_content_type(BG_EXPO_OPENMETRICS),
            "application/openmetrics-text; version=1.0.0; charset=utf-8");
  CHECK_STR(bg_expo_content_type(BG_EXPO_JSON), "application/json");
  CHECK_STR(bg_expo_content_type(BG_EXPO_PROMETHEUS), "text/plain; version=0.0.4; charset=utf-8");

  CHECK_INT(bg_expo_accepts_gzip(NULL), 0);
  CHECK_INT(bg_expo_accepts_gzip("gzip"), 1);
  CHECK_INT(bg_expo_accepts_gzip("deflate, gzip;q=1.0, *;q=0.5"), 1);
  CHECK_INT(bg_expo_accepts_gzip("identity"), 0);
  CHECK_INT(bg_expo_accepts_gzip("gzip;q=0"), 0);
  CHECK_INT(bg_expo_accepts_gzip("br, *"), 1);
  CHECK_INT(bg_expo_accepts_gzip("gzipx"), 0);
}

static void test_gzip(void) {
  bg_registry *r = bg_registry_new();
  char v[16];
  for (int i = 0; i < 2000; i++) {
    snprintf(v, sizeof v, "%d", i);
    const char *kv[] = {"id", v};
    bg_counter_add(get(r, BG_COUNTER, "gz.requests", kv, 1), i);
  }
  bg_buf text = {0}, z = {0};
  CHECK_INT(bg_expo_prometheus(r, &text), 0);
  for (int level = 0; level <= 9; level += 9) {
    bg_buf_reset(&z);
    CHECK_INT(bg_gzip(text.data, text.len, level, &z), 0);
    CHECK(z.len > 18 && z.len < text.len / 3);
    CHECK((unsigned char)z.data[0] == 0x1f && (unsigned char)z.data[1] == 0x8b);
    /* Round trip through zlib's own inflate, gzip mode. */
    char *back = malloc(text.len + 1);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    CHECK_INT(inflateInit2(&zs, 15 + 16), Z_OK);
    zs.next_in = (Bytef *)z.data;
    zs.avail_in = (uInt)z.len;
    zs.next_out = (Bytef *)back;
    zs.avail_out = (uInt)text.len + 1;
    CHECK_INT(inflate(&zs, Z_FINISH), Z_STREAM_END);
    CHECK_INT(zs.total_out, text.len);
    CHECK(memcmp(back, text.data, text.len) == 0);
    inflateEnd(&zs);
    free(back);
  }
  size_t n = 0;
  char *s = bg_gzip_string("", 0, 0, &n);
  CHECK(s != NULL && n >= 18);
  bg_expo_free(s);
  s = bg_expo_render_string(r, BG_EXPO_OPENMETRICS, &n);
  CHECK(s && n > 0 && strcmp(s + n - 6, "# EOF\n") == 0);
  bg_expo_free(s);
  CHECK(bg_expo_render_string(r, 42, &n) == NULL);
  bg_buf_free(&text);
  bg_buf_free(&z);
  bg_registry_free(r);
}

/* Every value the renderer writes reads back as the same double, in the shortest form for
 * short decimals. */
static void test_value_roundtrip(void) {
  bg_registry *r = bg_registry_new();
  bg_series *g = get(r, BG_GAUGE, "rt.value", NULL, 0);
  bg_buf out = {0};
  uint64_t x = 88172645463325252ULL;
  const double fixed[] = {
      0.1,    67.5,       -0.045, 1e-5,   123456.789,         0.3,       1.0 / 3,
      2.5e-7, 1e15 + 0.5, -1e300, 5e-324, 9007199254740993.0, 0.1 + 0.2, 1700000000.123};
  const char *want[] = {
      "0.1", "67.5", "-0.045", "0.00001", "123456.789",          "0.3",           NULL, NULL,
      NULL,  NULL,   NULL,     NULL,      "0.30000000000000004", "1700000000.123"};
  for (int i = 0; i < 20000; i++) {
    double v;
    if (i < (int)(sizeof fixed / sizeof fixed[0])) {
      v = fixed[i];
    } else {
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      if (i % 3 == 0) { /* short decimals */
        v = (double)(int64_t)(x % 2000001 - 1000000) / pow(10, i % 7);
      } else { /* any finite double */
        memcpy(&v, &x, sizeof v);
        if (!isfinite(v)) continue;
      }
    }
    bg_gauge_set(g, v);
    bg_buf_reset(&out);
    CHECK_INT(bg_expo_prometheus(r, &out), 0);
    const char *line = strstr(out.data, "\nrt_value ");
    CHECK(line != NULL);
    if (line == NULL) break;
    char *end;
    double back = strtod(line + 10, &end);
    if (!(back == v) || *end != '\n') {
      fprintf(stderr, "value %.17g rendered as %.*s\n", v, (int)(end - line - 10), line + 10);
      failures++;
      break;
    }
    if (i < (int)(sizeof want / sizeof want[0]) && want[i]) {
      *end = '\0';
      CHECK_STR(line + 10, want[i]);
    }
  }
  /* The range written without printf (1e-5 <= |v| < 2^53): random bit patterns, the
   * neighbours of powers of two (whose lower gap is half the upper one) and short decimals
   * read back, with no more significant digits than the shortest %.*g that reads back. */
  for (int i = 0; i < 30000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    double v;
    uint64_t bits = (uint64_t)(1006 + x % 47) << 52; /* 2^-17 .. 2^29 */
    if (i % 3 == 0) bits |= (x >> 12) & 0xfffffffffffffULL;
    memcpy(&v, &bits, sizeof v);
    if (i % 3 == 1) v = nextafter(v, i % 2 ? 0 : INFINITY);
    if (v < 1e-5) continue;
    if (i % 5 == 0) v = -v;
    bg_gauge_set(g, v);
    bg_buf_reset(&out);
    CHECK_INT(bg_expo_prometheus(r, &out), 0);
    const char *line = strstr(out.data, "\nrt_value ");
    CHECK(line != NULL);
    if (line == NULL) break;
    char *end, ref[32];
    double back = strtod(line + 10, &end);
    int digits = 0, lead = 1;
    for (const char *p = line + 10; p < end; p++) {
      if (*p == '0' && lead) continue;
      if (*p >= '0' && *p <= '9') digits++, lead = 0;
    }
    int prec = 1;
    while (prec < 17 && (snprintf(ref, sizeof ref, "%.*g", prec, v), strtod(ref, NULL) != v))
      prec++;
    if (!(back == v) || *end != '\n' || digits > prec) {
      fprintf(stderr, "value %.17g rendered as %.*s (shortest has %d digits)\n", v,
              (int)(end - line - 10), line + 10, prec);
      failures++;
      break;
    }
  }
  bg_buf_free(&out);
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
  test_exposition();
  test_limits();
  test_truncation();
  test_ids_and_quantiles();
  test_openmetrics();
  test_json();
  test_negotiate();
  test_gzip();
  test_value_roundtrip();
  test_default_registry();
  if (failures) {
    fprintf(stderr, "test_metrics: %d failure(s)\n", failures);
    return 1;
  }
  puts("test_metrics: ok");
  return 0;
}
