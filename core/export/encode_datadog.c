/* encode_datadog: a batch as the body of Datadog's v2 series API (POST /api/v2/series):
 *   {"series":[{"metric":..., "type":1|2|3, "points":[{"timestamp":s,"value":v}],
 *               "interval":s, "tags":["k:v"], "resources":[{"type":"host","name":...}]}]}
 *
 * What Datadog receives, per sample (metric = prefix .. name):
 *   counter    the increase since the previous collection (export/delta.h) as a count (type 1,
 *              `interval` = the seconds it covers), or with flavor "rate" the increase per
 *              second as a rate (type 2, same interval): Datadog's own agent sends a
 *              monotonic count as a count, a DogStatsD counter as a rate
 *   gauge      its value, type 3, no interval
 *   histogram  <name>.count and <name>.sum: the increases of the observations' number and sum,
 *              counts (or rates) like a counter; <name>.bucket: the increase of the cumulative
 *              count of each bucket, tagged upper_bound:<bound> ("inf" for the last) — the
 *              mapping of Datadog's OpenMetrics integration. No distribution: the registry
 *              keeps bucket counts, not the observations a distribution is made of.
 * Tags are the series' labels merged with o->labels (the series' own win), "k:v", labels with
 * an empty value left out; Datadog normalises what it does not take (case, characters). The
 * resource attribute "host" (or "host.name") becomes the series' host resource. A value that
 * is NaN or infinite cannot be written in JSON: the point is skipped and counted. Nothing at
 * all (not even {"series":[]}) is written when no series is left: the plugin sends nothing.
 * Flavor: "count" (default) or "rate", and "gzip" for the body gzipped (Content-Encoding: gzip),
 * comma-separated. */
#include "export/encode_datadog.h"
#include "export/delta.h"
#include "export/encode_util.h"
#include "metrics/expo.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct st {
  bg_buf *out;
  bg_encode_opts *o;
  int rate;
  int n;               /* series written */
  bg_buf head;         /* the sample's metric name, escaped: written once, copied per series */
  bg_buf tags;         /* its tags, "k:v","k2:v2" (escaped, no brackets) */
  bg_buf tail;         /* what ends every series: the host resource and "}" */
  char ts[BG__NUMLEN]; /* the batch's time, whole seconds */
  const char *kv[2 * (BG_METRICS_MAX_LABELS + 64)];
  int rc;
} st;

static void put(st *s, const char *p, size_t n) {
  if (s->rc == 0) s->rc = bg__buf_put(s->out, p, n);
}
#define PUTL(s, lit) put(s, lit, sizeof lit - 1)

/* The name and tags of sample x, for its series. */
static void prepare(st *s, const bg_sample *x) {
  bg_buf_reset(&s->head);
  bg_buf_reset(&s->tags);
  int rc = s->o->prefix ? bg__json_str(&s->head, s->o->prefix) : 0;
  if (rc == 0) rc = bg__json_str(&s->head, x->name);
  int n = bg__merge_labels(x, s->o, s->kv);
  for (int k = 0; k < n && rc == 0; k++) {
    if (s->kv[2 * k + 1][0] == '\0') continue;
    rc = bg_buf_append(&s->tags, s->tags.len ? ",\"" : "\"", s->tags.len ? 2 : 1);
    if (rc == 0) rc = bg__json_str(&s->tags, s->kv[2 * k]);
    if (rc == 0) rc = bg_buf_append(&s->tags, ":", 1);
    if (rc == 0) rc = bg__json_str(&s->tags, s->kv[2 * k + 1]);
    if (rc == 0) rc = bg_buf_append(&s->tags, "\"", 1);
  }
  if (rc != 0) s->rc = rc;
}

/* One series of one point. type 1 count, 2 rate, 3 gauge; elapsed > 0 for 1 and 2; extra is
 * one more tag (plain text, nothing to escape) or NULL. */
static void series(st *s, const char *suffix, int type, double value, double elapsed,
                   const char *extra) {
  char num[BG__NUMLEN];
  if (type == 2) value /= elapsed;
  if (!isfinite(value)) {
    s->o->skipped++;
    return;
  }
  if (s->n++ > 0) put(s, ",", 1);
  PUTL(s, "{\"metric\":\"");
  put(s, s->head.data, s->head.len);
  if (suffix) put(s, suffix, strlen(suffix));
  PUTL(s, "\",\"type\":");
  put(s, type == 1 ? "1" : type == 2 ? "2" : "3", 1);
  PUTL(s, ",\"points\":[{\"timestamp\":");
  put(s, s->ts, strlen(s->ts));
  PUTL(s, ",\"value\":");
  put(s, num, (size_t)bg__num(num, value));
  PUTL(s, "}]");
  if (type != 3) {
    double iv = floor(elapsed + 0.5);
    PUTL(s, ",\"interval\":");
    put(s, num, (size_t)bg__num(num, iv >= 1 ? iv : 1));
  }
  if (s->tags.len || extra) {
    PUTL(s, ",\"tags\":[");
    if (s->tags.len) put(s, s->tags.data, s->tags.len);
    if (extra) {
      if (s->tags.len) put(s, ",", 1);
      put(s, "\"", 1);
      put(s, extra, strlen(extra));
      put(s, "\"", 1);
    }
    put(s, "]", 1);
  }
  put(s, s->tail.data, s->tail.len);
}

static void histogram(st *s, const bg_sample *x, const bg_delta_val *v) {
  int type = s->rate ? 2 : 1;
  series(s, ".count", type, (double)v->count, v->elapsed, NULL);
  series(s, ".sum", type, v->value, v->elapsed, NULL);
  char tag[BG__NUMLEN + 16];
  uint64_t cum = 0;
  for (int i = 0; i <= x->nbuckets; i++) {
    cum += v->buckets[i];
    memcpy(tag, "upper_bound:", 12);
    if (i < x->nbuckets && isfinite(x->bounds[i]))
      bg__num(tag + 12, x->bounds[i]);
    else
      memcpy(tag + 12, "inf", 4);
    series(s, ".bucket", type, (double)cum, v->elapsed, tag);
  }
}

/* flavor: "count" (the default) or "rate", and "gzip", comma-separated */
static int parse_flavor(const char *f, int *rate, int *gzip, char *err, size_t errlen) {
  *rate = *gzip = 0;
  while (f != NULL && *f) {
    size_t n = strcspn(f, ",");
    if (n == 4 && memcmp(f, "rate", 4) == 0)
      *rate = 1;
    else if (n == 4 && memcmp(f, "gzip", 4) == 0)
      *gzip = 1;
    else if (!(n == 5 && memcmp(f, "count", 5) == 0)) {
      snprintf(err, errlen, "flavor: unknown \"%.*s\" (count or rate, gzip)",
               (int)(n < 32 ? n : 32), f);
      return BG_EINVAL;
    }
    f += n + (f[n] == ',');
  }
  return 0;
}

static int encode(const bg_batch *b, bg_encode_opts *o, int rate, bg_buf *out, char *err,
                  size_t errlen);

int bg_encode_datadog(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err, size_t errlen) {
  int rate, gzip;
  int rc = parse_flavor(o->flavor, &rate, &gzip, err, errlen);
  if (rc != 0 || !gzip) return rc ? rc : encode(b, o, rate, out, err, errlen);
  bg_buf text = {0};
  rc = encode(b, o, rate, &text, err, errlen);
  if (rc == 0 && text.len > 0) rc = bg_gzip(text.data, text.len, 0, out);
  bg_buf_free(&text);
  return rc;
}

static int encode(const bg_batch *b, bg_encode_opts *o, int rate, bg_buf *out, char *err,
                  size_t errlen) {
  if (o->nlabels > 64) return BG_EINVAL;
  st s = {.out = out, .o = o, .rate = rate};
  const char *host = NULL;
  for (int k = 0; k < o->nresource; k++)
    if (strcmp(o->resource[2 * k], "host") == 0 ||
        (host == NULL && strcmp(o->resource[2 * k], "host.name") == 0))
      host = o->resource[2 * k + 1];
  if (host) {
    int rc = bg_buf_puts(&s.tail, ",\"resources\":[{\"type\":\"host\",\"name\":\"");
    if (rc == 0) rc = bg__json_str(&s.tail, host);
    if (rc == 0) rc = bg_buf_puts(&s.tail, "\"}]");
    if (rc != 0) s.rc = rc;
  }
  if (s.rc == 0) s.rc = bg_buf_append(&s.tail, "}", 1);
  double t = bg_batch_time(b);
  bg__num(s.ts, floor(t));
  size_t start = out->len;
  PUTL(&s, "{\"series\":[");
  size_t n = bg_batch_len(b);
  for (size_t i = 0; i < n && s.rc == 0; i++) {
    const bg_sample *x = bg_batch_at(b, i);
    if (x->type == BG_GAUGE) {
      if (!isfinite(x->value)) {
        o->skipped++;
        continue;
      }
      prepare(&s, x);
      series(&s, NULL, 3, x->value, 0, NULL);
      continue;
    }
    if (o->delta == NULL) {
      snprintf(err, errlen, "counters and histograms need the instance's delta (opts.delta)");
      s.rc = BG_EINVAL;
      break;
    }
    bg_delta_val v;
    int rc = bg_delta_diff(o->delta, x, t, &v);
    if (rc < 0) s.rc = rc;
    if (rc <= 0) continue;
    prepare(&s, x);
    if (x->type == BG_HISTOGRAM)
      histogram(&s, x, &v);
    else
      series(&s, NULL, rate ? 2 : 1, v.value, v.elapsed, NULL);
  }
  PUTL(&s, "]}");
  if (s.rc == 0 && s.n == 0) out->len = start; /* nothing to send */
  bg_buf_free(&s.head);
  bg_buf_free(&s.tags);
  bg_buf_free(&s.tail);
  return s.rc;
}
