/* host_events: what calls the agent's Lua back on an event of the loop: core.timer,
 * core.signal and core.watch (a directory watch, base/watch.h). Each handle keeps its callback
 * in the registry until stopped, and stops on __gc. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "app/host_int.h"
#include "base/bg.h"
#include "base/watch.h"

#define TIMER_MT "agent.core.timer"
#define SIGNAL_MT "agent.core.signal"
#define WATCH_MT "agent.core.watch"

/* ---- timers ----------------------------------------------------------------------------- */

typedef struct htimer {
  uv_timer_t *t; /* NULL once stopped */
  hcb cb;
} htimer;

static void timer_cb(uv_timer_t *t) {
  htimer *ht = t->data;
  hcb c = ht->cb; /* a copy: the callback may stop (and clear) its own timer */
  bg__hcb_call(&c, 0, 0);
}

static void htimer_stop(htimer *ht) {
  if (ht->t == NULL) return;
  uv_timer_stop(ht->t);
  uv_close((uv_handle_t *)ht->t, (uv_close_cb)free);
  ht->t = NULL;
  bg__hcb_clear(&ht->cb);
}

/* timer(delay_s, repeat_s, fn) -> timer */
static int l_timer(lua_State *L) {
  double delay = luaL_checknumber(L, 1);
  double rep = luaL_optnumber(L, 2, 0);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  htimer *ht = lua_newuserdata(L, sizeof *ht);
  memset(ht, 0, sizeof *ht);
  ht->t = malloc(sizeof *ht->t);
  if (ht->t == NULL) return luaL_error(L, "out of memory");
  uv_timer_init(bg__host_rt(L)->loop, ht->t);
  ht->t->data = ht;
  bg__hcb_set(&ht->cb, L, 3);
  luaL_getmetatable(L, TIMER_MT);
  lua_setmetatable(L, -2);
  /* the userdata must outlive the handle: keep it in the registry until stopped */
  uv_timer_start(ht->t, timer_cb, delay > 0 ? (uint64_t)(delay * 1000) : 0,
                 rep > 0 ? (uint64_t)(rep * 1000) : 0);
  return 1;
}

static int l_timer_stop(lua_State *L) {
  htimer *ht = luaL_checkudata(L, 1, TIMER_MT);
  htimer_stop(ht);
  return 0;
}

/* ---- signals ----------------------------------------------------------------------------- */

typedef struct hsignal {
  uv_signal_t *s;
  hcb cb;
} hsignal;

static void signal_cb(uv_signal_t *s, int signum) {
  hsignal *hs = s->data;
  lua_pushinteger(hs->cb.L, signum);
  bg__hcb_call(&hs->cb, 1, 0);
}

/* signal(name, fn) -> handle; name is "SIGHUP", "SIGTERM" or "SIGINT" */
static int l_signal(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  int signum = strcmp(name, "SIGHUP") == 0    ? SIGHUP
               : strcmp(name, "SIGTERM") == 0 ? SIGTERM
               : strcmp(name, "SIGINT") == 0  ? SIGINT
                                              : 0;
  if (signum == 0) return luaL_argerror(L, 1, "SIGHUP, SIGTERM or SIGINT");
  hsignal *hs = lua_newuserdata(L, sizeof *hs);
  hs->s = malloc(sizeof *hs->s);
  if (hs->s == NULL) return luaL_error(L, "out of memory");
  uv_signal_init(bg__host_rt(L)->loop, hs->s);
  hs->s->data = hs;
  bg__hcb_set(&hs->cb, L, 2);
  luaL_getmetatable(L, SIGNAL_MT);
  lua_setmetatable(L, -2);
  uv_signal_start(hs->s, signal_cb, signum);
  uv_unref((uv_handle_t *)hs->s);
  return 1;
}

static int l_signal_stop(lua_State *L) {
  hsignal *hs = luaL_checkudata(L, 1, SIGNAL_MT);
  if (hs->s) {
    uv_close((uv_handle_t *)hs->s, (uv_close_cb)free);
    hs->s = NULL;
    bg__hcb_clear(&hs->cb);
  }
  return 0;
}

/* ---- watch ------------------------------------------------------------------------------- */

typedef struct hwatch {
  bg_watch *w;
  hcb cb;
} hwatch;

static void watch_cb(void *ud, const char *const *names, size_t n) {
  hwatch *hw = ud;
  lua_State *L = hw->cb.L;
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, (int)i + 1);
  }
  bg__hcb_call(&hw->cb, 1, 0);
}

/* watch(dir, debounce_s, fn(names)) -> handle | nil, err */
static int l_watch(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  double debounce = luaL_checknumber(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  hwatch *hw = lua_newuserdata(L, sizeof *hw);
  memset(hw, 0, sizeof *hw);
  int rc =
      bg_watch_start(bg__host_rt(L)->loop, dir, (unsigned)(debounce * 1000), watch_cb, hw, &hw->w);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", dir, bg_strerror(rc));
    return 2;
  }
  bg__hcb_set(&hw->cb, L, 3);
  luaL_getmetatable(L, WATCH_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static int l_watch_stop(lua_State *L) {
  hwatch *hw = luaL_checkudata(L, 1, WATCH_MT);
  if (hw->w) {
    bg_watch_stop(hw->w);
    hw->w = NULL;
    bg__hcb_clear(&hw->cb);
  }
  return 0;
}

/* Registers the metatables and sets core.timer, core.signal, core.watch in the table on top of L.
 */
void bg__host_open_events(lua_State *L, bg_runtime *rt) {
  static const luaL_Reg timer_m[] = {{"stop", l_timer_stop}, {NULL, NULL}};
  bg__host_set_meta(L, TIMER_MT, timer_m, l_timer_stop);
  static const luaL_Reg signal_m[] = {{"stop", l_signal_stop}, {NULL, NULL}};
  bg__host_set_meta(L, SIGNAL_MT, signal_m, l_signal_stop);
  static const luaL_Reg watch_m[] = {{"stop", l_watch_stop}, {NULL, NULL}};
  bg__host_set_meta(L, WATCH_MT, watch_m, l_watch_stop);
  static const luaL_Reg fns[] = {
      {"timer", l_timer}, {"signal", l_signal}, {"watch", l_watch}, {NULL, NULL}};
  bg__host_setfuncs(L, rt, fns);
}
