/* jsonenc_compact: bg_json_encode_compact, what the store writes (see jsonenc.h): close to
 * cjson's output and raw (no metamethod runs), sharing the string scan and the digit layout
 * with jsonenc.c (jsonenc_int.h). */
#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonenc.h"
#include "base/jsonenc_int.h"

typedef struct cenc {
  lua_State *L;
  bg_buf *out;
  int err;
} cenc;

static inline void cput(cenc *c, const char *p, size_t n) {
  bg_buf *b = c->out;
  if (b->len + n + 1 > b->cap && (c->err != 0 || bg_buf_reserve(b, n) != 0)) {
    if (c->err == 0) c->err = BG_ENOMEM;
    return;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
}

static void cput_str(cenc *c, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  bg_buf *b = c->out;
  if (c->err != 0 || bg_buf_reserve(b, n + 2) != 0) {
    c->err = c->err ? c->err : BG_ENOMEM;
    return;
  }
  char *p = b->data + b->len;
  *p++ = '"';
  for (size_t i = 0;; i++) {
    i = copy_plain(&p, s, i, n);
    b->len = (size_t)(p - b->data);
    if (i >= n) break;
    unsigned char ch = (unsigned char)s[i];
    char e[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
    const char *short_esc = ch == '"'    ? "\\\""
                            : ch == '\\' ? "\\\\"
                            : ch == '\n' ? "\\n"
                            : ch == '\r' ? "\\r"
                            : ch == '\t' ? "\\t"
                                         : NULL;
    if (short_esc)
      cput(c, short_esc, 2);
    else
      cput(c, e, 6);
    /* room for the rest of the text as it is, and the closing quote */
    if (c->err != 0 || bg_buf_reserve(b, n - i + 1) != 0) {
      c->err = c->err ? c->err : BG_ENOMEM;
      return;
    }
    p = b->data + b->len;
  }
  cput(c, "\"", 1);
}

/* %.14g, as cjson (precision 14) and Lua's tostring print: exact powers of ten in long double
 * (64-bit mantissa) make the 14 digits correctly rounded unless the value lies within ~5e-6 of
 * a unit of the 14th digit from a tie, where the last digit may differ by one from printf's.
 * Outside 1e-14..1e41, printf itself. printf's %.14g cost 3,200 instructions a number: five
 * timestamps were 11% of a mass firing's store work. */
static int fmt_g14(char *buf, size_t size, double v) {
  static const long double p10[] = {1e0L,  1e1L,  1e2L,  1e3L,  1e4L,  1e5L,  1e6L,
                                    1e7L,  1e8L,  1e9L,  1e10L, 1e11L, 1e12L, 1e13L,
                                    1e14L, 1e15L, 1e16L, 1e17L, 1e18L, 1e19L, 1e20L,
                                    1e21L, 1e22L, 1e23L, 1e24L, 1e25L, 1e26L, 1e27L};
  double a = fabs(v);
  if (!(a >= 1e-14 && a < 1e41)) return snprintf(buf, size, "%.14g", v);
  int e = (int)floor(log10(a));
  uint64_t m = 0;
  for (int tries = 0; tries < 2; tries++) { /* log10 may be one off near a power of ten */
    int k = 13 - e;
    long double s = k >= 0 ? (long double)a * p10[k] : (long double)a / p10[-k];
    m = (uint64_t)llroundl(s);
    if (m >= 100000000000000ULL) {
      e++;
      if (m == 100000000000000ULL) {
        m = 10000000000000ULL;
        break;
      }
    } else if (m < 10000000000000ULL) {
      e--;
    } else {
      break;
    }
  }
  if (m < 10000000000000ULL || m >= 100000000000000ULL) return snprintf(buf, size, "%.14g", v);
  return bg__json_g_digits(buf, v < 0, m, e, 14);
}

static void cput_num(cenc *c, double v) {
  char tmp[40];
  if (isnan(v) || isinf(v)) {
    cput(c, "null", 4);
  } else if (floor(v) == v && v > -1e15 && v < 1e15) {
    int n = snprintf(tmp, sizeof tmp, "%lld", (long long)v);
    cput(c, tmp, (size_t)n);
  } else {
    cput(c, tmp, (size_t)fmt_g14(tmp, sizeof tmp, v));
  }
}

static void cencode(cenc *c, int idx, int depth);

/* cjson's rule: every key a positive integer and the largest at most twice their count (or
 * 10) makes an array, holes as null; any other key an object. */
static void cencode_table(cenc *c, int idx, int depth) {
  lua_State *L = c->L;
  if (depth > BG_JSON_MAX_DEPTH) {
    c->err = BG_ELIMIT;
    return;
  }
  if (!lua_checkstack(L, 4)) {
    c->err = BG_ENOMEM;
    return;
  }
  size_t count = 0;
  double max = 0;
  int array = 1;
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    double k = lua_type(L, -1) == LUA_TNUMBER ? lua_tonumber(L, -1) : 0;
    if (k >= 1 && floor(k) == k && k <= 1e9) {
      count++;
      if (k > max) max = k;
    } else {
      array = 0;
    }
  }
  if (array && count > 0 && (max <= 2 * (double)count || max <= 10)) {
    cput(c, "[", 1);
    for (int i = 1; i <= (int)max && c->err == 0; i++) {
      if (i > 1) cput(c, ",", 1);
      lua_rawgeti(L, idx, i);
      cencode(c, lua_gettop(L), depth + 1);
      lua_pop(L, 1);
    }
    cput(c, "]", 1);
    return;
  }
  cput(c, "{", 1);
  int first = 1;
  lua_pushnil(L);
  while (c->err == 0 && lua_next(L, idx) != 0) {
    if (!first) cput(c, ",", 1);
    first = 0;
    if (lua_type(L, -2) == LUA_TSTRING) {
      size_t n;
      const char *s = lua_tolstring(L, -2, &n);
      cput_str(c, s, n);
    } else if (lua_type(L, -2) == LUA_TNUMBER) {
      char tmp[48];
      tmp[0] = '"';
      double k = lua_tonumber(L, -2);
      int n = floor(k) == k && fabs(k) < 1e15 ? snprintf(tmp + 1, 40, "%lld", (long long)k)
                                              : fmt_g14(tmp + 1, 40, k);
      tmp[n + 1] = '"';
      cput(c, tmp, (size_t)n + 2);
    } else {
      c->err = BG_EINVAL; /* a boolean or table key: cjson refuses it too */
    }
    cput(c, ":", 1);
    cencode(c, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
  }
  cput(c, "}", 1); /* on an error the caller resets the stack that lua_next left */
}

static void cencode(cenc *c, int idx, int depth) {
  if (c->err != 0) return;
  lua_State *L = c->L;
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    cput_str(c, s, n);
    return;
  }
  case LUA_TNUMBER:
    cput_num(c, lua_tonumber(L, idx));
    return;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx))
      cput(c, "true", 4);
    else
      cput(c, "false", 5);
    return;
  case LUA_TNIL:
    cput(c, "null", 4);
    return;
  case LUA_TTABLE:
    cencode_table(c, idx, depth);
    return;
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) {
      cput(c, "null", 4);
      return;
    }
    break;
  default:
    break;
  }
  c->err = BG_EINVAL;
}

int bg_json_encode_compact(lua_State *L, int idx, bg_buf *out) {
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(L) + idx + 1;
  int top = lua_gettop(L);
  cenc c = {L, out, 0};
  if (out->cap < 512 && bg_buf_reserve(out, 512) != 0) return BG_ENOMEM;
  cencode(&c, idx, 0);
  lua_settop(L, top);
  if (c.err == 0 && bg_buf_reserve(out, 1) == 0) out->data[out->len] = '\0';
  return c.err;
}
