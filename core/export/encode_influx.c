/* encode_influx: a batch as InfluxDB line protocol, mapped the way InfluxDB documents its
 * "metric version 1" and "metric version 2" parsing of Prometheus metrics (Telegraf's
 * prometheus input, metric_version = 1 or 2; docs.influxdata.com "Prometheus metric parsing
 * formats"), so that dashboards made for a scraped beagle work on a pushed one.
 *
 * Version 1 (the default), one line per series:
 *   counter    <prefix><name>_total,<tags> counter=<v> <t>
 *   gauge      <prefix><name>,<tags> gauge=<v> <t>
 *   histogram  <prefix><name>,<tags> count=<n>,sum=<s>,<le1>=<c1>,...,+Inf=<n> <t>
 *              (one field per bucket, named by its upper bound, counts cumulative)
 * Version 2, measurement "prometheus", the field named after the metric:
 *   counter    prometheus,<tags> <prefix><name>_total=<v> <t>
 *   gauge      prometheus,<tags> <prefix><name>=<v> <t>
 *   histogram  prometheus,<tags> <prefix><name>_count=<n>,<prefix><name>_sum=<s> <t>
 *              prometheus,<tags with le=<bound>> <prefix><name>_bucket=<c> <t>  (per bucket)
 *
 * Every value is a float field (no `i`), as both parsers make them. Tags are the series'
 * labels and the extra ones (opts->labels; the series' own wins), sorted by key as InfluxDB
 * recommends. Escaping follows the line protocol reference and Telegraf's serializer:
 * measurement `,` and space, tag keys and values and field keys `,` `=` and space, each with a
 * backslash; a backslash itself is written as it is (the parser unescapes only the characters
 * above); tab, newline, carriage return and form feed, which a line cannot hold, are written
 * as the two characters \t \n \r \f. What line protocol cannot carry is left out: a tag with
 * an empty value (InfluxDB's rule: omit it; not counted, Prometheus reads it as absent), and,
 * counted in opts->skipped, a tag whose key or value ends in a backslash (it would escape the
 * separator after it), an extra label named "le", a counter or gauge that is NaN or infinite
 * (the whole line) and a histogram's non-finite sum (that field alone).
 *
 * opts->flavor: a comma-separated list of "v1" or "v2" (the mapping), "ns", "us", "ms" or "s"
 * (the timestamp's precision, which the write request must name) and "gzip" (the whole text
 * gzipped, for Content-Encoding: gzip; nothing at all when there is no line); default "v1,ns".
 * */
#include "export/encode_text.h"
#include "metrics/expo.h"

#include <math.h>
#include <stdio.h>

enum { PREC_NS, PREC_US, PREC_MS, PREC_S };

/* The escape of each byte: 0 to copy it, else the character written after a backslash; NUL
 * ends a scan (1, never written). */
#define CONTROL_ESC [0] = 1, ['\t'] = 't', ['\n'] = 'n', ['\r'] = 'r', ['\f'] = 'f'
static const unsigned char TAG_ESC[256] = {CONTROL_ESC, [','] = ',', [' '] = ' ', ['='] = '='};
static const unsigned char MEAS_ESC[256] = {CONTROL_ESC, [','] = ',', [' '] = ' '};

/* s escaped by tab; at most 2 strlen(s) bytes. Runs without a special are copied whole. */
static char *esc(char *p, const char *s, const unsigned char *tab) {
  for (;;) {
    const char *q = s;
    while (!tab[(unsigned char)*q])
      q++;
    p = bg__put(p, s, (size_t)(q - s));
    if (*q == '\0') return p;
    *p++ = '\\';
    *p++ = (char)tab[(unsigned char)*q];
    s = q + 1;
  }
}

typedef struct influx {
  int v2, prec, gzip;
  const char *prefix;
  size_t plen;
  char ts[BG_NUMFMT_LEN + 8]; /* " <time>\n" */
  size_t tslen;
  bg__extra extra;
  const double *bounds; /* the family whose bucket bounds are in le[] */
  char le[BG_METRICS_MAX_BUCKETS + 1][BG_NUMFMT_LEN];
  unsigned char lelen[BG_METRICS_MAX_BUCKETS + 1];
} influx;

static int accept_extra(const char *k, const char *v) {
  size_t kl = strlen(k), vl = strlen(v);
  return kl > 0 && vl > 0 && k[kl - 1] != '\\' && v[vl - 1] != '\\';
}

static int parse_flavor(influx *x, const char *f, char *err, size_t errlen) {
  x->v2 = x->gzip = 0;
  x->prec = PREC_NS;
  static const char *const precs[] = {"ns", "us", "ms", "s"};
  while (f != NULL && *f) {
    size_t n = strcspn(f, ",");
    int ok = 0;
    if (n == 2 && f[0] == 'v' && (f[1] == '1' || f[1] == '2')) {
      x->v2 = f[1] == '2';
      ok = 1;
    } else if (n == 4 && memcmp(f, "gzip", 4) == 0) {
      x->gzip = ok = 1;
    }
    for (int i = 0; i < 4 && !ok; i++)
      if (strlen(precs[i]) == n && memcmp(f, precs[i], n) == 0) {
        x->prec = i;
        ok = 1;
      }
    if (!ok) {
      if (errlen > 0)
        snprintf(err, errlen, "flavor: unknown \"%.*s\" (v1 or v2, ns, us, ms or s, gzip)",
                 (int)(n < 32 ? n : 32), f);
      return BG_EINVAL;
    }
    f += n + (f[n] == ',');
  }
  return 0;
}

/* The batch's time in the flavor's precision, once for every line. */
static void set_time(influx *x, int64_t ms) {
  char *p = x->ts;
  *p++ = ' ';
  if (x->prec == PREC_S) {
    p = bg_fmt_put_u64(p, (uint64_t)(ms / 1000));
  } else {
    p = bg_fmt_put_u64(p, (uint64_t)ms);
    static const char zeros[] = "000000";
    size_t z = x->prec == PREC_NS ? 6 : x->prec == PREC_US ? 3 : 0;
    p = bg__put(p, zeros, z);
  }
  *p++ = '\n';
  x->tslen = (size_t)(p - x->ts);
}

/* The bucket bounds of s's family as field keys and tag values, once per family (a batch
 * holds a family's series one after the other, sharing its bounds). */
static void set_bounds(influx *x, const bg_sample *s) {
  if (x->bounds == s->bounds && s->bounds != NULL) return;
  x->bounds = s->bounds;
  for (int i = 0; i <= s->nbuckets; i++) {
    char *e = bg_fmt_put_double(x->le[i], i < s->nbuckets ? s->bounds[i] : INFINITY);
    x->lelen[i] = (unsigned char)(e - x->le[i]);
  }
}

/* The tag set: ",k=v" for each label in key order. *split (when split is not NULL) is where a
 * tag keyed "le" goes. */
static char *put_tags(char *p, const bg_sample *s, influx *x, size_t *skipped, char **split) {
  bg__labels m;
  bg__labels_start(&m, s, &x->extra);
  const char *k, *v;
  if (split) *split = NULL;
  while (bg__labels_next(&m, &k, &v)) {
    if (v[0] == '\0') continue;
    if (split && *split == NULL && strcmp(k, "le") > 0) *split = p;
    char *start = p;
    *p++ = ',';
    p = esc(p, k, TAG_ESC);
    *p++ = '=';
    p = esc(p, v, TAG_ESC);
    /* an escape never ends in a backslash: this one is the value's own last byte */
    if (p[-1] == '\\') {
      p = start;
      (*skipped)++;
    }
  }
  if (split && *split == NULL) *split = p;
  return p;
}

/* prefix + name + suffix, escaped by tab. */
static char *put_name(char *p, const influx *x, const bg_sample *s, const char *suffix,
                      const unsigned char *tab) {
  if (x->plen) p = esc(p, x->prefix, tab);
  p = esc(p, s->name, tab);
  return bg__put(p, suffix, strlen(suffix));
}

static char *put_time(char *p, const influx *x) {
  return bg__put(p, x->ts, x->tslen);
}

static char *put_field(char *p, const char *key, size_t n, double v) {
  p = bg__put(p, key, n);
  *p++ = '=';
  return bg_fmt_put_double(p, v);
}

/* A count: the same text as put_field's for a whole number below 2^53, without the double. */
static char *put_count(char *p, const char *key, size_t n, uint64_t v) {
  p = bg__put(p, key, n);
  *p++ = '=';
  return bg_fmt_put_u64(p, v);
}

/* One series in version 1; returns the end. */
static char *put_v1(char *p, const bg_sample *s, influx *x, size_t *skipped) {
  if (s->type != BG_HISTOGRAM) {
    p = put_name(p, x, s, s->type == BG_COUNTER ? "_total" : "", MEAS_ESC);
    p = put_tags(p, s, x, skipped, NULL);
    p = s->type == BG_COUNTER ? put_field(p, " counter", 8, s->value)
                              : put_field(p, " gauge", 6, s->value);
    return put_time(p, x);
  }
  set_bounds(x, s);
  p = put_name(p, x, s, "", MEAS_ESC);
  p = put_tags(p, s, x, skipped, NULL);
  p = put_count(p, " count", 6, s->count);
  if (isfinite(s->value))
    p = put_field(p, ",sum", 4, s->value);
  else
    (*skipped)++;
  uint64_t cum = 0;
  for (int i = 0; i <= s->nbuckets; i++) {
    cum += s->bucket_counts[i];
    *p++ = ',';
    p = put_count(p, x->le[i], x->lelen[i], cum);
  }
  return put_time(p, x);
}

/* One series in version 2; out->data + start is where it begins (the bucket lines copy the
 * tag set of the first line). */
static char *put_v2(char *p, bg_buf *out, const bg_sample *s, influx *x, size_t *skipped) {
  char *split;
  p = bg__put(p, "prometheus", 10);
  size_t tags = (size_t)(p - out->data);
  p = put_tags(p, s, x, skipped, s->type == BG_HISTOGRAM ? &split : NULL);
  size_t cut = s->type == BG_HISTOGRAM ? (size_t)(split - out->data) : 0;
  size_t end = (size_t)(p - out->data);
  *p++ = ' ';
  if (s->type != BG_HISTOGRAM) {
    p = put_name(p, x, s, s->type == BG_COUNTER ? "_total=" : "=", TAG_ESC);
    return put_time(bg_fmt_put_double(p, s->value), x);
  }
  set_bounds(x, s);
  p = put_name(p, x, s, "_count=", TAG_ESC);
  p = bg_fmt_put_u64(p, s->count);
  if (isfinite(s->value)) {
    *p++ = ',';
    p = put_name(p, x, s, "_sum=", TAG_ESC);
    p = bg_fmt_put_double(p, s->value);
  } else {
    (*skipped)++;
  }
  p = put_time(p, x);
  uint64_t cum = 0;
  for (int i = 0; i <= s->nbuckets; i++) {
    cum += s->bucket_counts[i];
    p = bg__put(p, "prometheus", 10);
    p = bg__put(p, out->data + tags, cut - tags);
    p = bg__put(p, ",le=", 4);
    p = bg__put(p, x->le[i], x->lelen[i]);
    p = bg__put(p, out->data + cut, end - cut);
    *p++ = ' ';
    p = put_name(p, x, s, "_bucket=", TAG_ESC);
    p = bg_fmt_put_u64(p, cum);
    p = put_time(p, x);
  }
  return p;
}

/* The lines of b appended to out. */
static int encode(const bg_batch *b, influx *x, bg_encode_opts *o, bg_buf *out) {
  size_t n = bg_batch_len(b);
  for (size_t i = 0; i < n; i++) {
    const bg_sample *s = bg_batch_at(b, i);
    if (s->type != BG_HISTOGRAM && !isfinite(s->value)) {
      o->skipped++;
      continue;
    }
    /* a bound for the series' lines: escaping at most doubles a string */
    size_t name = 2 * (x->plen + strlen(s->name)) + 16;
    size_t tags = 2 * bg__labels_bytes(s, &x->extra) + 2 * (size_t)(s->nlabels + x->extra.n);
    size_t line = 16 + name + tags + 3 * BG_NUMFMT_LEN + x->tslen;
    size_t bound = s->type == BG_HISTOGRAM
                       ? (size_t)(s->nbuckets + 3) * (line + name + 2 * BG_NUMFMT_LEN + 8)
                       : line;
    if (bg_buf_reserve(out, bound) != 0) return BG_ENOMEM;
    char *p = out->data + out->len;
    p = x->v2 ? put_v2(p, out, s, x, &o->skipped) : put_v1(p, s, x, &o->skipped);
    out->len = (size_t)(p - out->data);
    out->data[out->len] = '\0';
  }
  return 0;
}

int bg_encode_influx(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err, size_t errlen) {
  influx x;
  int rc = parse_flavor(&x, o->flavor, err, errlen);
  if (rc != 0) return rc;
  x.prefix = o->prefix ? o->prefix : "";
  x.plen = strlen(x.prefix);
  x.bounds = NULL;
  set_time(&x, bg_batch_time_ms(b));
  bg__extra_init(&x.extra, o, accept_extra);
  if (!x.gzip) return encode(b, &x, o, out);
  bg_buf text = {0};
  rc = encode(b, &x, o, &text);
  if (rc == 0 && text.len > 0) rc = bg_gzip(text.data, text.len, 0, out);
  bg_buf_free(&text);
  return rc;
}
