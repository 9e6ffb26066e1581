/* The I/O a plugin can wait on: timers, HTTP and mail (fetch), TCP and processes. Each call
 * starts a C operation, yields the run's coroutine and is resumed from the loop with the
 * result. Every operation can be cancelled (the run timed out or was cancelled) and then
 * releases its handles on its own. Also the synchronous helpers channels need (hashing). */
#include <ctype.h>
#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/statvfs.h>

#include "base/bg.h"
#include "base/jsonenc.h"
#include "base/sha256.h"
#include "net/fetch.h"
#include "script/script_int.h"

#define CONN_MT "beagle.tcp"
#define EXEC_MAX_OUTPUT (1u << 20)
#define MAIL_MAX_RCPT 100

static bg_runtime *runtime_of(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  return *(bg_runtime **)ud; /* bg_script's first field */
}

static void push_error(lua_State *co, int err, const char *msg) {
  lua_pushnil(co);
  if (msg != NULL && msg[0])
    lua_pushstring(co, msg);
  else
    lua_pushstring(co, bg_strerror(err));
}

static void free_handle_cb(uv_handle_t *h) {
  free(h);
}

/* ---- sleep ---------------------------------------------------------------------------- */

typedef struct sleep_op {
  bg__op op;
  uv_timer_t timer;
} sleep_op;

static void sleep_close_cb(uv_handle_t *h) {
  free(h->data);
}

static void sleep_cancel(bg__op *op) {
  sleep_op *so = (sleep_op *)op;
  uv_close((uv_handle_t *)&so->timer, sleep_close_cb);
}

static void sleep_cb(uv_timer_t *t) {
  sleep_op *so = t->data;
  bg__run *r = so->op.run;
  uv_close((uv_handle_t *)t, sleep_close_cb);
  if (r == NULL) return;
  lua_pushboolean(r->co, 1);
  bg__run_resume(r, 1);
}

static int pl_sleep(lua_State *L) {
  double secs = luaL_checknumber(L, 1);
  bg__run *r = bg__run_current(L);
  sleep_op *so = calloc(1, sizeof *so);
  if (so == NULL) return luaL_error(L, "out of memory");
  so->op.run = r;
  so->op.cancel = sleep_cancel;
  uv_loop_t *loop = runtime_of(L)->loop;
  uv_timer_init(loop, &so->timer);
  so->timer.data = so;
  /* from now, not from the start of this loop turn (a slice or a busy turn may be long ago):
   * a sleep of s seconds lasts at least s; beyond the run's deadline it ends with the run */
  uv_update_time(loop);
  if (!(secs > 0)) secs = 0;
  if (secs > 1e9) secs = 1e9;
  uv_timer_start(&so->timer, sleep_cb, (uint64_t)(secs * 1000), 0);
  return bg__run_wait(L, &so->op);
}

/* ---- http ----------------------------------------------------------------------------- */

typedef struct http_op {
  bg__op op;
  bg_fetch *req;
} http_op;

static void http_cancel(bg__op *op) {
  http_op *h = (http_op *)op;
  bg_fetch_cancel(h->req);
  free(h);
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
  free(h);
  if (r == NULL) return;
  lua_State *co = r->co;
  if (res->err != 0) {
    push_error(co, res->err, res->errmsg);
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

/* Starts the request and suspends the run until done(h, result) resumes it. */
static int fetch_and_wait(lua_State *L, bg__run *r, const bg_fetch_opts *o, bg_fetch_cb done) {
  http_op *h = calloc(1, sizeof *h);
  if (h == NULL) return luaL_error(L, "out of memory");
  h->op.run = r;
  h->op.cancel = http_cancel;
  int rc = bg_fetch_start(runtime_of(L)->fetcher, o, done, h, &h->req);
  if (rc != 0) {
    free(h);
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
  lua_getfield(L, 1, "max_body");
  o.max_body = (size_t)lua_tonumber(L, -1);
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

  return fetch_and_wait(L, r, &o, http_done);
}

/* ---- mail ----------------------------------------------------------------------------- */

static void mail_done(void *ud, const bg_fetch_result *res) {
  http_op *h = ud;
  bg__run *r = h->op.run;
  free(h);
  if (r == NULL) return;
  if (res->err != 0) {
    push_error(r->co, res->err, res->errmsg);
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

  return fetch_and_wait(L, r, &o, mail_done);
}

/* ---- hashing -------------------------------------------------------------------------- */

/* sha256(msg) -> lower-case hex digest */
static int pl_sha256(lua_State *L) {
  size_t n;
  const char *msg = luaL_checklstring(L, 1, &n);
  uint8_t d[BG_SHA256_LEN];
  char hex[BG_SHA256_HEX_LEN];
  bg_sha256(msg, n, d);
  bg_hex(d, sizeof d, hex);
  lua_pushlstring(L, hex, 2 * BG_SHA256_LEN);
  return 1;
}

/* hmac_sha256(key, msg) -> lower-case hex HMAC-SHA256 */
static int pl_hmac_sha256(lua_State *L) {
  size_t kn, mn;
  const char *key = luaL_checklstring(L, 1, &kn);
  const char *msg = luaL_checklstring(L, 2, &mn);
  uint8_t d[BG_SHA256_LEN];
  char hex[BG_SHA256_HEX_LEN];
  bg_hmac_sha256(key, kn, msg, mn, d);
  bg_hex(d, sizeof d, hex);
  lua_pushlstring(L, hex, 2 * BG_SHA256_LEN);
  return 1;
}

/* ---- json ----------------------------------------------------------------------------- */

/* json_encode(v) -> string | nil, err: beagle.json's encode, byte for byte (jsonenc.h) */
static int pl_json_encode(lua_State *L) {
  lua_settop(L, 1);
  if (bg_json_encode_push(L, 1) == 0) return 1;
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}

/* ---- tcp ------------------------------------------------------------------------------ */

typedef struct conn {
  uv_tcp_t *tcp; /* NULL once closed */
  bg_buf in;
  int eof;
  int err;
  bg__op *reading; /* the read op waiting on this connection */
} conn;

typedef struct connect_op {
  bg__op op;
  uv_getaddrinfo_t gai;
  uv_connect_t creq;
  uv_tcp_t *tcp;
  int phase; /* 0 resolving, 1 connecting */
} connect_op;

static void connect_cancel(bg__op *op) {
  connect_op *c = (connect_op *)op;
  if (c->phase == 0)
    uv_cancel((uv_req_t *)&c->gai); /* its callback frees c */
  else
    uv_close((uv_handle_t *)c->tcp, free_handle_cb); /* connect_cb runs with ECANCELED */
}

static void connect_cb(uv_connect_t *req, int status) {
  connect_op *c = req->data;
  bg__run *r = c->op.run;
  uv_tcp_t *tcp = c->tcp;
  free(c);
  if (r == NULL) return; /* cancelled: the handle is already closing */
  lua_State *co = r->co;
  if (status != 0) {
    uv_close((uv_handle_t *)tcp, free_handle_cb);
    push_error(co, status, uv_strerror(status));
    bg__run_resume(r, 2);
    return;
  }
  uv_tcp_nodelay(tcp, 1);
  conn *cn = lua_newuserdata(co, sizeof *cn);
  memset(cn, 0, sizeof *cn);
  cn->tcp = tcp;
  tcp->data = cn;
  luaL_getmetatable(co, CONN_MT);
  lua_setmetatable(co, -2);
  bg__run_resume(r, 1);
}

static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  connect_op *c = req->data;
  bg__run *r = c->op.run;
  if (r == NULL || status != 0) {
    if (res) uv_freeaddrinfo(res);
    free(c);
    if (r == NULL) return;
    push_error(r->co, status, uv_strerror(status));
    bg__run_resume(r, 2);
    return;
  }
  c->phase = 1;
  c->tcp = malloc(sizeof *c->tcp);
  int rc = c->tcp ? uv_tcp_init(r->s->rt->loop, c->tcp) : UV_ENOMEM;
  if (rc == 0) {
    c->creq.data = c;
    rc = uv_tcp_connect(&c->creq, c->tcp, res->ai_addr, connect_cb);
    if (rc != 0) uv_close((uv_handle_t *)c->tcp, free_handle_cb);
  } else {
    free(c->tcp);
  }
  uv_freeaddrinfo(res);
  if (rc != 0) {
    free(c);
    push_error(r->co, rc, uv_strerror(rc));
    bg__run_resume(r, 2);
  }
}

/* tcp_connect(host, port) -> conn | nil, err */
static int pl_tcp_connect(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2);
  if (port <= 0 || port > 65535) return luaL_argerror(L, 2, "port must be 1..65535");
  bg__run *r = bg__run_current(L);
  connect_op *c = calloc(1, sizeof *c);
  if (c == NULL) return luaL_error(L, "out of memory");
  c->op.run = r;
  c->op.cancel = connect_cancel;
  c->gai.data = c;
  char service[8];
  snprintf(service, sizeof service, "%d", port);
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(runtime_of(L)->loop, &c->gai, resolve_cb, host, service, &hints);
  if (rc != 0) {
    free(c);
    lua_pushnil(L);
    lua_pushstring(L, uv_strerror(rc));
    return 2;
  }
  return bg__run_wait(L, &c->op);
}

static conn *check_conn(lua_State *L) {
  return luaL_checkudata(L, 1, CONN_MT);
}

static void conn_close(conn *cn) {
  if (cn->tcp == NULL) return;
  uv_read_stop((uv_stream_t *)cn->tcp);
  cn->tcp->data = NULL;
  uv_close((uv_handle_t *)cn->tcp, free_handle_cb);
  cn->tcp = NULL;
}

typedef struct read_op {
  bg__op op;
  conn *cn;
} read_op;

static void read_cancel(bg__op *op) {
  read_op *ro = (read_op *)op;
  if (ro->cn->tcp) uv_read_stop((uv_stream_t *)ro->cn->tcp);
  ro->cn->reading = NULL;
  free(ro);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(suggested);
  buf->len = buf->base ? suggested : 0;
}

static void push_read(lua_State *co, conn *cn) {
  if (cn->in.len > 0) {
    lua_pushlstring(co, cn->in.data, cn->in.len);
    bg_buf_reset(&cn->in);
    lua_pushnil(co); /* keeps the result count fixed */
  } else {
    lua_pushnil(co);
    lua_pushstring(co, cn->err ? uv_strerror(cn->err) : "eof");
  }
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  conn *cn = s->data;
  if (n > 0 && cn) bg_buf_append(&cn->in, buf->base, (size_t)n);
  free(buf->base);
  if (cn == NULL || n == 0) return;
  if (n < 0) {
    cn->eof = 1;
    if (n != UV_EOF) cn->err = (int)n;
  }
  uv_read_stop(s);
  read_op *ro = (read_op *)cn->reading;
  if (ro == NULL) return;
  cn->reading = NULL;
  bg__run *r = ro->op.run;
  free(ro);
  if (r == NULL) return;
  push_read(r->co, cn);
  bg__run_resume(r, 2);
}

/* conn:read() -> data | nil, "eof" | nil, err: whatever has arrived, waiting for some. */
static int conn_read(lua_State *L) {
  conn *cn = check_conn(L);
  if (cn->in.len > 0 || cn->eof || cn->tcp == NULL) {
    if (cn->tcp == NULL && cn->in.len == 0) {
      lua_pushnil(L);
      lua_pushstring(L, "closed");
      return 2;
    }
    push_read(L, cn);
    return 2;
  }
  if (cn->reading) return luaL_error(L, "connection is already being read");
  bg__run *r = bg__run_current(L);
  read_op *ro = calloc(1, sizeof *ro);
  if (ro == NULL) return luaL_error(L, "out of memory");
  ro->op.run = r;
  ro->op.cancel = read_cancel;
  ro->cn = cn;
  int rc = uv_read_start((uv_stream_t *)cn->tcp, alloc_cb, read_cb);
  if (rc != 0) {
    free(ro);
    lua_pushnil(L);
    lua_pushstring(L, uv_strerror(rc));
    return 2;
  }
  cn->reading = &ro->op;
  return bg__run_wait(L, &ro->op);
}

typedef struct write_op {
  bg__op op;
  uv_write_t req;
  char *data;
} write_op;

static void write_cancel(bg__op *op) {
  (void)op; /* write_cb frees it; uv_write can't stop */
}

static void write_cb(uv_write_t *req, int status) {
  write_op *wo = req->data;
  bg__run *r = wo->op.run;
  free(wo->data);
  free(wo);
  if (r == NULL) return;
  if (status != 0)
    push_error(r->co, status, uv_strerror(status));
  else
    lua_pushboolean(r->co, 1), lua_pushnil(r->co);
  bg__run_resume(r, 2);
}

/* conn:write(data) -> true | nil, err, once the data is handed to the kernel. */
static int conn_write(lua_State *L) {
  conn *cn = check_conn(L);
  size_t n;
  const char *p = luaL_checklstring(L, 2, &n);
  if (cn->tcp == NULL) {
    lua_pushnil(L);
    lua_pushstring(L, "closed");
    return 2;
  }
  bg__run *r = bg__run_current(L);
  write_op *wo = calloc(1, sizeof *wo);
  char *copy = malloc(n ? n : 1);
  if (wo == NULL || copy == NULL) {
    free(wo);
    free(copy);
    return luaL_error(L, "out of memory");
  }
  memcpy(copy, p, n);
  wo->data = copy;
  wo->op.run = r;
  wo->op.cancel = write_cancel;
  wo->req.data = wo;
  uv_buf_t b = uv_buf_init(copy, (unsigned)n);
  int rc = uv_write(&wo->req, (uv_stream_t *)cn->tcp, &b, 1, write_cb);
  if (rc != 0) {
    free(copy);
    free(wo);
    lua_pushnil(L);
    lua_pushstring(L, uv_strerror(rc));
    return 2;
  }
  return bg__run_wait(L, &wo->op);
}

static int conn_close_l(lua_State *L) {
  conn *cn = check_conn(L);
  if (cn->reading) {
    bg__op *op = cn->reading;
    cn->reading = NULL;
    bg__run *r = op->run;
    free(op);
    conn_close(cn);
    if (r) {
      /* only another coroutine of the same run could be reading; end that wait */
      lua_pushnil(r->co);
      lua_pushstring(r->co, "closed");
      bg__run_resume(r, 2);
    }
  }
  conn_close(cn);
  bg_buf_free(&cn->in);
  return 0;
}

static int conn_gc(lua_State *L) {
  conn *cn = check_conn(L);
  conn_close(cn);
  bg_buf_free(&cn->in);
  return 0;
}

/* ---- exec ----------------------------------------------------------------------------- */

typedef struct exec_op {
  bg__op op;
  uv_process_t proc;
  uv_pipe_t out, err;
  bg_buf obuf, ebuf;
  int64_t status;
  int term_signal;
  int exited;
  int open_handles; /* freed when this reaches 0 */
  int eofs;
} exec_op;

static void exec_free_if_done(exec_op *e) {
  if (e->open_handles > 0) return;
  bg_buf_free(&e->obuf);
  bg_buf_free(&e->ebuf);
  free(e);
}

static void exec_handle_closed(uv_handle_t *h) {
  exec_op *e = h->data;
  e->open_handles--;
  exec_free_if_done(e);
}

static void exec_close_all(exec_op *e) {
  uv_handle_t *hs[] = {(uv_handle_t *)&e->proc, (uv_handle_t *)&e->out, (uv_handle_t *)&e->err};
  for (int i = 0; i < 3; i++)
    if (!uv_is_closing(hs[i])) uv_close(hs[i], exec_handle_closed);
}

static void exec_maybe_finish(exec_op *e) {
  if (!e->exited || e->eofs < 2) return;
  bg__run *r = e->op.run;
  if (r != NULL) {
    lua_State *co = r->co;
    lua_createtable(co, 0, 4);
    lua_pushinteger(co, (lua_Integer)e->status);
    lua_setfield(co, -2, "code");
    lua_pushinteger(co, e->term_signal);
    lua_setfield(co, -2, "signal");
    lua_pushlstring(co, e->obuf.data ? e->obuf.data : "", e->obuf.len);
    lua_setfield(co, -2, "stdout");
    lua_pushlstring(co, e->ebuf.data ? e->ebuf.data : "", e->ebuf.len);
    lua_setfield(co, -2, "stderr");
    e->op.run = NULL;
    exec_close_all(e);
    bg__run_resume(r, 1);
    return;
  }
  exec_close_all(e);
}

static void exec_exit_cb(uv_process_t *p, int64_t status, int sig) {
  exec_op *e = p->data;
  e->exited = 1;
  e->status = status;
  e->term_signal = sig;
  exec_maybe_finish(e);
}

static void exec_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  exec_op *e = s->data;
  bg_buf *b = (uv_pipe_t *)s == &e->out ? &e->obuf : &e->ebuf;
  if (n > 0 && b->len < EXEC_MAX_OUTPUT) {
    size_t take = (size_t)n;
    if (b->len + take > EXEC_MAX_OUTPUT) take = EXEC_MAX_OUTPUT - b->len;
    bg_buf_append(b, buf->base, take);
  }
  free(buf->base);
  if (n < 0) {
    uv_read_stop(s);
    e->eofs++;
    exec_maybe_finish(e);
  }
}

static void exec_cancel(bg__op *op) {
  exec_op *e = (exec_op *)op;
  if (!e->exited) uv_process_kill(&e->proc, SIGKILL);
  exec_close_all(e);
}

/* exec(argv, {stdin=?}) -> {code, signal, stdout, stderr} | nil, err. The run's deadline
 * kills the process (SIGKILL). */
static int pl_exec(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  bg__run *r = bg__run_current(L);
  char *argv[64];
  int argc = 0;
  for (int i = 1; argc < 63; i++) {
    lua_rawgeti(L, 1, i);
    if (!lua_isstring(L, -1)) {
      lua_pop(L, 1);
      break;
    }
    argv[argc++] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  argv[argc] = NULL;
  if (argc == 0) return luaL_argerror(L, 1, "command must be a non-empty list of strings");
  exec_op *e = calloc(1, sizeof *e);
  if (e == NULL) return luaL_error(L, "out of memory");
  uv_loop_t *loop = runtime_of(L)->loop;
  uv_pipe_init(loop, &e->out, 0);
  uv_pipe_init(loop, &e->err, 0);
  e->out.data = e->err.data = e->proc.data = e;
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&e->out;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&e->err;
  uv_process_options_t po;
  memset(&po, 0, sizeof po);
  /* The child gets a bare environment: the agent's holds the channels' keys and tokens. */
  static char *clean_env[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                              "LANG=C", NULL};
  po.file = argv[0];
  po.args = argv;
  po.env = clean_env;
  po.exit_cb = exec_exit_cb;
  po.stdio_count = 3;
  po.stdio = stdio;
  int rc = uv_spawn(loop, &e->proc, &po);
  if (rc != 0) {
    /* a failed spawn still leaves the process handle to close */
    e->open_handles = 3;
    e->exited = 1;
    exec_close_all(e);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", argv[0], uv_strerror(rc));
    return 2;
  }
  e->open_handles = 3;
  uv_read_start((uv_stream_t *)&e->out, alloc_cb, exec_read_cb);
  uv_read_start((uv_stream_t *)&e->err, alloc_cb, exec_read_cb);
  e->op.run = r;
  e->op.cancel = exec_cancel;
  return bg__run_wait(L, &e->op);
}

/* ---- files ------------------------------------------------------------------------------ */

/* read_file(path[, max]) -> data | nil, err. Synchronous: for /proc, /sys and small local
 * files, which the kernel answers from memory. At most max bytes (default 1 MiB). */
static int pl_read_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t max = (size_t)luaL_optnumber(L, 2, 1 << 20);
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t total = 0;
  char chunk[4096];
  while (total < max) {
    size_t want = max - total < sizeof chunk ? max - total : sizeof chunk;
    size_t n = fread(chunk, 1, want, f);
    if (n == 0) break;
    luaL_addlstring(&b, chunk, n);
    total += n;
  }
  fclose(f);
  luaL_pushresult(&b);
  return 1;
}

/* statvfs(path) -> total_bytes, available_bytes | nil, err */
static int pl_statvfs(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct statvfs st;
  if (statvfs(path, &st) != 0) {
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", path, strerror(errno));
    return 2;
  }
  lua_pushnumber(L, (double)st.f_blocks * (double)st.f_frsize);
  lua_pushnumber(L, (double)st.f_bavail * (double)st.f_frsize);
  return 2;
}

void bg__script_open_io(lua_State *L) {
  static const luaL_Reg fns[] = {
      {"sleep", pl_sleep}, {"read_file", pl_read_file},     {"statvfs", pl_statvfs},
      {"http", pl_http},   {"tcp_connect", pl_tcp_connect}, {"exec", pl_exec},
      {"mail", pl_mail},   {"sha256", pl_sha256},           {"hmac_sha256", pl_hmac_sha256},
      {NULL, NULL}};
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
  lua_pushcfunction(L, pl_json_encode);
  lua_setfield(L, -2, "json_encode");
  if (luaL_newmetatable(L, CONN_MT)) {
    static const luaL_Reg m[] = {
        {"read", conn_read}, {"write", conn_write}, {"close", conn_close_l}, {NULL, NULL}};
    lua_newtable(L);
    for (const luaL_Reg *f = m; f->name; f++) {
      lua_pushcfunction(L, f->func);
      lua_setfield(L, -2, f->name);
    }
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, conn_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}
