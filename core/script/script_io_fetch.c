/* script_io_fetch: what a plugin run sends through the fetcher (net/fetch.h) and waits for:
 * HTTP requests (ctx.http) and mail (ctx.mail in channels). */
#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "base/bg.h"
#include "net/fetch.h"
#include "script/script_int.h"
#include "script/script_io_int.h"
#include "trace/trace.h"

#define MAIL_MAX_RCPT 100
#define HTTP_DEFAULT_BODY ((size_t)16 << 20) /* fetch's default max_body */
#define HTTP_MAX_BODY ((size_t)1 << 40)
#define HTTP_DEFAULT_REDIRECTS 10
#define HTTP_BODY_FLOOR ((size_t)256 << 10) /* body bytes a request may always gather */
#define HTTP_MAX_CONNECT_TO 8               /* connect_to entries a request may give */

/* ---- http ----------------------------------------------------------------------------- */

typedef struct http_op {
  bg__op op;
  bg_fetch *req;
  bg_span *span;    /* the request's CLIENT span, or NULL (the plugin set its own traceparent) */
  size_t capped;    /* max_body when the plugin's memory left set it, else 0 */
  size_t *reserved; /* the state's bytes reserved by requests in flight (reserved_of) */
  size_t amount;    /* this request's part of them */
} http_op;

/* Ends the request's span with an error when it is still open (the run was cancelled or the
 * request never started). */
static void span_fail(bg_span *sp, const char *why) {
  if (sp == NULL) return;
  if (sp->recording) {
    bg_span_set_str(sp, "error.type", 10, why, strlen(why));
    bg_span_set_status(sp, BG_STATUS_ERROR, why, strlen(why));
  }
  bg_span_end(bg_tracer_default(), sp, 0);
}

/* Gives back what h reserved and frees it. */
static void http_op_free(http_op *h) {
  if (h->reserved) *h->reserved -= h->amount;
  span_fail(h->span, "cancelled");
  free(h);
}

static void http_cancel(bg__op *op) {
  http_op *h = (http_op *)op;
  bg_fetch_cancel(h->req);
  http_op_free(h);
}

/* The bytes of response bodies the plugin state of L has in flight, kept in its registry: the
 * requests of runs at once share the memory the plugin has left instead of each counting on
 * all of it. Lives as long as the state (its ops end before it is freed). May raise when the
 * plugin is out of memory. */
static size_t *reserved_of(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, "bg.http_reserved");
  size_t *p = lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (p == NULL) {
    p = lua_newuserdata(L, sizeof *p);
    *p = 0;
    lua_setfield(L, LUA_REGISTRYINDEX, "bg.http_reserved");
  }
  return p;
}

static int is_lua_space(unsigned char c) {
  return c == ' ' || (c >= '\t' && c <= '\r'); /* Lua's %s in the C locale */
}

/* The response's header lines as a table, name lowercased -> value (the last of a repeated
 * name wins): for each line of raw, what line:match("^([^:]+):%s*(.-)%s*$") finds, so the
 * status line (no colon) and blank lines are skipped. Pushed on co. */
static void push_headers(lua_State *co, const char *raw, size_t len) {
  lua_createtable(co, 0, 8);
  size_t i = 0;
  while (i < len) {
    size_t start = i;
    while (i < len && raw[i] != '\r' && raw[i] != '\n')
      i++;
    size_t end = i;
    while (i < len && (raw[i] == '\r' || raw[i] == '\n'))
      i++;
    const char *colon = memchr(raw + start, ':', end - start);
    if (colon == NULL || colon == raw + start) continue;
    size_t klen = (size_t)(colon - (raw + start));
    char key[128];
    char *k = klen <= sizeof key ? key : malloc(klen);
    if (k == NULL) continue;
    for (size_t j = 0; j < klen; j++)
      k[j] = (char)tolower((unsigned char)raw[start + j]);
    const char *v = colon + 1, *ve = raw + end;
    while (v < ve && is_lua_space((unsigned char)*v))
      v++;
    while (ve > v && is_lua_space((unsigned char)ve[-1]))
      ve--;
    lua_pushlstring(co, k, klen);
    lua_pushlstring(co, v, (size_t)(ve - v));
    lua_rawset(co, -3);
    if (k != key) free(k);
  }
}

/* The span's end: the response's status, error status for a failure or a status >= 400 (a
 * client span's 4xx is an error too, per the HTTP semantic conventions). */
static void span_done(bg_span *sp, const bg_fetch_result *res) {
  if (sp == NULL) return;
  if (sp->recording) {
    if (res->err != 0) {
      const char *why = res->errmsg && res->errmsg[0] ? res->errmsg : bg_strerror(res->err);
      const char *ty = bg_strerror(res->err);
      bg_span_set_str(sp, "error.type", 10, ty, strlen(ty));
      bg_span_set_status(sp, BG_STATUS_ERROR, why, strlen(why));
    } else {
      bg_span_set_int(sp, "http.response.status_code", 25, res->status);
      if (res->status >= 400) {
        char code[16];
        int n = snprintf(code, sizeof code, "%d", (int)res->status);
        bg_span_set_str(sp, "error.type", 10, code, (size_t)n);
        bg_span_set_status(sp, BG_STATUS_ERROR, NULL, 0);
      }
    }
  }
  bg_span_end(bg_tracer_default(), sp, 0);
}

/* res.timings: each phase when curl ran the request, else (the built-in client) the total. */
static void push_timings(lua_State *co, const bg_fetch_result *res) {
  lua_createtable(co, 0, 5);
  if (res->has_timings) {
    static const char *const names[] = {"dns", "connect", "tls", "first_byte", "total"};
    const double v[] = {res->timings.dns, res->timings.connect, res->timings.tls,
                        res->timings.first_byte, res->timings.total};
    for (int i = 0; i < 5; i++) {
      lua_pushnumber(co, v[i]);
      lua_setfield(co, -2, names[i]);
    }
  } else {
    lua_pushnumber(co, res->total_time);
    lua_setfield(co, -2, "total");
  }
}

static void http_done(void *ud, const bg_fetch_result *res) {
  http_op *h = ud;
  bg__run *r = h->op.run;
  size_t capped = h->capped;
  span_done(h->span, res);
  h->span = NULL;
  http_op_free(h);
  if (r == NULL) return;
  lua_State *co = r->co;
  if (res->err == BG_ELIMIT && capped) {
    lua_pushnil(co);
    lua_pushfstring(co, "response body exceeds the %d bytes of memory the plugin has left",
                    (int)(capped > INT32_MAX ? INT32_MAX : capped));
    bg__run_resume(r, 2);
    return;
  }
  if (res->err != 0) {
    bg__io_push_error(co, res->err, res->errmsg);
    bg__run_resume(r, 2);
    return;
  }
  lua_createtable(co, 0, 8);
  lua_pushinteger(co, res->status);
  lua_setfield(co, -2, "status");
  lua_pushlstring(co, res->body, res->body_len);
  lua_setfield(co, -2, "body");
  push_headers(co, res->headers ? res->headers : "", res->headers ? res->headers_len : 0);
  lua_setfield(co, -2, "headers");
  lua_pushnumber(co, res->total_time);
  lua_setfield(co, -2, "time");
  lua_pushinteger(co, res->redirects);
  lua_setfield(co, -2, "redirects");
  if (res->url != NULL) { /* else the sandbox sets the request's */
    lua_pushstring(co, res->url);
    lua_setfield(co, -2, "url");
  }
  push_timings(co, res);
  lua_setfield(co, -2, "timings");
  if (res->has_cert) {
    lua_createtable(co, 0, 4);
    lua_pushnumber(co, res->cert.not_before);
    lua_setfield(co, -2, "not_before");
    lua_pushnumber(co, res->cert.not_after);
    lua_setfield(co, -2, "not_after");
    lua_pushstring(co, res->cert.subject);
    lua_setfield(co, -2, "subject");
    lua_pushstring(co, res->cert.issuer);
    lua_setfield(co, -2, "issuer");
    lua_setfield(co, -2, "cert");
  }
  bg__run_resume(r, 1);
}

/* Starts the request and suspends the run until done(h, result) resumes it. capped,
 * reserved, amount: see http_op (NULL and 0 for none); sp: the request's span, ended with it;
 * owned: a header string freed once the request has started (NULL: none). */
static int fetch_and_wait(lua_State *L, bg__run *r, const bg_fetch_opts *o, bg_fetch_cb done,
                          size_t capped, size_t *reserved, size_t amount, bg_span *sp,
                          char *owned) {
  http_op *h = calloc(1, sizeof *h);
  if (h == NULL) {
    free(owned);
    span_fail(sp, "out of memory");
    return luaL_error(L, "out of memory");
  }
  h->span = sp;
  h->capped = capped;
  h->reserved = reserved;
  h->amount = amount;
  if (reserved) *reserved += amount;
  h->op.run = r;
  h->op.cancel = http_cancel;
  int rc = bg_fetch_start(bg__io_runtime(L)->fetcher, o, done, h, &h->req);
  free(owned); /* fetch has copied the headers */
  if (rc != 0) {
    span_fail(h->span, bg_strerror(rc));
    h->span = NULL;
    http_op_free(h);
    lua_pushnil(L);
    lua_pushstring(L, bg_strerror(rc));
    return 2;
  }
  return bg__run_wait(L, &h->op);
}

/* Whether one of the request's header lines is name: (the plugin's own traceparent or
 * tracestate wins). */
static int has_header(const char *const *hdrs, size_t n, const char *name) {
  size_t nl = strlen(name);
  for (size_t i = 0; i < n; i++) {
    const char *h = hdrs[i];
    while (*h == ' ' || *h == '\t')
      h++;
    if (strncasecmp(h, name, nl) == 0) {
      h += nl;
      while (*h == ' ' || *h == '\t')
        h++;
      if (*h == ':') return 1;
    }
  }
  return 0;
}

/* The URL's host (without userinfo, brackets kept out of IPv6 literals) and port (explicit, or
 * the scheme's), for server.address and server.port; 0 when the URL has no authority. */
static int url_server(const char *url, const char **host, size_t *hlen, long *port) {
  const char *p = strstr(url, "://");
  if (p == NULL) return 0;
  int tls = (size_t)(p - url) == 5 && strncasecmp(url, "https", 5) == 0;
  p += 3;
  size_t alen = strcspn(p, "/?#");
  const char *at = NULL;
  for (size_t i = 0; i < alen; i++)
    if (p[i] == '@') at = p + i;
  if (at != NULL) {
    alen -= (size_t)(at + 1 - p);
    p = at + 1;
  }
  const char *end = p + alen, *colon = NULL;
  if (*p == '[') {
    const char *rb = memchr(p, ']', alen);
    if (rb == NULL) return 0;
    *host = p + 1;
    *hlen = (size_t)(rb - p - 1);
    if (rb + 1 < end && rb[1] == ':') colon = rb + 1;
  } else {
    colon = memchr(p, ':', alen);
    *host = p;
    *hlen = (size_t)((colon ? colon : end) - p);
  }
  *port = colon ? strtol(colon + 1, NULL, 10) : tls ? 443 : 80;
  return *hlen > 0;
}

/* url.full as the semantic conventions want it exported: the userinfo replaced by
 * REDACTED:REDACTED, and the value of every query parameter by REDACTED (api_key=, token=,
 * sig=: a query often carries a secret, and which keys do is not ours to guess); the fragment,
 * never sent, left out. Into out (reset first); 0 or BG_ENOMEM. */
static int url_redacted(const char *url, bg_buf *out) {
  bg_buf_reset(out);
  const char *p = strstr(url, "://");
  const char *auth = p != NULL ? p + 3 : url;
  size_t alen = strcspn(auth, "/?#");
  const char *at = NULL;
  for (size_t i = 0; i < alen; i++)
    if (auth[i] == '@') at = auth + i;
  int rc = bg_buf_append(out, url, (size_t)(auth - url));
  if (at != NULL) {
    rc |= bg_buf_puts(out, "REDACTED:REDACTED");
    auth = at;
  }
  size_t plen = strcspn(auth, "?#");
  rc |= bg_buf_append(out, auth, plen);
  const char *q = auth + plen;
  if (*q == '?') {
    const char *qe = q + strcspn(q, "#");
    rc |= bg_buf_append(out, "?", 1);
    for (const char *k = q + 1; k < qe;) {
      const char *amp = memchr(k, '&', (size_t)(qe - k));
      const char *pe = amp != NULL ? amp : qe;
      const char *eq = memchr(k, '=', (size_t)(pe - k));
      rc |= bg_buf_append(out, k, (size_t)((eq != NULL ? eq : pe) - k));
      if (eq != NULL) rc |= bg_buf_puts(out, "=REDACTED");
      if (amp != NULL) rc |= bg_buf_append(out, "&", 1);
      k = amp != NULL ? amp + 1 : qe;
    }
  }
  return rc != 0 ? BG_ENOMEM : 0;
}

/* The request's CLIENT span, a child of the run's current span (a new root without one), and
 * the headers that carry it: traceparent, and tracestate when the context has one. Not left
 * current: the run's own span stays current while it waits. */
static bg_span *client_span(lua_State *L, const bg_fetch_opts *o, char tp[69], char **ts) {
  void *ud;
  lua_getallocf(L, &ud);
  /* the plugin's name, as its other spans and its log records have it: no ".lua" */
  const char *scope = ((bg_script *)ud)->name;
  size_t slen = strlen(scope);
  if (slen > 4 && memcmp(scope + slen - 4, ".lua", 4) == 0) slen -= 4;
  bg_tracer *t = bg_tracer_default();
  const char *method = o->method ? o->method : o->body ? "POST" : "GET";
  bg_span_ctx saved;
  bg_span_ctx_copy(&saved, bg_trace_current(t));
  bg_span *sp = bg_span_begin(t, NULL, method, strlen(method), BG_SPAN_CLIENT, scope, slen);
  bg_trace_restore(t, &saved);
  const bg_span_ctx *c = bg_span_context(sp);
  memcpy(tp, "traceparent: ", 13);
  bg_traceparent_format(c, tp + 13);
  tp[68] = '\0';
  *ts = NULL;
  size_t tsl = 0;
  const char *tsv = c->state ? bg_tracestate_str(c->state, &tsl) : NULL;
  if (tsv != NULL && tsl > 0 && (*ts = malloc(tsl + 13)) != NULL) {
    memcpy(*ts, "tracestate: ", 12);
    memcpy(*ts + 12, tsv, tsl);
    (*ts)[12 + tsl] = '\0';
  }
  if (sp->recording) {
    bg_span_set_str(sp, "http.request.method", 19, method, strlen(method));
    bg_buf red = {0};
    if (url_redacted(o->url, &red) == 0) bg_span_set_str(sp, "url.full", 8, red.data, red.len);
    bg_buf_free(&red);
    const char *host;
    size_t hlen;
    long port;
    if (url_server(o->url, &host, &hlen, &port)) {
      bg_span_set_str(sp, "server.address", 14, host, hlen);
      bg_span_set_int(sp, "server.port", 11, port);
    }
  }
  return sp;
}

#define PEM_MAX (1024 * 1024) /* a CA bundle is ~200 KiB */

/* The PEM file path in field key of the table at 1 (left on the stack, which anchors it), or
 * NULL. It must name a regular file: the TLS library opens it on the loop's thread when it
 * connects, and opening a device can block or do something (a watchdog arms). On the first
 * failure *err is set to a message pushed on the stack. */
static const char *pem_field(lua_State *L, const char *key, const char **err) {
  lua_getfield(L, 1, key);
  const char *path = lua_tostring(L, -1);
  if (path == NULL || *err != NULL) return path;
  struct stat st;
  if (stat(path, &st) != 0)
    *err = lua_pushfstring(L, "http: %s: %s: %s", key, path,
                           uv_strerror(uv_translate_sys_error(errno)));
  else if (!S_ISREG(st.st_mode))
    *err = lua_pushfstring(L, "http: %s: %s: not a regular file", key, path);
  else if (st.st_size > PEM_MAX) /* the TLS library reads it whole on the loop's thread */
    *err = lua_pushfstring(L, "http: %s: %s: larger than 1 MiB, not a PEM file", key, path);
  return path;
}

/* http(req) where req = {method=, url=, headers={"K: V",...}, body=, timeout=, max_body=,
 * follow=, max_redirects= (0..50, 10), insecure=, client_cert=, client_key=, ca_file=,
 * cert_info=, connect_only=, timings=, connect_to={"host:port:connect_host:connect_port",...}}
 * (the sandbox has checked the types, paths and connect_to's entries). The request
 * carries the run's current span (traceparent, tracestate) as a CLIENT span of its own, unless the
 * plugin set a traceparent header itself. */
static int pl_http(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkstack(L, 40, "http"); /* the fields stay on the stack, which anchors them */
  bg__run *r = bg__run_current(L);
  bg_fetch_opts o;
  memset(&o, 0, sizeof o);
  lua_getfield(L, 1, "url");
  o.url = luaL_checkstring(L, -1);
  lua_getfield(L, 1, "method");
  o.method = lua_tostring(L, -1);
  lua_getfield(L, 1, "body");
  o.body = lua_tolstring(L, -1, &o.body_len);
  lua_getfield(L, 1, "timeout");
  double t = lua_tonumber(L, -1);
  if (r->deadline) {
    /* never wait past the run's own deadline */
    double left = (double)(r->deadline - bg_now_ns()) / 1e9;
    if (t <= 0 || t > left) t = left > 0.001 ? left : 0.001;
  }
  o.timeout_ms = t > 0 ? (uint64_t)(t * 1000) : 0;
  /* The body is gathered in C before it becomes a string of the plugin's: bounded by the
   * memory the plugin has left, or a 1 GiB max_body would take 1 GiB before the limit trips. */
  lua_getfield(L, 1, "max_body");
  double mb = lua_tonumber(L, -1);
  o.max_body = mb >= 1 && mb < (double)HTTP_MAX_BODY ? (size_t)mb : mb >= 1 ? HTTP_MAX_BODY : 0;
  lua_getfield(L, 1, "connect_only");
  o.connect_only = lua_toboolean(L, -1);
  size_t *reserved = reserved_of(L);
  size_t want = o.max_body ? o.max_body : HTTP_DEFAULT_BODY, left = bg__io_mem_left(L, r);
  size_t capped = 0, amount = 0;
  /* A limit applies: share what is left with the requests in flight (no body for
   * connect_only). Each may still take HTTP_BODY_FLOOR of what is left, whatever the others
   * reserved: with 16 MiB reserved per request by default, the fifth of five requests at once
   * (a slow server, many instances of one check) was cut to 1 byte of body. */
  if (left != SIZE_MAX && !o.connect_only) {
    size_t share = left > *reserved ? left - *reserved : 0;
    size_t floor = left < HTTP_BODY_FLOOR ? left : HTTP_BODY_FLOOR;
    if (share < floor) share = floor;
    if (share < want) o.max_body = capped = share ? share : 1;
    amount = capped ? capped : want;
  }
  lua_getfield(L, 1, "follow");
  o.follow_redirects = lua_toboolean(L, -1);
  lua_getfield(L, 1, "max_redirects");
  if (!lua_isnil(L, -1)) {
    lua_Integer m = lua_tointeger(L, -1);
    if (m < 0 || m > BG_FETCH_MAX_REDIRECTS)
      return luaL_error(L, "http: max_redirects must be 0..%d", BG_FETCH_MAX_REDIRECTS);
    o.max_redirects = m == 0 ? BG_FETCH_NO_REDIRECTS : (int)m;
  } else {
    o.max_redirects = HTTP_DEFAULT_REDIRECTS;
  }
  lua_getfield(L, 1, "insecure");
  o.insecure = lua_toboolean(L, -1);
  const char *pem_err = NULL;
  o.client_cert = pem_field(L, "client_cert", &pem_err);
  o.client_key = pem_field(L, "client_key", &pem_err);
  o.ca_file = pem_field(L, "ca_file", &pem_err);
  if (pem_err != NULL) {
    lua_pushnil(L);
    lua_pushstring(L, pem_err);
    return 2;
  }
  lua_getfield(L, 1, "cert_info");
  o.cert_info = lua_toboolean(L, -1);
  lua_getfield(L, 1, "timings");
  o.timings = lua_toboolean(L, -1);
  /* connect_to: a list of "host:port:connect_host:connect_port" (the sandbox checked each) */
  const char *conn_to[HTTP_MAX_CONNECT_TO + 1];
  size_t nc = 0;
  lua_getfield(L, 1, "connect_to");
  if (lua_isstring(L, -1)) {
    conn_to[nc++] = lua_tostring(L, -1);
  } else if (lua_istable(L, -1)) {
    for (int i = 1; nc < HTTP_MAX_CONNECT_TO; i++) {
      lua_rawgeti(L, -1, i);
      if (!lua_isstring(L, -1)) {
        lua_pop(L, 1);
        break;
      }
      conn_to[nc++] = lua_tostring(L, -1);
      lua_pop(L, 1); /* still anchored by the connect_to table */
    }
  }
  conn_to[nc] = NULL;
  o.connect_to = nc ? conn_to : NULL;
  const char *hdrs[67];
  size_t nh = 0;
  lua_getfield(L, 1, "headers");
  if (lua_istable(L, -1)) {
    for (int i = 1; nh < 64; i++) {
      lua_rawgeti(L, -1, i);
      if (!lua_isstring(L, -1)) {
        lua_pop(L, 1);
        break;
      }
      hdrs[nh++] = lua_tostring(L, -1);
      lua_pop(L, 1); /* still anchored by the headers table */
    }
  }
  bg_span *sp = NULL;
  char tp[69];
  char *ts = NULL;
  if (!has_header(hdrs, nh, "traceparent")) {
    sp = client_span(L, &o, tp, &ts);
    hdrs[nh++] = tp;
    if (ts != NULL && !has_header(hdrs, nh, "tracestate")) hdrs[nh++] = ts;
  }
  hdrs[nh] = NULL;
  o.headers = nh ? hdrs : NULL;

  return fetch_and_wait(L, r, &o, http_done, capped, reserved, amount, sp, ts);
}

/* ---- mail ----------------------------------------------------------------------------- */

static void mail_done(void *ud, const bg_fetch_result *res) {
  http_op *h = ud;
  bg__run *r = h->op.run;
  http_op_free(h);
  if (r == NULL) return;
  if (res->err != 0) {
    bg__io_push_error(r->co, res->err, res->errmsg);
    bg__run_resume(r, 2);
    return;
  }
  lua_pushboolean(r->co, 1);
  bg__run_resume(r, 1);
}

/* The string field key of the table at 1, left on the stack (which anchors it); NULL when
 * absent and optional. Raises for a missing required field, a value of another type, or a NUL
 * byte in what becomes a C string (all but the message). */
static const char *mail_field(lua_State *L, const char *key, int required) {
  lua_getfield(L, 1, key);
  if (lua_type(L, -1) == LUA_TSTRING) {
    const char *s = lua_tostring(L, -1);
    if (strcmp(key, "message") != 0 && strlen(s) != lua_objlen(L, -1))
      luaL_error(L, "bg.mail: '%s' may not contain NUL bytes", key);
    return s;
  }
  if (lua_isnil(L, -1) && !required) return NULL;
  if (lua_isnil(L, -1)) luaL_error(L, "bg.mail: '%s' is required", key);
  luaL_error(L, "bg.mail: '%s' must be a string, not %s", key, luaL_typename(L, -1));
  return NULL;
}

/* The address string at idx, checked: it goes into an SMTP command line. */
static const char *mail_address(lua_State *L, int idx, const char *key) {
  size_t n;
  const char *addr = lua_tolstring(L, idx, &n);
  if (strlen(addr) != n) luaL_error(L, "bg.mail: '%s' may not contain NUL bytes", key);
  if (addr[0] == '\0' && strcmp(key, "from") != 0)
    luaL_error(L, "bg.mail: empty address in '%s'", key);
  if (strpbrk(addr, "\r\n") != NULL) luaL_error(L, "bg.mail: line break in '%s'", key);
  return addr;
}

/* mail{url=, from=, to={...} | "a@b", username=, password=, starttls=, insecure=, message=,
 * timeout=} -> true | nil, err. starttls: true requires STARTTLS, false never uses it, nil
 * uses it when the server offers it. Bare LF line ends of message are sent as CRLF. */
static int pl_mail(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  bg__run *r = bg__run_current(L);
  bg_fetch_opts o;
  memset(&o, 0, sizeof o);
  o.url = mail_field(L, "url", 1);
  if (strncasecmp(o.url, "smtp://", 7) != 0 && strncasecmp(o.url, "smtps://", 8) != 0)
    return luaL_error(L, "bg.mail: 'url' must start with smtp:// or smtps://");
  mail_field(L, "from", 1);
  o.mail_from = mail_address(L, -1, "from");
  o.body = mail_field(L, "message", 1);
  o.body_len = lua_objlen(L, -1);
  o.username = mail_field(L, "username", 0);
  o.password = mail_field(L, "password", 0);
  if (o.password != NULL && o.username == NULL)
    return luaL_error(L, "bg.mail: 'password' needs 'username'");

  const char *rcpt[MAIL_MAX_RCPT + 1];
  size_t nr = 0;
  lua_getfield(L, 1, "to");
  if (lua_type(L, -1) == LUA_TSTRING) {
    rcpt[nr++] = mail_address(L, -1, "to");
  } else if (lua_istable(L, -1)) {
    for (int i = 1;; i++) {
      lua_rawgeti(L, -1, i);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        break;
      }
      if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "bg.mail: 'to' must be a list of addresses");
      if (nr == MAIL_MAX_RCPT)
        return luaL_error(L, "bg.mail: at most %d addresses in 'to'", MAIL_MAX_RCPT);
      rcpt[nr++] = mail_address(L, -1, "to");
      lua_pop(L, 1); /* still anchored by the 'to' table */
    }
  } else if (!lua_isnil(L, -1)) {
    return luaL_error(L, "bg.mail: 'to' must be an address or a list of addresses");
  }
  if (nr == 0) return luaL_error(L, "bg.mail: 'to' needs at least one address");
  rcpt[nr] = NULL;
  o.mail_rcpt = rcpt;

  lua_getfield(L, 1, "starttls");
  if (lua_isnil(L, -1))
    o.use_ssl = BG_FETCH_TLS_TRY;
  else if (lua_isboolean(L, -1))
    o.use_ssl = lua_toboolean(L, -1) ? BG_FETCH_TLS_REQUIRED : BG_FETCH_TLS_NONE;
  else
    return luaL_error(L, "bg.mail: 'starttls' must be a boolean");
  lua_getfield(L, 1, "insecure");
  o.insecure = lua_toboolean(L, -1);
  lua_getfield(L, 1, "timeout");
  if (!lua_isnil(L, -1) && !lua_isnumber(L, -1))
    return luaL_error(L, "bg.mail: 'timeout' must be a number of seconds");
  double t = lua_tonumber(L, -1);
  if (r->deadline) {
    /* never wait past the run's own deadline */
    double left = (double)(r->deadline - bg_now_ns()) / 1e9;
    if (t <= 0 || t > left) t = left > 0.001 ? left : 0.001;
  }
  o.timeout_ms = t > 0 ? (uint64_t)(t * 1000) : 0;

  return fetch_and_wait(L, r, &o, mail_done, 0, NULL, 0, NULL, NULL);
}

/* Sets http, mail in the __bg table on top of L. */
void bg__script_open_io_fetch(lua_State *L) {
  static const luaL_Reg fns[] = {{"http", pl_http}, {"mail", pl_mail}, {NULL, NULL}};
  bg__io_setfuncs(L, fns);
}
