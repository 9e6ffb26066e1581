/* encode_statsd: a batch as StatsD lines (flavor NULL or "statsd"), or DogStatsD lines with
 * tags (flavor "dogstatsd"), packed into datagrams.
 *
 * What a receiver gets, per sample (names are prefix .. name, tags DogStatsD only):
 *   counter    name:<increase since the previous collection>|c        (needs o->delta)
 *   gauge      name:<value>|g; a negative value in plain StatsD is sent as name:0|g then
 *              name:-5|g in the same datagram (a leading sign means "add" there)
 *   histogram  name.count:<observations since the previous collection>|c
 *              name.sum:<their sum>|c
 *              DogStatsD also: name.bucket:<observations <= bound>|c|#...,upper_bound:<bound>
 *              per bucket, cumulative, "inf" for the last (Datadog's OpenMetrics mapping)
 * A histogram holds bucket counts, not its observations, so it is not sent as |h, |ms or |d
 * samples: a distribution rebuilt from bucket bounds would be invented. Increases come from
 * export/delta.h: a series older than the delta sends nothing at first sight.
 *
 * Names: ':', '|', '@', '#', ',', spaces and control bytes become '_'. Tags: k:v, with '|', ',',
 * '#' and control bytes in either (and ':' in the key) made '_'; labels with an empty value are
 * left out (Prometheus' meaning: no label). A gauge or difference that is NaN or infinite is
 * skipped and counted.
 *
 * Output: lines ending in "\n"; a datagram ends with an empty line ("\n\n"), and holds at most
 * o->max_payload bytes (default 1432: a 1500-byte MTU less IPv6 and UDP headers) without its
 * last "\n" unless one line alone is longer (it then travels alone). */
#include "export/encode_statsd.h"
#include "export/delta.h"
#include "export/encode_util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_PAYLOAD 1432

typedef struct st {
  bg_buf *out;
  bg_encode_opts *o;
  int dog;
  size_t max;
  size_t dgram; /* where the current datagram starts in out */
  size_t unit;  /* where the current unit (lines that travel together) starts */
  bg_buf head;  /* the sample's prefix and name, made safe: written once, copied per line */
  bg_buf tags;  /* its "|#k:v,..." (DogStatsD), or empty */
  const char *kv[2 * (BG_METRICS_MAX_LABELS + 64)];
  int rc;
} st;

/* c is allowed in a name (part 0), a tag key (1) or a tag value (2) */
static int ok_char(unsigned char c, int part) {
  if (c < 0x20 || c == 0x7f || c == '|' || c == ',' || c == '#') return 0;
  if (part == 0) return c != ':' && c != '@' && c != ' ';
  if (part == 1) return c != ':';
  return 1;
}

static int put_clean(bg_buf *b, const char *p, int part) {
  size_t n = strlen(p);
  if (bg_buf_reserve(b, n) != 0) return BG_ENOMEM;
  char *w = b->data + b->len;
  for (size_t i = 0; i < n; i++)
    w[i] = ok_char((unsigned char)p[i], part) ? p[i] : '_';
  b->len += n;
  return 0;
}

/* The name and tags of sample x, for its lines. */
static void prepare(st *s, const bg_sample *x) {
  bg_buf_reset(&s->head);
  bg_buf_reset(&s->tags);
  int rc = s->o->prefix ? put_clean(&s->head, s->o->prefix, 0) : 0;
  if (rc == 0) rc = put_clean(&s->head, x->name, 0);
  if (s->dog) {
    int n = bg__merge_labels(x, s->o, s->kv);
    for (int k = 0; k < n && rc == 0; k++) {
      if (s->kv[2 * k + 1][0] == '\0') continue;
      rc = bg_buf_append(&s->tags, s->tags.len ? "," : "|#", s->tags.len ? 1 : 2);
      if (rc == 0) rc = put_clean(&s->tags, s->kv[2 * k], 1);
      if (rc == 0) rc = bg_buf_append(&s->tags, ":", 1);
      if (rc == 0) rc = put_clean(&s->tags, s->kv[2 * k + 1], 2);
    }
  }
  if (rc != 0) s->rc = rc;
}

static void begin_unit(st *s) {
  s->unit = s->out->len;
}

/* The unit just written goes to the next datagram when it does not fit in this one. */
static void end_unit(st *s) {
  if (s->rc != 0) return;
  bg_buf *b = s->out;
  size_t size = b->len - s->dgram - 1; /* the datagram without its last "\n" */
  if (size > s->max && s->unit > s->dgram) {
    if (bg_buf_reserve(b, 1) != 0) {
      s->rc = BG_ENOMEM;
      return;
    }
    memmove(b->data + s->unit + 1, b->data + s->unit, b->len - s->unit);
    b->data[s->unit] = '\n';
    b->len++;
    s->dgram = s->unit + 1;
  }
}

static char *cat(char *p, const char *q, size_t n) {
  if (n) memcpy(p, q, n); /* q may be NULL when n is 0 */
  return p + n;
}

/* <head>[suffix]:value|type[<tags>[,extra]]\n, in one reservation */
static void line(st *s, const char *suffix, const char *value, char type, const char *extra) {
  if (s->rc != 0) return;
  size_t sl = suffix ? strlen(suffix) : 0, vl = strlen(value), el = extra ? strlen(extra) : 0;
  size_t tl = s->dog ? s->tags.len : 0;
  if (bg_buf_reserve(s->out, s->head.len + sl + vl + tl + el + 8) != 0) {
    s->rc = BG_ENOMEM;
    return;
  }
  char *p = s->out->data + s->out->len;
  p = cat(p, s->head.data, s->head.len);
  p = cat(p, suffix, sl);
  *p++ = ':';
  p = cat(p, value, vl);
  p = cat(p, type == 'c' ? "|c" : "|g", 2);
  p = cat(p, s->tags.data, tl);
  if (s->dog && extra) {
    p = cat(p, tl ? "," : "|#", tl ? 1 : 2);
    p = cat(p, extra, el);
  }
  *p++ = '\n';
  *p = '\0'; /* within the reservation: the buffer stays a string, like bg_buf_append's */
  s->out->len = (size_t)(p - s->out->data);
}

static void histogram(st *s, const bg_sample *x, const bg_delta_val *v) {
  char num[BG__NUMLEN], tag[BG__NUMLEN + 16];
  begin_unit(s);
  bg__u64(num, v->count);
  line(s, ".count", num, 'c', NULL);
  end_unit(s);
  if (isfinite(v->value)) {
    begin_unit(s);
    bg__num(num, v->value);
    line(s, ".sum", num, 'c', NULL);
    end_unit(s);
  } else {
    s->o->skipped++;
  }
  if (!s->dog) return;
  uint64_t cum = 0;
  for (int i = 0; i <= x->nbuckets; i++) {
    cum += v->buckets[i];
    memcpy(tag, "upper_bound:", 12);
    if (i < x->nbuckets && isfinite(x->bounds[i]))
      bg__num(tag + 12, x->bounds[i]);
    else
      memcpy(tag + 12, "inf", 4);
    bg__u64(num, cum);
    begin_unit(s);
    line(s, ".bucket", num, 'c', tag);
    end_unit(s);
  }
}

int bg_encode_statsd(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err, size_t errlen) {
  int dog = o->flavor && strcmp(o->flavor, "dogstatsd") == 0;
  if (o->flavor && !dog && strcmp(o->flavor, "statsd") != 0) {
    snprintf(err, errlen, "flavor must be \"statsd\" or \"dogstatsd\", not \"%s\"", o->flavor);
    return BG_EINVAL;
  }
  if (o->nlabels > 64) return BG_EINVAL;
  st s = {.out = out, .o = o, .dog = dog, .max = o->max_payload ? o->max_payload : DEFAULT_PAYLOAD};
  s.dgram = out->len;
  double t = bg_batch_time(b);
  size_t n = bg_batch_len(b);
  char num[BG__NUMLEN];
  for (size_t i = 0; i < n && s.rc == 0; i++) {
    const bg_sample *x = bg_batch_at(b, i);
    if (x->type == BG_GAUGE) {
      if (!isfinite(x->value)) {
        o->skipped++;
        continue;
      }
      bg__num(num, x->value);
      prepare(&s, x);
      begin_unit(&s);
      if (!dog && num[0] == '-') line(&s, NULL, "0", 'g', NULL);
      line(&s, NULL, num, 'g', NULL);
      end_unit(&s);
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
    if (x->type == BG_HISTOGRAM) {
      histogram(&s, x, &v);
    } else if (!isfinite(v.value)) {
      o->skipped++;
    } else {
      bg__num(num, v.value);
      begin_unit(&s);
      line(&s, NULL, num, 'c', NULL);
      end_unit(&s);
    }
  }
  if (s.rc == 0 && out->len > s.dgram) s.rc = bg_buf_append(out, "\n", 1);
  bg_buf_free(&s.head);
  bg_buf_free(&s.tags);
  return s.rc;
}
