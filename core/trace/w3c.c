/* w3c: span context values and W3C Trace Context level 1 (traceparent, tracestate), see
 * trace.h. Parsing is strict because the headers come from anyone who can reach the agent: a
 * value that is not exactly what the spec allows is refused, never repaired. */
#include <stdlib.h>
#include <string.h>

#include "trace/trace_int.h"

#define TS_MAX_MEMBERS 32

struct bg_tracestate {
  int refs;
  uint32_t len;
  char str[]; /* "k=v,k=v", normalised: no OWS, no empty members; NUL-terminated */
};

void bg__tracestate_ref_(bg_tracestate *ts) {
  ts->refs++;
}

void bg__tracestate_unref_(bg_tracestate *ts) {
  if (--ts->refs == 0) free(ts);
}

void bg_span_ctx_copy(bg_span_ctx *dst, const bg_span_ctx *src) {
  *dst = *src;
  bg__tracestate_ref(dst->state);
}

void bg_span_ctx_clear(bg_span_ctx *c) {
  bg__tracestate_unref(c->state);
  memset(c, 0, sizeof *c);
}

static const char hexdig[] = "0123456789abcdef";

void bg_trace_hex(const uint8_t *id, size_t n, char *buf) {
  for (size_t i = 0; i < n; i++) {
    buf[2 * i] = hexdig[id[i] >> 4];
    buf[2 * i + 1] = hexdig[id[i] & 15];
  }
}

/* Lower-case hex only: the spec refuses upper case (HEXDIGLC). */
static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* n bytes from 2n hex digits; -1 on a non-hex digit. */
static int unhex(const char *s, size_t n, uint8_t *out) {
  for (size_t i = 0; i < n; i++) {
    int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return -1;
    out[i] = (uint8_t)(hi << 4 | lo);
  }
  return 0;
}

static int all_zero(const uint8_t *p, size_t n) {
  uint8_t x = 0;
  for (size_t i = 0; i < n; i++)
    x |= p[i];
  return x == 0;
}

static int ows(char c) {
  return c == ' ' || c == '\t';
}

/* version "-" trace-id "-" parent-id "-" trace-flags: 2 + 1 + 32 + 1 + 16 + 1 + 2 */
#define TP_LEN 55

int bg_traceparent_parse(const char *s, size_t len, bg_span_ctx *out) {
  memset(out, 0, sizeof *out);
  /* the OWS around an HTTP field value is not part of it (RFC 9110 5.5); the W3C test suite
   * sends it and expects the header to be read */
  while (len > 0 && ows(s[0]))
    s++, len--;
  while (len > 0 && ows(s[len - 1]))
    len--;
  if (len < TP_LEN) return BG_EINVAL;
  uint8_t version, flags;
  bg_span_ctx c = {0};
  if (unhex(s, 1, &version) != 0 || version == 0xff) return BG_EINVAL;
  /* version 00 is exactly 55 characters; a later version is read as 00 from its first 55,
   * which must be followed by '-' (more fields) or nothing */
  if (version == 0 ? len != TP_LEN : (len > TP_LEN && s[TP_LEN] != '-')) return BG_EINVAL;
  if (s[2] != '-' || s[35] != '-' || s[52] != '-') return BG_EINVAL;
  if (unhex(s + 3, BG_TRACE_ID_LEN, c.trace_id) != 0 ||
      unhex(s + 36, BG_SPAN_ID_LEN, c.span_id) != 0 || unhex(s + 53, 1, &flags) != 0)
    return BG_EINVAL;
  if (all_zero(c.trace_id, BG_TRACE_ID_LEN) || all_zero(c.span_id, BG_SPAN_ID_LEN))
    return BG_EINVAL;
  /* only the sampled bit means something in level 1; the others are not passed on */
  c.flags = flags & BG_TRACE_FLAG_SAMPLED;
  c.remote = 1;
  *out = c;
  return 0;
}

void bg_traceparent_format(const bg_span_ctx *c, char buf[55]) {
  buf[0] = '0';
  buf[1] = '0';
  buf[2] = '-';
  bg_trace_hex(c->trace_id, BG_TRACE_ID_LEN, buf + 3);
  buf[35] = '-';
  bg_trace_hex(c->span_id, BG_SPAN_ID_LEN, buf + 36);
  buf[52] = '-';
  uint8_t f = c->flags & BG_TRACE_FLAG_SAMPLED;
  bg_trace_hex(&f, 1, buf + 53);
}

/* ---- tracestate ------------------------------------------------------------------------------
 * key   = simple-key / multi-tenant-key
 * simple-key = lcalpha 0*255( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
 * multi-tenant-key = tenant-id "@" system-id
 * tenant-id = ( lcalpha / DIGIT ) 0*240( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
 * system-id = lcalpha 0*13( lcalpha / DIGIT / "_" / "-"/ "*" / "/" )
 * value = 0*255(chr) nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E */

static int lcalpha(char c) {
  return c >= 'a' && c <= 'z';
}

static int keychar(char c) {
  return lcalpha(c) || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '*' || c == '/';
}

int bg__tracestate_key_valid(const char *k, size_t n) {
  if (n == 0) return 0;
  const char *at = memchr(k, '@', n);
  if (at == NULL) {
    if (n > 256 || !lcalpha(k[0])) return 0;
    for (size_t i = 1; i < n; i++)
      if (!keychar(k[i])) return 0;
    return 1;
  }
  size_t tn = (size_t)(at - k), sn = n - tn - 1;
  if (tn == 0 || tn > 241 || sn == 0 || sn > 14) return 0;
  if (!lcalpha(k[0]) && !(k[0] >= '0' && k[0] <= '9')) return 0;
  for (size_t i = 1; i < tn; i++)
    if (!keychar(k[i])) return 0;
  const char *sys = at + 1;
  if (!lcalpha(sys[0])) return 0;
  for (size_t i = 1; i < sn; i++)
    if (!keychar(sys[i])) return 0;
  return 1;
}

int bg__tracestate_value_valid(const char *v, size_t n) {
  if (n == 0 || n > 256 || v[n - 1] == ' ') return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)v[i];
    if (c < 0x20 || c > 0x7e || c == ',' || c == '=') return 0;
  }
  return 1;
}

typedef struct member {
  const char *k, *v;
  size_t klen, vlen;
} member;

static bg_tracestate *ts_build(const member *m, size_t n) {
  size_t len = 0;
  for (size_t i = 0; i < n; i++)
    len += m[i].klen + 1 + m[i].vlen + (i > 0);
  if (len == 0) return NULL;
  bg_tracestate *ts = malloc(sizeof *ts + len + 1);
  if (ts == NULL) return NULL;
  ts->refs = 1;
  ts->len = (uint32_t)len;
  char *p = ts->str;
  for (size_t i = 0; i < n; i++) {
    if (i > 0) *p++ = ',';
    memcpy(p, m[i].k, m[i].klen);
    p += m[i].klen;
    *p++ = '=';
    memcpy(p, m[i].v, m[i].vlen);
    p += m[i].vlen;
  }
  *p = '\0';
  return ts;
}

/* Splits s into members; 0 and *n, or BG_EINVAL for an invalid member, a duplicate key or
 * more than max members. Empty and blank members are skipped. */
static int ts_split(const char *s, size_t len, member *m, size_t max, size_t *n) {
  size_t cnt = 0;
  const char *end = s + len;
  while (s <= end) {
    const char *comma = memchr(s, ',', (size_t)(end - s));
    const char *e = comma ? comma : end;
    const char *b = s;
    while (b < e && ows(*b))
      b++;
    const char *t = e;
    while (t > b && ows(t[-1]))
      t--;
    if (t > b) {
      const char *eq = memchr(b, '=', (size_t)(t - b));
      if (eq == NULL || cnt == max) return BG_EINVAL;
      member x = {b, eq + 1, (size_t)(eq - b), (size_t)(t - eq - 1)};
      if (!bg__tracestate_key_valid(x.k, x.klen) || !bg__tracestate_value_valid(x.v, x.vlen))
        return BG_EINVAL;
      for (size_t i = 0; i < cnt; i++)
        if (m[i].klen == x.klen && memcmp(m[i].k, x.k, x.klen) == 0) return BG_EINVAL;
      m[cnt++] = x;
    }
    if (comma == NULL) break;
    s = comma + 1;
  }
  *n = cnt;
  return 0;
}

int bg_tracestate_parse(bg_span_ctx *c, const char *s, size_t len) {
  bg__tracestate_unref(c->state);
  c->state = NULL;
  member m[TS_MAX_MEMBERS];
  size_t n;
  if (ts_split(s, len, m, TS_MAX_MEMBERS, &n) != 0) return BG_EINVAL;
  if (n == 0) return 0;
  c->state = ts_build(m, n);
  return c->state != NULL ? 0 : BG_ENOMEM;
}

int bg_tracestate_set(bg_span_ctx *c, const char *key, size_t klen, const char *val, size_t vlen) {
  if (!bg__tracestate_key_valid(key, klen) || !bg__tracestate_value_valid(val, vlen))
    return BG_EINVAL;
  member m[TS_MAX_MEMBERS + 1];
  size_t n = 0;
  m[0] = (member){key, val, klen, vlen};
  if (c->state != NULL) {
    member old[TS_MAX_MEMBERS];
    size_t on;
    /* a state is valid by construction; splitting it again cannot fail */
    if (ts_split(c->state->str, c->state->len, old, TS_MAX_MEMBERS, &on) != 0) return BG_EINVAL;
    for (size_t i = 0; i < on; i++)
      if (!(old[i].klen == klen && memcmp(old[i].k, key, klen) == 0)) m[1 + n++] = old[i];
  }
  n += 1;
  if (n > TS_MAX_MEMBERS) n = TS_MAX_MEMBERS; /* the rightmost go first */
  bg_tracestate *ts = ts_build(m, n);
  if (ts == NULL) return BG_ENOMEM;
  bg__tracestate_unref(c->state);
  c->state = ts;
  return 0;
}

const char *bg_tracestate_str(const bg_tracestate *ts, size_t *len) {
  if (ts == NULL) {
    *len = 0;
    return NULL;
  }
  *len = ts->len;
  return ts->str;
}

int bg__tracestate_equal(const bg_tracestate *a, const bg_tracestate *b) {
  if (a == b) return 1;
  if (a == NULL || b == NULL) return 0;
  return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
}
