/* script_io_tcp: ctx.tcp.connect and the connection it returns (read, write, close), each a
 * wait of the run on a uv_tcp_t; the name is resolved with uv_getaddrinfo first. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "base/bg.h"
#include "script/script_io_int.h"

#define CONN_MT "beagle.tcp"

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
    uv_close((uv_handle_t *)c->tcp, bg__io_free_handle_cb); /* connect_cb runs with ECANCELED */
}

static void connect_cb(uv_connect_t *req, int status) {
  connect_op *c = req->data;
  bg__run *r = c->op.run;
  uv_tcp_t *tcp = c->tcp;
  free(c);
  if (r == NULL) return; /* cancelled: the handle is already closing */
  lua_State *co = r->co;
  if (status != 0) {
    uv_close((uv_handle_t *)tcp, bg__io_free_handle_cb);
    bg__io_push_error(co, status, uv_strerror(status));
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
    bg__io_push_error(r->co, status, uv_strerror(status));
    bg__run_resume(r, 2);
    return;
  }
  c->phase = 1;
  c->tcp = malloc(sizeof *c->tcp);
  int rc = c->tcp ? uv_tcp_init(r->s->rt->loop, c->tcp) : UV_ENOMEM;
  if (rc == 0) {
    c->creq.data = c;
    rc = uv_tcp_connect(&c->creq, c->tcp, res->ai_addr, connect_cb);
    if (rc != 0) uv_close((uv_handle_t *)c->tcp, bg__io_free_handle_cb);
  } else {
    free(c->tcp);
  }
  uv_freeaddrinfo(res);
  if (rc != 0) {
    free(c);
    bg__io_push_error(r->co, rc, uv_strerror(rc));
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
  int rc = uv_getaddrinfo(bg__io_runtime(L)->loop, &c->gai, resolve_cb, host, service, &hints);
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
  uv_close((uv_handle_t *)cn->tcp, bg__io_free_handle_cb);
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
  int rc = uv_read_start((uv_stream_t *)cn->tcp, bg__io_alloc_cb, read_cb);
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
    bg__io_push_error(r->co, status, uv_strerror(status));
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

/* Sets tcp_connect in the __bg table on top of L. */
void bg__script_open_io_tcp(lua_State *L) {
  static const luaL_Reg fns[] = {{"tcp_connect", pl_tcp_connect}, {NULL, NULL}};
  bg__io_setfuncs(L, fns);
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
