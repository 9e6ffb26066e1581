/* expo: the three renderers over bg_registry_walk. A family's metadata lines are written when
 * its first series is, so a family whose series were all removed vanishes. The text formats
 * copy each series' label set as the registry keeps it, already escaped (a histogram writes
 * it 15 times), and short decimals skip printf: render time is the /metrics budget. */
#include "metrics/expo.h"

#include "base/numfmt.h"
#include "trace/trace.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

/* promtool wants HELP on every family; this is what a family created without one says. */
#define DEFAULT_HELP "Metric recorded by beagle."

typedef struct expo_state {
  bg_buf *out;
  const char *lab; /* the current series' escaped labels, without braces */
  size_t lablen;
  size_t namelen; /* of fam.name */
  /* the text formats: a 0.0.4 counter's or gauge's sample name (fast set when it fits), the
   * family's le="..." values, formatted once for all its series */
  char pre[256];
  size_t prelen;
  int fast;
  char le[BG_METRICS_MAX_BUCKETS][32];
  const char *lep[BG_METRICS_MAX_BUCKETS];
  size_t lel[BG_METRICS_MAX_BUCKETS];
  int rc;
  int format;
  int pending; /* family header not written yet */
  int nfam;    /* families written (JSON commas) */
  int nser;    /* series written in this family (JSON commas) */
  bg_family_view fam;
  bg_expo_json_extra extra;
  void *ud;
} expo_state;

static const char *const type_names[] = {"counter", "gauge", "histogram"};

static const char *fmt_value(char *buf, size_t len, double v) {
  size_t n;
  return bg_fmt_value_n(buf, len, v, &n);
}

static void put(expo_state *st, const char *s, size_t n) {
  if (st->rc == 0) st->rc = bg_buf_append(st->out, s, n);
}

/* Appends without a capacity check: the caller reserved. Names, label sets and values are
 * short: they move in 16-byte pieces, the last one overlapping, without a call. */
static inline char *cat(char *p, const char *s, size_t n) {
  if (n >= 16) {
    if (n > 128) return (char *)memcpy(p, s, n) + n;
    for (size_t i = 0; i + 16 < n; i += 16)
      memcpy(p + i, s + i, 16);
    memcpy(p + n - 16, s + n - 16, 16);
  } else if (n >= 8) {
    memcpy(p, s, 8);
    memcpy(p + n - 8, s + n - 8, 8);
  } else if (n >= 4) {
    memcpy(p, s, 4);
    memcpy(p + n - 4, s + n - 4, 4);
  } else {
    for (size_t i = 0; i < n; i++)
      p[i] = s[i];
  }
  return p + n;
}

static void puts_(expo_state *st, const char *s) {
  put(st, s, strlen(s));
}

/* Escapes backslash and newline and, when quote is set, the double quote (label values;
 * OpenMetrics HELP). */
static int append_escaped(bg_buf *b, const char *s, int quote) {
  const char *specials = quote ? "\\\n\"" : "\\\n";
  int rc = 0;
  for (;;) {
    size_t n = strcspn(s, specials);
    rc |= bg_buf_append(b, s, n);
    s += n;
    if (*s == '\0') break;
    rc |= bg_buf_append(b, *s == '\n' ? "\\n" : *s == '"' ? "\\\"" : "\\\\", 2);
    s++;
  }
  return rc ? BG_ENOMEM : 0;
}

static void put_escaped(expo_state *st, const char *s, int quote) {
  if (st->rc == 0) st->rc = append_escaped(st->out, s, quote);
}

/* name suffix{labels[,le="le"]} value\n, with one capacity check. Not NUL-terminated:
 * render_text ends the text once. */
static void put_sample(expo_state *st, const char *suffix, size_t sl, const char *le, size_t ll,
                       const char *value, size_t vl) {
  bg_buf *b = st->out;
  size_t nl = st->namelen, need = nl + sl + st->lablen + ll + vl + 16;
  if (st->rc || (b->cap - b->len <= need && (st->rc = bg_buf_reserve(b, need)))) return;
  char *p = b->data + b->len;
  p = cat(p, st->fam.name, nl);
  p = cat(p, suffix, sl);
  if (st->lablen || le) {
    *p++ = '{';
    p = cat(p, st->lab, st->lablen);
    if (le) {
      if (st->lablen) *p++ = ',';
      p = cat(p, "le=\"", 4);
      p = cat(p, le, ll);
      *p++ = '"';
    }
    *p++ = '}';
  }
  *p++ = ' ';
  p = cat(p, value, vl);
  *p++ = '\n';
  b->len = (size_t)(p - b->data);
}

static void on_family(void *ud, const bg_family_view *f) {
  expo_state *st = ud;
  st->fam = *f;
  st->namelen = strlen(f->name);
  st->pending = 1;
}

/* The OpenMetrics unit a name ends in, or NULL. */
static const char *unit_of(const char *name) {
  static const char *const units[] = {"seconds", "bytes",  "ratio", "meters", "volts",
                                      "amperes", "joules", "grams", "celsius"};
  size_t n = strlen(name);
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    size_t ul = strlen(units[i]);
    if (n > ul + 1 && name[n - ul - 1] == '_' && strcmp(name + n - ul, units[i]) == 0)
      return units[i];
  }
  return NULL;
}

static void put_header(expo_state *st, const bg_family_view *f) {
  const char *help = f->help && f->help[0] ? f->help : DEFAULT_HELP;
  if (st->format == BG_EXPO_OPENMETRICS) {
    const char *unit = unit_of(f->name);
    puts_(st, "# TYPE ");
    puts_(st, f->name);
    puts_(st, " ");
    puts_(st, type_names[f->type]);
    if (unit) {
      puts_(st, "\n# UNIT ");
      puts_(st, f->name);
      puts_(st, " ");
      puts_(st, unit);
    }
    puts_(st, "\n# HELP ");
    puts_(st, f->name);
    puts_(st, " ");
    put_escaped(st, help, 1);
    puts_(st, "\n");
    return;
  }
  /* In 0.0.4 the family is named as its samples are: a counter's with _total. */
  const char *fsuffix = f->type == BG_COUNTER ? "_total" : "";
  puts_(st, "# HELP ");
  puts_(st, f->name);
  puts_(st, fsuffix);
  puts_(st, " ");
  put_escaped(st, help, 0);
  puts_(st, "\n# TYPE ");
  puts_(st, f->name);
  puts_(st, fsuffix);
  puts_(st, " ");
  puts_(st, type_names[f->type]);
  puts_(st, "\n");
}

/* A family's first series: its header, what its samples share. */
__attribute__((noinline)) static void family_start(expo_state *st, const bg_family_view *f) {
  st->pending = 0;
  put_header(st, f);
  for (int i = 0; i < f->nbuckets && i < BG_METRICS_MAX_BUCKETS; i++)
    st->lep[i] = bg_fmt_value_n(st->le[i], sizeof st->le[i], f->buckets[i], &st->lel[i]);
  const char *suffix = f->type == BG_COUNTER ? "_total" : "";
  size_t sl = strlen(suffix);
  st->fast = st->format == BG_EXPO_PROMETHEUS && f->type != BG_HISTOGRAM &&
             st->namelen + sl < sizeof st->pre;
  if (st->fast) {
    memcpy(st->pre, f->name, st->namelen);
    memcpy(st->pre + st->namelen, suffix, sl);
    st->prelen = st->namelen + sl;
  }
}

/* OpenMetrics only: the bucket line just written gets its exemplar, if it has one:
 * ` # {trace_id="...",span_id="..."} value timestamp` before its newline. The label set is 63
 * characters, inside the spec's 128. */
static void put_exemplar(expo_state *st, const bg_exemplar *e) {
  if (e->time == 0 || st->rc != 0) return;
  /* plain memcpy here, not cat: this is off the hot path, and cat's overlapping 16-byte moves
   * into a small buffer are more than GCC can bound */
  char buf[192], num[64], ts[64];
  size_t n, tn, k = 0;
  memcpy(buf, " # {trace_id=\"", 14);
  k = 14;
  bg_trace_hex(e->trace_id, sizeof e->trace_id, buf + k);
  k += 2 * sizeof e->trace_id;
  memcpy(buf + k, "\",span_id=\"", 11);
  k += 11;
  bg_trace_hex(e->span_id, sizeof e->span_id, buf + k);
  k += 2 * sizeof e->span_id;
  memcpy(buf + k, "\"} ", 3);
  k += 3;
  const char *v = bg_fmt_value_n(num, sizeof num, e->value, &n);
  double ms = nearbyint(e->time * 1000);
  const char *t;
  if (ms >= 1 && ms < 9007199254740992.0) {
    t = bg_fmt_fixed(ts + sizeof ts, (uint64_t)ms, 3, 0);
    tn = strlen(t);
  } else {
    t = bg_fmt_value_n(ts, sizeof ts, e->time, &tn);
  }
  if (k + n + tn + 2 > sizeof buf) return; /* cannot happen: both are under 32 */
  memcpy(buf + k, v, n);
  k += n;
  buf[k++] = ' ';
  memcpy(buf + k, t, tn);
  k += tn;
  buf[k++] = '\n';
  st->out->len--; /* the bucket line's newline */
  put(st, buf, k);
}

/* Every sample of a series but a 0.0.4 counter's or gauge's (on_series_text's own). */
__attribute__((noinline)) static void series_text(expo_state *st, const bg_family_view *f,
                                                  const bg_series_view *s) {
  int om = st->format == BG_EXPO_OPENMETRICS;
  char num[64], sum[64], created[64];
  size_t nn, cl = 0;
  st->lab = s->labels;
  st->lablen = s->labels_len;
  const char *created_s = "";
  if (om) { /* seconds with milliseconds */
    double ms = nearbyint(s->created * 1000);
    if (ms >= 1 && ms < 9007199254740992.0) {
      created_s = bg_fmt_fixed(created + sizeof created, (uint64_t)ms, 3, 0);
      cl = strlen(created_s);
    } else {
      created_s = bg_fmt_value_n(created, sizeof created, s->created, &cl);
    }
  }
  if (f->type != BG_HISTOGRAM) {
    int counter = f->type == BG_COUNTER;
    const char *v = bg_fmt_value_n(num, sizeof num, s->value, &nn);
    put_sample(st, counter ? "_total" : "", counter ? 6 : 0, NULL, 0, v, nn);
    if (om && counter) put_sample(st, "_created", 8, NULL, 0, created_s, cl);
    return;
  }
  const bg_exemplar *ex = om ? s->exemplars : NULL; /* never in 0.0.4 */
  uint64_t cum = 0;
  for (int i = 0; i < f->nbuckets; i++) {
    cum += s->bucket_counts[i];
    const char *c = bg_fmt_u64(num + sizeof num, cum);
    put_sample(st, "_bucket", 7, st->lep[i], st->lel[i], c, (size_t)(num + sizeof num - 1 - c));
    if (ex != NULL) put_exemplar(st, &ex[i]);
  }
  const char *count = bg_fmt_u64(num + sizeof num, s->count);
  size_t countl = (size_t)(num + sizeof num - 1 - count), suml;
  const char *sum_s = bg_fmt_value_n(sum, sizeof sum, s->value, &suml);
  put_sample(st, "_bucket", 7, "+Inf", 4, count, countl);
  if (ex != NULL) put_exemplar(st, &ex[f->nbuckets]);
  if (om) { /* OpenMetrics orders count before sum; either order parses */
    put_sample(st, "_count", 6, NULL, 0, count, countl);
    put_sample(st, "_sum", 4, NULL, 0, sum_s, suml);
    put_sample(st, "_created", 8, NULL, 0, created_s, cl);
  } else {
    put_sample(st, "_sum", 4, NULL, 0, sum_s, suml);
    put_sample(st, "_count", 6, NULL, 0, count, countl);
  }
}

/* Most of a scrape: a counter's or gauge's one line in 0.0.4, name{labels} value, with one
 * capacity check and the copies inline. */
static void on_series_text(void *ud, const bg_family_view *f, const bg_series_view *s) {
  expo_state *st = ud;
  if (st->pending) family_start(st, f);
  if (!st->fast) {
    series_text(st, f, s);
    return;
  }
  char num[32];
  size_t vl;
  const char *v = bg_fmt_value_n(num, sizeof num, s->value, &vl);
  bg_buf *b = st->out;
  size_t need = st->prelen + s->labels_len + vl + 4;
  if (st->rc || (b->cap - b->len <= need && (st->rc = bg_buf_reserve(b, need)))) return;
  char *p = cat(b->data + b->len, st->pre, st->prelen);
  if (s->labels_len) {
    *p++ = '{';
    p = cat(p, s->labels, s->labels_len);
    *p++ = '}';
  }
  *p++ = ' ';
  p = cat(p, v, vl);
  *p++ = '\n';
  b->len = (size_t)(p - b->data);
}

static int render_text(bg_registry *r, bg_buf *out, int format) {
  expo_state st = {.out = out, .format = format};
  /* An empty registry still yields a valid (empty) string. */
  st.rc = bg_buf_reserve(out, 0);
  bg_registry_walk_text(r, on_family, on_series_text, &st);
  if (format == BG_EXPO_OPENMETRICS) puts_(&st, "# EOF\n");
  /* the samples are not terminated one by one; reserve always leaves the byte */
  if (out->data) out->data[out->len] = '\0';
  return st.rc;
}

int bg_expo_prometheus(bg_registry *r, bg_buf *out) {
  return render_text(r, out, BG_EXPO_PROMETHEUS);
}

int bg_expo_openmetrics(bg_registry *r, bg_buf *out) {
  return render_text(r, out, BG_EXPO_OPENMETRICS);
}

/* JSON */

static void put_json_str(expo_state *st, const char *s) {
  puts_(st, "\"");
  if (st->rc == 0) st->rc = bg_buf_json_str(st->out, s, strlen(s));
  puts_(st, "\"");
}

static void put_json_num(expo_state *st, double v) {
  char num[64];
  puts_(st, isfinite(v) ? fmt_value(num, sizeof num, v) : "null");
}

static void put_json_field(expo_state *st, const char *key, double v) {
  puts_(st, ",\"");
  puts_(st, key);
  puts_(st, "\":");
  put_json_num(st, v);
}

static void on_series_json(void *ud, const bg_family_view *f, const bg_series_view *s) {
  expo_state *st = ud;
  if (st->pending) {
    st->pending = 0;
    st->nser = 0;
    if (st->nfam++) puts_(st, "]},");
    puts_(st, "{\"name\":");
    put_json_str(st, f->name);
    puts_(st, ",\"type\":\"");
    puts_(st, type_names[f->type]);
    puts_(st, "\",\"help\":");
    if (f->help && f->help[0])
      put_json_str(st, f->help);
    else
      puts_(st, "null");
    puts_(st, ",\"series\":[");
  }
  if (st->nser++) puts_(st, ",");
  puts_(st, "{\"labels\":{");
  for (int i = 0; i < s->nlabels; i++) {
    if (i) puts_(st, ",");
    put_json_str(st, s->kv[2 * i]);
    puts_(st, ":");
    put_json_str(st, s->kv[2 * i + 1]);
  }
  puts_(st, "}");
  if (f->type != BG_HISTOGRAM) {
    put_json_field(st, "value", s->value);
  } else {
    char num[32];
    puts_(st, ",\"count\":");
    puts_(st, bg_fmt_u64(num + sizeof num, s->count));
    put_json_field(st, "sum", s->value);
    put_json_field(st, "min", s->sketch ? bg_sketch_min(s->sketch) : NAN);
    put_json_field(st, "max", s->sketch ? bg_sketch_max(s->sketch) : NAN);
    put_json_field(st, "mean", s->count ? s->value / (double)s->count : NAN);
    static const struct {
      const char *key;
      double q;
    } ps[] = {{"p50", 0.5}, {"p90", 0.9}, {"p95", 0.95}, {"p99", 0.99}};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++)
      put_json_field(st, ps[i].key, s->sketch ? bg_sketch_quantile(s->sketch, ps[i].q) : NAN);
    puts_(st, ",\"buckets\":[");
    uint64_t cum = 0;
    for (int i = 0; i < f->nbuckets; i++) {
      cum += s->bucket_counts[i];
      puts_(st, "[");
      put_json_num(st, f->buckets[i]);
      puts_(st, ",");
      puts_(st, bg_fmt_u64(num + sizeof num, cum));
      puts_(st, "],");
    }
    puts_(st, "[\"+Inf\",");
    puts_(st, bg_fmt_u64(num + sizeof num, s->count));
    puts_(st, "]]");
  }
  if (st->extra && st->rc == 0) st->rc = st->extra(st->ud, f, s, st->out);
  puts_(st, "}");
}

int bg_expo_json(bg_registry *r, bg_buf *out, bg_expo_json_extra extra, void *ud) {
  expo_state st = {.out = out, .format = BG_EXPO_JSON, .extra = extra, .ud = ud};
  puts_(&st, "{\"metrics\":[");
  bg_registry_walk(r, on_family, on_series_json, &st);
  puts_(&st, st.nfam ? "]}]}" : "]}");
  return st.rc;
}

int bg_expo_render(bg_registry *r, int format, bg_buf *out) {
  switch (format) {
  case BG_EXPO_PROMETHEUS:
  case BG_EXPO_OPENMETRICS:
    return render_text(r, out, format);
  case BG_EXPO_JSON:
    return bg_expo_json(r, out, NULL, NULL);
  default:
    return BG_EINVAL;
  }
}

const char *bg_expo_content_type(int format) {
  switch (format) {
  case BG_EXPO_OPENMETRICS:
    return BG_OPENMETRICS_CONTENT_TYPE;
  case BG_EXPO_JSON:
    return BG_JSON_CONTENT_TYPE;
  default:
    return BG_PROM_CONTENT_TYPE;
  }
}

/* Header parsing */

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t'))
    p++;
  return p;
}

/* Splits one list element [p, end) into its token (trimmed) and q (1 when absent). */
static double parse_element(const char *p, const char *end, const char **tok, size_t *toklen) {
  p = skip_ws(p, end);
  const char *t = p;
  while (p < end && *p != ';')
    p++;
  const char *te = p;
  while (te > t && (te[-1] == ' ' || te[-1] == '\t'))
    te--;
  *tok = t;
  *toklen = (size_t)(te - t);
  double q = 1;
  while (p < end) { /* at ';' */
    p = skip_ws(p + 1, end);
    if (end - p >= 2 && (p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
      char buf[16];
      size_t n = 0;
      for (p += 2; p < end && *p != ';' && n < sizeof buf - 1; p++)
        buf[n++] = *p;
      buf[n] = '\0';
      q = strtod(buf, NULL);
      if (!(q >= 0 && q <= 1)) q = 0;
    }
    while (p < end && *p != ';')
      p++;
  }
  return q;
}

static int token_is(const char *tok, size_t n, const char *want) {
  return n == strlen(want) && strncasecmp(tok, want, n) == 0;
}

int bg_expo_negotiate(const char *accept) {
  int best = BG_EXPO_PROMETHEUS;
  double best_q = 0;
  if (accept == NULL) return best;
  const char *p = accept;
  while (*p) {
    const char *end = strchr(p, ',');
    if (end == NULL) end = p + strlen(p);
    const char *tok;
    size_t n;
    double q = parse_element(p, end, &tok, &n);
    int fmt = -1;
    if (token_is(tok, n, "application/openmetrics-text"))
      fmt = BG_EXPO_OPENMETRICS;
    else if (token_is(tok, n, "application/json"))
      fmt = BG_EXPO_JSON;
    else if (token_is(tok, n, "text/plain") || token_is(tok, n, "*/*") ||
             token_is(tok, n, "text/*"))
      fmt = BG_EXPO_PROMETHEUS;
    if (fmt >= 0 && q > best_q) {
      best = fmt;
      best_q = q;
    }
    p = *end ? end + 1 : end;
  }
  return best;
}

int bg_expo_accepts_gzip(const char *accept_encoding) {
  if (accept_encoding == NULL) return 0;
  const char *p = accept_encoding;
  while (*p) {
    const char *end = strchr(p, ',');
    if (end == NULL) end = p + strlen(p);
    const char *tok;
    size_t n;
    double q = parse_element(p, end, &tok, &n);
    if ((token_is(tok, n, "gzip") || token_is(tok, n, "x-gzip") || token_is(tok, n, "*")) && q > 0)
      return 1;
    p = *end ? end + 1 : end;
  }
  return 0;
}

/* gzip */

int bg_gzip(const void *in, size_t n, int level, bg_buf *out) {
  z_stream zs;
  memset(&zs, 0, sizeof zs);
  if (level <= 0 || level > 9) level = Z_DEFAULT_COMPRESSION;
  /* windowBits 15 + 16: a gzip header and trailer instead of zlib's. */
  if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return BG_ENOMEM;
  int rc = 0;
  zs.next_in = (Bytef *)(uintptr_t)in;
  size_t left = n;
  for (;;) {
    /* zlib counts in uInt: feed at most 1 GiB at a time. */
    if (zs.avail_in == 0 && left > 0) {
      zs.avail_in = left > (1u << 30) ? (1u << 30) : (uInt)left;
      left -= zs.avail_in;
    }
    size_t room = deflateBound(&zs, zs.avail_in) + 64;
    if (bg_buf_reserve(out, room) != 0) {
      rc = BG_ENOMEM;
      break;
    }
    zs.next_out = (Bytef *)out->data + out->len;
    zs.avail_out = (uInt)(out->cap - out->len - 1);
    int zr = deflate(&zs, left ? Z_NO_FLUSH : Z_FINISH);
    out->len = (size_t)((char *)zs.next_out - out->data);
    out->data[out->len] = '\0';
    if (zr == Z_STREAM_END) break;
    if (zr != Z_OK && zr != Z_BUF_ERROR) {
      rc = BG_EIO;
      break;
    }
  }
  deflateEnd(&zs);
  return rc;
}

/* FFI */

char *bg_expo_render_string(bg_registry *r, int format, size_t *len) {
  bg_buf b = {0};
  if (r == NULL) r = bg_registry_default();
  if (bg_expo_render(r, format, &b) != 0 || bg_buf_reserve(&b, 0) != 0) {
    bg_buf_free(&b);
    return NULL;
  }
  if (len) *len = b.len;
  return b.data;
}

char *bg_expo_prometheus_string(bg_registry *r, size_t *len) {
  return bg_expo_render_string(r, BG_EXPO_PROMETHEUS, len);
}

char *bg_gzip_string(const char *in, size_t n, int level, size_t *len) {
  bg_buf b = {0};
  if (bg_gzip(in, n, level, &b) != 0 || bg_buf_reserve(&b, 0) != 0) {
    bg_buf_free(&b);
    return NULL;
  }
  if (len) *len = b.len;
  return b.data;
}

void bg_expo_free(void *p) {
  free(p);
}
