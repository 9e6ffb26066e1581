/* statsd: the sink, a line parser over borrowed bytes plus an open-addressing cache (raw
 * name, type and tag bytes -> series handle) that makes a known line cost a hash, a compare
 * and one registry call. Only a cache miss allocates. The sets' distinct counts are in
 * statsd_set.c, the sockets around it in statsd_net.c. */
#define _GNU_SOURCE
#include "metrics/statsd_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE_LIMIT (16u << 20)

enum { K_C, K_G, K_MS, K_H, K_D, K_S };
enum { LINE_OK, LINE_BAD, LINE_IGNORED };

typedef struct centry {
  uint64_t hash; /* 0 = empty slot */
  char *key;     /* name bytes then tag bytes; the type is `kind` */
  uint32_t nlen, glen;
  int kind;
  bg_series *s;
  bg__statsd_set *set;
} centry;

struct bg_statsd_sink {
  bg_registry *reg;
  centry *cache;
  size_t ccap, cn, max_cache;
  bg__statsd_sets sets;
  size_t max_line;
  char *scratch; /* NUL-terminated name and labels for bg_series_get on a miss */
  size_t scratch_len;
  bg_statsd_stats st;
  uint64_t synced_packets, synced_lines, synced_bad;
  bg_series *c_packets, *c_lines, *c_bad;
  char err[200];
};

/* ---------------------------------------------------------------- hashing */

/* ---------------------------------------------------------------- numbers */

static const double pow10tab[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                  1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};

/* Parses a finite decimal number spanning exactly [p, p+n). Plain integers and decimals of up
 * to 15 digits take the fast path: m and 10^frac are exact doubles, so one division is
 * correctly rounded, the same result as strtod. Anything else goes to strtod; nan, inf and hex
 * are refused. */
static int parse_num(const char *p, size_t n, double *out) {
  const char *q = p, *e = p + n;
  int neg = 0, digits = 0, frac = 0;
  uint64_t m = 0;
  if (q < e && (*q == '+' || *q == '-')) neg = *q++ == '-';
  while (q < e && (unsigned)(*q - '0') < 10) {
    m = m * 10 + (uint64_t)(*q++ - '0');
    digits++;
  }
  if (q < e && *q == '.') {
    q++;
    while (q < e && (unsigned)(*q - '0') < 10) {
      m = m * 10 + (uint64_t)(*q++ - '0');
      digits++;
      frac++;
    }
  }
  if (q == e && digits > 0 && digits <= 15) {
    double v = (double)m;
    if (frac) v /= pow10tab[frac];
    *out = neg ? -v : v;
    return 0;
  }
  if (digits == 0 || n >= 64) return -1;
  char tmp[64];
  for (size_t i = 0; i < n; i++) {
    char c = p[i];
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'))
      return -1;
    tmp[i] = c;
  }
  tmp[n] = '\0';
  char *end;
  double v = strtod(tmp, &end);
  if (end != tmp + n || !isfinite(v)) return -1;
  *out = v;
  return 0;
}

/* ---------------------------------------------------------------- errors and counters */

__attribute__((format(printf, 2, 3))) static int bad(bg_statsd_sink *k, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(k->err, sizeof k->err, fmt, ap);
  va_end(ap);
  return LINE_BAD;
}

/* Mirrors the C counters into the registry once per packet rather than once per line. */
static void sync_counters(bg_statsd_sink *k) {
  bg_counter_add(k->c_packets, (double)(k->st.packets - k->synced_packets));
  bg_counter_add(k->c_lines, (double)(k->st.lines - k->synced_lines));
  if (k->st.bad_lines != k->synced_bad)
    bg_counter_add(k->c_bad, (double)(k->st.bad_lines - k->synced_bad));
  k->synced_packets = k->st.packets;
  k->synced_lines = k->st.lines;
  k->synced_bad = k->st.bad_lines;
}

/* ---------------------------------------------------------------- the cache */

static void cache_clear(bg_statsd_sink *k) {
  for (size_t i = 0; i < k->ccap; i++) {
    free(k->cache[i].key);
    memset(&k->cache[i], 0, sizeof k->cache[i]);
  }
  k->cn = 0;
}

static int cache_grow(bg_statsd_sink *k) {
  size_t ncap = k->ccap ? k->ccap * 2 : 256;
  centry *nt = calloc(ncap, sizeof *nt);
  if (nt == NULL) return BG_ENOMEM;
  for (size_t i = 0; i < k->ccap; i++) {
    if (k->cache[i].hash == 0) continue;
    size_t j = k->cache[i].hash & (ncap - 1);
    while (nt[j].hash)
      j = (j + 1) & (ncap - 1);
    nt[j] = k->cache[i];
  }
  free(k->cache);
  k->cache = nt;
  k->ccap = ncap;
  return 0;
}

static const int kind_types[] = {BG_COUNTER,   BG_GAUGE,     BG_HISTOGRAM,
                                 BG_HISTOGRAM, BG_HISTOGRAM, BG_GAUGE};

/* Copies tag key bytes with '.' and '-' mapped to '_'. */
static char *put_key(char *d, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    d[i] = s[i] == '.' || s[i] == '-' ? '_' : s[i];
  d[n] = '\0';
  return d + n + 1;
}

/* A line whose key is not cached: resolves the series through the registry (which validates
 * the name and labels) and caches it. Returns NULL with k->err set when the line is bad. */
static centry *cache_miss(bg_statsd_sink *k, uint64_t h, int kind, const char *name, size_t nlen,
                          const char *tags, size_t glen) {
  if (memchr(name, '\0', nlen) || (glen && memchr(tags, '\0', glen))) {
    bad(k, "NUL byte in the name or tags");
    return NULL;
  }
  if (nlen > 6 && memcmp(name, "beagle", 6) == 0 &&
      (name[6] == '_' || name[6] == '.' || name[6] == '-')) {
    bad(k, "%.*s: beagle_* names are reserved for the agent's own metrics",
        (int)(nlen > 64 ? 64 : nlen), name);
    return NULL;
  }
  char *d = k->scratch;
  const char *kv[2 * BG_METRICS_MAX_LABELS];
  int nl = 0;
  memcpy(d, name, nlen);
  d[nlen] = '\0';
  const char *mname = d;
  d += nlen;
  static const char sfx[] = "seconds";
  if (kind == K_MS && !(nlen >= 7 && memcmp(name + nlen - 7, sfx, 7) == 0)) {
    memcpy(d, "_seconds", 9);
    d += 8;
  }
  d++;
  const char *g = tags, *ge = tags + glen;
  while (g < ge) {
    const char *comma = memchr(g, ',', (size_t)(ge - g));
    const char *te = comma ? comma : ge;
    if (te > g) {
      if (nl == BG_METRICS_MAX_LABELS) {
        bad(k, "%.64s: more than %d tags", mname, BG_METRICS_MAX_LABELS);
        return NULL;
      }
      const char *colon = memchr(g, ':', (size_t)(te - g));
      kv[2 * nl] = d;
      d = put_key(d, g, (size_t)((colon ? colon : te) - g));
      kv[2 * nl + 1] = d;
      if (colon) {
        memcpy(d, colon + 1, (size_t)(te - colon - 1));
        d += te - colon - 1;
      } else {
        memcpy(d, "true", 4);
        d += 4;
      }
      *d++ = '\0';
      nl++;
    }
    g = te + 1;
  }
  char rerr[sizeof k->err - 8];
  bg_series *s =
      bg_series_get(k->reg, kind_types[kind], mname, NULL, kv, nl, NULL, 0, rerr, sizeof rerr);
  if (s == NULL) {
    bad(k, "%s", rerr);
    return NULL;
  }
  bg__statsd_set *st = NULL;
  if (kind == K_S && (st = bg__statsd_set_get(&k->sets, s)) == NULL) {
    bad(k, "out of memory");
    return NULL;
  }
  if (k->cn >= k->max_cache) cache_clear(k); /* handles stay valid; they are just looked up again */
  if ((k->cn + 1) * 2 > k->ccap && cache_grow(k) != 0) {
    bad(k, "out of memory");
    return NULL;
  }
  char *key = malloc(nlen + glen + 1);
  if (key == NULL) {
    bad(k, "out of memory");
    return NULL;
  }
  memcpy(key, name, nlen);
  memcpy(key + nlen, tags, glen);
  size_t j = h & (k->ccap - 1);
  while (k->cache[j].hash)
    j = (j + 1) & (k->ccap - 1);
  centry *c = &k->cache[j];
  *c = (centry){h, key, (uint32_t)nlen, (uint32_t)glen, kind, s, st};
  k->cn++;
  return c;
}

/* ---------------------------------------------------------------- lines */

static int parse_kind(const char *t, size_t n) {
  if (n == 1) {
    switch (t[0]) {
    case 'c':
      return K_C;
    case 'g':
      return K_G;
    case 'h':
      return K_H;
    case 'd':
      return K_D;
    case 's':
      return K_S;
    }
  } else if (n == 2 && t[0] == 'm' && t[1] == 's') {
    return K_MS;
  }
  return -1;
}

/* Parses and checks one value of a line; sets x (unused for sets). Returns LINE_BAD with
 * k->err when the value is refused, before anything is applied. */
static int check_one(bg_statsd_sink *k, int kind, const char *v, size_t n, double rate, double *x) {
  *x = 0;
  if (n == 0) return bad(k, "empty value");
  if (kind == K_S) return LINE_OK;
  if (parse_num(v, n, x) != 0) return bad(k, "bad value \"%.*s\"", (int)(n > 32 ? 32 : n), v);
  if (kind == K_C) {
    if (*x < 0) return bad(k, "negative counter increment %g", *x);
    if (rate != 1) {
      *x /= rate;
      if (!isfinite(*x)) return bad(k, "counter increment overflows");
    }
  }
  return LINE_OK;
}

/* Applies one checked value. Can't fail. */
static void apply(bg_statsd_sink *k, const centry *c, const char *v, size_t n, double x) {
  switch (c->kind) {
  case K_C:
    bg_counter_add(c->s, x);
    break;
  case K_G:
    if (v[0] == '+' || v[0] == '-')
      bg_gauge_add(c->s, x);
    else
      bg_gauge_set(c->s, x);
    break;
  case K_MS:
    bg_histogram_observe(c->s, x / 1000);
    break;
  case K_S:
    bg__statsd_set_add(&k->sets, c->set, v, n);
    break;
  default:
    bg_histogram_observe(c->s, x);
    break;
  }
}

static int do_line(bg_statsd_sink *k, const char *p, size_t n) {
  const char *e = p + n;
  if (n >= 3 && p[0] == '_' &&
      ((p[1] == 'e' && p[2] == '{') || (n >= 4 && p[1] == 's' && p[2] == 'c' && p[3] == '|')))
    return LINE_IGNORED;
  if (n > k->max_line) return bad(k, "line longer than %zu bytes", k->max_line);
  const char *colon = memchr(p, ':', n);
  if (colon == NULL) return bad(k, "no ':' after the metric name");
  if (colon == p) return bad(k, "empty metric name");
  const char *vals = colon + 1;
  /* values and the type are a few bytes: plain loops beat memchr calls here */
  const char *bar = vals;
  int packed = 0;
  while (bar < e && *bar != '|')
    packed |= *bar++ == ':';
  if (bar == e) return bad(k, "no '|type' after the value");
  if (bar == vals) return bad(k, "empty value");
  const char *t = bar + 1;
  const char *te = t;
  while (te < e && *te != '|')
    te++;
  int kind = parse_kind(t, (size_t)(te - t));
  if (kind < 0) return bad(k, "unknown type \"%.*s\"", (int)(te - t > 8 ? 8 : te - t), t);

  double rate = 1;
  const char *tags = "";
  size_t glen = 0;
  int have_tags = 0;
  for (const char *f = te; f < e;) {
    f++; /* the '|' */
    const char *fe = memchr(f, '|', (size_t)(e - f));
    if (fe == NULL) fe = e;
    if (fe > f && *f == '@') {
      if (parse_num(f + 1, (size_t)(fe - f - 1), &rate) != 0 || !(rate > 0 && rate <= 1))
        return bad(k, "sample rate \"%.*s\" is not in (0, 1]", (int)(fe - f > 24 ? 24 : fe - f), f);
    } else if (fe > f && *f == '#') {
      if (have_tags++) return bad(k, "two tag sections");
      tags = f + 1;
      glen = (size_t)(fe - f - 1);
    } /* else: |c:container, |T<timestamp>, or a field we do not know: ignored */
    f = fe;
  }

  size_t nlen = (size_t)(colon - p);
  uint64_t h = hash_bytes(K1 + (uint64_t)kind, p, nlen);
  if (glen) h = hash_bytes(h, tags, glen);
  if (h == 0) h = 1;
  centry *c = NULL;
  if (k->ccap) {
    for (size_t i = h & (k->ccap - 1); k->cache[i].hash; i = (i + 1) & (k->ccap - 1)) {
      centry *x = &k->cache[i];
      if (x->hash == h && x->kind == kind && x->nlen == nlen && x->glen == glen &&
          memcmp(x->key, p, nlen) == 0 && (glen == 0 || memcmp(x->key + nlen, tags, glen) == 0)) {
        c = x;
        break;
      }
    }
  }
  /* values are checked before the series is looked up, so a bad line creates nothing */
  size_t vlen = (size_t)(bar - vals);
  double x;
  if (!packed) {
    if (check_one(k, kind, vals, vlen, rate, &x) != LINE_OK) return LINE_BAD;
  } else {
    for (const char *v = vals; v <= bar;) {
      const char *q = memchr(v, ':', (size_t)(bar - v));
      if (q == NULL) q = bar;
      if (check_one(k, kind, v, (size_t)(q - v), rate, &x) != LINE_OK) return LINE_BAD;
      v = q + 1;
    }
  }
  if (c == NULL && (c = cache_miss(k, h, kind, p, nlen, tags, glen)) == NULL) return LINE_BAD;
  if (!packed) {
    apply(k, c, vals, vlen, x);
    return LINE_OK;
  }
  for (const char *v = vals; v <= bar;) {
    const char *q = memchr(v, ':', (size_t)(bar - v));
    if (q == NULL) q = bar;
    check_one(k, kind, v, (size_t)(q - v), rate, &x); /* checked above: can't be refused */
    apply(k, c, v, (size_t)(q - v), x);
    v = q + 1;
  }
  return LINE_OK;
}

static int ingest_lines(bg_statsd_sink *k, const char *buf, size_t len) {
  int nbad = 0;
  const char *p = buf, *e = buf + len;
  while (p < e) {
    const char *nl = memchr(p, '\n', (size_t)(e - p));
    const char *le = nl ? nl : e;
    size_t n = (size_t)(le - p);
    if (n && p[n - 1] == '\r') n--;
    if (n) {
      k->st.lines++;
      int r = do_line(k, p, n);
      if (r == LINE_BAD) {
        k->st.bad_lines++;
        nbad++;
      } else if (r == LINE_IGNORED) {
        k->st.ignored++;
      }
    }
    p = le + 1;
  }
  return nbad;
}

int bg_statsd_ingest(bg_statsd_sink *k, const char *buf, size_t len) {
  k->st.packets++;
  int nbad = ingest_lines(k, buf, len);
  sync_counters(k);
  return nbad;
}

int bg__statsd_feed(bg_statsd_sink *k, bg__statsd_stream *st, const char *data, size_t len,
                    size_t max_line, int eof) {
  const char *p = data, *e = data + len;
  int rc = 0;
  k->st.packets++;
  if (st->discarding) {
    const char *nl = memchr(p, '\n', len);
    if (nl == NULL) {
      if (eof) st->discarding = 0;
      goto out;
    }
    st->discarding = 0;
    p = nl + 1;
  } else if (st->partial.len) {
    const char *nl = memchr(p, '\n', len);
    size_t take = (size_t)((nl ? nl : e) - p);
    if (st->partial.len + take > max_line) {
      k->st.lines++;
      k->st.bad_lines++;
      bad(k, "line longer than %zu bytes", max_line);
      bg_buf_reset(&st->partial);
      if (nl == NULL) {
        st->discarding = !eof;
        goto out;
      }
      p = nl + 1;
    } else {
      if (bg_buf_append(&st->partial, p, take) != 0) {
        rc = BG_ENOMEM;
        goto out;
      }
      if (nl == NULL && !eof) goto out;
      ingest_lines(k, st->partial.data, st->partial.len);
      bg_buf_reset(&st->partial);
      p = nl ? nl + 1 : e;
    }
  }
  const char *last = p < e ? memrchr(p, '\n', (size_t)(e - p)) : NULL;
  if (last) {
    ingest_lines(k, p, (size_t)(last - p));
    p = last + 1;
  }
  if (p < e) {
    if (eof) {
      ingest_lines(k, p, (size_t)(e - p));
    } else if ((size_t)(e - p) > max_line) {
      k->st.lines++;
      k->st.bad_lines++;
      bad(k, "line longer than %zu bytes", max_line);
      st->discarding = 1;
    } else if (bg_buf_append(&st->partial, p, (size_t)(e - p)) != 0) {
      rc = BG_ENOMEM;
    }
  }
out:
  sync_counters(k);
  return rc;
}

/* ---------------------------------------------------------------- sink lifetime */

void bg_statsd_opts_default(bg_statsd_opts *o) {
  memset(o, 0, sizeof *o);
  o->udp = "127.0.0.1:8125";
  o->max_line = 65536;
  o->rcvbuf = 8 << 20;
  o->max_clients = 1024;
  o->max_cache = 100000;
  o->max_set_bytes = 32u << 20;
}

int bg_statsd_sink_new(bg_registry *reg, const bg_statsd_opts *o, bg_statsd_sink **out) {
  bg_statsd_opts def;
  bg_statsd_opts_default(&def);
  if (o == NULL) o = &def;
  *out = NULL;
  if (reg == NULL || o->max_line > MAX_LINE_LIMIT) return BG_EINVAL;
  bg_statsd_sink *k = calloc(1, sizeof *k);
  if (k == NULL) return BG_ENOMEM;
  k->reg = reg;
  k->max_line = o->max_line ? o->max_line : def.max_line;
  k->max_cache = o->max_cache ? o->max_cache : def.max_cache;
  k->sets.max_bytes = o->max_set_bytes ? o->max_set_bytes : def.max_set_bytes;
  k->sets.dropped = &k->st.dropped;
  /* name + "_seconds" + per tag two NULs and maybe "true" */
  k->scratch_len = k->max_line + 16 + BG_METRICS_MAX_LABELS * 8;
  k->scratch = malloc(k->scratch_len);
  char e[128];
  k->c_packets =
      bg_series_get_own(reg, BG_COUNTER, "beagle_statsd_packets_total",
                        "StatsD datagrams and TCP reads received", NULL, 0, NULL, 0, e, sizeof e);
  k->c_lines =
      bg_series_get_own(reg, BG_COUNTER, "beagle_statsd_lines_total",
                        "StatsD lines received, good or bad", NULL, 0, NULL, 0, e, sizeof e);
  k->c_bad = bg_series_get_own(reg, BG_COUNTER, "beagle_statsd_bad_lines_total",
                               "StatsD lines skipped as unparseable or rejected", NULL, 0, NULL, 0,
                               e, sizeof e);
  if (k->scratch == NULL || !k->c_packets || !k->c_lines || !k->c_bad) {
    int rc = k->scratch == NULL ? BG_ENOMEM : BG_EINVAL; /* EINVAL: the names are taken */
    free(k->scratch);
    free(k);
    return rc;
  }
  *out = k;
  return 0;
}

void bg_statsd_sink_forget(bg_statsd_sink *k) {
  cache_clear(k);
  bg__statsd_sets_free(&k->sets);
}

void bg_statsd_flush_sets(bg_statsd_sink *k) {
  bg__statsd_sets_flush(&k->sets);
}

void bg_statsd_sink_free(bg_statsd_sink *k) {
  if (k == NULL) return;
  cache_clear(k);
  free(k->cache);
  bg__statsd_sets_free(&k->sets);
  free(k->scratch);
  free(k);
}

const char *bg_statsd_last_error(const bg_statsd_sink *k) {
  return k->err;
}

void bg_statsd_sink_stats(const bg_statsd_sink *k, bg_statsd_stats *out) {
  *out = k->st;
  out->cache_entries = k->cn;
  out->set_bytes = k->sets.bytes;
}

void bg__statsd_dropped(bg_statsd_sink *k, uint64_t n) {
  k->st.dropped += n;
}
