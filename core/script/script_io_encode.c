/* script_io_encode: batches of samples inside a backend's state, and the encoders plugins reach
 * them with. Only the sandbox calls these (`__bg` is not a plugin's):
 *   bg.batch_open(id) -> batch | nil     the batch the agent published as id (export/batch.h)
 *   bg.encode(format, batch, opts) -> bytes | nil, err; skipped
 * A batch object has size(), time(), sample(i) -> table, samples() -> iterator, release(); its
 * metatable is closed to getmetatable/setmetatable, and every method checks its argument, so
 * plugin code holding it reaches nothing but its samples. */
#include "export/batch.h"
#include "export/delta.h"
#include "export/encode.h"
#include "export/encode_datadog.h"
#include "export/encode_otlp.h"
#include "export/encode_remote_write.h"
#include "export/encode_statsd.h"
#include "export/encode_text.h"
#include "script/script_io_int.h"

#include <lauxlib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_MT "beagle.batch"

/* ---- the encoders ------------------------------------------------------------------------- */

/* Each format's encoder (core/export/encode_<format>.c). Keep sorted by name. */
static const struct {
  const char *name;
  bg_encoder fn;
} encoders[] = {
    {"datadog", bg_encode_datadog},       {"graphite", bg_encode_graphite},
    {"influx", bg_encode_influx},         {"otlp", bg_encode_otlp},
    {"prometheus", bg_encode_prometheus}, {"remote_write", bg_encode_remote_write},
    {"statsd", bg_encode_statsd},         {NULL, NULL},
};

/* ---- the batch object ----------------------------------------------------------------------- */

typedef struct batch_ud {
  bg_batch *b; /* NULL once released */
} batch_ud;

static bg_batch *check_batch(lua_State *L, int idx) {
  batch_ud *u = luaL_checkudata(L, idx, BATCH_MT);
  if (u->b == NULL) luaL_error(L, "batch: already released (a batch lives for one send)");
  return u->b;
}

static int pl_batch_open(lua_State *L) {
  lua_Number n = luaL_checknumber(L, 1);
  bg_batch *b = n >= 1 && n <= 4294967295.0 ? bg_batch_find((uint32_t)n) : NULL;
  if (b == NULL) {
    lua_pushnil(L);
    return 1;
  }
  batch_ud *u = lua_newuserdata(L, sizeof *u);
  u->b = NULL;
  luaL_getmetatable(L, BATCH_MT);
  lua_setmetatable(L, -2);
  bg_batch_ref(b);
  u->b = b;
  return 1;
}

static int batch_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)bg_batch_len(check_batch(L, 1)));
  return 1;
}

static int batch_time(lua_State *L) {
  lua_pushnumber(L, bg_batch_time(check_batch(L, 1)));
  return 1;
}

static const char *const TYPE_NAMES[] = {"counter", "gauge", "histogram"};

/* The sample as a table: name, type, help, labels, value (counter, gauge) or sum, count and
 * buckets (cumulative, { le = bound, count = n }, the last le = math.huge), timestamp. */
static void push_sample(lua_State *L, const bg_batch *b, const bg_sample *s) {
  lua_createtable(L, 0, 8);
  lua_pushstring(L, s->name);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, TYPE_NAMES[s->type < 3 ? s->type : 1]);
  lua_setfield(L, -2, "type");
  lua_pushstring(L, s->help);
  lua_setfield(L, -2, "help");
  lua_createtable(L, 0, s->nlabels);
  for (int k = 0; k < s->nlabels; k++) {
    lua_pushstring(L, s->kv[2 * k + 1]);
    lua_setfield(L, -2, s->kv[2 * k]);
  }
  lua_setfield(L, -2, "labels");
  lua_pushnumber(L, bg_batch_time(b));
  lua_setfield(L, -2, "timestamp");
  if (s->type != BG_HISTOGRAM) {
    lua_pushnumber(L, s->value);
    lua_setfield(L, -2, "value");
    return;
  }
  lua_pushnumber(L, s->value);
  lua_setfield(L, -2, "sum");
  lua_pushnumber(L, (lua_Number)s->count);
  lua_setfield(L, -2, "count");
  lua_createtable(L, s->nbuckets + 1, 0);
  uint64_t cum = 0;
  for (int i = 0; i <= s->nbuckets; i++) {
    cum += s->bucket_counts[i];
    lua_createtable(L, 0, 2);
    lua_pushnumber(L, i < s->nbuckets ? s->bounds[i] : HUGE_VAL);
    lua_setfield(L, -2, "le");
    lua_pushnumber(L, (lua_Number)cum);
    lua_setfield(L, -2, "count");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "buckets");
}

static int batch_sample(lua_State *L) {
  bg_batch *b = check_batch(L, 1);
  lua_Number i = luaL_checknumber(L, 2);
  const bg_sample *s =
      i >= 1 && i <= (lua_Number)bg_batch_len(b) ? bg_batch_at(b, (size_t)i - 1) : NULL;
  if (s == NULL) {
    lua_pushnil(L);
    return 1;
  }
  push_sample(L, b, s);
  return 1;
}

/* The iterator: upvalue 1 the batch object, 2 the next index. */
static int batch_next(lua_State *L) {
  bg_batch *b = check_batch(L, lua_upvalueindex(1));
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(2));
  const bg_sample *s = bg_batch_at(b, (size_t)i);
  if (s == NULL) return 0;
  lua_pushinteger(L, i + 1);
  lua_replace(L, lua_upvalueindex(2));
  push_sample(L, b, s);
  return 1;
}

static int batch_samples(lua_State *L) {
  check_batch(L, 1);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, batch_next, 2);
  return 1;
}

static int batch_release(lua_State *L) {
  batch_ud *u = luaL_checkudata(L, 1, BATCH_MT);
  bg_batch_unref(u->b);
  u->b = NULL;
  return 0;
}

static int batch_tostring(lua_State *L) {
  batch_ud *u = luaL_checkudata(L, 1, BATCH_MT);
  if (u->b == NULL)
    lua_pushliteral(L, "batch (released)");
  else
    lua_pushfstring(L, "batch (%d samples)", (int)bg_batch_len(u->b));
  return 1;
}

/* ---- deltas ------------------------------------------------------------------------------- */

#define DELTA_MT "beagle.delta"

/* delta_new() -> a backend instance's previous values (export/delta.h), for opts.delta */
static int pl_delta_new(lua_State *L) {
  bg_delta **u = lua_newuserdata(L, sizeof *u);
  *u = NULL;
  luaL_getmetatable(L, DELTA_MT);
  lua_setmetatable(L, -2);
  if ((*u = bg_delta_new(bg_wall_time())) == NULL) return luaL_error(L, "out of memory");
  return 1;
}

static int delta_gc(lua_State *L) {
  bg_delta **u = luaL_checkudata(L, 1, DELTA_MT);
  bg_delta_free(*u);
  *u = NULL;
  return 0;
}

/* opts.delta: NULL when absent; raises when it is something else */
static bg_delta *opt_delta(lua_State *L, int opts) {
  lua_getfield(L, opts, "delta");
  bg_delta **u = lua_isnil(L, -1) ? NULL : luaL_checkudata(L, -1, DELTA_MT);
  lua_pop(L, 1); /* the userdata stays referenced by opts */
  return u ? *u : NULL;
}

/* ---- encode ------------------------------------------------------------------------------- */

#define MAX_EXTRA 64 /* extra labels or resource attributes an encode takes */

static int cmp_pair(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The string pairs of the table opts[field] into kv (sorted by key); their count, or -1 with
 * an error message pushed. The strings stay referenced by opts for the call. */
static int read_pairs(lua_State *L, int opts, const char *field, const char **kv) {
  lua_getfield(L, opts, field);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  if (!lua_istable(L, -1)) {
    lua_pushfstring(L, "encode: %s must be a table of strings", field);
    return -1;
  }
  int n = 0, t = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    if (lua_type(L, -2) != LUA_TSTRING || lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 3);
      lua_pushfstring(L, "encode: %s must map strings to strings", field);
      return -1;
    }
    if (n == MAX_EXTRA) {
      lua_pop(L, 3);
      lua_pushfstring(L, "encode: at most %d %s", MAX_EXTRA, field);
      return -1;
    }
    kv[2 * n] = lua_tostring(L, -2);
    kv[2 * n + 1] = lua_tostring(L, -1);
    n++;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  qsort(kv, (size_t)n, 2 * sizeof *kv, cmp_pair);
  return n;
}

static const char *opt_string(lua_State *L, int opts, const char *field) {
  lua_getfield(L, opts, field);
  const char *s = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
  lua_pop(L, 1); /* the string stays referenced by opts */
  return s;
}

/* encode(format, batch, opts): the encoded bytes and the number skipped, or nil and why. */
static int pl_encode(lua_State *L) {
  const char *format = luaL_checkstring(L, 1);
  bg_batch *b = check_batch(L, 2);
  bg_encoder fn = NULL;
  for (size_t i = 0; encoders[i].name != NULL; i++)
    if (strcmp(encoders[i].name, format) == 0) fn = encoders[i].fn;
  if (fn == NULL) {
    lua_pushnil(L);
    lua_pushfstring(L, "encode: no format named %s", format);
    return 2;
  }
  const char *labels[2 * MAX_EXTRA], *resource[2 * MAX_EXTRA];
  bg_encode_opts o = {0};
  if (lua_istable(L, 3)) {
    int n = read_pairs(L, 3, "labels", labels);
    int m = n < 0 ? 0 : read_pairs(L, 3, "resource", resource);
    if (n < 0 || m < 0) {
      lua_pushnil(L);
      lua_insert(L, -2);
      return 2;
    }
    o.labels = labels;
    o.nlabels = n;
    o.resource = resource;
    o.nresource = m;
    o.prefix = opt_string(L, 3, "prefix");
    o.flavor = opt_string(L, 3, "flavor");
    lua_getfield(L, 3, "interval");
    o.interval = lua_isnumber(L, -1) ? lua_tonumber(L, -1) : 0;
    lua_pop(L, 1);
    o.delta = opt_delta(L, 3);
    lua_getfield(L, 3, "max_payload");
    lua_Number mp = lua_tonumber(L, -1); /* 0 (not a number) or out of range: the default */
    o.max_payload = mp >= 1 && mp <= 65507 ? (size_t)mp : 0;
    lua_pop(L, 1);
  }
  bg_buf out = {0};
  char err[256] = "";
  int rc = fn(b, &o, &out, err, sizeof err);
  if (rc != 0) {
    bg_buf_free(&out);
    lua_pushnil(L);
    lua_pushfstring(L, "encode %s: %s", format, err[0] ? err : bg_strerror(rc));
    return 2;
  }
  lua_pushlstring(L, out.data ? out.data : "", out.len);
  bg_buf_free(&out);
  lua_pushinteger(L, (lua_Integer)o.skipped);
  return 2;
}

/* Sets batch_open and encode in the __bg table on top of L. */
void bg__script_open_io_encode(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"batch_open", pl_batch_open}, {"encode", pl_encode}, {NULL, NULL}};
  bg__io_setfuncs(L, fns);
  static const luaL_Reg dfns[] = {{"delta_new", pl_delta_new}, {NULL, NULL}};
  bg__io_setfuncs(L, dfns);
  if (luaL_newmetatable(L, DELTA_MT)) {
    lua_pushcfunction(L, delta_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, BATCH_MT)) {
    static const luaL_Reg m[] = {{"size", batch_size},       {"time", batch_time},
                                 {"sample", batch_sample},   {"samples", batch_samples},
                                 {"release", batch_release}, {NULL, NULL}};
    lua_newtable(L);
    for (const luaL_Reg *f = m; f->name; f++) {
      lua_pushcfunction(L, f->func);
      lua_setfield(L, -2, f->name);
    }
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, batch_release);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, batch_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
}
