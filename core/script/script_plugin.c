/* script_plugin.c: the functions of a plugin state's __bg table that wait for nothing (the
 * ones that do are script_io*.c's): its memory and its run's kill reason, the clocks, the log,
 * the channel pool, and the two the sandbox uses to keep slices within what may yield. */
#include "script/script.h"

#include <lauxlib.h>

#include "base/bg.h"
#include "base/log.h"
#include "script/script_int.h"

static int pl_memory(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  lua_pushnumber(L, (double)((bg_script *)ud)->used);
  return 1;
}

static int pl_killed(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  bg_script *s = ud;
  if (s->current != NULL && s->current->killed != NULL) {
    lua_pushstring(L, s->current->killed);
    return 1;
  }
  return 0;
}

/* __bg.slice_taken() -> true once after the hook ended a slice inside a nested coroutine of
 * the plugin: its resumer (the sandbox) then yields __bg.SLICE up to the run. */
static int pl_slice_taken(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  bg_script *s = ud;
  lua_pushboolean(L, s->hook_yielded);
  s->hook_yielded = 0;
  return 1;
}

/* __bg.nest(entering) -> whether the caller could yield. The sandbox calls nest(true) before it
 * resumes a coroutine of the plugin and nest(false) after: while the resumer could not yield
 * (a C function between it and the run), the nested coroutine must not yield either. */
static int pl_nest(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  bg_script *s = ud;
  bg__run *r = s->current;
  int entering = lua_toboolean(L, 1);
  if (r == NULL || r->co == NULL) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (entering) {
    int ok = bg__run_yieldable(r, L, 1); /* level 0 is this function */
    if (!ok) r->nest_block++;
    lua_pushboolean(L, ok);
  } else {
    if (!lua_toboolean(L, 2) && r->nest_block > 0) r->nest_block--;
    lua_pushboolean(L, 1);
  }
  return 1;
}

static int pl_now(lua_State *L) {
  lua_pushnumber(L, (double)bg_now_ns() / 1e9);
  return 1;
}

static int pl_wall(lua_State *L) {
  lua_pushnumber(L, bg_wall_time());
  return 1;
}

int bg_lua_log(lua_State *L, const char *plugin) {
  int level = (int)luaL_checkinteger(L, 1);
  const char *msg = luaL_checkstring(L, 2);
  const char *kv[64];
  size_t n = 0;
  if (plugin != NULL) {
    kv[n++] = "plugin";
    kv[n++] = plugin;
  }
  /* fields arrive as a table of strings (the Lua wrappers convert); the table anchors them */
  if (lua_istable(L, 3)) {
    lua_pushnil(L);
    while (n < 62 && lua_next(L, 3) != 0) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) == LUA_TSTRING) {
        kv[n++] = lua_tostring(L, -2);
        kv[n++] = lua_tostring(L, -1);
      }
      lua_pop(L, 1);
    }
  }
  bg_log_kv_scope(level, msg, kv, n / 2, plugin);
  return 0;
}

/* __bg.pool(): this state's small blocks come from its pool from now on (lpool.h); the
 * sandbox calls it at a channel's first send. */
static int pl_pool(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  bg_lpool_start(&((bg_script *)ud)->pool);
  return 0;
}

static int pl_log(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  return bg_lua_log(L, ((bg_script *)ud)->name);
}

void bg__script_open_plugin(lua_State *L) {
  static const luaL_Reg fns[] = {{"memory", pl_memory},
                                 {"killed", pl_killed},
                                 {"now", pl_now},
                                 {"wall", pl_wall},
                                 {"log", pl_log},
                                 {"pool", pl_pool},
                                 {"slice_taken", pl_slice_taken},
                                 {"nest", pl_nest},
                                 {NULL, NULL}};
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
}
