/* jsonenc.c: see jsonenc.h; the compact encoder is in jsonenc_compact.c. Each branch mirrors a line
 * of json.lua's encode_into; where the Lua code calls out (getmetatable, tostring, v[k], tonumber)
 * we make the same call in the same order, so that metamethods see what they would see from
 * json.lua. The encoding runs under lua_pcall, so a metamethod that raises, or running out of
 * memory, leaks nothing. */
#include "base/jsonenc.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/jsonenc_int.h"

#define TCDATA 10 /* LuaJIT's lua_type() of an FFI cdata: not in lua.h */

typedef struct key {
  const char *s; /* kept alive by the anchor table at slot, or on the stack at slot */
  size_t len;
  int slot;
} key;

#define INLINE_KEYS 32

typedef struct enc {
  lua_State *L;
  bg_buf *out;
  key *keys; /* the sorted keys of every object being written, outermost first */
  size_t nkeys, cap;
  /* keys starts here; a malloc'ed array only past INLINE_KEYS (a notification has ~30 keys
   * in all, and a 1.5 KB malloc per call went through malloc_consolidate: 5k instructions) */
  key inline_keys[INLINE_KEYS];
  int anchors; /* stack index of a table holding the key strings the keys point into */
  int nanchor;
  int push;         /* push the text as a string when done */
  unsigned ran_lua; /* bumped before anything that may run Lua code (a metamethod, tostring) */
  int err;          /* BG_ELIMIT / BG_ENOMEM behind the Lua error, else 0 */
} enc;

static void fail(enc *e, int err, const char *msg) {
  e->err = err;
  lua_pushstring(e->L, msg);
  lua_error(e->L);
}

static inline void reserve(enc *e, size_t n) {
  if (e->out->len + n + 1 > e->out->cap && bg_buf_reserve(e->out, n) != 0)
    fail(e, BG_ENOMEM, "not enough memory");
}

static inline void put(enc *e, const char *p, size_t n) {
  reserve(e, n);
  memcpy(e->out->data + e->out->len, p, n);
  e->out->len += n;
}

#define PUT_LIT(e, s) put((e), (s), sizeof(s) - 1)

/* Room is made for the text as it is; each escape then asks for what it adds. */
static void put_str(enc *e, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  bg_buf *b = e->out;
  reserve(e, n + 2);
  char *p = b->data + b->len;
  *p++ = '"';
  for (size_t i = 0;; i++) {
    i = copy_plain(&p, s, i, n);
    if (i == n) break;
    b->len = (size_t)(p - b->data);
    reserve(e, n - i + 6);
    p = b->data + b->len;
    unsigned char c = (unsigned char)s[i];
    *p++ = '\\';
    switch (c) {
    case '"':
      *p++ = '"';
      break;
    case '\\':
      *p++ = '\\';
      break;
    case '\b':
      *p++ = 'b';
      break;
    case '\f':
      *p++ = 'f';
      break;
    case '\n':
      *p++ = 'n';
      break;
    case '\r':
      *p++ = 'r';
      break;
    case '\t':
      *p++ = 't';
      break;
    default:
      memcpy(p, "u00", 3);
      p[3] = hex[c >> 4];
      p[4] = hex[c & 15];
      p += 5;
    }
  }
  *p++ = '"';
  b->len = (size_t)(p - b->data);
}

/* Writes the significant digits r (10^(prec-1) <= r < 10^prec) of a number whose first digit
 * has decimal exponent e the way %.<prec>g lays them out: trailing zeros dropped, exponent form
 * outside 1e-4 <= |v| < 10^prec. */
int bg__json_g_digits(char *buf, int neg, uint64_t r, int e, int prec) {
  char d[24];
  int nd = 0;
  for (uint64_t x = r; x; x /= 10)
    nd++;
  for (int i = nd - 1; i >= 0; i--, r /= 10)
    d[i] = (char)('0' + r % 10);
  while (nd > 1 && d[nd - 1] == '0')
    nd--;
  char *p = buf;
  if (neg) *p++ = '-';
  if (e < -4 || e >= prec) {
    *p++ = d[0];
    if (nd > 1) *p++ = '.';
    memcpy(p, d + 1, (size_t)nd - 1);
    p += nd - 1;
    p += snprintf(p, 8, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
  } else if (e >= 0) {
    for (int i = 0; i <= e; i++)
      *p++ = i < nd ? d[i] : '0';
    if (nd > e + 1) {
      *p++ = '.';
      memcpy(p, d + e + 1, (size_t)(nd - e - 1));
      p += nd - e - 1;
    }
  } else {
    *p++ = '0';
    *p++ = '.';
    for (int i = 0; i < -e - 1; i++)
      *p++ = '0';
    memcpy(p, d, (size_t)nd);
    p += nd;
  }
  return (int)(p - buf);
}

/* ("%.17g"):format(v) as LuaJIT prints it (lj_strfmt_num.c): correctly rounded like glibc's,
 * except that an exact tie rounds away from zero where glibc rounds it to even. A tie needs
 * the exact expansion of |v| = m * 2^-k (m odd), the integer m * 5^k times 10^-k, to have
 * exactly 18 digits (the last one a 5), hence 1 <= k <= 25. */
static int fmt_g17(char *buf, size_t size, double v) {
  int ex;
  double fr = frexp(fabs(v), &ex);
  uint64_t m = (uint64_t)ldexp(fr, 53);
  int k = 53 - ex;
  while (m != 0 && (m & 1) == 0) {
    m >>= 1;
    k--;
  }
  if (m == 0 || k < 1 || k > 25) return snprintf(buf, size, "%.17g", v);
  uint64_t pow5 = 1;
  for (int i = 0; i < k; i++)
    pow5 *= 5;
  if (m <= UINT64_MAX / pow5 && m * pow5 >= 100000000000000000u &&
      m * pow5 < 1000000000000000000u) {
    uint64_t r = m * pow5 / 10 + 1;
    int e = 17 - k;
    if (r == 100000000000000000u) r /= 10, e++;
    return bg__json_g_digits(buf, v < 0, r, e, 17);
  }
  return snprintf(buf, size, "%.17g", v);
}

/* v % 1 == 0 and -1e15 < v < 1e15: ("%d"):format(v), i.e. the int64 value (-0 prints 0);
 * else ("%.17g"):format(v):gsub(",", "."). */
static void put_num(enc *e, double v) {
  char tmp[40];
  if (isnan(v) || isinf(v)) {
    PUT_LIT(e, "null");
  } else if (floor(v) == v && v > -1e15 && v < 1e15) {
    int64_t k = (int64_t)v;
    uint64_t u = k < 0 ? (uint64_t)0 - (uint64_t)k : (uint64_t)k;
    char *p = tmp + sizeof tmp;
    do {
      *--p = (char)('0' + u % 10);
      u /= 10;
    } while (u);
    if (k < 0) *--p = '-';
    put(e, p, (size_t)(tmp + sizeof tmp - p));
  } else {
    int n = fmt_g17(tmp, sizeof tmp, v);
    for (int i = 0; i < n; i++)
      if (tmp[i] == ',') tmp[i] = '.';
    put(e, tmp, (size_t)n);
  }
}

/* Calls the global tostring on the value at idx and leaves its result on the stack, which
 * json.lua then hands to esc() (or drops, for a key that became nil). */
static int push_tostring(enc *e, int idx) {
  lua_State *L = e->L;
  e->ran_lua++;
  lua_getfield(L, LUA_GLOBALSINDEX, "tostring");
  lua_pushvalue(L, idx);
  lua_call(L, 1, 1);
  int t = lua_type(L, -1);
  if (t != LUA_TSTRING && t != LUA_TNIL) fail(e, 0, "json: tostring returned no string");
  return t == LUA_TSTRING;
}

/* `v == nil or v == cjson.null` for a cdata needs the FFI's own comparison (a NULL pointer
 * equals both), which only Lua code reaches: a two-line chunk, kept in the registry. */
static int cdata_is_null(lua_State *L, int idx) {
  static const char reg_key = 0;
  lua_pushlightuserdata(L, (void *)&reg_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    if (luaL_loadstring(L, "local v, null = ...\nreturn v == nil or v == null") != 0) lua_error(L);
    lua_pushlightuserdata(L, (void *)&reg_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_pushvalue(L, idx);
  lua_pushlightuserdata(L, NULL);
  lua_call(L, 2, 1);
  int r = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return r;
}

static inline int key_cmp(const key *a, const key *b) {
  size_t n = a->len < b->len ? a->len : b->len;
  for (size_t i = 0; i < n; i++) {
    unsigned char x = (unsigned char)a->s[i], y = (unsigned char)b->s[i];
    if (x != y) return x < y ? -1 : 1;
  }
  return (a->len > b->len) - (a->len < b->len);
}

static int key_qcmp(const void *a, const void *b) {
  return key_cmp(a, b);
}

/* table.sort(keys) with <, which compares strings bytewise (LuaJIT's lj_str_cmp). Equal keys
 * (1 and "1") print identically, so the sort need not be stable. */
static void sort_keys(key *k, size_t n) {
  if (n > 24) {
    qsort(k, n, sizeof *k, key_qcmp);
    return;
  }
  for (size_t i = 1; i < n; i++) {
    key t = k[i];
    size_t j = i;
    for (; j > 0 && key_cmp(&k[j - 1], &t) > 0; j--)
      k[j] = k[j - 1];
    k[j] = t;
  }
}

static void encode(enc *e, int idx, int depth);

/* The next free entry of e->keys, grown (off the inline array) when full. */
static key *next_key(enc *e) {
  if (e->nkeys == e->cap) {
    size_t cap = 2 * e->cap;
    key *k =
        e->keys == e->inline_keys ? malloc(cap * sizeof *k) : realloc(e->keys, cap * sizeof *k);
    if (k == NULL) fail(e, BG_ENOMEM, "not enough memory");
    if (e->keys == e->inline_keys) memcpy(k, e->inline_keys, sizeof e->inline_keys);
    e->keys = k;
    e->cap = cap;
  }
  return &e->keys[e->nkeys++];
}

/* The value of key k (at stack index kidx) of the table at idx, as json.lua finds it: local
 * val = v[k]; if val == nil then val = v[tonumber(k)] end. raw: the table has no metatable
 * (the same lookup, without the metamethod check). */
static void encode_member(enc *e, int idx, int kidx, int raw, int depth) {
  lua_State *L = e->L;
  lua_pushvalue(L, kidx);
  raw ? lua_rawget(L, idx) : lua_gettable(L, idx);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    if (lua_isnumber(L, kidx))
      lua_pushnumber(L, lua_tonumber(L, kidx));
    else
      lua_pushnil(L);
    raw ? lua_rawget(L, idx) : lua_gettable(L, idx);
  }
  encode(e, lua_gettop(L), depth + 1);
  lua_pop(L, 1);
}

/* {"k":v,...} for the keys e->keys[base..], sorted. stacked = 0: a key's slot is in the anchor
 * table, and v[k] may run metamethods. stacked = 1 (a table without a metatable): the slot is
 * the value's stack index, its key just below, and the value is used as it is unless Lua code
 * ran since the caller's pairs() pass (then v[k] is looked up again, raw). */
static void put_members(enc *e, int idx, size_t base, int stacked, int depth) {
  lua_State *L = e->L;
  unsigned ran = e->ran_lua;
  sort_keys(e->keys + base, e->nkeys - base);
  put(e, "{", 1);
  for (size_t i = base; i < e->nkeys; i++) {
    if (i > base) put(e, ",", 1);
    put_str(e, e->keys[i].s, e->keys[i].len);
    put(e, ":", 1);
    int slot = e->keys[i].slot;
    if (!stacked) {
      lua_rawgeti(L, e->anchors, slot);
      encode_member(e, idx, lua_gettop(L), 0, depth);
      lua_pop(L, 1);
    } else if (e->ran_lua == ran) {
      encode(e, slot, depth + 1);
    } else {
      encode_member(e, idx, slot - 1, 1, depth);
    }
  }
  put(e, "}", 1);
}

static void encode_object(enc *e, int idx, int depth) {
  lua_State *L = e->L;
  size_t base = e->nkeys;
  int slot0 = e->nanchor;
  e->ran_lua++; /* v[k] through the metatable, tostring of keys */
  /* for k in pairs(v) do keys[#keys + 1] = tostring(k) end */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) == LUA_TSTRING) {
      lua_pushvalue(L, -1);
    } else if (!push_tostring(e, lua_gettop(L))) {
      lua_pop(L, 1);
      continue;
    }
    key *k = next_key(e);
    k->s = lua_tolstring(L, -1, &k->len);
    k->slot = ++e->nanchor;
    lua_rawseti(L, e->anchors, k->slot);
  }
  put_members(e, idx, base, 0, depth);
  e->nkeys = base;
  e->nanchor = slot0;
}

/* encode_object for a table without a metatable whose keys are all strings (what plugins build:
 * payloads, labels). Each key and its value stay on the stack from the pairs() pass, which
 * keeps the key alive without the anchor table; the value is used as it is unless some Lua
 * code ran since the pass (a metamethod of another value could have changed this table: then
 * v[k] is looked up again, raw, as no metamethod of this table can run). Returns 0, with
 * nothing written and the stack as found, at the first key that is not a string:
 * encode_object then does the general walk. */
static int encode_plain_object(enc *e, int idx, int depth) {
  lua_State *L = e->L;
  size_t base = e->nkeys;
  int top = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) != LUA_TSTRING) {
      e->nkeys = base;
      lua_settop(L, top);
      return 0;
    }
    key *k = next_key(e);
    k->s = lua_tolstring(L, -2, &k->len);
    k->slot = lua_gettop(L); /* the value; its key is just below */
    /* room for the next eight pairs and the key pushed below, asked once per eight */
    if (((e->nkeys - base) & 7) == 1 && !lua_checkstack(L, 20))
      fail(e, BG_ELIMIT, "stack overflow");
    lua_pushvalue(L, -2); /* the key again, for lua_next */
  }
  put_members(e, idx, base, 1, depth);
  e->nkeys = base;
  lua_settop(L, top);
  return 1;
}

static void encode_table(enc *e, int idx, int depth) {
  lua_State *L = e->L;
  if (depth > BG_JSON_MAX_DEPTH) fail(e, BG_ELIMIT, "json: nesting too deep");
  if (!lua_checkstack(L, 8)) fail(e, BG_ELIMIT, "stack overflow");
  /* local mt = getmetatable(v); if (mt and mt.__json_array) or #v > 0 ... (the third test,
   * next(v) == nil and mt == array_mt, is implied by the first: array_mt.__json_array is true) */
  int array = 0, plain = 1;
  if (lua_getmetatable(L, idx)) {
    plain = 0;
    lua_pushliteral(L, "__metatable");
    lua_rawget(L, -2);
    if (!lua_isnil(L, -1))
      lua_replace(L, -2);
    else
      lua_pop(L, 1);
    if (lua_toboolean(L, -1)) {
      /* mt.__json_array runs code only through a metatable of mt's own (or of a non-table) */
      if (!lua_istable(L, -1)) {
        e->ran_lua++;
      } else if (lua_getmetatable(L, -1)) {
        lua_pop(L, 1);
        e->ran_lua++;
      }
      lua_getfield(L, -1, "__json_array");
      array = lua_toboolean(L, -1);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  size_t n = lua_objlen(L, idx);
  if (!array && n == 0) {
    if (!plain || !encode_plain_object(e, idx, depth)) encode_object(e, idx, depth);
    return;
  }
  put(e, "[", 1);
  for (size_t i = 1; i <= n; i++) {
    if (i > 1) put(e, ",", 1);
    lua_rawgeti(L, idx, (int)i);
    if (lua_isnil(L, -1)) { /* v[i] with __index, as json.lua's indexing does */
      e->ran_lua++;
      lua_pop(L, 1);
      lua_pushnumber(L, (lua_Number)i);
      lua_gettable(L, idx);
    }
    encode(e, lua_gettop(L), depth + 1);
    lua_pop(L, 1);
  }
  put(e, "]", 1);
}

static void encode(enc *e, int idx, int depth) {
  lua_State *L = e->L;
  switch (lua_type(L, idx)) {
  case LUA_TSTRING: {
    size_t n;
    const char *s = lua_tolstring(L, idx, &n);
    put_str(e, s, n);
    return;
  }
  case LUA_TNUMBER:
    put_num(e, lua_tonumber(L, idx));
    return;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx))
      PUT_LIT(e, "true");
    else
      PUT_LIT(e, "false");
    return;
  case LUA_TTABLE:
    encode_table(e, idx, depth);
    return;
  case LUA_TNIL:
    PUT_LIT(e, "null");
    return;
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == NULL) { /* cjson.null */
      PUT_LIT(e, "null");
      return;
    }
    break;
  case TCDATA:
    e->ran_lua++;
    if (cdata_is_null(L, idx)) {
      PUT_LIT(e, "null");
      return;
    }
    break;
  default:
    break;
  }
  /* else esc(tostring(v)) */
  if (!push_tostring(e, idx)) fail(e, 0, "json: tostring returned no string");
  size_t n;
  const char *s = lua_tolstring(L, -1, &n);
  put_str(e, s, n);
  lua_pop(L, 1);
}

/* encode_protected(v, enc) */
static int encode_protected(lua_State *L) {
  enc *e = lua_touserdata(L, 2);
  static const char anchors_key = 0;
  int reuse = 0;
  if (lua_type(L, 1) == LUA_TTABLE) {
    /* one anchor table per state, reused: slots restart at 1 each call and are overwritten,
     * so it holds at most the keys of the largest encoding until the next (creating it per
     * call was 3k instructions of a 600-byte notification's 50k). It leaves the registry while
     * in use: an encoding nested in this one (a __tostring that encodes) makes its own. */
    lua_pushlightuserdata(L, (void *)&anchors_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
    if (lua_istable(L, -1)) {
      lua_pushlightuserdata(L, (void *)&anchors_key);
      lua_pushnil(L);
      lua_rawset(L, LUA_REGISTRYINDEX);
    } else {
      lua_pop(L, 1);
      lua_createtable(L, 32, 0);
    }
    reuse = 1;
    e->anchors = lua_gettop(L);
  }
  encode(e, 1, 0);
  if (reuse) {
    lua_pushlightuserdata(L, (void *)&anchors_key);
    lua_pushvalue(L, e->anchors);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  if (!e->push) return 0;
  lua_pushlstring(L, e->out->data, e->out->len);
  return 1;
}

static int encode_call(lua_State *L, int idx, bg_buf *out, int push) {
  enc e = {.L = L, .out = out, .push = push, .cap = INLINE_KEYS};
  e.keys = e.inline_keys;
  /* encode_protected as one function value per state, kept in the registry: pushing a C
   * function makes a new closure each time (a notification's body paid ~3.5k instructions of
   * allocation and collection for it) */
  static const char fn_key = 0;
  idx = idx < 0 && idx > LUA_REGISTRYINDEX ? lua_gettop(L) + idx + 1 : idx;
  lua_pushlightuserdata(L, (void *)&fn_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    lua_pushcfunction(L, encode_protected);
    lua_pushlightuserdata(L, (void *)&fn_key);
    lua_pushvalue(L, -2);
    lua_rawset(L, LUA_REGISTRYINDEX);
  }
  lua_pushvalue(L, idx);
  lua_pushlightuserdata(L, &e);
  int rc = lua_pcall(L, 2, push, 0);
  if (e.keys != e.inline_keys) free(e.keys);
  if (out->data != NULL) out->data[out->len] = '\0';
  if (rc == 0) return 0;
  if (rc == LUA_ERRMEM) return BG_ENOMEM;
  return e.err ? e.err : BG_EINVAL;
}

int bg_json_encode(lua_State *L, int idx, bg_buf *out) {
  return encode_call(L, idx, out, 0);
}

int bg_json_encode_push(lua_State *L, int idx) {
  bg_buf b = {0};
  int rc = encode_call(L, idx, &b, 1);
  bg_buf_free(&b);
  return rc;
}
