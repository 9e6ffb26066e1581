/* expo: the three renderers over bg_registry_walk. A family's metadata lines are written when
 * its first series is, so a family whose series were all removed vanishes. The text formats
 * copy each series' label set as the registry keeps it, already escaped (a histogram writes
 * it 15 times), and short decimals skip printf: render time is the /metrics budget. */
#include "metrics/expo.h"

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

/* Decimal digits of u into the end of buf; returns the start. */
static char *fmt_u64(char *end, uint64_t u) {
  *--end = '\0';
  do {
    *--end = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  return end;
}

/* m / 10^k as decimal text ending at end (k fraction digits). */
static char *fmt_fixed(char *end, uint64_t m, int k, int neg) {
  char *p = end;
  *--p = '\0';
  for (int i = 0; i < k; i++) {
    *--p = (char)('0' + m % 10);
    m /= 10;
  }
  if (k > 0) *--p = '.';
  do {
    *--p = (char)('0' + m % 10);
    m /= 10;
  } while (m);
  if (neg) *--p = '-';
  return p;
}

#ifdef __SIZEOF_INT128__
typedef unsigned __int128 u128;

/* The fewest decimals that read back as a, for 1e-5 <= a < 2^53 not an integer, or NULL.
 * a = m / 2^s exactly (m < 2^53, 1 <= s <= 69), so a * 10^k = m 10^k / 2^s is a ratio of
 * 128-bit integers (m 10^k < 2^127 for k <= 22) and the test is exact: the k-decimal number
 * d nearest to a reads back as a when it is within half a unit in the last place of a, on
 * the even side of a tie, and within a quarter below a power of two (whose lower neighbour
 * is nearer). The first k that passes gives the shortest text; 17 significant digits always
 * pass, so k stops by 21. */
static char *fmt_short(char *end, double a, int neg) {
  uint64_t bits;
  memcpy(&bits, &a, sizeof bits);
  uint64_t m = (bits & 0xfffffffffffffULL) | (1ULL << 52);
  int s = 1075 - (int)(bits >> 52);
  u128 pow = 1;
  for (int k = 1; k <= 22; k++) {
    pow *= 10;
    u128 n = (u128)m * pow;
    u128 d = (n + ((u128)1 << (s - 1))) >> s;
    u128 back = d << s;
    int below = back < n;
    u128 diff = below ? n - back : back - n;
    int ok = below && m == 1ULL << 52 ? 4 * diff <= pow
                                      : 2 * diff < pow || (2 * diff == pow && !(m & 1));
    if (ok) return fmt_fixed(end, (uint64_t)d, k, neg);
  }
  return NULL;
}
#endif

/* Shortest text that reads back as v: integers without exponent, Prometheus' spellings of
 * the infinities and NaN. buf holds at least 32 bytes. */
static const char *fmt_value(char *buf, size_t len, double v) {
  if (isnan(v)) return "NaN";
  if (isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == 0) return "0";
  double a = fabs(v);
  if (a < 9007199254740992.0 && (double)(uint64_t)a == a) {
    char *p = fmt_u64(buf + len, (uint64_t)a);
    if (v < 0) *--p = '-';
    return p;
  }
#ifdef __SIZEOF_INT128__
  /* What people record (67.5, 0.045, sums of short decimals, ratios) without printf. */
  if (a >= 1e-5 && a < 9007199254740992.0) {
    char *p = fmt_short(buf + len, a, v < 0);
    if (p) return p;
  }
#endif
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(buf, len, "%.*g", prec, v);
    if (prec == 17 || strtod(buf, NULL) == v) break;
  }
  return buf;
}

static void put(expo_state *st, const char *s, size_t n) {
  if (st->rc == 0) st->rc = bg_buf_append(st->out, s, n);
}

/* Appends without a capacity check: the caller reserved. */
static char *cat(char *p, const char *s, size_t n) {
  memcpy(p, s, n);
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

/* name suffix{labels[,le="le"]} value\n, with one capacity check. */
static void put_sample(expo_state *st, const char *suffix, size_t sl, const char *le,
                       const char *value) {
  size_t nl = st->namelen, vl = strlen(value);
  size_t ll = le ? strlen(le) : 0;
  if (st->rc || (st->rc = bg_buf_reserve(st->out, nl + sl + st->lablen + ll + vl + 16))) return;
  char *p = st->out->data + st->out->len;
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
  *p = '\0';
  st->out->len = (size_t)(p - st->out->data);
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

static void on_series_text(void *ud, const bg_family_view *f, const bg_series_view *s) {
  expo_state *st = ud;
  int om = st->format == BG_EXPO_OPENMETRICS;
  char num[64], le[64], created[64];
  if (st->pending) {
    st->pending = 0;
    put_header(st, f);
  }
  st->lab = s->labels;
  st->lablen = s->labels_len;
  const char *created_s = "";
  if (om) { /* seconds with milliseconds */
    double ms = nearbyint(s->created * 1000);
    created_s = ms >= 1 && ms < 9007199254740992.0
                    ? fmt_fixed(created + sizeof created, (uint64_t)ms, 3, 0)
                    : fmt_value(created, sizeof created, s->created);
  }
  if (f->type != BG_HISTOGRAM) {
    int counter = f->type == BG_COUNTER;
    put_sample(st, counter ? "_total" : "", counter ? 6 : 0, NULL,
               fmt_value(num, sizeof num, s->value));
    if (om && counter) put_sample(st, "_created", 8, NULL, created_s);
    return;
  }
  uint64_t cum = 0;
  for (int i = 0; i < f->nbuckets; i++) {
    cum += s->bucket_counts[i];
    put_sample(st, "_bucket", 7, fmt_value(le, sizeof le, f->buckets[i]),
               fmt_u64(num + sizeof num, cum));
  }
  const char *count = fmt_u64(num + sizeof num, s->count);
  put_sample(st, "_bucket", 7, "+Inf", count);
  if (om) { /* OpenMetrics orders count before sum; either order parses */
    put_sample(st, "_count", 6, NULL, count);
    put_sample(st, "_sum", 4, NULL, fmt_value(le, sizeof le, s->value));
    put_sample(st, "_created", 8, NULL, created_s);
  } else {
    put_sample(st, "_sum", 4, NULL, fmt_value(le, sizeof le, s->value));
    put_sample(st, "_count", 6, NULL, count);
  }
}

static int render_text(bg_registry *r, bg_buf *out, int format) {
  expo_state st = {.out = out, .format = format};
  /* An empty registry still yields a valid (empty) string. */
  st.rc = bg_buf_reserve(out, 0);
  if (st.rc == 0) out->data[out->len] = '\0';
  bg_registry_walk(r, on_family, on_series_text, &st);
  if (format == BG_EXPO_OPENMETRICS) puts_(&st, "# EOF\n");
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
    puts_(st, fmt_u64(num + sizeof num, s->count));
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
      puts_(st, fmt_u64(num + sizeof num, cum));
      puts_(st, "],");
    }
    puts_(st, "[\"+Inf\",");
    puts_(st, fmt_u64(num + sizeof num, s->count));
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
