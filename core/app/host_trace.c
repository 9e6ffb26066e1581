/* host_trace: the agent's side of the trace and log exporters (lua/agent/backends.lua), over
 * the process's tracer (trace/trace.h).
 *   core.trace_take(signal, max) -> batch | nil   up to max finished spans ("traces") or log
 *     records ("logs") out of the tracer's buffer, oldest first
 *   batch:size(), batch:id() (the number a plugin state opens it by), batch:share() (another
 *     handle on the same batch, for the next backend), batch:encode() -> bytes,
 *     batch:signal(), batch:release()
 *   core.trace_batch_decode(signal, bytes) -> batch | nil, why
 *   core.trace_recording(spans, logs)      what the tracer keeps for export
 *   core.trace_on_ready(n, fn | nil)       fn() soon after a buffer holds n items (nil: none)
 *   core.trace_stats() -> { started, sampled, spans_dropped, logs_recorded, logs_dropped,
 *     spans_buffered, logs_buffered }
 * A batch holds its spans or records until every handle on it is released (or collected). */
#include "app/host_int.h"
#include "base/bg.h"
#include "trace/trace.h"

#include <stdlib.h>
#include <string.h>
#include <uv.h>

#define TBATCH_MT "beagle.agent_trace_batch"

typedef struct tbatch_ud {
  void *b; /* a bg_span_batch or bg_log_batch; NULL once released */
  int logs;
} tbatch_ud;

static int check_signal(lua_State *L, int idx) {
  const char *s = luaL_checkstring(L, idx);
  if (strcmp(s, "traces") == 0) return 0;
  if (strcmp(s, "logs") == 0) return 1;
  return luaL_argerror(L, idx, "\"traces\" or \"logs\"");
}

static tbatch_ud *check_tbatch(lua_State *L) {
  tbatch_ud *u = luaL_checkudata(L, 1, TBATCH_MT);
  if (u->b == NULL) luaL_error(L, "batch: released");
  return u;
}

static void push_tbatch(lua_State *L, void *b, int logs) {
  tbatch_ud *u = lua_newuserdata(L, sizeof *u);
  u->b = NULL;
  u->logs = logs;
  luaL_getmetatable(L, TBATCH_MT);
  lua_setmetatable(L, -2);
  u->b = b;
}

static int l_trace_take(lua_State *L) {
  int logs = check_signal(L, 1);
  lua_Number max = luaL_checknumber(L, 2);
  if (!(max >= 1)) return luaL_argerror(L, 2, "at least 1");
  size_t n = max > 1e9 ? (size_t)1e9 : (size_t)max;
  bg_tracer *t = bg_tracer_default();
  void *b = logs ? (void *)bg_trace_take_logs(t, n) : (void *)bg_trace_take_spans(t, n);
  if (b == NULL) {
    lua_pushnil(L);
    return 1;
  }
  push_tbatch(L, b, logs);
  return 1;
}

static int tbatch_size(lua_State *L) {
  tbatch_ud *u = check_tbatch(L);
  lua_pushinteger(L, (lua_Integer)(u->logs ? bg_log_batch_len(u->b) : bg_span_batch_len(u->b)));
  return 1;
}

static int tbatch_signal(lua_State *L) {
  tbatch_ud *u = check_tbatch(L);
  lua_pushstring(L, u->logs ? "logs" : "traces");
  return 1;
}

static int tbatch_id(lua_State *L) {
  tbatch_ud *u = check_tbatch(L);
  uint32_t id = u->logs ? bg_log_batch_id(u->b) : bg_span_batch_id(u->b);
  if (id == 0) return luaL_error(L, "batch:id: out of memory");
  lua_pushnumber(L, id);
  return 1;
}

static int tbatch_share(lua_State *L) {
  tbatch_ud *u = check_tbatch(L);
  if (u->logs)
    bg_log_batch_ref(u->b);
  else
    bg_span_batch_ref(u->b);
  push_tbatch(L, u->b, u->logs);
  return 1;
}

static int tbatch_encode(lua_State *L) {
  tbatch_ud *u = check_tbatch(L);
  bg_buf out = {0};
  int rc = u->logs ? bg_log_batch_encode(u->b, &out) : bg_span_batch_encode(u->b, &out);
  if (rc != 0) {
    bg_buf_free(&out);
    return luaL_error(L, "batch:encode: out of memory");
  }
  lua_pushlstring(L, out.data ? out.data : "", out.len);
  bg_buf_free(&out);
  return 1;
}

static int tbatch_release(lua_State *L) {
  tbatch_ud *u = luaL_checkudata(L, 1, TBATCH_MT);
  if (u->b) {
    if (u->logs)
      bg_log_batch_unref(u->b);
    else
      bg_span_batch_unref(u->b);
  }
  u->b = NULL;
  return 0;
}

/* trace_batch_decode(signal, bytes) -> batch | nil, why */
static int l_trace_batch_decode(lua_State *L) {
  int logs = check_signal(L, 1);
  size_t len;
  const char *p = luaL_checklstring(L, 2, &len);
  const char *why = "not a batch";
  void *b =
      logs ? (void *)bg_log_batch_decode(p, len, &why) : (void *)bg_span_batch_decode(p, len, &why);
  if (b == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, why ? why : "not a batch");
    return 2;
  }
  push_tbatch(L, b, logs);
  return 1;
}

static int l_trace_recording(lua_State *L) {
  bg_tracer_set_recording(bg_tracer_default(), lua_toboolean(L, 1), lua_toboolean(L, 2));
  return 0;
}

/* The one ready callback of the agent (the tracer has one). The tracer calls ready_cb from
 * inside bg_span_end, possibly in the middle of an FFI call from Lua: it only starts a 0 ms
 * timer, and the timer calls the agent's function from the loop. */
static hcb ready;
static uv_timer_t *ready_timer;
static uv_loop_t *ready_loop;

static void ready_fire(uv_timer_t *t) {
  (void)t;
  hcb c = ready; /* a copy: the callback may replace itself */
  if (c.L) bg__hcb_call(&c, 0, 0);
}

static void ready_cb(void *ud) {
  (void)ud;
  if (ready_timer && !uv_is_active((uv_handle_t *)ready_timer))
    uv_timer_start(ready_timer, ready_fire, 0, 0);
}

/* trace_on_ready(n, fn | nil) */
static int l_trace_on_ready(lua_State *L) {
  bg_tracer *t = bg_tracer_default();
  if (lua_isnoneornil(L, 2)) {
    bg_tracer_set_ready_cb(t, 0, NULL, NULL);
    bg__hcb_clear(&ready);
    if (ready_timer) {
      uv_timer_stop(ready_timer);
      uv_close((uv_handle_t *)ready_timer, (uv_close_cb)free);
      ready_timer = NULL;
    }
    return 0;
  }
  lua_Number n = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  if (!(n >= 1)) return luaL_argerror(L, 1, "at least 1");
  if (ready_timer == NULL) {
    if ((ready_timer = malloc(sizeof *ready_timer)) == NULL) return luaL_error(L, "out of memory");
    uv_timer_init(ready_loop, ready_timer);
  }
  bg__hcb_clear(&ready);
  bg__hcb_set(&ready, L, 2);
  bg_tracer_set_ready_cb(t, n > 1e9 ? (size_t)1e9 : (size_t)n, ready_cb, NULL);
  return 0;
}

static int l_trace_stats(lua_State *L) {
  bg_tracer_stats s;
  bg_tracer_stats_get(bg_tracer_default(), &s);
  lua_createtable(L, 0, 7);
  bg__host_setnum(L, "started", (double)s.started);
  bg__host_setnum(L, "sampled", (double)s.sampled);
  bg__host_setnum(L, "spans_dropped", (double)s.spans_dropped);
  bg__host_setnum(L, "logs_recorded", (double)s.logs_recorded);
  bg__host_setnum(L, "logs_dropped", (double)s.logs_dropped);
  bg__host_setnum(L, "spans_buffered", (double)s.spans_buffered);
  bg__host_setnum(L, "logs_buffered", (double)s.logs_buffered);
  return 1;
}

void bg__host_open_trace(lua_State *L, bg_runtime *rt) {
  ready_loop = rt->loop;
  static const luaL_Reg bm[] = {{"size", tbatch_size},
                                {"id", tbatch_id},
                                {"share", tbatch_share},
                                {"encode", tbatch_encode},
                                {"signal", tbatch_signal},
                                {"release", tbatch_release},
                                {NULL, NULL}};
  bg__host_set_meta(L, TBATCH_MT, bm, tbatch_release);
  static const luaL_Reg fns[] = {
      {"trace_take", l_trace_take},           {"trace_batch_decode", l_trace_batch_decode},
      {"trace_recording", l_trace_recording}, {"trace_on_ready", l_trace_on_ready},
      {"trace_stats", l_trace_stats},         {NULL, NULL}};
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
}
