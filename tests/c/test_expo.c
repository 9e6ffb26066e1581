/* Tests for core/metrics/expo: exact exposition text (0.0.4, OpenMetrics, JSON), `promtool
 * check metrics` on the output, content negotiation, a gzip round trip through zlib, and every
 * value reading back as the same double. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "metrics/expo.h"
#include "metrics/metrics.h"
#include "test_check.h"

static char err[256];

static bg_series *get(bg_registry *r, int type, const char *name, const char *const *kv, int n) {
  return bg_series_get(r, type, name, NULL, kv, n, NULL, 0, err, sizeof err);
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
int main(void) {
  test_exposition();
  test_openmetrics();
  test_json();
  test_negotiate();
  test_gzip();
  test_value_roundtrip();
  if (failures) {
    fprintf(stderr, "test_expo: %d failure(s)\n", failures);
    return 1;
  }
  puts("test_expo: ok");
  return 0;
}
