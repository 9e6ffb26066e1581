/* host_backend: the agent's side of the metric backends (lua/agent/backends.lua).
 *   core.metrics_snapshot() -> snapshot | nil, err   every series of the default registry now
 *   snapshot:size(), snapshot:bytes(), snapshot:batches(n) -> { batch... } of at most n samples,
 *   snapshot:release() (the batches keep what they hold)
 *   batch:size(), batch:id() (the number a plugin state opens it by), batch:release(),
 *   batch:encode() -> bytes; core.batch_decode(bytes) -> batch | nil, why (export/batch.h)
 * A batch holds its part of the snapshot until it is released (or collected). */
#include "app/host_int.h"
#include "base/bg.h"
#include "export/batch.h"

#include <uv.h>

#define SNAP_MT "beagle.snapshot"
#define HBATCH_MT "beagle.agent_batch"

typedef struct snap_ud {
  bg_snapshot *s;
} snap_ud;

typedef struct hbatch_ud {
  bg_batch *b; /* NULL once released */
} hbatch_ud;

static bg_snapshot *check_snap(lua_State *L) {
  snap_ud *u = luaL_checkudata(L, 1, SNAP_MT);
  if (u->s == NULL) luaL_error(L, "snapshot: released");
  return u->s;
}

static bg_batch *check_hbatch(lua_State *L) {
  hbatch_ud *u = luaL_checkudata(L, 1, HBATCH_MT);
  if (u->b == NULL) luaL_error(L, "batch: released");
  return u->b;
}

static void push_hbatch(lua_State *L, bg_batch *b) {
  hbatch_ud *u = lua_newuserdata(L, sizeof *u);
  u->b = NULL;
  luaL_getmetatable(L, HBATCH_MT);
  lua_setmetatable(L, -2);
  u->b = b;
}

static int l_metrics_snapshot(lua_State *L) {
  snap_ud *u = lua_newuserdata(L, sizeof *u);
  u->s = NULL;
  luaL_getmetatable(L, SNAP_MT);
  lua_setmetatable(L, -2);
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  u->s = bg_snapshot_take(bg_registry_default(), (double)tv.tv_sec + (double)tv.tv_usec / 1e6);
  if (u->s == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, "metrics snapshot: out of memory");
    return 2;
  }
  return 1;
}

static int snap_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)bg_snapshot_size(check_snap(L)));
  return 1;
}

static int snap_bytes(lua_State *L) {
  lua_pushnumber(L, (lua_Number)bg_snapshot_bytes(check_snap(L)));
  return 1;
}

static int snap_batches(lua_State *L) {
  bg_snapshot *s = check_snap(L);
  lua_Number per = luaL_checknumber(L, 2);
  if (!(per >= 1)) return luaL_error(L, "snapshot:batches: the batch size must be at least 1");
  size_t n = bg_snapshot_size(s), step = per > 1e9 ? (size_t)1e9 : (size_t)per;
  lua_createtable(L, (int)((n + step - 1) / step), 0);
  int k = 0;
  for (size_t first = 0; first < n; first += step) {
    bg_batch *b = bg_batch_new(s, first, step);
    if (b == NULL) return luaL_error(L, "snapshot:batches: out of memory");
    push_hbatch(L, b);
    lua_rawseti(L, -2, ++k);
  }
  return 1;
}

static int snap_gc(lua_State *L) {
  snap_ud *u = luaL_checkudata(L, 1, SNAP_MT);
  bg_snapshot_unref(u->s);
  u->s = NULL;
  return 0;
}

static int hbatch_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)bg_batch_len(check_hbatch(L)));
  return 1;
}

static int hbatch_id(lua_State *L) {
  uint32_t id = bg_batch_id(check_hbatch(L));
  if (id == 0) return luaL_error(L, "batch:id: out of memory");
  lua_pushnumber(L, id);
  return 1;
}

static int hbatch_encode(lua_State *L) {
  bg_batch *b = check_hbatch(L);
  bg_buf out = {0};
  if (bg_batch_encode(b, &out) != 0) {
    bg_buf_free(&out);
    return luaL_error(L, "batch:encode: out of memory");
  }
  lua_pushlstring(L, out.data ? out.data : "", out.len);
  bg_buf_free(&out);
  return 1;
}

/* batch_decode(bytes) -> batch | nil, why */
static int l_batch_decode(lua_State *L) {
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len);
  const char *why;
  bg_batch *b = bg_batch_decode(p, len, &why);
  if (b == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, why);
    return 2;
  }
  push_hbatch(L, b);
  return 1;
}

static int hbatch_release(lua_State *L) {
  hbatch_ud *u = luaL_checkudata(L, 1, HBATCH_MT);
  bg_batch_unref(u->b);
  u->b = NULL;
  return 0;
}

void bg__host_open_backend(lua_State *L, bg_runtime *rt) {
  (void)rt;
  static const luaL_Reg sm[] = {{"size", snap_size},
                                {"bytes", snap_bytes},
                                {"batches", snap_batches},
                                {"release", snap_gc},
                                {NULL, NULL}};
  bg__host_set_meta(L, SNAP_MT, sm, snap_gc);
  static const luaL_Reg bm[] = {{"size", hbatch_size},
                                {"id", hbatch_id},
                                {"encode", hbatch_encode},
                                {"release", hbatch_release},
                                {NULL, NULL}};
  bg__host_set_meta(L, HBATCH_MT, bm, hbatch_release);
  lua_pushcfunction(L, l_metrics_snapshot);
  lua_setfield(L, -2, "metrics_snapshot");
  lua_pushcfunction(L, l_batch_decode);
  lua_setfield(L, -2, "batch_decode");
}
