/* test_xcopy: bg_lua_xcopy, the copy of a value from one lua_State to another that every plugin
 * run's arguments and results go through: plain data copied whole (keys of every kind it
 * keeps, embedded zeros, no sharing with the source), functions, userdata and threads left
 * out, cycles and nesting past 32 levels refused with nothing pushed, and tables bigger than
 * a Lua stack. */
#include "script/script.h"
#include "test_support.h"

#include <lauxlib.h>
#include <lualib.h>

static lua_State *A, *B;

static void run(lua_State *L, const char *chunk) {
  if (luaL_dostring(L, chunk) != 0) {
    fprintf(stderr, "lua error: %s\n", lua_tostring(L, -1));
    exit(1);
  }
}

/* Copies the global `name` of A into B's global `name`; returns bg_lua_xcopy's code. */
static int copy_global(const char *name) {
  lua_getglobal(A, name);
  int top = lua_gettop(B);
  int rc = bg_lua_xcopy(A, -1, B, 0);
  lua_pop(A, 1);
  if (rc == 0) {
    ASSERT_EQ_INT(lua_gettop(B), top + 1);
    lua_setglobal(B, name);
  } else {
    ASSERT_EQ_INT(lua_gettop(B), top);
  }
  return rc;
}

/* B's global `check` is a chunk's result: true, or an error text */
static void expect(const char *chunk) {
  char buf[4096];
  snprintf(buf, sizeof buf, "check = (function() %s end)()", chunk);
  run(B, buf);
  lua_getglobal(B, "check");
  if (lua_toboolean(B, -1) != 1 || lua_type(B, -1) != LUA_TBOOLEAN) {
    fprintf(stderr, "check failed: %s\n  in: %s\n", lua_tostring(B, -1), chunk);
    exit(1);
  }
  lua_pop(B, 1);
}

static const char *notification =
    "n = { name = 'sink', opts = { url = 'http://127.0.0.1:9/hook', headers = {} }, n = {\n"
    "  alerts = { { value = 50.25, labels = { severity = 'warning', alertname = 'tput', k = '0' "
    "},\n"
    "    annotations = { message = 'tput: 50 > 10' }, starts_at = 1795854647.9679,\n"
    "    status = 'firing', name = 'tput', fingerprint = 'f2a8874a83ef2133' } },\n"
    "  test = false, group_key = '1:{alertname=\"tput\",k=\"0\"}', created_at = 1795854647.9679,\n"
    "  status = 'firing', dedup_key = 'c3134909c07fa960', channel = 'sink', id = 12345,\n"
    "  [1] = 'first', [2] = 'second', [2.5] = 'half', [true] = 'yes', bin = 'a\\0b' } }";

static const char *notification_check =
    "local a = n.n.alerts[1]\n"
    "if n.name ~= 'sink' or n.opts.url ~= 'http://127.0.0.1:9/hook' or next(n.opts.headers) then"
    "  return 'opts' end\n"
    "if a.value ~= 50.25 or a.labels.k ~= '0' or a.labels.alertname ~= 'tput' then return 'alert' "
    "end\n"
    "if a.annotations.message ~= 'tput: 50 > 10' or a.starts_at ~= 1795854647.9679 then"
    "  return 'annotations' end\n"
    "if n.n.test ~= false or n.n.id ~= 12345 or n.n[1] ~= 'first' or n.n[2] ~= 'second' then"
    "  return 'fields' end\n"
    "if n.n[2.5] ~= 'half' or n.n[true] ~= 'yes' or n.n.bin ~= 'a\\0b' then return 'keys' end\n"
    "if getmetatable(n) ~= nil then return 'metatable' end\n"
    "return true";

static void test_plain_data(void) {
  run(A, notification);
  ASSERT_EQ_INT(copy_global("n"), 0);
  expect(notification_check);
  /* a copy, not a view: changing A's value leaves B's alone */
  run(A, "n.n.alerts[1].labels.k = 'changed'");
  expect("return n.n.alerts[1].labels.k == '0' or 'not a copy'");
}

static void test_what_cannot_cross(void) {
  /* functions, userdata and threads are left out, the rest is copied (the walk) */
  run(A, "m = { f = print, t = { 1, 2, g = function() end }, co = coroutine.create(print),"
         " u = newproxy(), s = 'kept', [print] = 'function key' }");
  ASSERT_EQ_INT(copy_global("m"), 0);
  expect("if m.f ~= nil or m.co ~= nil or m.u ~= nil or m.t.g ~= nil then return 'leaked' end\n"
         "if m.s ~= 'kept' or m.t[1] ~= 1 or m.t[2] ~= 2 then return 'lost' end\n"
         "for k in pairs(m) do if type(k) ~= 'string' then return 'odd key' end end\n"
         "return true");
  /* a cycle, and nesting past 32 levels, cannot cross */
  run(A, "cyc = { a = {} } cyc.a.back = cyc");
  ASSERT(copy_global("cyc") != 0);
  run(A, "deep = {} local t = deep for _ = 1, 40 do t.next = { f = print } t = t.next end");
  ASSERT(copy_global("deep") != 0);
  /* scalars */
  run(A, "x = 'str'");
  ASSERT_EQ_INT(copy_global("x"), 0);
  expect("return x == 'str' or 'scalar'");
}

static void test_big_tables(void) {
  /* more pairs than a Lua stack holds (65,500 slots): the table is made part way and the
   * rest set one by one; an array part, a hash part and a nested table past the switch */
  run(A, "big = {} for i = 1, 70000 do big[i] = i * 2 end\n"
         "for i = 1, 40000 do big['k' .. i] = { v = i, s = 'x' .. i } end\n"
         "mixed = { 1, 2, 3, a = 'a' } for i = 1, 600 do mixed['h' .. i] = i end");
  ASSERT_EQ_INT(copy_global("big"), 0);
  ASSERT_EQ_INT(copy_global("mixed"), 0);
  expect("if #big ~= 70000 then return 'array length ' .. #big end\n"
         "local n = 0 for k, v in pairs(big) do n = n + 1 end\n"
         "if n ~= 110000 then return 'pairs ' .. n end\n"
         "for i = 1, 70000 do if big[i] ~= i * 2 then return 'array ' .. i end end\n"
         "for i = 1, 40000 do local t = big['k' .. i]\n"
         "  if t.v ~= i or t.s ~= 'x' .. i then return 'hash ' .. i end end\n"
         "if #mixed ~= 3 or mixed.a ~= 'a' or mixed.h600 ~= 600 or mixed.h1 ~= 1 then return "
         "'mixed' end\n"
         "return true");
  /* a failure deep inside a big table leaves to's stack as it was (copy_global checks) */
  run(A, "big.k7.bad = {} big.k7.bad.loop = big.k7.bad");
  ASSERT(copy_global("big") != 0);
}

int main(void) {
  A = luaL_newstate();
  B = luaL_newstate();
  luaL_openlibs(A);
  luaL_openlibs(B);
  RUN(test_plain_data);
  RUN(test_what_cannot_cross);
  RUN(test_big_tables);
  lua_close(A);
  lua_close(B);
  return 0;
}
