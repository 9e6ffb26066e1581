/* Tests for core/export/encode_remote_write: bodies read back the way a receiver reads them
 * (libsnappy's own uncompress, linked here, then protobuf-c's unpack of prometheus.WriteRequest),
 * found byte for byte what protobuf-c packs from what they hold, and checked series by series:
 * names and suffixes, every label in sorted order, external labels and their overrides, cumulative
 * buckets with Prometheus' le texts, values, timestamps. Then the edges: an empty batch, 16 labels,
 * batch slices, bad external labels and prefixes.
 *
 * `test_encode_remote_write bench [series] [batch] [rounds]` is the encoder's harness for
 * bench/remote_write.sh: ns per sample for encode + snappy over a registry of that many series. */
#include <math.h>
#include <snappy-c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export/batch.h"
#include "export/encode_remote_write.h"
#include "remote_write.pb-c.h"
#include "test_check.h"

#define T_SEC 1764300000.125
#define T_MS 1764300000125LL

static char err[256];

static bg_series *get(bg_registry *r, int type, const char *name, const char *const *kv, int n,
                      const double *bounds, int nb) {
  bg_series *s = bg_series_get(r, type, name, NULL, kv, n, bounds, nb, err, sizeof err);
  if (s == NULL) fprintf(stderr, "bg_series_get %s: %s\n", name, err);
  return s;
}

/* Appends s with backslash, quote and newline escaped, as the text format would show it. */
static void put_escaped(bg_buf *t, const char *s) {
  for (; *s; s++) {
    if (*s == '\\' || *s == '"')
      bg_buf_printf(t, "\\%c", *s);
    else if (*s == '\n')
      bg_buf_puts(t, "\\n");
    else
      bg_buf_append(t, s, 1);
  }
}

/* The request in body as text, one line per series in the order sent: its labels in the order
 * sent, as {k="v",...}, then each sample's value. Checks on the way that the labels are sorted
 * and unique, that __name__ is there, and that every timestamp is ms. NULL if unreadable. */
static char *read_body(const bg_buf *body, int64_t ms, size_t *nseries) {
  size_t len = 0;
  if (snappy_uncompressed_length(body->data, body->len, &len) != SNAPPY_OK) {
    fprintf(stderr, "not a snappy block\n");
    failures++;
    return NULL;
  }
  char *raw = malloc(len + 1);
  CHECK_INT(snappy_uncompress(body->data, body->len, raw, &len), SNAPPY_OK);
  Prometheus__WriteRequest *wr = prometheus__write_request__unpack(NULL, len, (uint8_t *)raw);
  if (wr == NULL) {
    fprintf(stderr, "protobuf-c cannot unpack the body\n");
    failures++;
    free(raw);
    return NULL;
  }
  /* the bytes are protobuf-c's own canonical packing of what they hold (fields in order) */
  size_t relen = prometheus__write_request__get_packed_size(wr);
  uint8_t *re = malloc(relen + 1);
  CHECK_INT(prometheus__write_request__pack(wr, re), len);
  CHECK(relen == len && memcmp(re, raw, len) == 0);
  free(re);
  free(raw);
  bg_buf t = {0};
  bg_buf_puts(&t, "");
  for (size_t i = 0; i < wr->n_timeseries; i++) {
    Prometheus__TimeSeries *ts = wr->timeseries[i];
    int has_name = 0;
    bg_buf_puts(&t, "{");
    for (size_t k = 0; k < ts->n_labels; k++) {
      const char *name = ts->labels[k]->name;
      if (k > 0 && strcmp(ts->labels[k - 1]->name, name) >= 0) {
        fprintf(stderr, "series %zu: label %s after %s\n", i, name, ts->labels[k - 1]->name);
        failures++;
      }
      if (strcmp(name, "__name__") == 0) has_name = 1;
      CHECK(ts->labels[k]->value[0] != '\0');
      bg_buf_printf(&t, "%s%s=\"", k ? "," : "", name);
      put_escaped(&t, ts->labels[k]->value);
      bg_buf_puts(&t, "\"");
    }
    bg_buf_puts(&t, "}");
    CHECK(has_name);
    CHECK_INT(ts->n_samples, 1);
    for (size_t k = 0; k < ts->n_samples; k++) {
      bg_buf_printf(&t, " %.17g", ts->samples[k]->value);
      CHECK_INT(ts->samples[k]->timestamp, ms);
    }
    bg_buf_puts(&t, "\n");
  }
  if (nseries) *nseries = wr->n_timeseries;
  prometheus__write_request__free_unpacked(wr, NULL);
  return t.data;
}

/* Encodes samples [first, first + n) of a snapshot of r taken at T_SEC, with these options,
 * and reads the body back; NULL (and rc in *rcp) when the encoder fails. */
static char *encode(bg_registry *r, size_t first, size_t n, bg_encode_opts *o, int *rcp) {
  bg_snapshot *snap = bg_snapshot_take(r, T_SEC);
  bg_batch *b = bg_batch_new(snap, first, n);
  bg_snapshot_unref(snap);
  bg_buf body = {0};
  bg_encode_opts none = {0};
  err[0] = '\0';
  int rc = bg_encode_remote_write(b, o ? o : &none, &body, err, sizeof err);
  if (rcp) *rcp = rc;
  char *text = NULL;
  if (rc == 0)
    text = read_body(&body, bg_batch_time_ms(b), NULL);
  else if (rcp == NULL)
    fprintf(stderr, "encode: %s (%d)\n", err, rc), failures++;
  CHECK_INT(bg_batch_time_ms(b), T_MS);
  bg_buf_free(&body);
  bg_batch_unref(b);
  return text;
}

static void test_series(void) {
  bg_registry *r = bg_registry_new();
  const char *post[] = {"method", "POST", "path", "/a \"quoted\" \\ \xc3\xbc\xe6\x97\xa5\n"};
  bg_counter_add(get(r, BG_COUNTER, "api.requests", post, 2, NULL, 0), 3);
  const char *get_[] = {"method", "GET", "path", "/"};
  bg_counter_add(get(r, BG_COUNTER, "api.requests", get_, 2, NULL, 0), 1.5);
  const char *zone[] = {"Zone", "\xf0\x9f\x90\x95", "zone", "b"};
  bg_gauge_set(get(r, BG_GAUGE, "temp_celsius", zone, 2, NULL, 0), -67.25);
  const double bounds[] = {0.005, 0.5, 1, 250000, 1e6};
  const char *ep[] = {"endpoint", "/health"};
  bg_series *h = get(r, BG_HISTOGRAM, "latency_seconds", ep, 1, bounds, 5);
  const double obs[] = {0.001, 0.004, 0.3, 0.7, 0.9, 3, 2e6};
  for (size_t i = 0; i < sizeof obs / sizeof *obs; i++)
    bg_histogram_observe(h, obs[i]);

  char *text = encode(r, 0, 100, NULL, NULL);
  CHECK_STR(text, "{__name__=\"api_requests_total\",method=\"POST\",path=\"/a \\\"quoted\\\" \\\\ "
                  "\xc3\xbc\xe6\x97\xa5\\n\"} 3\n"
                  "{__name__=\"api_requests_total\",method=\"GET\",path=\"/\"} 1.5\n"
                  "{__name__=\"latency_seconds_bucket\",endpoint=\"/health\",le=\"0.005\"} 2\n"
                  "{__name__=\"latency_seconds_bucket\",endpoint=\"/health\",le=\"0.5\"} 3\n"
                  "{__name__=\"latency_seconds_bucket\",endpoint=\"/health\",le=\"1\"} 5\n"
                  "{__name__=\"latency_seconds_bucket\",endpoint=\"/health\",le=\"250000\"} 6\n"
                  "{__name__=\"latency_seconds_bucket\",endpoint=\"/health\",le=\"1e+06\"} 6\n"
                  "{__name__=\"latency_seconds_bucket\",endpoint=\"/health\",le=\"+Inf\"} 7\n"
                  "{__name__=\"latency_seconds_sum\",endpoint=\"/health\"} 2000004.905\n"
                  "{__name__=\"latency_seconds_count\",endpoint=\"/health\"} 7\n"
                  "{Zone=\"\xf0\x9f\x90\x95\",__name__=\"temp_celsius\",zone=\"b\"} -67.25\n");
  free(text);

  /* external labels: sorted in among the series' own, a series' label of the same name wins;
   * a prefix before every name */
  const char *ext[] = {"A", "first", "cluster", "eu-1", "method", "ignored", "zz", "l\xc3\xa4st"};
  bg_encode_opts o = {.labels = ext, .nlabels = 4, .prefix = "beagle_"};
  text = encode(r, 1, 3, &o, NULL);
  CHECK_STR(text, "{A=\"first\",__name__=\"beagle_api_requests_total\",cluster=\"eu-1\","
                  "method=\"GET\",path=\"/\",zz=\"l\xc3\xa4st\"} 1.5\n"
                  "{A=\"first\",__name__=\"beagle_latency_seconds_bucket\",cluster=\"eu-1\","
                  "endpoint=\"/health\",le=\"0.005\",method=\"ignored\",zz=\"l\xc3\xa4st\"} 2\n"
                  "{A=\"first\",__name__=\"beagle_latency_seconds_bucket\",cluster=\"eu-1\","
                  "endpoint=\"/health\",le=\"0.5\",method=\"ignored\",zz=\"l\xc3\xa4st\"} 3\n"
                  "{A=\"first\",__name__=\"beagle_latency_seconds_bucket\",cluster=\"eu-1\","
                  "endpoint=\"/health\",le=\"1\",method=\"ignored\",zz=\"l\xc3\xa4st\"} 5\n"
                  "{A=\"first\",__name__=\"beagle_latency_seconds_bucket\",cluster=\"eu-1\","
                  "endpoint=\"/health\",le=\"250000\",method=\"ignored\",zz=\"l\xc3\xa4st\"} 6\n"
                  "{A=\"first\",__name__=\"beagle_latency_seconds_bucket\",cluster=\"eu-1\","
                  "endpoint=\"/health\",le=\"1e+06\",method=\"ignored\",zz=\"l\xc3\xa4st\"} 6\n"
                  "{A=\"first\",__name__=\"beagle_latency_seconds_bucket\",cluster=\"eu-1\","
                  "endpoint=\"/health\",le=\"+Inf\",method=\"ignored\",zz=\"l\xc3\xa4st\"} 7\n"
                  "{A=\"first\",__name__=\"beagle_latency_seconds_sum\",cluster=\"eu-1\","
                  "endpoint=\"/health\",method=\"ignored\",zz=\"l\xc3\xa4st\"} 2000004.905\n"
                  "{A=\"first\",__name__=\"beagle_latency_seconds_count\",cluster=\"eu-1\","
                  "endpoint=\"/health\",method=\"ignored\",zz=\"l\xc3\xa4st\"} 7\n"
                  "{A=\"first\",Zone=\"\xf0\x9f\x90\x95\",__name__=\"beagle_temp_celsius\","
                  "cluster=\"eu-1\",method=\"ignored\",zone=\"b\",zz=\"l\xc3\xa4st\"} -67.25\n");
  free(text);

  /* an external "le" is the bucket's own le on _bucket, and added to _sum and _count */
  const char *le[] = {"le", "x"};
  o = (bg_encode_opts){.labels = le, .nlabels = 1};
  text = encode(r, 2, 1, &o, NULL);
  CHECK_STR(text, "{__name__=\"latency_seconds_bucket\",endpoint=\"/health\",le=\"0.005\"} 2\n"
                  "{__name__=\"latency_seconds_bucket\",endpoint=\"/health\",le=\"0.5\"} 3\n"
                  "{__name__=\"latency_seconds_bucket\",endpoint=\"/health\",le=\"1\"} 5\n"
                  "{__name__=\"latency_seconds_bucket\",endpoint=\"/health\",le=\"250000\"} 6\n"
                  "{__name__=\"latency_seconds_bucket\",endpoint=\"/health\",le=\"1e+06\"} 6\n"
                  "{__name__=\"latency_seconds_bucket\",endpoint=\"/health\",le=\"+Inf\"} 7\n"
                  "{__name__=\"latency_seconds_sum\",endpoint=\"/health\",le=\"x\"} 2000004.905\n"
                  "{__name__=\"latency_seconds_count\",endpoint=\"/health\",le=\"x\"} 7\n");
  free(text);
  bg_registry_free(r);
}

/* le as Go's strconv.FormatFloat(v, 'g', -1, 64), what Prometheus' clients write. */
static void test_le(void) {
  bg_registry *r = bg_registry_new();
  const double bounds[] = {-2.5, 0, 1e-05, 0.0001, 0.1 + 0.2, 3, 123456, 1234567, 1.5e300};
  bg_series *h = get(r, BG_HISTOGRAM, "odd_bounds", NULL, 0, bounds, 9);
  bg_histogram_observe(h, 1);
  char *text = encode(r, 0, 1, NULL, NULL);
  CHECK_STR(text, "{__name__=\"odd_bounds_bucket\",le=\"-2.5\"} 0\n"
                  "{__name__=\"odd_bounds_bucket\",le=\"0\"} 0\n"
                  "{__name__=\"odd_bounds_bucket\",le=\"1e-05\"} 0\n"
                  "{__name__=\"odd_bounds_bucket\",le=\"0.0001\"} 0\n"
                  "{__name__=\"odd_bounds_bucket\",le=\"0.30000000000000004\"} 0\n"
                  "{__name__=\"odd_bounds_bucket\",le=\"3\"} 1\n"
                  "{__name__=\"odd_bounds_bucket\",le=\"123456\"} 1\n"
                  "{__name__=\"odd_bounds_bucket\",le=\"1.234567e+06\"} 1\n"
                  "{__name__=\"odd_bounds_bucket\",le=\"1.5e+300\"} 1\n"
                  "{__name__=\"odd_bounds_bucket\",le=\"+Inf\"} 1\n"
                  "{__name__=\"odd_bounds_sum\"} 1\n"
                  "{__name__=\"odd_bounds_count\"} 1\n");
  free(text);
  bg_registry_free(r);
}

/* Values as they are, but a NaN never as Prometheus' staleness marker. */
static void test_values(void) {
  bg_registry *r = bg_registry_new();
  uint64_t stale_bits = 0x7ff0000000000002ULL;
  double stale;
  memcpy(&stale, &stale_bits, sizeof stale);
  bg_gauge_set(get(r, BG_GAUGE, "a_stale", NULL, 0, NULL, 0), stale);
  bg_gauge_set(get(r, BG_GAUGE, "b_inf", NULL, 0, NULL, 0), -INFINITY);
  bg_gauge_set(get(r, BG_GAUGE, "c_zero", NULL, 0, NULL, 0), 0);
  bg_gauge_set(get(r, BG_GAUGE, "d_tiny", NULL, 0, NULL, 0), 5e-324);
  bg_counter_add(get(r, BG_COUNTER, "e_big", NULL, 0, NULL, 0), 9007199254740993.0);
  char *text = encode(r, 0, 10, NULL, NULL);
  CHECK_STR(text, "{__name__=\"a_stale\"} nan\n"
                  "{__name__=\"b_inf\"} -inf\n"
                  "{__name__=\"c_zero\"} 0\n"
                  "{__name__=\"d_tiny\"} 4.9406564584124654e-324\n"
                  "{__name__=\"e_big_total\"} 9007199254740992\n");
  free(text);

  bg_snapshot *snap = bg_snapshot_take(r, T_SEC);
  bg_batch *b = bg_batch_new(snap, 0, 1);
  bg_buf body = {0}, raw = {0};
  bg_encode_opts o = {0};
  CHECK_INT(bg_encode_remote_write(b, &o, &body, err, sizeof err), 0);
  CHECK_INT(bg_snappy_uncompress(body.data, body.len, &raw), 0);
  Prometheus__WriteRequest *wr =
      prometheus__write_request__unpack(NULL, raw.len, (const uint8_t *)raw.data);
  CHECK(wr != NULL && wr->n_timeseries == 1);
  if (wr && wr->n_timeseries == 1) {
    double v = wr->timeseries[0]->samples[0]->value;
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    CHECK(isnan(v));
    CHECK(bits != stale_bits);
  }
  prometheus__write_request__free_unpacked(wr, NULL);
  bg_buf_free(&body);
  bg_buf_free(&raw);
  bg_batch_unref(b);
  bg_snapshot_unref(snap);
  bg_registry_free(r);
}

static void test_edges(void) {
  bg_registry *r = bg_registry_new();
  /* an empty batch is an empty request, still a valid snappy block */
  bg_snapshot *snap = bg_snapshot_take(r, T_SEC);
  bg_batch *b = bg_batch_new(snap, 0, 100);
  bg_buf body = {0};
  bg_encode_opts o = {0};
  CHECK_INT(bg_encode_remote_write(b, &o, &body, err, sizeof err), 0);
  size_t n = 99;
  char *text = read_body(&body, T_MS, &n);
  CHECK_STR(text, "");
  CHECK_INT(n, 0);
  free(text);
  bg_buf_free(&body);
  bg_batch_unref(b);
  bg_snapshot_unref(snap);

  /* 16 labels (the registry's most) with 4 external labels between them */
  const char *kv[32];
  char keys[16][8], vals[16][8];
  for (int i = 0; i < 16; i++) {
    snprintf(keys[i], sizeof keys[i], "k%02d", 15 - i); /* given unsorted */
    snprintf(vals[i], sizeof vals[i], "v%d", 15 - i);
    kv[2 * i] = keys[i];
    kv[2 * i + 1] = vals[i];
  }
  bg_gauge_set(get(r, BG_GAUGE, "many", kv, 16, NULL, 0), 1);
  const char *ext[] = {"a", "1", "k05", "no", "k10x", "2", "z", "3"};
  o = (bg_encode_opts){.labels = ext, .nlabels = 4};
  text = encode(r, 0, 1, &o, NULL);
  CHECK_STR(text, "{__name__=\"many\",a=\"1\",k00=\"v0\",k01=\"v1\",k02=\"v2\",k03=\"v3\","
                  "k04=\"v4\",k05=\"v5\",k06=\"v6\",k07=\"v7\",k08=\"v8\",k09=\"v9\",k10=\"v10\","
                  "k10x=\"2\",k11=\"v11\",k12=\"v12\",k13=\"v13\",k14=\"v14\",k15=\"v15\","
                  "z=\"3\"} 1\n");
  free(text);

  /* an empty label value is no label, as in Prometheus: an external one fills it */
  const char *empty[] = {"a", "", "b", "x"};
  bg_series *e = bg_series_get(r, BG_GAUGE, "with_empty", NULL, empty, 2, NULL, 0, err, sizeof err);
  CHECK(e != NULL);
  if (e != NULL) {
    bg_gauge_set(e, 2);
    text = encode(r, 1, 1, &o, NULL);
    CHECK_STR(text, "{__name__=\"with_empty\",a=\"1\",b=\"x\",k05=\"no\",k10x=\"2\",z=\"3\"} 2\n");
    free(text);
  }

  /* an external label with an empty value is no label either */
  const char *ext_empty[] = {"a", "", "b", "2"};
  o = (bg_encode_opts){.labels = ext_empty, .nlabels = 2};
  text = encode(r, 1, 1, &o, NULL);
  CHECK_STR(text, "{__name__=\"with_empty\",b=\"x\"} 2\n");
  free(text);

  /* what Prometheus would refuse is an error, with why */
  struct {
    const char *k, *v, *prefix, *why;
  } bad[] = {
      {"__reserved", "x", NULL, "reserved"},
      {"1abc", "x", NULL, "not a Prometheus label name"},
      {"a-b", "x", NULL, "not a Prometheus label name"},
      {"", "x", NULL, "not a Prometheus label name"},
      {"ok", "\xff\xfe", NULL, "not valid UTF-8"},
      {"ok", "\xed\xa0\x80", NULL, "not valid UTF-8"},
      {"ok", "x", "9lives", "prefix"},
      {"ok", "x", "a.b", "prefix"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    const char *one[] = {bad[i].k, bad[i].v};
    o = (bg_encode_opts){.labels = one, .nlabels = 1, .prefix = bad[i].prefix};
    int rc = 0;
    text = encode(r, 0, 1, &o, &rc);
    CHECK(text == NULL);
    CHECK_INT(rc, BG_EINVAL);
    CHECK_ERR(err, bad[i].why);
    free(text);
  }
  /* and the encoder appends: what out held stays */
  snap = bg_snapshot_take(r, T_SEC);
  b = bg_batch_new(snap, 0, 1);
  bg_snapshot_unref(snap);
  o = (bg_encode_opts){0};
  bg_buf_puts(&body, "keep");
  CHECK_INT(bg_encode_remote_write(b, &o, &body, err, sizeof err), 0);
  CHECK(body.len > 4 && memcmp(body.data, "keep", 4) == 0);
  bg_buf_free(&body);
  bg_batch_unref(b);
  bg_registry_free(r);
}

/* Many series in batches: every series arrives once, with its value. */
static void test_large(void) {
  bg_registry *r = bg_registry_new();
  enum { N = 5000, BATCH = 1000 };
  char name[32], inst[32];
  for (int i = 0; i < N; i++) {
    snprintf(name, sizeof name, "m%d", i % 50);
    snprintf(inst, sizeof inst, "host-%d", i);
    const char *kv[] = {"instance", inst, "job", "node"};
    bg_gauge_set(get(r, BG_GAUGE, name, kv, 2, NULL, 0), i);
  }
  bg_snapshot *snap = bg_snapshot_take(r, T_SEC);
  CHECK_INT(bg_snapshot_size(snap), N);
  double sum = 0;
  size_t total = 0;
  for (size_t first = 0; first < N; first += BATCH) {
    bg_batch *b = bg_batch_new(snap, first, BATCH);
    bg_buf body = {0}, raw = {0};
    bg_encode_opts o = {0};
    CHECK_INT(bg_encode_remote_write(b, &o, &body, err, sizeof err), 0);
    CHECK_INT(bg_snappy_uncompress(body.data, body.len, &raw), 0);
    Prometheus__WriteRequest *wr =
        prometheus__write_request__unpack(NULL, raw.len, (const uint8_t *)raw.data);
    CHECK(wr != NULL);
    for (size_t i = 0; wr && i < wr->n_timeseries; i++)
      sum += wr->timeseries[i]->samples[0]->value;
    total += wr ? wr->n_timeseries : 0;
    prometheus__write_request__free_unpacked(wr, NULL);
    bg_buf_free(&body);
    bg_buf_free(&raw);
    bg_batch_unref(b);
  }
  CHECK_INT(total, N);
  CHECK_DBL(sum, (double)N * (N - 1) / 2);
  bg_snapshot_unref(snap);
  bg_registry_free(r);
}

/* The label cache: a series' labels are packed once and reused by id, a series of another
 * registry with the same id is told apart, and entries unused for ten minutes of batch time go. */
static char *encode_at(bg_registry *r, double t) {
  bg_snapshot *snap = bg_snapshot_take(r, t);
  bg_batch *b = bg_batch_new(snap, 0, 1000);
  bg_snapshot_unref(snap);
  bg_buf body = {0};
  bg_encode_opts o = {0};
  CHECK_INT(bg_encode_remote_write(b, &o, &body, err, sizeof err), 0);
  char *text = read_body(&body, (int64_t)(t * 1000), NULL);
  bg_buf_free(&body);
  bg_batch_unref(b);
  return text;
}

static void test_cache(void) {
  bg_registry *a = bg_registry_new(), *b = bg_registry_new();
  char v[16];
  for (int i = 0; i < 50; i++) {
    snprintf(v, sizeof v, "a%02d", i);
    const char *kv[] = {"x", v};
    bg_gauge_set(get(a, BG_GAUGE, "in_a", kv, 1, NULL, 0), i);
  }
  for (int i = 0; i < 10; i++) {
    snprintf(v, sizeof v, "b%02d", i);
    const char *kv[] = {"y", v};
    bg_gauge_set(get(b, BG_GAUGE, "in_b", kv, 1, NULL, 0), i);
  }
  double t = T_SEC + 100000;
  char *a1 = encode_at(a, t);
  CHECK(a1 != NULL && strstr(a1, "{__name__=\"in_a\",x=\"a07\"} 7\n") != NULL);
  CHECK(bg__encode_remote_write_cached() >= 50);
  char *a2 = encode_at(a, t + 1); /* from the cache: the same */
  CHECK_STR(a2, a1);
  /* b's series have a's ids: their own labels, never a's */
  char *b1 = encode_at(b, t + 700);
  CHECK(b1 != NULL && strstr(b1, "{__name__=\"in_b\",y=\"b03\"} 3\n") != NULL);
  CHECK(b1 != NULL && strstr(b1, "x=") == NULL);
  /* a unused since t: dropped at the sweep of t + 1400 (every earlier entry too), b cached */
  char *b2 = encode_at(b, t + 1400);
  CHECK_STR(b2, b1);
  CHECK_INT(bg__encode_remote_write_cached(), 10);
  char *a3 = encode_at(a, t + 1401);
  CHECK(a3 != NULL && strstr(a3, "{__name__=\"in_a\",x=\"a49\"} 49\n") != NULL);
  free(a1);
  free(a2);
  free(a3);
  free(b1);
  free(b2);
  bg_registry_free(a);
  bg_registry_free(b);
}

/* ---- the harness ---------------------------------------------------------------------------- */

/* Like the bench's agent: `series` series, 9 in 10 counters and gauges with 3 labels, 1 in 10 a
 * histogram of the default buckets; encode + snappy of every batch, rounds times. Prints
 * samples (series sent) per second and ns per sample on stdout. */
static int bench(int series, int batch, int rounds) {
  bg_registry *r = bg_registry_new();
  bg_registry_set_limits(r, (size_t)series + 10, (size_t)series + 10);
  char name[32], inst[32], path[32];
  for (int i = 0; i < series; i++) {
    int kind = i % 10 == 9 ? BG_HISTOGRAM : i % 2 ? BG_GAUGE : BG_COUNTER;
    snprintf(name, sizeof name, "bench_metric_%d_%s", i % 100,
             kind == BG_HISTOGRAM ? "seconds" : "value");
    snprintf(inst, sizeof inst, "host-%d.example.org", i % 1000);
    snprintf(path, sizeof path, "/api/v1/items/%d", i / 100);
    const char *kv[] = {"instance", inst, "job", "beagle", "path", path};
    bg_series *s = get(r, kind, name, kv, 3, NULL, 0);
    if (s == NULL) return 1;
    if (kind == BG_HISTOGRAM)
      bg_histogram_observe(s, i % 7 * 0.1);
    else if (kind == BG_GAUGE)
      bg_gauge_set(s, i * 0.5);
    else
      bg_counter_add(s, i);
  }
  const char *ext[] = {"cluster", "bench", "replica", "a"};
  uint64_t ns = 0, sent = 0, bytes = 0, raw = 0;
  for (int round = 0; round < rounds; round++) {
    bg_snapshot *snap = bg_snapshot_take(r, bg_wall_time());
    size_t n = bg_snapshot_size(snap);
    for (size_t first = 0; first < n; first += (size_t)batch) {
      bg_batch *b = bg_batch_new(snap, first, (size_t)batch);
      for (size_t i = 0; i < bg_batch_len(b); i++) {
        const bg_sample *s = bg_batch_at(b, i);
        sent += s->type == BG_HISTOGRAM ? (uint64_t)s->nbuckets + 3 : 1;
      }
      bg_buf body = {0};
      bg_encode_opts o = {.labels = ext, .nlabels = 2};
      uint64_t t0 = bg_now_ns();
      int rc = bg_encode_remote_write(b, &o, &body, err, sizeof err);
      ns += bg_now_ns() - t0;
      if (rc != 0) return fprintf(stderr, "encode: %s\n", err), 1;
      bytes += body.len;
      size_t len = 0;
      snappy_uncompressed_length(body.data, body.len, &len);
      raw += len;
      bg_buf_free(&body);
      bg_batch_unref(b);
    }
    bg_snapshot_unref(snap);
  }
  printf("series=%d batch=%d rounds=%d samples_sent=%llu ns_per_sample=%.1f samples_per_s=%.0f "
         "bytes_per_sample=%.2f raw_bytes_per_sample=%.2f\n",
         series, batch, rounds, (unsigned long long)sent, (double)ns / (double)sent,
         (double)sent * 1e9 / (double)ns, (double)bytes / (double)sent, (double)raw / (double)sent);
  bg_registry_free(r);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "bench") == 0)
    return bench(argc > 2 ? atoi(argv[2]) : 100000, argc > 3 ? atoi(argv[3]) : 2000,
                 argc > 4 ? atoi(argv[4]) : 5);
  test_series();
  test_le();
  test_values();
  test_edges();
  test_large();
  test_cache();
  if (failures) fprintf(stderr, "%d failures\n", failures);
  return failures ? 1 : 0;
}
