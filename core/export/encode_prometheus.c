/* encode_prometheus: a batch as the Prometheus text format 0.0.4 without timestamps, what a
 * Pushgateway takes (it refuses pushed timestamps: the time of a pushed sample is the scrape's).
 *
 * As GET /metrics renders (core/metrics/expo.c): a family's "# HELP" and "# TYPE" once, before
 * its first series in the batch (a family's series are adjacent in a batch), then a line per
 * value; counters named with "_total"; a histogram as cumulative <name>_bucket{...,le="b"}
 * lines ending with le="+Inf", then <name>_sum and <name>_count. Label values escape
 * backslash, double quote and newline; HELP text backslash and newline; a family without help
 * says "Metric recorded by beagle." as /metrics does. NaN and the infinities are written
 * (NaN, +Inf, -Inf), so no sample is left out.
 *
 * opts->prefix goes before every name, made a valid name part ([A-Za-z0-9_:], anything else
 * "_", "_" before a leading digit). Extra labels (opts->labels; the series' own wins on the
 * same key) whose name is not a label name ([A-Za-z_][A-Za-z0-9_]*, not starting "__", not
 * "le") or whose value is not UTF-8 are left out and counted once per call in opts->skipped.
 * opts->flavor is not used. */
#include "export/encode_text.h"

#include <math.h>
#include <stdio.h>

#define MAX_PREFIX 256
#define DEFAULT_HELP "Metric recorded by beagle."

typedef struct prom {
  char prefix[MAX_PREFIX + 2];
  size_t plen;
  bg__extra extra;
  const char *family; /* the name of the family whose header is written */
  const double *bounds;
  char le[BG_METRICS_MAX_BUCKETS + 1][BG_NUMFMT_LEN + 8]; /* le="b"} */
  unsigned char lelen[BG_METRICS_MAX_BUCKETS + 1];
} prom;

static const char *const TYPE_NAMES[] = {"counter", "gauge", "histogram"};

static int name_char(unsigned char c, int first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
         (!first && c >= '0' && c <= '9');
}

static int accept_extra(const char *k, const char *v) {
  if (!name_char((unsigned char)k[0], 1) || k[0] == ':' || (k[0] == '_' && k[1] == '_')) return 0;
  for (const char *p = k + 1; *p; p++)
    if (!name_char((unsigned char)*p, 0) || *p == ':') return 0;
  return bg_utf8_valid(v);
}

/* s with backslash, newline and (quote) the double quote escaped; at most 2 strlen(s) bytes.
 * Runs without one are copied whole (strcspn is vectorised). */
static char *esc(char *p, const char *s, int quote) {
  const char *specials = quote ? "\\\n\"" : "\\\n";
  for (;;) {
    size_t n = strcspn(s, specials);
    p = bg__put(p, s, n);
    if (s[n] == '\0') return p;
    *p++ = '\\';
    *p++ = s[n] == '\n' ? 'n' : s[n];
    s += n + 1;
  }
}

static void set_prefix(prom *x, const char *prefix) {
  char *p = x->prefix;
  if (prefix != NULL && prefix[0] >= '0' && prefix[0] <= '9') *p++ = '_';
  for (const char *q = prefix ? prefix : ""; *q; q++)
    *p++ = name_char((unsigned char)*q, 0) ? *q : '_';
  x->plen = (size_t)(p - x->prefix);
}

static void set_bounds(prom *x, const bg_sample *s) {
  if (x->bounds == s->bounds && s->bounds != NULL) return;
  x->bounds = s->bounds;
  for (int i = 0; i <= s->nbuckets; i++) {
    char *p = bg__put(x->le[i], "le=\"", 4);
    p = bg_fmt_put_double(p, i < s->nbuckets ? s->bounds[i] : INFINITY);
    p = bg__put(p, "\"}", 2);
    x->lelen[i] = (unsigned char)(p - x->le[i]);
  }
}

static char *put_name(char *p, const prom *x, const bg_sample *s, const char *suffix, size_t n) {
  p = bg__put(p, x->prefix, x->plen);
  p = bg__put(p, s->name, strlen(s->name));
  return bg__put(p, suffix, n);
}

/* k1="v1",k2="v2" (no braces). */
static char *put_labels(char *p, const bg_sample *s, const prom *x) {
  bg__labels m;
  bg__labels_start(&m, s, &x->extra);
  const char *k, *v;
  int first = 1;
  while (bg__labels_next(&m, &k, &v)) {
    if (!first) *p++ = ',';
    first = 0;
    p = bg__put(p, k, strlen(k));
    p = bg__put(p, "=\"", 2);
    p = esc(p, v, 1);
    *p++ = '"';
  }
  return p;
}

static char *put_header(char *p, const prom *x, const bg_sample *s) {
  const char *suffix = s->type == BG_COUNTER ? "_total" : "";
  size_t sl = strlen(suffix);
  p = put_name(bg__put(p, "# HELP ", 7), x, s, suffix, sl);
  *p++ = ' ';
  p = esc(p, s->help[0] ? s->help : DEFAULT_HELP, 0);
  p = put_name(bg__put(p, "\n# TYPE ", 8), x, s, suffix, sl);
  *p++ = ' ';
  const char *t = TYPE_NAMES[s->type >= 0 && s->type < 3 ? s->type : 1];
  p = bg__put(p, t, strlen(t));
  *p++ = '\n';
  return p;
}

/* " <v>\n" */
static char *put_value(char *p, double v) {
  *p++ = ' ';
  p = bg_fmt_put_double(p, v);
  *p++ = '\n';
  return p;
}

static char *put_count(char *p, uint64_t v) {
  *p++ = ' ';
  p = bg_fmt_put_u64(p, v);
  *p++ = '\n';
  return p;
}

/* One series; its labels are written once and copied from out->data for a histogram's
 * other lines. */
static char *put_series(char *p, bg_buf *out, const bg_sample *s, prom *x) {
  if (s->type != BG_HISTOGRAM) {
    p = put_name(p, x, s, s->type == BG_COUNTER ? "_total" : "", s->type == BG_COUNTER ? 6 : 0);
    if (s->nlabels + x->extra.n > 0) {
      *p++ = '{';
      p = put_labels(p, s, x);
      *p++ = '}';
    }
    return put_value(p, s->value);
  }
  set_bounds(x, s);
  size_t l0 = 0, l1 = 0;
  uint64_t cum = 0;
  for (int i = 0; i <= s->nbuckets; i++) {
    cum += s->bucket_counts[i];
    p = put_name(p, x, s, "_bucket{", 8);
    if (i == 0) {
      l0 = (size_t)(p - out->data);
      p = put_labels(p, s, x);
      l1 = (size_t)(p - out->data);
    } else {
      p = bg__put(p, out->data + l0, l1 - l0);
    }
    if (l1 > l0) *p++ = ',';
    p = bg__put(p, x->le[i], x->lelen[i]);
    p = put_count(p, cum);
  }
  static const char *const tails[] = {"_sum", "_count"};
  for (int t = 0; t < 2; t++) {
    p = put_name(p, x, s, tails[t], strlen(tails[t]));
    if (l1 > l0) {
      *p++ = '{';
      p = bg__put(p, out->data + l0, l1 - l0);
      *p++ = '}';
    }
    p = t == 0 ? put_value(p, s->value) : put_count(p, s->count);
  }
  return p;
}

int bg_encode_prometheus(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err,
                         size_t errlen) {
  prom x;
  if (o->prefix != NULL && strlen(o->prefix) > MAX_PREFIX)
    return bg__encode_fail(err, errlen, "prefix: over 256 bytes");
  set_prefix(&x, o->prefix);
  x.family = NULL;
  x.bounds = NULL;
  bg__extra_init(&x.extra, o, accept_extra);
  size_t n = bg_batch_len(b);
  for (size_t i = 0; i < n; i++) {
    const bg_sample *s = bg_batch_at(b, i);
    size_t name = x.plen + strlen(s->name) + 16;
    size_t labels = 2 * bg__labels_bytes(s, &x.extra) + 4 * (size_t)(s->nlabels + x.extra.n);
    size_t line = name + labels + 2 * BG_NUMFMT_LEN + 16;
    size_t bound = s->type == BG_HISTOGRAM ? (size_t)(s->nbuckets + 3) * line : line;
    int header = s->name != x.family;
    if (header) bound += 2 * (name + 16) + 2 * strlen(s->help) + sizeof DEFAULT_HELP;
    if (bg_buf_reserve(out, bound) != 0) return BG_ENOMEM;
    char *p = out->data + out->len;
    if (header) p = put_header(p, &x, s);
    x.family = s->name;
    p = put_series(p, out, s, &x);
    out->len = (size_t)(p - out->data);
    out->data[out->len] = '\0';
  }
  return 0;
}
