/* script_io_fetch: what a plugin run sends through the fetcher (net/fetch.h) and waits for:
 * HTTP requests (ctx.http) and mail (ctx.mail in channels). */
#include <ctype.h>
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/bg.h"
#include "net/fetch.h"
#include "script/script_io_int.h"

#define MAIL_MAX_RCPT 100
#define HTTP_DEFAULT_BODY ((size_t)16 << 20) /* fetch's default max_body */
#define HTTP_MAX_BODY ((size_t)1 << 40)

/* ---- http ----------------------------------------------------------------------------- */

typedef struct http_op {
  bg__op op;
  bg_fetch *req;
  size_t capped;    /* max_body when the plugin's memory left set it, else 0 */
  size_t *reserved; /* the state's bytes reserved by requests in flight (reserved_of) */
  size_t amount;    /* this request's part of them */
} http_op;

/* Gives back what h reserved and frees it. */
static void http_op_free(http_op *h) {
  if (h->reserved) *h->reserved -= h->amount;
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

static void http_done(void *ud, const bg_fetch_result *res) {
  http_op *h = ud;
  bg__run *r = h->op.run;
  size_t capped = h->capped;
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
  lua_createtable(co, 0, 4);
  lua_pushinteger(co, res->status);
  lua_setfield(co, -2, "status");
  lua_pushlstring(co, res->body, res->body_len);
  lua_setfield(co, -2, "body");
  push_headers(co, res->headers ? res->headers : "", res->headers ? res->headers_len : 0);
  lua_setfield(co, -2, "headers");
  lua_pushnumber(co, res->total_time);
  lua_setfield(co, -2, "time");
  bg__run_resume(r, 1);
}

/* Starts the request and suspends the run until done(h, result) resumes it. capped,
 * reserved, amount: see http_op (NULL and 0 for none). */
static int fetch_and_wait(lua_State *L, bg__run *r, const bg_fetch_opts *o, bg_fetch_cb done,
                          size_t capped, size_t *reserved, size_t amount) {
  http_op *h = calloc(1, sizeof *h);
  if (h == NULL) return luaL_error(L, "out of memory");
  h->capped = capped;
  h->reserved = reserved;
  h->amount = amount;
  if (reserved) *reserved += amount;
  h->op.run = r;
  h->op.cancel = http_cancel;
  int rc = bg_fetch_start(bg__io_runtime(L)->fetcher, o, done, h, &h->req);
  if (rc != 0) {
    http_op_free(h);
    lua_pushnil(L);
    lua_pushstring(L, bg_strerror(rc));
    return 2;
  }
  return bg__run_wait(L, &h->op);
}

/* http(req) where req = {method=, url=, headers={"K: V",...}, body=, timeout=, max_body=,
 * follow=, insecure=} */
static int pl_http(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
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
  size_t *reserved = reserved_of(L);
  size_t want = o.max_body ? o.max_body : HTTP_DEFAULT_BODY, left = bg__io_mem_left(L, r);
  size_t capped = 0, amount = 0;
  if (left != SIZE_MAX) { /* a limit applies: share what is left with the requests in flight */
    left = left > *reserved ? left - *reserved : 0;
    if (left < want) o.max_body = capped = left ? left : 1;
    amount = capped ? capped : want;
  }
  lua_getfield(L, 1, "follow");
  o.follow_redirects = lua_toboolean(L, -1);
  lua_getfield(L, 1, "insecure");
  o.insecure = lua_toboolean(L, -1);
  const char *hdrs[65];
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
  hdrs[nh] = NULL;
  o.headers = nh ? hdrs : NULL;

  return fetch_and_wait(L, r, &o, http_done, capped, reserved, amount);
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

  return fetch_and_wait(L, r, &o, mail_done, 0, NULL, 0);
}

/* Sets http, mail in the __bg table on top of L. */
void bg__script_open_io_fetch(lua_State *L) {
  static const luaL_Reg fns[] = {{"http", pl_http}, {"mail", pl_mail}, {NULL, NULL}};
  bg__io_setfuncs(L, fns);
}
