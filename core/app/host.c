#include "app/host.h"

#include <lauxlib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/bg.h"
#include "base/jsonenc.h"
#include "base/log.h"
#include "base/watch.h"
#include "metrics/history.h"
#include "metrics/metrics.h"
#include "metrics/metrics_route.h"
#include "metrics/statsd.h"
#include "metrics/window.h"
#include "net/http_server.h"
#include "store/store.h"

#define TIMER_MT "agent.core.timer"
#define SERVER_MT "agent.core.server"
#define WATCH_MT "agent.core.watch"
#define SIGNAL_MT "agent.core.signal"
#define STATSD_MT "agent.core.statsd"
#define HISTORY_MT "agent.core.history"

static int g_exit_code = 0;

int bg_host_exit_code(void) {
  return g_exit_code;
}

/* A callback kept in the registry, called with pcall; failures are logged, never raised
 * into the loop. */
typedef struct hcb {
  lua_State *L;
  int ref;
} hcb;

static void hcb_set(hcb *c, lua_State *L, int idx) {
  lua_pushvalue(L, idx);
  c->L = L;
  c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static void hcb_clear(hcb *c) {
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

/* Calls the callback with the nargs values on top of L, nres results left on the stack (nil
 * filled on error). Returns 0 or -1. */
static int hcb_call(hcb *c, int nargs, int nres) {
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

/* t[key] = v for the table on top of L. */
static void setnum(lua_State *L, const char *key, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, key);
}

static bg_runtime *rt_of(lua_State *L) {
  return lua_touserdata(L, lua_upvalueindex(1));
}

/* ---- timers ----------------------------------------------------------------------------- */

typedef struct htimer {
  uv_timer_t *t; /* NULL once stopped */
  hcb cb;
} htimer;

static void timer_cb(uv_timer_t *t) {
  htimer *ht = t->data;
  hcb c = ht->cb; /* a copy: the callback may stop (and clear) its own timer */
  hcb_call(&c, 0, 0);
}

static void htimer_stop(htimer *ht) {
  if (ht->t == NULL) return;
  uv_timer_stop(ht->t);
  uv_close((uv_handle_t *)ht->t, (uv_close_cb)free);
  ht->t = NULL;
  hcb_clear(&ht->cb);
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
  uv_timer_init(rt_of(L)->loop, ht->t);
  ht->t->data = ht;
  hcb_set(&ht->cb, L, 3);
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
  hcb_call(&hs->cb, 1, 0);
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
  uv_signal_init(rt_of(L)->loop, hs->s);
  hs->s->data = hs;
  hcb_set(&hs->cb, L, 2);
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
    hcb_clear(&hs->cb);
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
  hcb_call(&hw->cb, 1, 0);
}

/* watch(dir, debounce_s, fn(names)) -> handle | nil, err */
static int l_watch(lua_State *L) {
  const char *dir = luaL_checkstring(L, 1);
  double debounce = luaL_checknumber(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  hwatch *hw = lua_newuserdata(L, sizeof *hw);
  memset(hw, 0, sizeof *hw);
  int rc = bg_watch_start(rt_of(L)->loop, dir, (unsigned)(debounce * 1000), watch_cb, hw, &hw->w);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", dir, bg_strerror(rc));
    return 2;
  }
  hcb_set(&hw->cb, L, 3);
  luaL_getmetatable(L, WATCH_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static int l_watch_stop(lua_State *L) {
  hwatch *hw = luaL_checkudata(L, 1, WATCH_MT);
  if (hw->w) {
    bg_watch_stop(hw->w);
    hw->w = NULL;
    hcb_clear(&hw->cb);
  }
  return 0;
}

/* ---- http server ------------------------------------------------------------------------- */

typedef struct hserver {
  bg_http_server *srv;
  hcb cb;
  bg_buf body;               /* the handler's response, kept until the server copied it */
  bg_metrics_route *metrics; /* GET /metrics in C, once serve_metrics is called */
  hcb before;                /* its pre-render hook */
} hserver;

static void server_handler(void *ud, const bg_http_request *req, bg_http_response *res) {
  hserver *hs = ud;
  lua_State *L = hs->cb.L;
  int top = lua_gettop(L);
  lua_createtable(L, 0, 8);
  lua_pushstring(L, req->method);
  lua_setfield(L, -2, "method");
  lua_pushlstring(L, req->path, req->path_len);
  lua_setfield(L, -2, "path");
  lua_pushlstring(L, req->query, req->query_len);
  lua_setfield(L, -2, "query");
  lua_pushlstring(L, req->body, req->body_len);
  lua_setfield(L, -2, "body");
  lua_pushstring(L, req->peer);
  lua_setfield(L, -2, "peer");
  lua_pushboolean(L, req->peer_loopback);
  lua_setfield(L, -2, "loopback");
  lua_createtable(L, 0, (int)req->nheaders);
  for (size_t i = 0; i < req->nheaders; i++) {
    char name[256];
    size_t n = req->headers[i].name_len < 255 ? req->headers[i].name_len : 255;
    for (size_t j = 0; j < n; j++) {
      char c = req->headers[i].name[j];
      name[j] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    lua_pushlstring(L, name, n);
    lua_pushlstring(L, req->headers[i].value, req->headers[i].value_len);
    lua_rawset(L, -3);
  }
  lua_setfield(L, -2, "headers");
  /* handler(req) -> status, content_type, body, extra_headers */
  if (hcb_call(&hs->cb, 1, 4) != 0 || !lua_isnumber(L, top + 1)) {
    res->status = 500;
    res->content_type = "application/json";
    res->body = "{\"error\":\"internal error\",\"status\":500}";
    res->body_len = strlen(res->body);
    lua_settop(L, top);
    return;
  }
  res->status = (int)lua_tointeger(L, top + 1);
  bg_buf_reset(&hs->body);
  size_t blen = 0;
  const char *b = lua_tolstring(L, top + 3, &blen);
  if (b) bg_buf_append(&hs->body, b, blen);
  res->body = hs->body.data;
  res->body_len = blen;
  /* content type and headers must outlive the pop: keep them in the buffer after the body */
  static char ctype[128], extra[1024];
  const char *ct = lua_tostring(L, top + 2);
  snprintf(ctype, sizeof ctype, "%s", ct ? ct : "application/json");
  res->content_type = ctype;
  const char *eh = lua_tostring(L, top + 4);
  if (eh) {
    snprintf(extra, sizeof extra, "%s", eh);
    res->headers = extra;
  }
  lua_settop(L, top);
}

/* http_server(host, port, handler, limits) -> server | nil, err */
static int l_http_server(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  bg_http_limits lim;
  bg_http_limits_default(&lim);
  if (lua_istable(L, 4)) {
    lua_getfield(L, 4, "max_body_bytes");
    if (lua_isnumber(L, -1)) lim.max_body_bytes = (size_t)lua_tonumber(L, -1);
    lua_getfield(L, 4, "read_timeout");
    if (lua_isnumber(L, -1)) lim.read_timeout_ms = (uint64_t)(lua_tonumber(L, -1) * 1000);
    lua_pop(L, 2);
  }
  hserver *hs = lua_newuserdata(L, sizeof *hs);
  memset(hs, 0, sizeof *hs);
  int rc = bg_http_server_new(rt_of(L)->loop, &lim, server_handler, hs, &hs->srv);
  if (rc == 0) {
    rc = bg_http_listen(hs->srv, host, port);
    if (rc != 0) {
      bg_http_server_close(hs->srv, NULL, NULL);
      hs->srv = NULL;
    }
  }
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "cannot listen on %s:%d: %s", host, port, bg_strerror(rc));
    return 2;
  }
  hcb_set(&hs->cb, L, 3);
  luaL_getmetatable(L, SERVER_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static hserver *check_server(lua_State *L) {
  hserver *hs = luaL_checkudata(L, 1, SERVER_MT);
  if (hs->srv == NULL) luaL_error(L, "server is closed");
  return hs;
}

static int l_server_port(lua_State *L) {
  lua_pushinteger(L, bg_http_port(check_server(L)->srv));
  return 1;
}

/* server:set_static(path, status, content_type, body|nil) */
static int l_server_set_static(lua_State *L) {
  hserver *hs = check_server(L);
  const char *path = luaL_checkstring(L, 2);
  int status = (int)luaL_checkinteger(L, 3);
  const char *ct = luaL_checkstring(L, 4);
  size_t n = 0;
  const char *body = lua_isnil(L, 5) ? NULL : luaL_checklstring(L, 5, &n);
  int rc = bg_http_set_static(hs->srv, path, status, ct, body, n);
  if (rc != 0) return luaL_error(L, "set_static: %s", bg_strerror(rc));
  return 0;
}

static void metrics_before(void *ud) {
  hserver *hs = ud;
  hcb c = hs->before; /* a copy: the hook may close the server, which clears it */
  if (c.L && c.ref != LUA_NOREF) hcb_call(&c, 0, 0);
}

/* server:serve_metrics({path, ...}, before): GET and HEAD on each path are answered in C from
 * the registry (metrics_route.c); before() runs first on every scrape. */
static int l_server_serve_metrics(lua_State *L) {
  hserver *hs = check_server(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if (hs->metrics == NULL &&
      bg_metrics_route_new(bg_registry_default(), bg_window_default(), &hs->metrics) != 0)
    return luaL_error(L, "serve_metrics: out of memory");
  hcb_clear(&hs->before);
  hcb_set(&hs->before, L, 3);
  bg_metrics_route_set_hook(hs->metrics, metrics_before, hs);
  for (int i = 1;; i++) {
    lua_rawgeti(L, 2, i);
    const char *path = lua_tostring(L, -1);
    if (path == NULL) break;
    if (bg_metrics_route_attach(hs->metrics, hs->srv, path) != 0)
      return luaL_error(L, "serve_metrics: out of memory");
    lua_pop(L, 1);
  }
  return 0;
}

static void metrics_route_free(void *ud) {
  bg_metrics_route_free(ud);
}

static int l_server_stats(lua_State *L) {
  hserver *hs = check_server(L);
  bg_http_stats st;
  bg_http_get_stats(hs->srv, &st);
  lua_createtable(L, 0, 7);
  setnum(L, "requests", (double)st.requests);
  setnum(L, "static_hits", (double)st.static_hits);
  setnum(L, "errors_4xx", (double)st.errors_4xx);
  setnum(L, "errors_5xx", (double)st.errors_5xx);
  setnum(L, "connections_accepted", (double)st.connections_accepted);
  setnum(L, "connections_rejected", (double)st.connections_rejected);
  setnum(L, "connections_open", (double)st.connections_open);
  return 1;
}

static int l_server_close(lua_State *L) {
  hserver *hs = luaL_checkudata(L, 1, SERVER_MT);
  if (hs->srv) {
    /* the route state lives until the server is gone; the hook into Lua ends now */
    if (hs->metrics) bg_metrics_route_set_hook(hs->metrics, NULL, NULL);
    bg_http_server_close(hs->srv, hs->metrics ? metrics_route_free : NULL, hs->metrics);
    hs->srv = NULL;
    hs->metrics = NULL;
    hcb_clear(&hs->cb);
    hcb_clear(&hs->before);
    bg_buf_free(&hs->body);
  }
  return 0;
}

/* ---- statsd ------------------------------------------------------------------------------ */

typedef struct hstatsd {
  bg_statsd *sd;
} hstatsd;

/* statsd_start(address) -> handle | nil, err: StatsD/DogStatsD on UDP and TCP of that address,
 * into the process-wide registry. */
static int l_statsd_start(lua_State *L) {
  const char *addr = luaL_checkstring(L, 1);
  hstatsd *h = lua_newuserdata(L, sizeof *h);
  h->sd = NULL;
  bg_statsd_opts o;
  bg_statsd_opts_default(&o);
  o.udp = addr;
  int rc = bg_statsd_start(rt_of(L)->loop, bg_registry_default(), &o, &h->sd);
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "statsd on %s: %s", addr, bg_strerror(rc));
    return 2;
  }
  luaL_getmetatable(L, STATSD_MT);
  lua_setmetatable(L, -2);
  return 1;
}

static hstatsd *check_statsd(lua_State *L) {
  hstatsd *h = luaL_checkudata(L, 1, STATSD_MT);
  if (h->sd == NULL) luaL_error(L, "statsd is stopped");
  return h;
}

static int l_statsd_ports(lua_State *L) {
  hstatsd *h = check_statsd(L);
  lua_pushinteger(L, bg_statsd_port(h->sd));
  lua_pushinteger(L, bg_statsd_tcp_port(h->sd));
  return 2;
}

static int l_statsd_stats(lua_State *L) {
  hstatsd *h = check_statsd(L);
  bg_statsd_stats st;
  bg_statsd_get_stats(h->sd, &st);
  lua_createtable(L, 0, 9);
  setnum(L, "packets", (double)st.packets);
  setnum(L, "lines", (double)st.lines);
  setnum(L, "bad_lines", (double)st.bad_lines);
  setnum(L, "ignored", (double)st.ignored);
  setnum(L, "dropped", (double)st.dropped);
  setnum(L, "kernel_drops", (double)st.kernel_drops);
  setnum(L, "cache_entries", (double)st.cache_entries);
  setnum(L, "tcp_clients", (double)st.tcp_clients);
  setnum(L, "rcvbuf", (double)st.rcvbuf);
  return 1;
}

static int l_statsd_flush_sets(lua_State *L) {
  hstatsd *h = check_statsd(L);
  bg_statsd_flush_sets(bg_statsd_get_sink(h->sd));
  return 0;
}

static int l_statsd_stop(lua_State *L) {
  hstatsd *h = luaL_checkudata(L, 1, STATSD_MT);
  if (h->sd) {
    bg_statsd_stop(h->sd, NULL, NULL);
    h->sd = NULL;
  }
  return 0;
}

/* ---- history ----------------------------------------------------------------------------- */

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
  hh->loop = rt_of(L)->loop;
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
  setnum(L, "series", (double)st.series);
  setnum(L, "chunks", (double)st.chunks);
  setnum(L, "raw_samples", (double)st.raw_samples);
  setnum(L, "raw_bytes", (double)st.raw_bytes);
  setnum(L, "mem_bytes", (double)st.mem_bytes);
  setnum(L, "pending_rows", (double)st.pending_rows);
  setnum(L, "dropped", (double)st.dropped);
  setnum(L, "flushed_rows", (double)st.flushed_rows);
  setnum(L, "flush_errors", (double)st.flush_errors);
  setnum(L, "last_flush_ms", (double)st.last_flush_ms);
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

/* ---- misc -------------------------------------------------------------------------------- */

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
  uv_stop(rt_of(L)->loop);
  return 0;
}

/* loop_lag(): how late this call is relative to the loop's cached time, in seconds. */
static int l_update_time(lua_State *L) {
  uv_loop_t *loop = rt_of(L)->loop;
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

static void set_meta(lua_State *L, const char *name, const luaL_Reg *m, lua_CFunction gc) {
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

static int luaopen_core(lua_State *L) {
  bg_runtime *rt = lua_touserdata(L, lua_upvalueindex(1));
  static const luaL_Reg timer_m[] = {{"stop", l_timer_stop}, {NULL, NULL}};
  static const luaL_Reg signal_m[] = {{"stop", l_signal_stop}, {NULL, NULL}};
  static const luaL_Reg watch_m[] = {{"stop", l_watch_stop}, {NULL, NULL}};
  static const luaL_Reg server_m[] = {{"port", l_server_port},
                                      {"set_static", l_server_set_static},
                                      {"serve_metrics", l_server_serve_metrics},
                                      {"stats", l_server_stats},
                                      {"close", l_server_close},
                                      {NULL, NULL}};
  set_meta(L, TIMER_MT, timer_m, l_timer_stop);
  set_meta(L, SIGNAL_MT, signal_m, l_signal_stop);
  set_meta(L, WATCH_MT, watch_m, l_watch_stop);
  set_meta(L, SERVER_MT, server_m, l_server_close);
  static const luaL_Reg statsd_m[] = {{"ports", l_statsd_ports},
                                      {"stats", l_statsd_stats},
                                      {"flush_sets", l_statsd_flush_sets},
                                      {"stop", l_statsd_stop},
                                      {NULL, NULL}};
  set_meta(L, STATSD_MT, statsd_m, l_statsd_stop);
  static const luaL_Reg history_m[] = {{"sample", l_history_sample},
                                       {"flush", l_history_flush},
                                       {"stats", l_history_stats},
                                       {"close", l_history_close},
                                       {NULL, NULL}};
  set_meta(L, HISTORY_MT, history_m, l_history_close);

  lua_newtable(L);
  static const luaL_Reg fns[] = {{"timer", l_timer},
                                 {"signal", l_signal},
                                 {"watch", l_watch},
                                 {"http_server", l_http_server},
                                 {"statsd_start", l_statsd_start},
                                 {"history_open", l_history_open},
                                 {"stop", l_stop},
                                 {"update_time", l_update_time},
                                 {NULL, NULL}};
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushlightuserdata(L, rt);
    lua_pushcclosure(L, f->func, 1);
    lua_setfield(L, -2, f->name);
  }
  static const luaL_Reg plain[] = {{"now", l_now},
                                   {"json_encode", l_json_encode},
                                   {"cpu", l_cpu},
                                   {"wall", l_wall},
                                   {"log", l_log},
                                   {"log_setup", l_log_setup},
                                   {"rss", l_rss},
                                   {"listdir", l_listdir},
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
