/* Tests for OpenMetrics exemplars on histograms (core/metrics/metrics.c keeps them, expo.c
 * renders them): an observation made while the current trace context is sampled leaves its
 * trace and span ids, value and time on the bucket it lands in; OpenMetrics writes them after
 * that bucket's line; 0.0.4 never does, byte for byte the same as a registry that never saw a
 * trace; no exemplar outside a span or in an unsampled one; a later one replaces the earlier;
 * a removed series frees them (LSan). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bg.h"
#include "metrics/expo.h"
#include "metrics/metrics.h"
#include "test_check.h"
#include "trace/trace.h"

static char err[256];

static bg_series *hist(bg_registry *r) {
  const double bounds[] = {0.1, 0.5, 1};
  const char *kv[] = {"route", "/x"};
  return bg_series_get(r, BG_HISTOGRAM, "lat_seconds", "Latency.", kv, 1, bounds, 3, err,
                       sizeof err);
}

static char *render(bg_registry *r, int om) {
  bg_buf b = {0};
  CHECK_INT(om ? bg_expo_openmetrics(r, &b) : bg_expo_prometheus(r, &b), 0);
  bg_buf_append(&b, "", 1);
  return b.data;
}

/* The line of the bucket le, or NULL. */
static const char *line_of(const char *text, const char *le, char *out, size_t n) {
  char needle[64];
  snprintf(needle, sizeof needle, "lat_seconds_bucket{route=\"/x\",le=\"%s\"}", le);
  const char *p = strstr(text, needle);
  if (p == NULL) return NULL;
  size_t len = strcspn(p, "\n");
  if (len >= n) len = n - 1;
  memcpy(out, p, len);
  out[len] = '\0';
  return out;
}

static void hexs(const bg_span_ctx *c, char *trace, char *span) {
  bg_trace_hex(c->trace_id, 16, trace);
  trace[32] = '\0';
  bg_trace_hex(c->span_id, 8, span);
  span[16] = '\0';
}

static void test_exemplars(void) {
  bg_tracer_shutdown();
  bg_tracer *t = bg_tracer_default();
  bg_tracer_set_ratio(t, 1);
  bg_registry *r = bg_registry_new(), *plain = bg_registry_new();
  bg_series *h = hist(r), *hp = hist(plain);
  /* outside any span: nothing */
  bg_histogram_observe(h, 0.3);
  bg_histogram_observe(hp, 0.3);
  char *om = render(r, 1);
  CHECK(strstr(om, " # {") == NULL);
  free(om);
  /* in a sampled span */
  bg_span *s = bg_span_begin(t, NULL, "op", 2, BG_SPAN_INTERNAL, NULL, 0);
  char trace[33], span[17];
  hexs(bg_span_context(s), trace, span);
  double before = bg_wall_time();
  bg_histogram_observe(h, 0.05);
  bg_histogram_observe(h, 7);
  double after = bg_wall_time();
  bg_span_end(t, s, 0);
  bg_histogram_observe(hp, 0.05); /* the same values, outside any span */
  bg_histogram_observe(hp, 7);
  /* after the span: no more exemplars, the old ones stay */
  bg_histogram_observe(h, 0.06);
  bg_histogram_observe(hp, 0.06);
  om = render(r, 1);
  char line[512], want[512];
  CHECK(line_of(om, "0.1", line, sizeof line) != NULL);
  int n =
      snprintf(want, sizeof want,
               "lat_seconds_bucket{route=\"/x\",le=\"0.1\"} 2 # {trace_id=\"%s\",span_id=\"%s\"} "
               "0.05 ",
               trace, span);
  CHECK(strncmp(line, want, (size_t)n) == 0);
  if (strncmp(line, want, (size_t)n) != 0) fprintf(stderr, "%s\n%s\n", line, want);
  double ts = atof(line + n);
  CHECK(ts >= before - 0.001 && ts <= after + 0.001);
  /* seconds with milliseconds */
  const char *dot = strchr(line + n, '.');
  CHECK(dot != NULL && strlen(dot) == 4);
  /* the label set: 63 characters, inside OpenMetrics' 128 */
  const char *open = strstr(line, "# {"), *close = open ? strchr(open, '}') : NULL;
  CHECK(open != NULL && close != NULL);
  if (open && close) {
    size_t chars = 0;
    for (const char *p = open + 3; p < close; p++)
      chars += *p != '"' && *p != '=' && *p != ',';
    CHECK_INT(chars, 63);
  }
  /* the +Inf bucket took 7 */
  CHECK(line_of(om, "+Inf", line, sizeof line) != NULL);
  n = snprintf(
      want, sizeof want,
      "lat_seconds_bucket{route=\"/x\",le=\"+Inf\"} 4 # {trace_id=\"%s\",span_id=\"%s\"} 7 ", trace,
      span);
  CHECK(strncmp(line, want, (size_t)n) == 0);
  /* the buckets without one are as before */
  CHECK(line_of(om, "0.5", line, sizeof line) != NULL);
  CHECK_STR(line, "lat_seconds_bucket{route=\"/x\",le=\"0.5\"} 3");
  CHECK(line_of(om, "1", line, sizeof line) != NULL);
  CHECK_STR(line, "lat_seconds_bucket{route=\"/x\",le=\"1\"} 3");
  /* and the rest of OpenMetrics is the plain registry's, exemplars taken out (but for the
   * _created lines: the two series were not made in the same millisecond, maybe) */
  char *omp = render(plain, 1);
  CHECK(strstr(omp, " # {") == NULL);
  char stripped[4096], *q = stripped, plainl[4096], *pq = plainl;
  for (const char *p = om; *p;) {
    size_t len = strcspn(p, "\n") + 1;
    const char *ex = strstr(p, " # {");
    if (strstr(p, "_created") == NULL || strstr(p, "_created") > p + len) {
      size_t keep = ex != NULL && ex < p + len ? (size_t)(ex - p) : len - 1;
      memcpy(q, p, keep);
      q += keep;
      *q++ = '\n';
    }
    p += len;
  }
  *q = '\0';
  for (const char *p = omp; *p;) {
    size_t len = strcspn(p, "\n") + 1;
    if (strstr(p, "_created") == NULL || strstr(p, "_created") > p + len) {
      memcpy(pq, p, len);
      pq += len;
    }
    p += len;
  }
  *pq = '\0';
  CHECK_STR(stripped, plainl);
  free(omp);
  free(om);
  /* 0.0.4: byte-identical to the registry that never saw a trace */
  char *a = render(r, 0), *b = render(plain, 0);
  CHECK_STR(a, b);
  CHECK(strstr(a, "trace_id") == NULL);
  free(a);
  free(b);
  /* an unsampled span leaves nothing; a sampled one replaces the bucket's exemplar */
  bg_tracer_set_ratio(t, 0);
  s = bg_span_begin(t, NULL, "op", 2, BG_SPAN_INTERNAL, NULL, 0);
  bg_histogram_observe(h, 0.07);
  bg_span_end(t, s, 0);
  om = render(r, 1);
  CHECK(line_of(om, "0.1", line, sizeof line) != NULL);
  CHECK(strstr(line, trace) != NULL && strstr(line, " 0.05 ") != NULL);
  free(om);
  bg_span_ctx remote;
  bg_traceparent_parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", 55, &remote);
  s = bg_span_begin(t, &remote, "op", 2, BG_SPAN_SERVER, NULL, 0); /* sampled by its parent */
  hexs(bg_span_context(s), trace, span);
  bg_histogram_observe(h, 0.08);
  bg_span_end(t, s, 0);
  om = render(r, 1);
  CHECK(line_of(om, "0.1", line, sizeof line) != NULL);
  CHECK(strstr(line, "0af7651916cd43dd8448eb211c80319c") != NULL);
  CHECK(strstr(line, span) != NULL && strstr(line, " 0.08 ") != NULL);
  free(om);
  /* the JSON is untouched by exemplars */
  bg_buf j = {0};
  CHECK_INT(bg_expo_json(r, &j, NULL, NULL), 0);
  bg_buf_append(&j, "", 1);
  CHECK(j.len > 1 && strstr(j.data, "trace") == NULL);
  bg_buf_free(&j);
  /* a removed series frees its exemplars; the registries free theirs */
  bg_series_remove(r, h);
  bg_registry_free(r);
  bg_registry_free(plain);
  bg_tracer_shutdown();
}

/* The current context's flags are what the hot path reads: zero without a tracer. */
static void test_no_tracer(void) {
  bg_tracer_shutdown();
  CHECK_INT(bg__trace_cur.flags, 0);
  bg_registry *r = bg_registry_new();
  bg_series *h = hist(r);
  bg_histogram_observe(h, 0.2);
  char *om = render(r, 1);
  CHECK(strstr(om, " # {") == NULL);
  free(om);
  bg_registry_free(r);
}

int main(void) {
  test_exemplars();
  test_no_tracer();
  if (failures) fprintf(stderr, "%d failures\n", failures);
  return failures != 0;
}
