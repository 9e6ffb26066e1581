/* host_http: core.http_server, the HTTP server (net/http_server.h) for the agent's Lua: each
 * request that no C route answers becomes a call of the Lua handler; server:serve_metrics hands
 * GET /metrics to metrics/metrics_route.h. Every request is traced with the default tracer: a
 * server span, current while the handler runs (agent.trace's T.current_traceparent() is its
 * context, for the work the handler starts), named after the route the handler's fifth result
 * gives. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app/host_int.h"
#include "base/bg.h"
#include "metrics/metrics.h"
#include "metrics/metrics_route.h"
#include "metrics/window.h"
#include "net/http_server.h"
#include "trace/trace.h"

#define SERVER_MT "agent.core.server"

typedef struct hserver {
  bg_http_server *srv;
  hcb cb;
  bg_buf body;               /* the handler's response, kept until the server copied it */
  bg_metrics_route *metrics; /* GET /metrics in C, once serve_metrics is called */
  hcb before;                /* its pre-render hook */
} hserver;

/* res->route from the string at idx (kept in a static buffer: the server copies it before the
 * next request) */
static void fill_route(lua_State *L, int idx, bg_http_response *res) {
  static char route[192];
  size_t rlen = 0;
  const char *rt = lua_type(L, idx) == LUA_TSTRING ? lua_tolstring(L, idx, &rlen) : NULL;
  if (rt && rlen < sizeof route) {
    memcpy(route, rt, rlen + 1);
    res->route = route;
  }
}

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
  lua_pushnumber(L, (lua_Number)req->ticket);
  lua_setfield(L, -2, "ticket");
  /* A header sent twice is one field whose values are joined with ", " (RFC 9110 5.3), and
   * its name is in req.repeated: auth refuses two Authorization headers instead of letting
   * the last one win. */
  lua_createtable(L, 0, (int)req->nheaders);
  int headers = lua_gettop(L);
  int repeated = 0;
  for (size_t i = 0; i < req->nheaders; i++) {
    char name[256];
    size_t n = req->headers[i].name_len < 255 ? req->headers[i].name_len : 255;
    for (size_t j = 0; j < n; j++) {
      char c = req->headers[i].name[j];
      name[j] = (c >= 'A' && c <= 'Z') ? (char)(c + 32) : c;
    }
    lua_pushlstring(L, name, n);
    lua_pushvalue(L, -1);
    lua_rawget(L, headers);
    if (lua_isstring(L, -1)) {
      if (repeated == 0) {
        lua_createtable(L, 0, 1);
        lua_insert(L, headers + 1); /* below the name and the old value */
        repeated = headers + 1;
      }
      lua_pushlstring(L, name, n);
      lua_pushboolean(L, 1);
      lua_rawset(L, repeated);
      lua_pushliteral(L, ", ");
      lua_pushlstring(L, req->headers[i].value, req->headers[i].value_len);
      lua_concat(L, 3);
    } else {
      lua_pop(L, 1);
      lua_pushlstring(L, req->headers[i].value, req->headers[i].value_len);
    }
    lua_rawset(L, headers);
  }
  if (repeated != 0) lua_setfield(L, headers - 1, "repeated");
  lua_setfield(L, -2, "headers");
  /* handler(req) -> status, content_type, body, extra_headers, route; or "defer", and later
   * server:answer(req.ticket, ...) */
  int called = bg__hcb_call(&hs->cb, 1, 5);
  if (called == 0 && lua_type(L, top + 1) == LUA_TSTRING &&
      strcmp(lua_tostring(L, top + 1), "defer") == 0) {
    res->defer = 1;
    fill_route(L, top + 5, res);
    lua_settop(L, top);
    return;
  }
  if (called != 0 || !lua_isnumber(L, top + 1)) {
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
  fill_route(L, top + 5, res);
  lua_settop(L, top);
}

/* Sets *ms from the number of seconds in field name of the table at idx, when it is a positive
 * number (durations smaller than 1 ms round up to 1 ms). */
static void limit_ms(lua_State *L, int idx, const char *name, uint64_t *ms) {
  lua_getfield(L, idx, name);
  if (lua_isnumber(L, -1) && lua_tonumber(L, -1) > 0) {
    double v = lua_tonumber(L, -1) * 1000;
    *ms = v < 1 ? 1 : (uint64_t)v;
  }
  lua_pop(L, 1);
}

/* http_server(host, port, handler, limits) -> server | nil, err
 * limits: max_body_bytes, max_connections, and in seconds read_timeout, header_timeout,
 * first_byte_timeout, idle_timeout; each optional. */
static int l_http_server(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  bg_http_limits lim;
  bg_http_limits_default(&lim);
  if (lua_istable(L, 4)) {
    lua_getfield(L, 4, "max_body_bytes");
    if (lua_isnumber(L, -1)) lim.max_body_bytes = (size_t)lua_tonumber(L, -1);
    lua_getfield(L, 4, "max_connections");
    if (lua_isnumber(L, -1) && lua_tonumber(L, -1) >= 1)
      lim.max_connections = (int)lua_tonumber(L, -1);
    lua_pop(L, 2);
    limit_ms(L, 4, "read_timeout", &lim.read_timeout_ms);
    limit_ms(L, 4, "header_timeout", &lim.header_timeout_ms);
    limit_ms(L, 4, "first_byte_timeout", &lim.first_byte_timeout_ms);
    limit_ms(L, 4, "idle_timeout", &lim.idle_timeout_ms);
  }
  hserver *hs = lua_newuserdata(L, sizeof *hs);
  memset(hs, 0, sizeof *hs);
  int rc = bg_http_server_new(bg__host_rt(L)->loop, &lim, server_handler, hs, &hs->srv);
  if (rc == 0) bg_http_set_tracer(hs->srv, bg_tracer_default());
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
  bg__hcb_set(&hs->cb, L, 3);
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

/* server:answer(ticket, status, content_type, body[, extra_headers]) -> true | nil, err: the
 * answer of a request whose handler returned "defer"; err when it no longer waits (its client
 * went away, or it was answered 504 at the server's defer timeout). */
static int l_server_answer(lua_State *L) {
  hserver *hs = check_server(L);
  lua_Number t = luaL_checknumber(L, 2);
  bg_http_response res = {(int)luaL_checkinteger(L, 3),
                          luaL_optstring(L, 4, "application/json"),
                          NULL,
                          0,
                          luaL_optstring(L, 6, NULL),
                          NULL,
                          0};
  res.body = luaL_optlstring(L, 5, "", &res.body_len);
  int rc = t >= 1 ? bg_http_answer(hs->srv, (uint64_t)t, &res) : BG_EINVAL;
  if (rc != 0) {
    lua_pushnil(L);
    lua_pushstring(L, rc == BG_ENOENT ? "the request no longer waits" : bg_strerror(rc));
    return 2;
  }
  lua_pushboolean(L, 1);
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
  if (c.L && c.ref != LUA_NOREF) bg__hcb_call(&c, 0, 0);
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
  bg__hcb_clear(&hs->before);
  bg__hcb_set(&hs->before, L, 3);
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
  lua_createtable(L, 0, 9);
  bg__host_setnum(L, "requests", (double)st.requests);
  bg__host_setnum(L, "static_hits", (double)st.static_hits);
  bg__host_setnum(L, "errors_4xx", (double)st.errors_4xx);
  bg__host_setnum(L, "errors_5xx", (double)st.errors_5xx);
  bg__host_setnum(L, "connections_accepted", (double)st.connections_accepted);
  bg__host_setnum(L, "connections_rejected", (double)st.connections_rejected);
  bg__host_setnum(L, "connections_open", (double)st.connections_open);
  bg__host_setnum(L, "connections_evicted", (double)st.connections_evicted);
  bg__host_setnum(L, "connections_timed_out", (double)st.connections_timed_out);
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
    bg__hcb_clear(&hs->cb);
    bg__hcb_clear(&hs->before);
    bg_buf_free(&hs->body);
  }
  return 0;
}

/* Registers the metatable and sets core.http_server in the table on top of L. */
void bg__host_open_http(lua_State *L, bg_runtime *rt) {
  static const luaL_Reg server_m[] = {{"port", l_server_port},
                                      {"set_static", l_server_set_static},
                                      {"answer", l_server_answer},
                                      {"serve_metrics", l_server_serve_metrics},
                                      {"stats", l_server_stats},
                                      {"close", l_server_close},
                                      {NULL, NULL}};
  bg__host_set_meta(L, SERVER_MT, server_m, l_server_close);
  static const luaL_Reg fns[] = {{"http_server", l_http_server}, {NULL, NULL}};
  bg__host_setfuncs(L, rt, fns);
}
