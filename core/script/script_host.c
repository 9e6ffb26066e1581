/* script_host.c: the host side of a plugin state, for the agent's Lua: script_new and the
 * script object's methods (run, call, cancel, memory, active, close). The runs themselves,
 * their slices and the state's limits are script.c's. */
#include "script/script.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "base/bg.h"
#include "script/script_int.h"

#define SCRIPT_MT "beagle.script"
/* Loading and validating run synchronously on the loop, so they get a tight leash. */
#define CALL_TIMEOUT_NS (1000000000ull)
#define CALL_BUDGET 20000000ull

typedef struct script_ud {
  bg_script *s;
} script_ud;

static bg_script *check_script(lua_State *L) {
  script_ud *u = luaL_checkudata(L, 1, SCRIPT_MT);
  if (u->s == NULL || u->s->closing) luaL_error(L, "script is closed");
  return u->s;
}

/* s:run(fname, arg, opts, cb) -> id. opts: timeout (s), budget (instructions), memory (bytes
 * the state may grow by while the run executes; the state's own limit applies regardless),
 * traceparent (and tracestate): the context current when the run starts, so its spans and
 * requests are children of it (an invalid one is ignored: the run starts with none). */
static int l_script_run(lua_State *H) {
  bg_script *s = check_script(H);
  const char *fname = luaL_checkstring(H, 2);
  luaL_checktype(H, 4, LUA_TTABLE);
  luaL_checktype(H, 5, LUA_TFUNCTION);
  lua_getfield(H, 4, "timeout");
  double timeout = luaL_optnumber(H, -1, 10);
  lua_getfield(H, 4, "budget");
  double budget = luaL_optnumber(H, -1, 0);
  lua_getfield(H, 4, "memory");
  double memory = luaL_optnumber(H, -1, 0);
  lua_pop(H, 3);
  bg_span_ctx tctx;
  memset(&tctx, 0, sizeof tctx);
  lua_getfield(H, 4, "traceparent");
  size_t tplen = 0;
  const char *tp = lua_type(H, -1) == LUA_TSTRING ? lua_tolstring(H, -1, &tplen) : NULL;
  if (tp != NULL && bg_traceparent_parse(tp, tplen, &tctx) == 0) {
    lua_getfield(H, 4, "tracestate");
    size_t tslen = 0;
    const char *ts = lua_type(H, -1) == LUA_TSTRING ? lua_tolstring(H, -1, &tslen) : NULL;
    if (ts != NULL && tslen > 0) bg_tracestate_parse(&tctx, ts, tslen);
    lua_pop(H, 1);
  }
  lua_pop(H, 1);

  bg__run *r = calloc(1, sizeof *r);
  uv_timer_t *t = malloc(sizeof *t);
  if (r == NULL || t == NULL) {
    free(r);
    free(t);
    bg_span_ctx_clear(&tctx);
    return luaL_error(H, "out of memory");
  }
  r->tctx = tctx; /* the run owns its reference now */
  lua_State *L = s->L;
  r->s = s;
  r->host = H;
  r->id = ++s->next_id;
  r->budget = budget > 0 ? (uint64_t)budget : 0;
  r->mem_limit = memory > 0 ? (size_t)memory : 0;
  r->deadline = timeout > 0 ? bg_now_ns() + (uint64_t)(timeout * 1e9) : 0;
  r->co = lua_newthread(L);
  r->co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getglobal(r->co, fname);
  if (!lua_isfunction(r->co, -1)) {
    luaL_unref(L, LUA_REGISTRYINDEX, r->co_ref);
    bg_span_ctx_clear(&r->tctx);
    free(r);
    free(t);
    return luaL_error(H, "plugin state has no entry point '%s'", fname);
  }
  if (bg_lua_xcopy(H, 3, r->co, 0) != 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, r->co_ref);
    bg_span_ctx_clear(&r->tctx);
    free(r);
    free(t);
    return luaL_error(H, "bad argument #2 to 'run' (value cannot cross states)");
  }
  lua_pushvalue(H, 5);
  r->cb_ref = luaL_ref(H, LUA_REGISTRYINDEX);
  uv_timer_init(s->rt->loop, t);
  t->data = r;
  r->timer = t;
  r->next = s->runs;
  s->runs = r;
  uv_timer_start(t, bg__run_timer_cb, 0, 0);
  lua_pushinteger(H, r->id);
  return 1;
}

/* s:call(fname, arg) -> value | nil, err. Synchronous, for loading and validation: no I/O,
 * at most 1 s and CALL_BUDGET instructions. */
static int l_script_call(lua_State *H) {
  bg_script *s = check_script(H);
  const char *fname = luaL_checkstring(H, 2);
  lua_State *L = s->L;
  int top = lua_gettop(L);
  bg__run tmp;
  memset(&tmp, 0, sizeof tmp);
  tmp.s = s;
  tmp.deadline = bg_now_ns() + CALL_TIMEOUT_NS;
  tmp.budget = CALL_BUDGET;
  tmp.co_ref = LUA_NOREF;
  lua_getglobal(L, fname);
  if (!lua_isfunction(L, -1)) {
    lua_settop(L, top);
    return luaL_error(H, "plugin state has no entry point '%s'", fname);
  }
  if (bg_lua_xcopy(H, 3, L, 0) != 0) {
    lua_settop(L, top);
    return luaL_error(H, "bad argument #2 to 'call' (value cannot cross states)");
  }
  /* whatever spans the call begins and leaves open, the caller's context is current after */
  bg_tracer *tr = bg_tracer_default();
  bg_span_ctx saved;
  bg_span_ctx_copy(&saved, bg_trace_current(tr));
  bg__trace_mirror(L, LUA_NOREF);
  bg__run *prev = s->current;
  s->current = &tmp;
  s->enforce = 1;
  s->busy++;
  int rc = lua_pcall(L, 1, 2, 0);
  bg_trace_restore(tr, &saved);
  s->busy--;
  s->enforce = 0;
  s->current = prev;
  if (rc != 0) {
    lua_pushnil(H);
    if (tmp.killed)
      lua_pushstring(H, tmp.killed);
    else if (rc == LUA_ERRMEM)
      lua_pushstring(H, "memory limit");
    else
      lua_pushstring(H, bg__error_text(L, -1));
    lua_settop(L, top);
    lua_gc(L, LUA_GCCOLLECT, 0);
    return 2;
  }
  /* entry points return value or nil, err */
  int ret = 1;
  if (bg_lua_xcopy(L, top + 1, H, 0) != 0) {
    lua_pushnil(H);
    lua_pushstring(H, "result cannot be copied out of the plugin");
    ret = 2;
  } else if (lua_isnil(L, top + 1)) {
    bg_lua_xcopy(L, top + 2, H, 0);
    ret = 2;
  }
  lua_settop(L, top);
  return ret;
}

static int l_script_cancel(lua_State *H) {
  bg_script *s = check_script(H);
  int id = (int)luaL_checkinteger(H, 2);
  for (bg__run *r = s->runs; r != NULL; r = r->next) {
    if (r->id == id) {
      r->killed = "cancelled";
      bg__run_finish(r, 0, "cancelled");
      lua_pushboolean(H, 1);
      return 1;
    }
  }
  lua_pushboolean(H, 0);
  return 1;
}

static int l_script_memory(lua_State *H) {
  script_ud *u = luaL_checkudata(H, 1, SCRIPT_MT);
  lua_pushnumber(H, u->s ? (double)u->s->used : 0);
  return 1;
}

static int l_script_active(lua_State *H) {
  script_ud *u = luaL_checkudata(H, 1, SCRIPT_MT);
  int n = 0;
  if (u->s)
    for (bg__run *r = u->s->runs; r != NULL; r = r->next)
      n++;
  lua_pushinteger(H, n);
  return 1;
}

/* s:close([force[, now]]): no new runs; the state is freed when its runs have ended. With
 * force, runs still active end now with "cancelled". With now, a state that has no run and no
 * call of its own on the stack is freed before close returns (the agent loading plugin files:
 * a state it gives up at once never adds to the heap's peak); else as without. */
static int l_script_close(lua_State *H) {
  script_ud *u = luaL_checkudata(H, 1, SCRIPT_MT);
  bg_script *s = u->s;
  if (s == NULL) return 0;
  int force = lua_toboolean(H, 2);
  u->s = NULL;
  s->closing = 1;
  if (force) {
    while (s->runs != NULL) {
      s->runs->killed = "cancelled";
      bg__run_finish(s->runs, 0, "cancelled");
    }
  }
  if (lua_toboolean(H, 3) && s->runs == NULL && s->busy == 0 && s->reaper == NULL) {
    bg__script_free(s);
    return 0;
  }
  bg__script_maybe_reap(s);
  return 0;
}

static int l_script_gc(lua_State *H) {
  script_ud *u = luaL_checkudata(H, 1, SCRIPT_MT);
  if (u->s != NULL) {
    lua_settop(H, 1);
    lua_pushboolean(H, 1);
    return l_script_close(H);
  }
  return 0;
}

/* script_new{name=, memory_limit=, budget=} -> script | nil, err */
static int l_script_new(lua_State *H) {
  bg_runtime *rt = lua_touserdata(H, lua_upvalueindex(1));
  luaL_checktype(H, 1, LUA_TTABLE);
  lua_getfield(H, 1, "name");
  lua_getfield(H, 1, "memory_limit");
  bg_script_opts o = {0};
  o.name = luaL_checkstring(H, -2);
  o.memory_limit = (size_t)luaL_optnumber(H, -1, 0);
  char err[1024] = "";
  bg_script *s = NULL;
  int rc = bg_script_new(rt, &o, &s, err, sizeof err);
  lua_pop(H, 2);
  if (rc != 0) {
    lua_pushnil(H);
    lua_pushstring(H, err[0] ? err : bg_strerror(rc));
    return 2;
  }
  script_ud *u = lua_newuserdata(H, sizeof *u);
  u->s = s;
  luaL_getmetatable(H, SCRIPT_MT);
  lua_setmetatable(H, -2);
  return 1;
}

void bg_script_open_host(lua_State *H, bg_runtime *rt) {
  if (luaL_newmetatable(H, SCRIPT_MT)) {
    static const luaL_Reg m[] = {{"run", l_script_run},
                                 {"call", l_script_call},
                                 {"cancel", l_script_cancel},
                                 {"memory", l_script_memory},
                                 {"active", l_script_active},
                                 {"close", l_script_close},
                                 {NULL, NULL}};
    lua_newtable(H);
    for (const luaL_Reg *f = m; f->name; f++) {
      lua_pushcfunction(H, f->func);
      lua_setfield(H, -2, f->name);
    }
    lua_setfield(H, -2, "__index");
    lua_pushcfunction(H, l_script_gc);
    lua_setfield(H, -2, "__gc");
  }
  lua_pop(H, 1);
  lua_pushlightuserdata(H, rt);
  lua_pushcclosure(H, l_script_new, 1);
  lua_setfield(H, -2, "script_new");
  /* plugin and rule files are read as plugins read theirs: a FIFO dropped in their
   * directory is refused instead of holding the loop */
  lua_pushcfunction(H, bg_lua_read_file);
  lua_setfield(H, -2, "read_file");
}
