#include "app/host.h"

#include <lauxlib.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app/host_int.h"
#include "base/bg.h"
#include "base/jsonenc.h"
#include "base/log.h"
#include "store/store.h"

static int g_exit_code = 0;

int bg_host_exit_code(void) {
  return g_exit_code;
}

/* ---- shared by the binding files (host_int.h) ---------------------------------------- */

void bg__hcb_set(hcb *c, lua_State *L, int idx) {
  lua_pushvalue(L, idx);
  c->L = L;
  c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

void bg__hcb_clear(hcb *c) {
  if (c->L != NULL && c->ref != LUA_NOREF) luaL_unref(c->L, LUA_REGISTRYINDEX, c->ref);
  c->ref = LUA_NOREF;
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  lua_getglobal(L, "debug");
  lua_getfield(L, -1, "traceback");
  lua_pushstring(L, msg ? msg : "(error object is not a string)");
  lua_pushinteger(L, 2);
  lua_call(L, 2, 1);
  return 1;
}

int bg__hcb_call(hcb *c, int nargs, int nres) {
  lua_State *L = c->L;
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, traceback);
  lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
  lua_insert(L, base + 1);
  lua_insert(L, base + 1);
  if (lua_pcall(L, nargs, nres, base + 1) != 0) {
    bg_log(BG_LOG_ERROR, "agent callback failed", "error", lua_tostring(L, -1), NULL);
    lua_settop(L, base);
    for (int i = 0; i < nres; i++)
      lua_pushnil(L);
    return -1;
  }
  lua_remove(L, base + 1);
  return 0;
}

void bg__host_setnum(lua_State *L, const char *key, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, key);
}

bg_runtime *bg__host_rt(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

void bg__host_set_meta(lua_State *L, const char *name, const luaL_Reg *m, lua_CFunction gc) {
  luaL_newmetatable(L, name);
  lua_newtable(L);
  for (; m->name; m++) {
    lua_pushcfunction(L, m->func);
    lua_setfield(L, -2, m->name);
  }
  lua_setfield(L, -2, "__index");
  if (gc) {
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}

void bg__host_setfuncs(lua_State *L, bg_runtime *rt, const luaL_Reg *fns) {
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushlightuserdata(L, rt);
    lua_pushcclosure(L, f->func, 1);
    lua_setfield(L, -2, f->name);
  }
}

/* ---- the process: clocks, logging, stop, files ------------------------------------------- */

/* cpu() -> seconds of CPU this thread has used (the loop's own work, whatever else runs) */
static int l_cpu(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
  return 1;
}

static int l_now(lua_State *L) {
  lua_pushnumber(L, (double)bg_now_ns() / 1e9);
  return 1;
}

static int l_wall(lua_State *L) {
  lua_pushnumber(L, bg_wall_time());
  return 1;
}

/* log(level, msg, {k=v}) with string keys and values */
static int l_log(lua_State *L) {
  return bg_lua_log(L, NULL);
}

static int l_log_setup(lua_State *L) {
  const char *format = luaL_optstring(L, 1, "logfmt");
  const char *level = luaL_optstring(L, 2, "info");
  if (bg_log_set_format(format) != 0) return luaL_argerror(L, 1, "logfmt or json");
  if (bg_log_set_level(level) != 0) return luaL_argerror(L, 2, "debug, info, warn or error");
  return 0;
}

/* stop(code): ends the loop; main returns code. */
static int l_stop(lua_State *L) {
  g_exit_code = (int)luaL_optinteger(L, 1, 0);
  uv_stop(bg__host_rt(L)->loop);
  return 0;
}

/* loop_lag(): how late this call is relative to the loop's cached time, in seconds. */
static int l_update_time(lua_State *L) {
  uv_loop_t *loop = bg__host_rt(L)->loop;
  uint64_t before = uv_now(loop);
  uv_update_time(loop);
  lua_pushnumber(L, (double)(uv_now(loop) - before) / 1000.0);
  return 1;
}

/* json_encode(v) -> string | nil, err: beagle.json's encode, byte for byte (jsonenc.h); the
 * agent's routes and payloads use it (lua/beagle/json.lua). */
static int l_json_encode(lua_State *L) {
  lua_settop(L, 1);
  if (bg_json_encode_push(L, 1) == 0) return 1;
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}

/* release_memory(): hands the heap's free pages back to the system (glibc's malloc_trim): after
 * plugin states were closed at once (agent.plugins parks the unused ones), their blocks are free
 * but their pages stay resident in the middle of the heap. */
static int l_release_memory(lua_State *L) {
  (void)L;
#ifdef __GLIBC__
  malloc_trim(0);
#endif
  return 0;
}

static int l_rss(lua_State *L) {
  size_t rss = 0;
  uv_resident_set_memory(&rss);
  lua_pushnumber(L, (double)rss);
  return 1;
}

/* listdir(path) -> { {name=, dir=bool}, ... } sorted by name | nil, err. Synchronous: plugin and
 * rule directories are small and local. */
static int l_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  uv_fs_t req;
  int rc = uv_fs_scandir(NULL, &req, path, 0, NULL);
  if (rc < 0) {
    uv_fs_req_cleanup(&req);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, uv_strerror(rc));
    return 2;
  }
  lua_newtable(L);
  uv_dirent_t ent;
  int i = 0;
  while (uv_fs_scandir_next(&req, &ent) != UV_EOF) {
    lua_createtable(L, 0, 2);
    lua_pushstring(L, ent.name);
    lua_setfield(L, -2, "name");
    lua_pushboolean(L, ent.type == UV_DIRENT_DIR);
    lua_setfield(L, -2, "dir");
    lua_rawseti(L, -2, ++i);
  }
  uv_fs_req_cleanup(&req);
  return 1;
}

/* mkdir(path) -> true | nil, err; an existing directory is fine. */
static int l_mkdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  uv_fs_t req;
  int rc = uv_fs_mkdir(NULL, &req, path, 0755, NULL);
  uv_fs_req_cleanup(&req);
  if (rc < 0 && rc != UV_EEXIST) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, uv_strerror(rc));
    return 2;
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* ---- the module -------------------------------------------------------------------------- */

static int luaopen_core(lua_State *L) {
  bg_runtime *rt = lua_touserdata(L, lua_upvalueindex(1));
  lua_newtable(L);
  bg__host_open_events(L, rt);
  bg__host_open_http(L, rt);
  bg__host_open_statsd(L, rt);
  bg__host_open_history(L, rt);
  bg__host_open_backend(L, rt);
  bg__host_open_trace(L, rt);
  static const luaL_Reg fns[] = {{"stop", l_stop}, {"update_time", l_update_time}, {NULL, NULL}};
  bg__host_setfuncs(L, rt, fns);
  static const luaL_Reg plain[] = {{"now", l_now},
                                   {"json_encode", l_json_encode},
                                   {"cpu", l_cpu},
                                   {"wall", l_wall},
                                   {"log", l_log},
                                   {"log_setup", l_log_setup},
                                   {"rss", l_rss},
                                   {"listdir", l_listdir},
                                   {"release_memory", l_release_memory},
                                   {"mkdir", l_mkdir},
                                   {NULL, NULL}};
  for (const luaL_Reg *f = plain; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
  lua_pushstring(L, rt->lua_dir);
  lua_setfield(L, -2, "lua_dir");
  lua_pushstring(L, BG_VERSION);
  lua_setfield(L, -2, "version");
  bg_script_open_host(L, rt);
  bg_store_open_lua(L, rt->loop); /* core.store_open(path[, opts]) */
  return 1;
}

void bg_host_open(lua_State *L, bg_runtime *rt) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "preload");
  lua_pushlightuserdata(L, rt);
  lua_pushcclosure(L, luaopen_core, 1);
  lua_setfield(L, -2, "agent.core");
  lua_pop(L, 2);
}
