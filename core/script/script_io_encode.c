/* script_io_encode: batches of samples, spans and log records inside a backend's state, and
 * the encoders plugins reach them with. Only the sandbox calls these (`__bg` is not a plugin's):
 *   bg.batch_open(id) -> batch | nil     the batch the agent published as id (export/batch.h)
 *   bg.span_batch_open(id), bg.log_batch_open(id) -> batch | nil   the same for finished spans
 *     and log records (trace/trace.h)
 *   bg.encode(format, batch, opts) -> bytes | nil, err; skipped
 * A batch object has size(), time(), sample(i) -> table, samples() -> iterator, release(); a
 * span batch size(), signal(), span(i), spans(), release(); a log batch size(), signal(),
 * record(i), records(), release(). Their metatables are closed to getmetatable/setmetatable,
 * and every method checks its argument, so plugin code holding one reaches nothing but its
 * items. */
#include "export/batch.h"
#include "export/delta.h"
#include "export/encode.h"
#include "export/encode_datadog.h"
#include "export/encode_otlp.h"
#include "export/encode_otlp_json.h"
#include "export/encode_remote_write.h"
#include "export/encode_statsd.h"
#include "export/encode_text.h"
#include "script/script_io_int.h"
#include "trace/trace.h"

#include <lauxlib.h>
#include <math.h>
#include <stdio.h>
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

/* ---- span and log batches ----------------------------------------------------------------- */

#define SPAN_BATCH_MT "beagle.span_batch"
#define LOG_BATCH_MT "beagle.log_batch"

typedef struct tbatch_ud {
  void *b; /* a bg_span_batch or bg_log_batch; NULL once released */
} tbatch_ud;

static void *check_tb(lua_State *L, int idx, const char *mt) {
  tbatch_ud *u = luaL_checkudata(L, idx, mt);
  if (u->b == NULL) luaL_error(L, "batch: already released (a batch lives for one send)");
  return u->b;
}
#define check_spans(L, idx) ((bg_span_batch *)check_tb(L, idx, SPAN_BATCH_MT))
#define check_logs(L, idx) ((bg_log_batch *)check_tb(L, idx, LOG_BATCH_MT))

static int tb_open(lua_State *L, int logs) {
  lua_Number n = luaL_checknumber(L, 1);
  uint32_t id = n >= 1 && n <= 4294967295.0 ? (uint32_t)n : 0;
  void *b = id == 0 ? NULL : logs ? (void *)bg_log_batch_find(id) : (void *)bg_span_batch_find(id);
  if (b == NULL) {
    lua_pushnil(L);
    return 1;
  }
  tbatch_ud *u = lua_newuserdata(L, sizeof *u);
  u->b = NULL;
  luaL_getmetatable(L, logs ? LOG_BATCH_MT : SPAN_BATCH_MT);
  lua_setmetatable(L, -2);
  if (logs)
    bg_log_batch_ref(b);
  else
    bg_span_batch_ref(b);
  u->b = b;
  return 1;
}

static int pl_span_batch_open(lua_State *L) {
  return tb_open(L, 0);
}
static int pl_log_batch_open(lua_State *L) {
  return tb_open(L, 1);
}

static void push_hex(lua_State *L, const uint8_t *id, size_t n, const char *field) {
  char hex[2 * BG_TRACE_ID_LEN];
  for (size_t i = 0; i < n; i++)
    if (id[i]) {
      bg_trace_hex(id, n, hex);
      lua_pushlstring(L, hex, 2 * n);
      lua_setfield(L, -2, field);
      return;
    }
}

/* Nanoseconds since the epoch as seconds (field) and as a decimal string (field_ns): a Lua
 * number holds seconds to the microsecond, not nanoseconds since 1970. */
static void push_time(lua_State *L, uint64_t ns, const char *field, const char *field_ns) {
  char num[24];
  int n = snprintf(num, sizeof num, "%llu", (unsigned long long)ns);
  lua_pushnumber(L, (lua_Number)(ns / 1000) / 1e6);
  lua_setfield(L, -2, field);
  lua_pushlstring(L, num, (size_t)n);
  lua_setfield(L, -2, field_ns);
}

static void push_attr_value(lua_State *L, const bg_attr *a, int depth) {
  switch (a->type) {
  case BG_ATTR_STRING:
    lua_pushlstring(L, a->v.s, a->n);
    break;
  case BG_ATTR_BOOL:
    lua_pushboolean(L, a->v.b);
    break;
  case BG_ATTR_INT:
    lua_pushnumber(L, (lua_Number)a->v.i);
    break;
  case BG_ATTR_DOUBLE:
    lua_pushnumber(L, a->v.d);
    break;
  case BG_ATTR_ARRAY:
    lua_createtable(L, (int)a->n, 0);
    for (uint32_t k = 0; k < a->n && depth < 4; k++) {
      push_attr_value(L, &a->v.a[k], depth + 1);
      lua_rawseti(L, -2, (int)k + 1);
    }
    break;
  default:
    lua_pushboolean(L, 0);
  }
}

/* attributes = { key = value } */
static void push_attrs(lua_State *L, const bg_attr *attrs, uint32_t n) {
  lua_createtable(L, 0, (int)n);
  for (uint32_t k = 0; k < n; k++) {
    lua_pushlstring(L, attrs[k].key, attrs[k].klen);
    push_attr_value(L, &attrs[k], 0);
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "attributes");
}

static const char *const KIND_NAMES[] = {"unspecified", "internal", "server",
                                         "client",      "producer", "consumer"};
static const char *const STATUS_NAMES[] = {"unset", "ok", "error"};

/* The span as a table: trace_id, span_id, parent_span_id (nil for a root), trace_state, flags,
 * name, kind, scope, start_time/end_time (epoch seconds) and _ns (decimal strings), duration,
 * attributes, dropped_attributes, events = { { name, time, time_ns, attributes,
 * dropped_attributes } }, dropped_events, status ("unset", "ok", "error"), status_message. */
static void push_span(lua_State *L, const bg_span_batch *b, size_t i) {
  bg_span_view v;
  bg_span_batch_view(b, i, &v);
  lua_createtable(L, 0, 20);
  push_hex(L, v.ctx.trace_id, BG_TRACE_ID_LEN, "trace_id");
  push_hex(L, v.ctx.span_id, BG_SPAN_ID_LEN, "span_id");
  push_hex(L, v.parent_span_id, BG_SPAN_ID_LEN, "parent_span_id");
  size_t tslen = 0;
  const char *ts = v.ctx.state ? bg_tracestate_str(v.ctx.state, &tslen) : NULL;
  if (ts && tslen) {
    lua_pushlstring(L, ts, tslen);
    lua_setfield(L, -2, "trace_state");
  }
  lua_pushinteger(L, v.ctx.flags);
  lua_setfield(L, -2, "flags");
  lua_pushlstring(L, v.name, v.name_len);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, KIND_NAMES[v.kind >= 0 && v.kind <= 5 ? v.kind : 0]);
  lua_setfield(L, -2, "kind");
  lua_pushlstring(L, v.scope_len ? v.scope : "beagle", v.scope_len ? v.scope_len : 6);
  lua_setfield(L, -2, "scope");
  push_time(L, v.start_ns, "start_time", "start_time_ns");
  push_time(L, v.end_ns, "end_time", "end_time_ns");
  lua_pushnumber(L, v.end_ns > v.start_ns ? (lua_Number)(v.end_ns - v.start_ns) / 1e9 : 0);
  lua_setfield(L, -2, "duration");
  push_attrs(L, v.attrs, v.nattrs);
  lua_pushinteger(L, v.dropped_attrs);
  lua_setfield(L, -2, "dropped_attributes");
  lua_createtable(L, (int)v.nevents, 0);
  for (uint32_t k = 0; k < v.nevents; k++) {
    const bg_span_event_view *e = &v.events[k];
    lua_createtable(L, 0, 5);
    lua_pushlstring(L, e->name, e->name_len);
    lua_setfield(L, -2, "name");
    push_time(L, e->time_ns, "time", "time_ns");
    push_attrs(L, e->attrs, e->nattrs);
    lua_pushinteger(L, e->dropped_attrs);
    lua_setfield(L, -2, "dropped_attributes");
    lua_rawseti(L, -2, (int)k + 1);
  }
  lua_setfield(L, -2, "events");
  lua_pushinteger(L, v.dropped_events);
  lua_setfield(L, -2, "dropped_events");
  lua_pushstring(L, STATUS_NAMES[v.status >= 0 && v.status <= 2 ? v.status : 0]);
  lua_setfield(L, -2, "status");
  if (v.status_len) {
    lua_pushlstring(L, v.status_msg, v.status_len);
    lua_setfield(L, -2, "status_message");
  }
}

static const char *level_name(int sev) {
  return sev <= 0   ? "unspecified"
         : sev < 9  ? "debug"
         : sev < 13 ? "info"
         : sev < 17 ? "warn"
                    : "error";
}

/* The record as a table: time, time_ns, severity (OTLP's number), level ("debug", "info",
 * "warn", "error"), body, scope, attributes (strings), trace_id and span_id (nil outside a
 * span), flags. */
static void push_log(lua_State *L, const bg_log_batch *b, size_t i) {
  bg_log_view v;
  bg_log_batch_view(b, i, &v);
  lua_createtable(L, 0, 11);
  push_time(L, v.time_ns, "time", "time_ns");
  lua_pushinteger(L, v.severity);
  lua_setfield(L, -2, "severity");
  lua_pushstring(L, level_name(v.severity));
  lua_setfield(L, -2, "level");
  lua_pushlstring(L, v.body ? v.body : "", v.body_len);
  lua_setfield(L, -2, "body");
  lua_pushlstring(L, v.scope_len ? v.scope : "beagle", v.scope_len ? v.scope_len : 6);
  lua_setfield(L, -2, "scope");
  push_attrs(L, v.attrs, v.nattrs);
  push_hex(L, v.trace_id, BG_TRACE_ID_LEN, "trace_id");
  push_hex(L, v.span_id, BG_SPAN_ID_LEN, "span_id");
  lua_pushinteger(L, v.flags);
  lua_setfield(L, -2, "flags");
}

static size_t tb_len(void *b, int logs) {
  return logs ? bg_log_batch_len(b) : bg_span_batch_len(b);
}

static int span_batch_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)bg_span_batch_len(check_spans(L, 1)));
  return 1;
}

static int log_batch_size(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)bg_log_batch_len(check_logs(L, 1)));
  return 1;
}

static int span_batch_signal(lua_State *L) {
  check_spans(L, 1);
  lua_pushliteral(L, "traces");
  return 1;
}

static int log_batch_signal(lua_State *L) {
  check_logs(L, 1);
  lua_pushliteral(L, "logs");
  return 1;
}

static int tb_item(lua_State *L, int logs) {
  void *b = logs ? (void *)check_logs(L, 1) : (void *)check_spans(L, 1);
  lua_Number i = luaL_checknumber(L, 2);
  if (!(i >= 1 && i <= (lua_Number)tb_len(b, logs)) || i != floor(i)) {
    lua_pushnil(L);
    return 1;
  }
  if (logs)
    push_log(L, b, (size_t)i - 1);
  else
    push_span(L, b, (size_t)i - 1);
  return 1;
}

static int span_batch_span(lua_State *L) {
  return tb_item(L, 0);
}
static int log_batch_record(lua_State *L) {
  return tb_item(L, 1);
}

/* The iterators: upvalue 1 the batch object, 2 the next index. */
static int tb_next(lua_State *L, int logs) {
  void *b = logs ? (void *)check_logs(L, lua_upvalueindex(1))
                 : (void *)check_spans(L, lua_upvalueindex(1));
  lua_Integer i = lua_tointeger(L, lua_upvalueindex(2));
  if (i < 0 || (size_t)i >= tb_len(b, logs)) return 0;
  lua_pushinteger(L, i + 1);
  lua_replace(L, lua_upvalueindex(2));
  if (logs)
    push_log(L, b, (size_t)i);
  else
    push_span(L, b, (size_t)i);
  return 1;
}

static int span_next(lua_State *L) {
  return tb_next(L, 0);
}
static int log_next(lua_State *L) {
  return tb_next(L, 1);
}

static int span_batch_spans(lua_State *L) {
  check_spans(L, 1);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, span_next, 2);
  return 1;
}

static int log_batch_records(lua_State *L) {
  check_logs(L, 1);
  lua_pushvalue(L, 1);
  lua_pushinteger(L, 0);
  lua_pushcclosure(L, log_next, 2);
  return 1;
}

static int span_batch_release(lua_State *L) {
  tbatch_ud *u = luaL_checkudata(L, 1, SPAN_BATCH_MT);
  if (u->b) bg_span_batch_unref(u->b);
  u->b = NULL;
  return 0;
}

static int log_batch_release(lua_State *L) {
  tbatch_ud *u = luaL_checkudata(L, 1, LOG_BATCH_MT);
  if (u->b) bg_log_batch_unref(u->b);
  u->b = NULL;
  return 0;
}

static int span_batch_tostring(lua_State *L) {
  tbatch_ud *u = luaL_checkudata(L, 1, SPAN_BATCH_MT);
  if (u->b == NULL)
    lua_pushliteral(L, "span batch (released)");
  else
    lua_pushfstring(L, "span batch (%d spans)", (int)bg_span_batch_len(u->b));
  return 1;
}

static int log_batch_tostring(lua_State *L) {
  tbatch_ud *u = luaL_checkudata(L, 1, LOG_BATCH_MT);
  if (u->b == NULL)
    lua_pushliteral(L, "log batch (released)");
  else
    lua_pushfstring(L, "log batch (%d records)", (int)bg_log_batch_len(u->b));
  return 1;
}

static void closed_meta(lua_State *L, const char *name, const luaL_Reg *m, lua_CFunction gc,
                        lua_CFunction tostr) {
  if (luaL_newmetatable(L, name)) {
    lua_newtable(L);
    for (const luaL_Reg *f = m; f->name; f++) {
      lua_pushcfunction(L, f->func);
      lua_setfield(L, -2, f->name);
    }
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, tostr);
    lua_setfield(L, -2, "__tostring");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
  }
  lua_pop(L, 1);
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

/* encode("otlp_traces" | "otlp_logs", batch, opts): a span or log batch as an OTLP/HTTP JSON
 * body (opts: resource, flavor "gzip"), and 0 skipped; or nil and why. */
static int encode_signal(lua_State *L, const char *format, int logs) {
  void *b = logs ? (void *)check_logs(L, 2) : (void *)check_spans(L, 2);
  const char *resource[2 * MAX_EXTRA];
  bg_otlp_json_opts o = {0};
  if (lua_istable(L, 3)) {
    int m = read_pairs(L, 3, "resource", resource);
    if (m < 0) {
      lua_pushnil(L);
      lua_insert(L, -2);
      return 2;
    }
    o.resource = resource;
    o.nresource = m;
    const char *flavor = opt_string(L, 3, "flavor");
    if (flavor && strcmp(flavor, "gzip") != 0) {
      lua_pushnil(L);
      lua_pushfstring(L, "encode %s: flavor: unknown \"%s\" (gzip or none)", format, flavor);
      return 2;
    }
    o.gzip = flavor != NULL;
  }
  bg_buf out = {0};
  int rc = logs ? bg_encode_otlp_logs(b, &o, &out) : bg_encode_otlp_traces(b, &o, &out);
  if (rc != 0) {
    bg_buf_free(&out);
    lua_pushnil(L);
    lua_pushfstring(L, "encode %s: %s", format, bg_strerror(rc));
    return 2;
  }
  lua_pushlstring(L, out.data ? out.data : "", out.len);
  bg_buf_free(&out);
  lua_pushinteger(L, 0);
  return 2;
}

/* encode(format, batch, opts): the encoded bytes and the number skipped, or nil and why. */
static int pl_encode(lua_State *L) {
  const char *format = luaL_checkstring(L, 1);
  if (strcmp(format, "otlp_traces") == 0) return encode_signal(L, format, 0);
  if (strcmp(format, "otlp_logs") == 0) return encode_signal(L, format, 1);
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
  static const luaL_Reg fns[] = {{"batch_open", pl_batch_open},
                                 {"span_batch_open", pl_span_batch_open},
                                 {"log_batch_open", pl_log_batch_open},
                                 {"encode", pl_encode},
                                 {NULL, NULL}};
  bg__io_setfuncs(L, fns);
  static const luaL_Reg sm[] = {{"size", span_batch_size},       {"signal", span_batch_signal},
                                {"span", span_batch_span},       {"spans", span_batch_spans},
                                {"release", span_batch_release}, {NULL, NULL}};
  closed_meta(L, SPAN_BATCH_MT, sm, span_batch_release, span_batch_tostring);
  static const luaL_Reg lm[] = {{"size", log_batch_size},       {"signal", log_batch_signal},
                                {"record", log_batch_record},   {"records", log_batch_records},
                                {"release", log_batch_release}, {NULL, NULL}};
  closed_meta(L, LOG_BATCH_MT, lm, log_batch_release, log_batch_tostring);
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
