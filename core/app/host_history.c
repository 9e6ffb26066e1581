/* host_history: core.history_open, the series history (metrics/history.h) of the process-wide
 * registry, and its handle's sample, flush, stats and close. Queries go through the FFI
 * (lua/agent/query.lua), not through here. */
#include "app/host_int.h"
#include "base/bg.h"
#include "metrics/history.h"
#include "metrics/metrics.h"

#define HISTORY_MT "agent.core.history"

typedef struct hhistory {
  bg_history *h;
  uv_loop_t *loop; /* methods have no runtime upvalue: keep the loop for async flushes */
} hhistory;

/* history_open(data_dir|nil, raw_seconds, retention_days) -> handle | nil, err. The history
 * becomes the process default that beagle.query reads. */
static int l_history_open(lua_State *L) {
  bg_history_opts o;
  memset(&o, 0, sizeof o);
  o.data_dir = lua_isnil(L, 1) ? NULL : luaL_checkstring(L, 1);
  o.raw_ms = (int64_t)(luaL_optnumber(L, 2, 3600) * 1000);
  o.retention_days = (int)luaL_optinteger(L, 3, 30);
  hhistory *hh = lua_newuserdata(L, sizeof *hh);
  hh->h = NULL;
  hh->loop = bg__host_rt(L)->loop;
  char err[512] = "";
  int rc = bg_history_open(&hh->h, &o, err, sizeof err);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "history: %s", err[0] ? err : bg_strerror(rc));
    return 2;
  }
  bg_history_set_default(hh->h);
  luaL_getmetatable(L, HISTORY_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static hhistory *check_history(lua_State *L) {
  hhistory *hh = luaL_checkudata(L, 1, HISTORY_MT);
  if (hh->h == NULL) luaL_error(L, "history is closed");
  return hh;
}

/* h:sample(now_ms) samples every series of the default registry. */
static int l_history_sample(lua_State *L) {
  hhistory *hh = check_history(L);
  int rc = bg_history_sample(hh->h, bg_registry_default(), (int64_t)luaL_checknumber(L, 2));
  lua_pushboolean(L, rc == 0);
  return 1;
}

/* h:flush([sync]) -> true | false, err. Async on the threadpool unless sync; "busy" when the
 * previous flush is still running. */
static int l_history_flush(lua_State *L) {
  hhistory *hh = check_history(L);
  int rc = lua_toboolean(L, 2) ? bg_history_flush(hh->h) : bg_history_flush_async(hh->h, hh->loop);
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushboolean(L, 0);
  lua_pushstring(L, rc == BG_EBUSY ? "busy" : bg_strerror(rc));
  return 2;
}

static int l_history_stats(lua_State *L) {
  hhistory *hh = check_history(L);
  bg_history_stats st;
  bg_history_stats_get(hh->h, &st);
  lua_createtable(L, 0, 10);
  bg__host_setnum(L, "series", (double)st.series);
  bg__host_setnum(L, "chunks", (double)st.chunks);
  bg__host_setnum(L, "raw_samples", (double)st.raw_samples);
  bg__host_setnum(L, "raw_bytes", (double)st.raw_bytes);
  bg__host_setnum(L, "mem_bytes", (double)st.mem_bytes);
  bg__host_setnum(L, "pending_rows", (double)st.pending_rows);
  bg__host_setnum(L, "dropped", (double)st.dropped);
  bg__host_setnum(L, "flushed_rows", (double)st.flushed_rows);
  bg__host_setnum(L, "flush_errors", (double)st.flush_errors);
  bg__host_setnum(L, "last_flush_ms", (double)st.last_flush_ms);
  return 1;
}

static int l_history_close(lua_State *L) {
  hhistory *hh = luaL_checkudata(L, 1, HISTORY_MT);
  if (hh->h) {
    if (bg_history_default() == hh->h) bg_history_set_default(NULL);
    bg_history_close(hh->h);
    hh->h = NULL;
  }
  return 0;
}

/* Registers the metatable and sets core.history_open in the table on top of L. */
void bg__host_open_history(lua_State *L, bg_runtime *rt) {
  static const luaL_Reg history_m[] = {{"sample", l_history_sample},
                                       {"flush", l_history_flush},
                                       {"stats", l_history_stats},
                                       {"close", l_history_close},
                                       {NULL, NULL}};
  bg__host_set_meta(L, HISTORY_MT, history_m, l_history_close);
  static const luaL_Reg fns[] = {{"history_open", l_history_open}, {NULL, NULL}};
  bg__host_setfuncs(L, rt, fns);
}
