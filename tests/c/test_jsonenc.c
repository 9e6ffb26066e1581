/* test_jsonenc: the C encoder against fixed expectations (escapes, number forms, arrays and
 * objects, the depth limit, errors), then against lua/beagle/json.lua itself over thousands of
 * random values, in one LuaJIT state. BG_JSONENC_BENCH=1 also times a webhook body both ways
 * with the JIT off, as plugin code runs. */
#include "base/jsonenc.h"
#include "test_support.h"

#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <time.h>

static lua_State *L;

/* cenc(v) -> string | nil, err, as bg.json_encode */
static int l_cenc(lua_State *S) {
  lua_settop(S, 1);
  if (bg_json_encode_push(S, 1) == 0) return 1;
  lua_pushnil(S);
  lua_insert(S, -2);
  return 2;
}

static void run(const char *chunk) {
  if (luaL_dostring(L, chunk) != 0) {
    fprintf(stderr, "lua error: %s\n", lua_tostring(L, -1));
    exit(1);
  }
}

/* Pushes the value of the Lua expression expr. */
static void push_expr(const char *expr) {
  char chunk[1024];
  snprintf(chunk, sizeof chunk, "return %s", expr);
  if (luaL_loadstring(L, chunk) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
    fprintf(stderr, "lua error: %s\n", lua_tostring(L, -1));
    exit(1);
  }
}

/* The C encoding of the value of the Lua expression expr, or "ERR: <message>". */
static const char *enc(const char *expr) {
  static char out[4096];
  int top = lua_gettop(L);
  push_expr(expr);
  bg_buf b = {0};
  int rc = bg_json_encode(L, -1, &b);
  if (rc == 0) {
    ASSERT_EQ_INT(lua_gettop(L), top + 1);
    snprintf(out, sizeof out, "%s", b.data);
  } else {
    ASSERT_EQ_INT(lua_gettop(L), top + 2);
    snprintf(out, sizeof out, "ERR: %s", lua_tostring(L, -1));
  }
  bg_buf_free(&b);
  lua_settop(L, top);
  return out;
}

/* json.lua's encoding of expr, or "ERR" when it raises. */
static const char *lua_enc(const char *expr) {
  static char out[4096];
  char chunk[1024];
  snprintf(chunk, sizeof chunk,
           "local ok, s = pcall(function() return json.encode(%s) end) return ok and s or 'ERR'",
           expr);
  run(chunk);
  snprintf(out, sizeof out, "%s", lua_tostring(L, -1));
  lua_pop(L, 1);
  return out;
}

#define SAME(expr, want)                                                                           \
  do {                                                                                             \
    ASSERT_EQ_STR(enc(expr), want);                                                                \
    ASSERT_EQ_STR(lua_enc(expr), want);                                                            \
  } while (0)

static void test_scalars(void) {
  SAME("nil", "null");
  SAME("json.null", "null");
  SAME("true", "true");
  SAME("false", "false");
  SAME("'plain é ünïcode \\160\\255'", "\"plain é ünïcode \xa0\xff\"");
  SAME("'\"\\\\\\b\\f\\n\\r\\t'", "\"\\\"\\\\\\b\\f\\n\\r\\t\"");
  SAME("'\\0\\1\\31\\127 /'", "\"\\u0000\\u0001\\u001f\\u007f /\"");
  SAME("''", "\"\"");
}

static void test_numbers(void) {
  SAME("0", "0");
  SAME("-0.0", "0");
  SAME("42", "42");
  SAME("-7", "-7");
  SAME("1.5", "1.5");
  SAME("0.1", "0.10000000000000001");
  SAME("1e15 - 1", "999999999999999");
  SAME("-(1e15 - 1)", "-999999999999999");
  SAME("1e15", "1000000000000000");
  SAME("-1e15", "-1000000000000000");
  SAME("2^53", "9007199254740992");
  SAME("2^53 + 2", "9007199254740994");
  SAME("1e300", "1.0000000000000001e+300");
  SAME("5e-324", "4.9406564584124654e-324");
  SAME("-1/3", "-0.33333333333333331");
  /* exact ties at the 18th digit round away from zero, as LuaJIT's formatter does (glibc's
   * %.17g would round these to even: ...0.5312, ...562, ...812) */
  SAME("8161889122848.53125", "8161889122848.5313");
  SAME("6022.29571533203125", "6022.2957153320313");
  SAME("-0.327884674072265625", "-0.32788467407226563");
  SAME("7.74860382080078125e-07", "7.7486038208007813e-07");
  SAME("1015.72503662109375", "1015.7250366210938");
  SAME("0/0", "null");
  SAME("math.huge", "null");
  SAME("-math.huge", "null");
}

static void test_tables(void) {
  SAME("{}", "{}");
  SAME("json.array()", "[]");
  SAME("json.array({})", "[]");
  SAME("setmetatable({}, { __json_array = true })", "[]");
  SAME("{ 1, 'a', false, json.null }", "[1,\"a\",false,null]");
  SAME("{ 1, 2, x = 3 }", "[1,2]");
  SAME("{ b = 1, a = { 1, 2, { c = true } }, ['a b'] = {}, B = json.array() }",
       "{\"B\":[],\"a\":[1,2,{\"c\":true}],\"a b\":{},\"b\":1}");
  SAME("{ ab = 1, a = 2, ['a\\0'] = 3, ['\\255'] = 4, [''] = 5 }",
       "{\"\":5,\"a\":2,\"a\\u0000\":3,\"ab\":1,\"\xff\":4}");
  /* non-string keys go through tostring, then v[k] or v[tonumber(k)] */
  SAME("{ [10] = 'x', [2.5] = 'y', k = 'z' }", "{\"10\":\"x\",\"2.5\":\"y\",\"k\":\"z\"}");
  SAME("{ [1/3] = 1 }", "{\"0.33333333333333\":null}");
  SAME("{ [true] = 1 }", "{\"true\":null}");
  /* a marked table prints its 1..#v part only, holes as null, through __index */
  run("function holey(mt) local t = setmetatable({ 1, 2, 3, 4 }, mt) t[2] = nil return t end");
  SAME("holey(getmetatable(json.array()))", "[1,null,3,4]");
  SAME("holey({ __json_array = 1, __index = function(_, i) return i * 10 end })", "[1,20,3,4]");
  SAME("setmetatable({}, { __index = function(_, k) return 'via ' .. tostring(k) end, "
       "__metatable = 'locked' })",
       "{}");
  SAME("setmetatable({}, { __metatable = { __json_array = true } })", "[]");
  SAME("setmetatable({}, setmetatable({}, { __index = { __json_array = true } }))", "[]");
}

/* Tables without a metatable and only string keys take a path of their own (keys kept on the
 * stack, raw lookups): it must print what json.lua prints, also when a non-string key turns up
 * after string keys, and when a metamethod run for one value removes another key (whose string
 * is then only on our stack) and collects garbage. */
static void test_plain_objects(void) {
  run("mixed = {} for i = 1, 40 do mixed['s' .. i] = i end mixed[2.5] = 'x' mixed[false] = 'y'");
  ASSERT_EQ_STR(enc("mixed"), lua_enc("mixed"));
  SAME("{ z = { y = { x = 'deep' } }, a = json.null, m = json.array() }",
       "{\"a\":null,\"m\":[],\"z\":{\"y\":{\"x\":\"deep\"}}}");
  run("function removing()\n"
      "  local t, gone = {}, ('k'):rep(30) .. os.time()\n"
      "  t[gone] = 'still here?' t['7'] = 'string seven'\n"
      "  t['!arr'] = setmetatable({ 1, 2, 3, 4 }, { __json_array = true, __index = function(_, i)\n"
      "    t[gone] = nil t['7'] = nil t[7] = 'number seven' collectgarbage() return i * 10 end })\n"
      "  t['!arr'][2] = nil\n"
      "  return t\n"
      "end");
  /* "!arr" prints first; the __index of its hole removes the two keys after it and adds 7:
   * both print as json.lua prints them (null, and "7" through v[tonumber(k)]) */
  const char *c = enc("removing()");
  ASSERT_EQ_STR(c, lua_enc("removing()"));
  const char *head = "{\"!arr\":[1,20,3,4],\"7\":\"number seven\",\"kkk";
  ASSERT(strncmp(c, head, strlen(head)) == 0);
  ASSERT(strstr(c, "\":null}") != NULL);
}

/* Past the 32 keys kept inline, and an encoding nested in another (a key's __tostring that
 * encodes a table whose keys also come from tostring): each must keep its own key anchors. */
static void test_many_keys_and_nesting(void) {
  run("big = {} for i = 1, 70 do big[('k%02d'):format(i)] = { [i] = i, [i + 0.5] = 'h' } end");
  ASSERT_EQ_STR(enc("big"), lua_enc("big"));
  run("inner = { [2.5] = 'a', [3.5] = 'b', [4.5] = 'c' }\n"
      "function key(i) return setmetatable({}, { __tostring = function()\n"
      "  collectgarbage() return 'k' .. i .. cenc(inner) end }) end\n"
      "nested = { [key(1)] = 1, [key(2)] = 2, [1.25] = 3, [1.75] = 4 }");
  const char *c = enc("nested");
  /* 1.25 and 1.75 keep their values: the nested encodings did not take their anchors */
  ASSERT(strncmp(c, "{\"1.25\":3,\"1.75\":4,\"k1{", 22) == 0);
  ASSERT_EQ_STR(c, lua_enc("nested"));
}

static void test_depth(void) {
  /* depth 0 is the outermost table: 65 levels pass, 66 do not */
  run("function nest(n) local t = {} for _ = 2, n do t = { t } end return t end");
  ASSERT(strncmp(enc("nest(65)"), "[[[[", 4) == 0);
  ASSERT_EQ_STR(enc("nest(65)"), lua_enc("nest(65)"));
  ASSERT_EQ_STR(enc("nest(66)"), "ERR: json: nesting too deep");
  ASSERT_EQ_STR(lua_enc("nest(66)"), "ERR");
  run("t = nest(66)");
  bg_buf b = {0};
  lua_getglobal(L, "t");
  ASSERT_EQ_INT(bg_json_encode(L, -1, &b), BG_ELIMIT);
  lua_pop(L, 2);
  bg_buf_free(&b);
}

static void test_other_types(void) {
  /* json.lua prints functions, userdata and threads through tostring (no error) */
  run("f = function() end; co = coroutine.create(f); ud = newproxy(true)");
  SAME("f", lua_enc("f"));
  ASSERT(strncmp(enc("f"), "\"function: 0x", 13) == 0);
  SAME("{ print, co, ud }", lua_enc("{ print, co, ud }"));
  run("getmetatable(ud).__tostring = function() return 'a \"proxy\"' end");
  SAME("ud", "\"a \\\"proxy\\\"\"");
  SAME("{ [ud] = 1 }", "{\"a \\\"proxy\\\"\":null}");
  lua_pushlightuserdata(L, &L);
  lua_setglobal(L, "lud");
  SAME("lud", lua_enc("lud"));
  /* cdata: a NULL pointer equals nil and cjson.null */
  run("ffi = require 'ffi'");
  SAME("ffi.new('void *')", "null");
  run("ci = ffi.new('int', 5)");
  SAME("{ ci }", lua_enc("{ ci }"));
  ASSERT(strncmp(enc("ci"), "\"cdata<int>: 0x", 15) == 0);
  SAME("ffi.new('int64_t', 5)", "\"5LL\"");
}

static void test_errors(void) {
  /* where json.lua raises, the C encoder returns nil, err */
  const char *bad[] = {
      "setmetatable({}, { __tostring = function() return 5 end }) and "
      "{ [setmetatable({}, { __tostring = function() return 5 end })] = 1 }",
      "newproxy(true) and (function() local u = newproxy(true) "
      "getmetatable(u).__tostring = function() end return u end)()",
      "setmetatable({ [2] = 1 }, { __index = function() error('boom', 0) end })",
      "setmetatable({}, { __metatable = true })",
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    ASSERT_EQ_STR(lua_enc(bad[i]), "ERR");
    ASSERT(strncmp(enc(bad[i]), "ERR: ", 5) == 0);
  }
  ASSERT_EQ_STR(enc(bad[2]), "ERR: boom");
  run("e1, e2 = cenc(setmetatable({ [2] = 1 }, { __index = function() error('boom', 0) end }))");
  run("assert(e1 == nil and e2 == 'boom')");
  run("assert(cenc() == 'null' and cenc(nil) == 'null')");
}

static void test_appends(void) {
  bg_buf b = {0};
  ASSERT_EQ_INT(bg_buf_puts(&b, "x="), 0);
  lua_pushnumber(L, 3);
  int top = lua_gettop(L);
  ASSERT_EQ_INT(bg_json_encode(L, -1, &b), 0);
  ASSERT_EQ_INT(lua_gettop(L), top);
  ASSERT_EQ_STR(b.data, "x=3");
  lua_pop(L, 1);
  bg_buf_free(&b);
}

/* Random values, both encoders, same bytes: strings of every byte value, doubles of every
 * magnitude (random bit patterns, integers near 1e15 and 2^53), nested arrays, marked and
 * empty arrays, objects with string, number and boolean keys. */
static const char *random_equivalence =
    "local ffi = require 'ffi'\n"
    "local bits = ffi.new('union { double d; uint32_t w[2]; }')\n"
    "math.randomseed(12345)\n"
    "local R = math.random\n"
    "local function rstr()\n"
    "  local n, b = R(0, 12), {}\n"
    "  for i = 1, n do\n"
    "    local r = R()\n"
    "    b[i] = r < 0.3 and R(0, 255) or r < 0.5 and R(0, 31) or R(32, 126)\n"
    "  end\n"
    "  return string.char(unpack(b))\n"
    "end\n"
    "local function rnum()\n"
    "  local r = R(1, 10)\n"
    "  if r == 1 then bits.w[0] = R(0, 2^32 - 1); bits.w[1] = R(0, 2^32 - 1); return bits.d\n"
    "  elseif r == 2 then return (R() - 0.5) * 10 ^ R(-320, 308)\n"
    "  elseif r == 3 then return R(-1000, 1000)\n"
    "  elseif r == 4 then return (R() < 0.5 and -1 or 1) * (1e15 + R(-3, 3))\n"
    "  elseif r == 5 then return (R() < 0.5 and -1 or 1) * (2^53 + R(-3, 3))\n"
    "  elseif r == 6 then return R(-1e9, 1e9) / 2 ^ R(0, 20)\n"
    "  elseif r == 7 then return ({ 0, -0.0, 0/0, math.huge, -math.huge, 0.1, 1e-7, 1e21 })[R(8)]\n"
    "  elseif r == 8 then return R(-2^31, 2^31) * 2 ^ R(0, 40)\n"
    "  elseif r == 9 then\n" /* |v| = m * 2^-k whose exact expansion has 18 digits: a tie */
    "    local k = R(2, 25)\n"
    "    local lo, hi = math.ceil(1e17 / 5 ^ k), math.min(math.floor(1e18 / 5 ^ k), 2 ^ 53 - 1)\n"
    "    local m = math.floor(lo + R() * (hi - lo))\n"
    "    return (R() < 0.5 and -1 or 1) * (m - m % 2 + 1) / 2 ^ k\n"
    "  else return R() end\n"
    "end\n"
    "local function rkey()\n"
    "  local r = R(1, 10)\n"
    "  if r <= 6 then return rstr() elseif r <= 8 then return R(-5, 40)\n"
    "  elseif r == 9 then return rnum() else return R() < 0.5 end\n"
    "end\n"
    "local rval\n"
    "local function rtab(d)\n"
    "  local r, t = R(1, 5), {}\n"
    "  if r == 1 then for i = 1, R(0, 6) do t[i] = rval(d + 1) end\n"
    "  elseif r == 2 then t = json.array(); for i = 1, R(0, 4) do t[i] = rval(d + 1) end\n"
    "  elseif r == 3 then for i = 1, R(1, 5) do t[i] = rval(d + 1) end t.extra = 1\n"
    "  else for _ = 1, R(0, 8) do local k = rkey(); if k == k then t[k] = rval(d + 1) end end end\n"
    "  return t\n"
    "end\n"
    "function rval(d)\n"
    "  local r = R(1, 10)\n"
    "  if d < 5 and r <= 3 then return rtab(d) end\n"
    "  if r <= 5 then return rstr() elseif r <= 8 then return rnum()\n"
    "  elseif r == 9 then return R() < 0.5 else return json.null end\n"
    "end\n"
    "local n = 0\n"
    "for i = 1, 6000 do\n"
    "  local v = i % 3 == 0 and rnum() or rval(0)\n"
    "  local a, b = json.encode(v), cenc(v)\n"
    "  if a ~= b then error(('value %d: lua %q ~= c %q'):format(i, a, tostring(b)), 0) end\n"
    "  n = n + #a\n"
    "end\n"
    "assert(n > 100000, n)\n";

static void test_equivalence(void) {
  run(random_equivalence);
}

/* ---- timing (BG_JSONENC_BENCH=1) ---- */

static const char *webhook_body =
    "local function alert(i)\n"
    "  return { alert_name = 'HighCPU' .. i, severity = 'critical',\n"
    "    message = 'CPU usage on web-' .. i .. ' is 97.3% (threshold 90%)',\n"
    "    timestamp = '2024-05-01T12:34:56Z', tags = json.array({ 'env:prod', 'team:infra' }),\n"
    "    status = 'firing', labels = { alertname = 'HighCPU', instance = 'web-' .. i,\n"
    "      job = 'node', severity = 'critical', env = 'prod' },\n"
    "    annotations = { summary = 'CPU is high', runbook = 'https://runbooks/cpu' },\n"
    "    value = 97.3 + i, starts_at = '2024-05-01T12:30:00Z', ends_at = json.null,\n"
    "    fingerprint = 'a1b2c3d4e5f6' .. i }\n"
    "end\n"
    "body = alert(1)\n"
    "body.status = 'firing'; body.dedup_key = 'grp-7f3a9c'; body.test = false\n"
    "body.channel = 'ops-webhook'; body.group_key = '{alertname=\"HighCPU\"}'\n"
    "body.alerts = json.array({ alert(1), alert(2), alert(3) })\n"
    "assert(json.encode(body) == cenc(body))\n";

static double ns_per(const char *fn, int iters) {
  char chunk[256];
  snprintf(chunk, sizeof chunk, "jit.off() local f, b = %s, body for _ = 1, %d do f(b) end", fn,
           iters);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  run(chunk);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  return ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / iters;
}

static void bench(void) {
  run(webhook_body);
  run("print(('webhook body: %d bytes'):format(#cenc(body)))");
  for (int round = 0; round < 3; round++) {
    double l = ns_per("json.encode", 20000), c = ns_per("cenc", 200000);
    printf("json.encode %.0f ns, C %.0f ns, ratio %.1fx\n", l, c, l / c);
  }
}

/* ---- compact (the store's columns) ---- */

static const char *compact(const char *expr) {
  static char out[4096];
  int top = lua_gettop(L);
  push_expr(expr);
  bg_buf b = {0};
  int rc = bg_json_encode_compact(L, -1, &b);
  ASSERT_EQ_INT(lua_gettop(L), top + 1); /* the stack as found, error or not */
  if (rc == 0)
    snprintf(out, sizeof out, "%s", b.data);
  else
    snprintf(out, sizeof out, "ERR %d", rc);
  bg_buf_free(&b);
  lua_settop(L, top);
  return out;
}

static void test_compact(void) {
  ASSERT_EQ_STR(compact("{}"), "{}");
  ASSERT_EQ_STR(compact("{ 1, 'a', true, false }"), "[1,\"a\",true,false]");
  ASSERT_EQ_STR(compact("{ [1] = 1, [3] = 3 }"), "[1,null,3]"); /* a hole: null */
  ASSERT_EQ_STR(compact("{ [40] = 3 }"), "{\"40\":3}");         /* too sparse */
  ASSERT_EQ_STR(compact("{ k = 'a\"b\\\\c\\n\\1\\127' }"),
                "{\"k\":\"a\\\"b\\\\c\\n\\u0001\\u007f\"}");
  ASSERT_EQ_STR(compact("{ x = 0/0, y = math.huge, z = json.null }"),
                compact("{ x = 0/0, y = math.huge, z = json.null }")); /* no crash, stable */
  ASSERT(strstr(compact("{ x = 0/0 }"), "null") != NULL);
  ASSERT_EQ_STR(compact("{ [2.5] = 'h' }"), "{\"2.5\":\"h\"}");
  /* long strings go eight bytes at a time until an escape: the same text as the byte loop's */
  run("long = { s = ('abcdefgh'):rep(3) .. '\"' .. ('x'):rep(9) .. '\\\\' .. "
      "('\\226\\130\\172'):rep(5)"
      " .. '\\n' .. ('y'):rep(16) .. '\\31' .. ('z'):rep(7) .. '\\127' .. ('w'):rep(8) }");
  ASSERT_EQ_STR(compact("long"), enc("long"));
  ASSERT(strstr(compact("long"), "\\u001f") != NULL && strstr(compact("long"), "\\u007f") != NULL);
  char einval[32];
  snprintf(einval, sizeof einval, "ERR %d", BG_EINVAL);
  ASSERT_EQ_STR(compact("{ f = print }"), einval);
  ASSERT_EQ_STR(compact("{ [true] = 1 }"), einval);
  ASSERT_EQ_STR(compact("{ { { ok = setmetatable({}, { __index = error }) } } }"),
                "[[{\"ok\":{}}]]");
  /* numbers: %.14g, the form cjson (precision 14) and tostring write */
  const char *nums[] = {"1795844638.2599",
                        "50",
                        "-0.5",
                        "1e-05",
                        "0.0001",
                        "123456789012345",
                        "1e+15",
                        "-1.2345678901235e-07",
                        "3.1415926535898",
                        "99999999999999.5",
                        "0.1",
                        "1e+300",
                        "5e-324",
                        "-1e+100"};
  for (size_t i = 0; i < sizeof nums / sizeof *nums; i++) {
    char e[128], want[64];
    snprintf(e, sizeof e, "{ %s }", nums[i]);
    snprintf(want, sizeof want, "[%.14g]", strtod(nums[i], NULL));
    if (strtod(nums[i], NULL) == floor(strtod(nums[i], NULL)) && fabs(strtod(nums[i], NULL)) < 1e15)
      snprintf(want, sizeof want, "[%lld]", (long long)strtod(nums[i], NULL));
    ASSERT_EQ_STR(compact(e), want);
  }
  /* random doubles of every magnitude: printf's digits, or (rare near-ties) one unit of the
   * 14th digit away; and always back within 1e-13 */
  run("function rnd(i) return (math.random() - 0.5) * 10 ^ math.random(-20, 40) end");
  int differ = 0;
  for (int i = 0; i < 20000; i++) {
    lua_getglobal(L, "rnd");
    lua_call(L, 0, 1);
    double v = lua_tonumber(L, -1);
    lua_createtable(L, 1, 0);
    lua_pushnumber(L, v);
    lua_rawseti(L, -2, 1);
    bg_buf b = {0};
    ASSERT_EQ_INT(bg_json_encode_compact(L, -1, &b), 0);
    char want[64];
    snprintf(want, sizeof want, "[%.14g]", v);
    if (floor(v) == v && fabs(v) < 1e15) snprintf(want, sizeof want, "[%lld]", (long long)v);
    if (strcmp(b.data, want) != 0) {
      differ++;
      double got = strtod(b.data + 1, NULL);
      ASSERT(fabs(got - v) <= 1e-13 * fabs(v));
    }
    bg_buf_free(&b);
    lua_pop(L, 2);
  }
  ASSERT(differ <= 2);
}

int main(void) {
  L = luaL_newstate();
  ASSERT(L != NULL);
  luaL_openlibs(L);
  run("package.path = '" BG_SOURCE_DIR "/lua/?.lua;' .. package.path\n"
      "json = require 'beagle.json'");
  lua_pushcfunction(L, l_cenc);
  lua_setglobal(L, "cenc");
  RUN(test_scalars);
  RUN(test_numbers);
  RUN(test_tables);
  RUN(test_plain_objects);
  RUN(test_many_keys_and_nesting);
  RUN(test_depth);
  RUN(test_other_types);
  RUN(test_errors);
  RUN(test_appends);
  RUN(test_equivalence);
  RUN(test_compact);
  const char *b = getenv("BG_JSONENC_BENCH");
  if (b != NULL && b[0] == '1') bench();
  lua_close(L);
  return 0;
}
