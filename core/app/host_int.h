/* host_int: what the files of agent.core share. host.c assembles the module (and binds the
 * process: clocks, logging, stop, files); host_events.c, host_http.c, host_statsd.c and
 * host_history.c each bind one kind of handle. Not part of the API; loop thread only. */
#ifndef BG_HOST_INT_H
#define BG_HOST_INT_H

#include <lauxlib.h>
#include <lua.h>

#include "app/host.h"

/* A callback kept in the registry, called with pcall; failures are logged, never raised
 * into the loop. */
typedef struct hcb {
  lua_State *L;
  int ref;
} hcb;

/* Keeps the function at idx of L as c's callback. */
void bg__hcb_set(hcb *c, lua_State *L, int idx);
/* Drops the callback; clearing twice is a no-op. */
void bg__hcb_clear(hcb *c);
/* Calls the callback with the nargs values on top of L, nres results left on the stack (nil
 * filled on error). Returns 0 or -1. */
int bg__hcb_call(hcb *c, int nargs, int nres);

/* t[key] = v for the table on top of L. */
void bg__host_setnum(lua_State *L, const char *key, double v);
/* The runtime, from upvalue 1 of the running C closure (every function set by
 * bg__host_setfuncs has it). */
bg_runtime *bg__host_rt(lua_State *L);
/* Registers the metatable name with methods m as __index and gc (may be NULL) as __gc. */
void bg__host_set_meta(lua_State *L, const char *name, const luaL_Reg *m, lua_CFunction gc);
/* Sets each of fns, as a closure over rt, in the table on top of L. */
void bg__host_setfuncs(lua_State *L, bg_runtime *rt, const luaL_Reg *fns);

/* Each registers its metatables and sets its functions in the table on top of L. */
void bg__host_open_events(lua_State *L, bg_runtime *rt);  /* timer, signal, watch */
void bg__host_open_http(lua_State *L, bg_runtime *rt);    /* http_server */
void bg__host_open_statsd(lua_State *L, bg_runtime *rt);  /* statsd_start */
void bg__host_open_history(lua_State *L, bg_runtime *rt); /* history_open */
void bg__host_open_backend(lua_State *L, bg_runtime *rt); /* metrics_snapshot */
void bg__host_open_trace(lua_State *L, bg_runtime *rt);   /* trace_take, trace_stats... */

#endif
