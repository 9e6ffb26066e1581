/* encode_otlp: a batch as an OTLP/HTTP JSON ExportMetricsServiceRequest (POST /v1/metrics), in
 * the protobuf JSON mapping OTLP specifies: lowerCamelCase field names, 64-bit integers
 * (counts, times in nanoseconds) as decimal strings, enums as integers.
 *
 *   {"resourceMetrics":[{"resource":{"attributes":[{"key":k,"value":{"stringValue":v}}]},
 *     "scopeMetrics":[{"scope":{"name":"beagle","version":...},"metrics":[...]}]}]}
 *
 * One metric per run of samples of one family (a batch may hold a family's series in two
 * batches: each then carries a metric of that name). Per family type:
 *   counter    sum: {dataPoints, aggregationTemporality: 2 (cumulative), isMonotonic: true}
 *   gauge      gauge: {dataPoints}
 *   histogram  histogram: {dataPoints: [{count, sum, bucketCounts (per bucket, not cumulative,
 *              the last the +Inf bucket), explicitBounds}], aggregationTemporality: 2}
 * Data points: attributes (the series' labels with o->labels merged, the series' own win, all
 * stringValue), startTimeUnixNano = the series' creation time (cumulative points; not on
 * gauges), timeUnixNano = the batch's time, asDouble. name = prefix .. name, description = the
 * help text when there is one; no unit (the registry keeps none).
 * Resource attributes are o->resource, with service.name "beagle" unless given. A value that is
 * NaN or infinite is skipped and counted (a histogram then goes without its sum), so the body
 * stays plain JSON. Nothing is written when no data point is left. Flavor "gzip": the body
 * gzipped (Content-Encoding: gzip). */
#include "export/encode_otlp.h"
#include "export/encode_util.h"
#include "metrics/expo.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct st {
  bg_buf *out;
  bg_encode_opts *o;
  const char *open; /* the family whose metric is open, or NULL */
  int open_type;
  int npoints; /* in the open metric */
  int nmetrics;
  char now[BG__NUMLEN + 2]; /* the batch's time in ns, quoted */
  const char *kv[2 * (BG_METRICS_MAX_LABELS + 64)];
  int rc;
} st;

static void put(st *s, const char *p, size_t n) {
  if (s->rc == 0) s->rc = bg__buf_put(s->out, p, n);
}
#define PUTL(s, lit) put(s, lit, sizeof lit - 1)

static void put_str(st *s, const char *p) {
  put(s, "\"", 1);
  if (s->rc == 0) s->rc = bg__json_str(s->out, p);
  put(s, "\"", 1);
}

static void put_attrs(st *s, const char *const *kv, int n) {
  PUTL(s, "\"attributes\":[");
  for (int k = 0; k < n; k++) {
    if (k > 0) put(s, ",", 1);
    PUTL(s, "{\"key\":");
    put_str(s, kv[2 * k]);
    PUTL(s, ",\"value\":{\"stringValue\":");
    put_str(s, kv[2 * k + 1]);
    PUTL(s, "}}");
  }
  put(s, "]", 1);
}

/* Epoch seconds as nanoseconds, a quoted decimal, into buf (BG__NUMLEN + 2 bytes). */
static int ns_text(char *buf, double secs) {
  double ns = floor(secs * 1e9 + 0.5);
  buf[0] = '"';
  int n = 1 + bg__u64(buf + 1, ns > 0 && ns < 1.8e19 ? (uint64_t)ns : 0);
  buf[n++] = '"';
  buf[n] = '\0';
  return n;
}

static void close_metric(st *s) {
  if (s->open == NULL) return;
  if (s->open_type == BG_COUNTER)
    PUTL(s, "],\"aggregationTemporality\":2,\"isMonotonic\":true}}");
  else if (s->open_type == BG_HISTOGRAM)
    PUTL(s, "],\"aggregationTemporality\":2}}");
  else
    PUTL(s, "]}}");
  s->open = NULL;
}

/* Starts the metric of x's family unless it is the open one, then a data point. */
static void begin_point(st *s, const bg_sample *x) {
  if (s->open != x->name || s->open_type != x->type) {
    close_metric(s);
    if (s->nmetrics++ > 0) put(s, ",", 1);
    PUTL(s, "{\"name\":\"");
    if (s->o->prefix && s->rc == 0) s->rc = bg__json_str(s->out, s->o->prefix);
    if (s->rc == 0) s->rc = bg__json_str(s->out, x->name);
    put(s, "\"", 1);
    if (x->help[0]) {
      PUTL(s, ",\"description\":");
      put_str(s, x->help);
    }
    if (x->type == BG_COUNTER)
      PUTL(s, ",\"sum\":{\"dataPoints\":[");
    else if (x->type == BG_GAUGE)
      PUTL(s, ",\"gauge\":{\"dataPoints\":[");
    else
      PUTL(s, ",\"histogram\":{\"dataPoints\":[");
    s->open = x->name;
    s->open_type = x->type;
    s->npoints = 0;
  }
  if (s->npoints++ > 0) put(s, ",", 1);
  put(s, "{", 1);
  put_attrs(s, s->kv, bg__merge_labels(x, s->o, s->kv));
  if (x->type != BG_GAUGE) {
    char start[BG__NUMLEN + 2];
    PUTL(s, ",\"startTimeUnixNano\":");
    put(s, start, (size_t)ns_text(start, x->created));
  }
  PUTL(s, ",\"timeUnixNano\":");
  put(s, s->now, strlen(s->now));
}

static void sample(st *s, const bg_sample *x) {
  char num[BG__NUMLEN];
  if (x->type != BG_HISTOGRAM) {
    if (!isfinite(x->value)) {
      s->o->skipped++;
      return;
    }
    begin_point(s, x);
    PUTL(s, ",\"asDouble\":");
    put(s, num, (size_t)bg__num(num, x->value));
    put(s, "}", 1);
    return;
  }
  for (int i = 0; i < x->nbuckets; i++)
    if (!isfinite(x->bounds[i])) {
      s->o->skipped++;
      return;
    }
  begin_point(s, x);
  PUTL(s, ",\"count\":\"");
  put(s, num, (size_t)bg__u64(num, x->count));
  put(s, "\"", 1);
  if (isfinite(x->value)) {
    PUTL(s, ",\"sum\":");
    put(s, num, (size_t)bg__num(num, x->value));
  } else {
    s->o->skipped++;
  }
  PUTL(s, ",\"bucketCounts\":[");
  for (int i = 0; i <= x->nbuckets; i++) {
    put(s, i ? ",\"" : "\"", i ? 2 : 1);
    put(s, num, (size_t)bg__u64(num, x->bucket_counts[i]));
    put(s, "\"", 1);
  }
  PUTL(s, "],\"explicitBounds\":[");
  for (int i = 0; i < x->nbuckets; i++) {
    if (i) put(s, ",", 1);
    put(s, num, (size_t)bg__num(num, x->bounds[i]));
  }
  PUTL(s, "]}");
}

static int encode(const bg_batch *b, bg_encode_opts *o, bg_buf *out);

int bg_encode_otlp(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err, size_t errlen) {
  int gzip = o->flavor && strcmp(o->flavor, "gzip") == 0;
  if (o->flavor && !gzip) {
    snprintf(err, errlen, "flavor: unknown \"%.32s\" (gzip or none)", o->flavor);
    return BG_EINVAL;
  }
  if (!gzip) return encode(b, o, out);
  bg_buf text = {0};
  int rc = encode(b, o, &text);
  if (rc == 0 && text.len > 0) rc = bg_gzip(text.data, text.len, 0, out);
  bg_buf_free(&text);
  return rc;
}

static int encode(const bg_batch *b, bg_encode_opts *o, bg_buf *out) {
  if (o->nlabels > 64) return BG_EINVAL;
  st s = {.out = out, .o = o};
  ns_text(s.now, bg_batch_time(b));
  size_t start = out->len;
  PUTL(&s, "{\"resourceMetrics\":[{\"resource\":{\"attributes\":[");
  int named = 0;
  for (int k = 0; k < o->nresource; k++)
    if (strcmp(o->resource[2 * k], "service.name") == 0) named = 1;
  if (!named) PUTL(&s, "{\"key\":\"service.name\",\"value\":{\"stringValue\":\"beagle\"}}");
  for (int k = 0; k < o->nresource; k++) {
    if (k > 0 || !named) put(&s, ",", 1);
    PUTL(&s, "{\"key\":");
    put_str(&s, o->resource[2 * k]);
    PUTL(&s, ",\"value\":{\"stringValue\":");
    put_str(&s, o->resource[2 * k + 1]);
    PUTL(&s, "}}");
  }
  PUTL(&s, "]},\"scopeMetrics\":[{\"scope\":{\"name\":\"beagle\",\"version\":\"" BG_VERSION
           "\"},\"metrics\":[");
  size_t n = bg_batch_len(b);
  for (size_t i = 0; i < n && s.rc == 0; i++)
    sample(&s, bg_batch_at(b, i));
  close_metric(&s);
  PUTL(&s, "]}]}]}");
  if (s.rc == 0 && s.nmetrics == 0) out->len = start; /* nothing to send */
  return s.rc;
}
