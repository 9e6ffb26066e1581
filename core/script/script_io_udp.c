/* script_io_udp: udp_send(host, port, data), the datagrams of a StatsD backend. data is one
 * datagram (a string) or a list of them; the run waits until the kernel has taken them all.
 * A numeric address is used as it is; any other name is resolved with uv_getaddrinfo (the
 * threadpool) on each call, its first IPv4 address preferred. Each call has its own uv_udp_t,
 * closed when it ends: a backend sends once per collection, and a socket per state would
 * outlive a run that is cancelled. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "base/bg.h"
#include "script/script_io_int.h"

#define MAX_DATAGRAMS 65536 /* per call */
#define MAX_DATAGRAM 65507  /* an IPv4 UDP payload's limit */

typedef struct udp_op {
  bg__op op;
  uv_getaddrinfo_t gai;
  uv_udp_t udp;
  struct sockaddr_storage addr;
  int phase;   /* 0 resolving, 1 sending, 2 closing */
  int pending; /* sends not yet called back */
  int err;     /* the first failure */
  int n;
  uv_buf_t *bufs;
  uv_udp_send_t *reqs;
  char *data; /* the datagrams' bytes, one after the other */
} udp_op;

static void op_free(udp_op *u) {
  free(u->bufs);
  free(u->reqs);
  free(u->data);
  free(u);
}

static void close_cb(uv_handle_t *h) {
  op_free(h->data);
}

static void finish(udp_op *u) {
  bg__run *r = u->op.run;
  int err = u->err;
  u->phase = 2;
  uv_close((uv_handle_t *)&u->udp, close_cb);
  if (r == NULL) return;
  if (err != 0) {
    bg__io_push_error(r->co, err, uv_strerror(err));
  } else {
    lua_pushboolean(r->co, 1);
    lua_pushnil(r->co);
  }
  bg__run_resume(r, 2);
}

static void send_cb(uv_udp_send_t *req, int status) {
  udp_op *u = req->data;
  if (status != 0 && u->err == 0) u->err = status;
  if (--u->pending == 0 && u->phase == 1) finish(u);
}

/* Queues every datagram (the loop writes them now or when the socket can take them). 0: the
 * sends' callbacks end the op; else nothing is pending, u is freed or closing, and the error is
 * returned for the caller to report. */
static int start_sending(udp_op *u, uv_loop_t *loop) {
  int rc = uv_udp_init(loop, &u->udp);
  if (rc != 0) {
    op_free(u);
    return rc;
  }
  u->udp.data = u;
  u->phase = 1;
  for (int i = 0; i < u->n; i++) {
    u->reqs[i].data = u;
    rc = uv_udp_send(&u->reqs[i], &u->udp, &u->bufs[i], 1, (const struct sockaddr *)&u->addr,
                     send_cb);
    if (rc != 0) {
      u->err = rc;
      break;
    }
    u->pending++;
  }
  if (u->pending > 0) return 0;
  u->phase = 2;
  uv_close((uv_handle_t *)&u->udp, close_cb);
  return rc;
}

static void udp_cancel(bg__op *op) {
  udp_op *u = (udp_op *)op;
  if (u->phase == 0)
    uv_cancel((uv_req_t *)&u->gai); /* resolve_cb frees u */
  else if (u->phase == 1) {
    u->phase = 2; /* the sends end with UV_ECANCELED, then close_cb frees u */
    uv_close((uv_handle_t *)&u->udp, close_cb);
  }
}

static void resolve_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  udp_op *u = req->data;
  bg__run *r = u->op.run;
  if (r == NULL || status != 0) {
    if (res) uv_freeaddrinfo(res);
    op_free(u);
    if (r == NULL) return;
    bg__io_push_error(r->co, status, uv_strerror(status));
    bg__run_resume(r, 2);
    return;
  }
  /* IPv4 first: a StatsD server usually listens on 0.0.0.0 or 127.0.0.1, and "localhost" lists
   * ::1 first; datagrams to an address nobody listens on are lost without an error */
  struct addrinfo *pick = res;
  for (struct addrinfo *a = res; a != NULL; a = a->ai_next)
    if (a->ai_family == AF_INET) {
      pick = a;
      break;
    }
  memcpy(&u->addr, pick->ai_addr, pick->ai_addrlen);
  uv_freeaddrinfo(res);
  int rc = start_sending(u, r->s->rt->loop);
  if (rc != 0) {
    bg__io_push_error(r->co, rc, uv_strerror(rc));
    bg__run_resume(r, 2);
  }
}

/* Copies the datagram(s) at index 3 into u; 0, or an error message pushed. */
static int copy_data(lua_State *L, udp_op *u) {
  int n = lua_istable(L, 3) ? (int)lua_objlen(L, 3) : 1;
  if (n < 1 || n > MAX_DATAGRAMS) {
    lua_pushfstring(L, "udp: 1 to %d datagrams a call", MAX_DATAGRAMS);
    return -1;
  }
  size_t total = 0;
  for (int i = 1; i <= n; i++) {
    if (lua_istable(L, 3))
      lua_rawgeti(L, 3, i);
    else
      lua_pushvalue(L, 3);
    size_t len;
    if (lua_type(L, -1) != LUA_TSTRING) {
      lua_pop(L, 1);
      lua_pushstring(L, "udp: data must be a string or a list of strings");
      return -1;
    }
    lua_tolstring(L, -1, &len);
    lua_pop(L, 1);
    if (len > MAX_DATAGRAM) {
      lua_pushfstring(L, "udp: a datagram of %d bytes (at most %d)", (int)len, MAX_DATAGRAM);
      return -1;
    }
    total += len;
  }
  u->n = n;
  u->bufs = malloc((size_t)n * sizeof *u->bufs);
  u->reqs = malloc((size_t)n * sizeof *u->reqs);
  u->data = malloc(total ? total : 1);
  if (u->bufs == NULL || u->reqs == NULL || u->data == NULL) {
    lua_pushstring(L, "out of memory");
    return -1;
  }
  char *p = u->data;
  for (int i = 1; i <= n; i++) {
    if (lua_istable(L, 3))
      lua_rawgeti(L, 3, i);
    else
      lua_pushvalue(L, 3);
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    memcpy(p, s, len);
    u->bufs[i - 1] = uv_buf_init(p, (unsigned)len);
    p += len;
    lua_pop(L, 1);
  }
  return 0;
}

/* udp_send(host, port, data) -> true | nil, err */
static int pl_udp_send(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  int port = (int)luaL_checkinteger(L, 2);
  if (port <= 0 || port > 65535) return luaL_argerror(L, 2, "port must be 1..65535");
  if (!lua_isstring(L, 3) && !lua_istable(L, 3))
    return luaL_argerror(L, 3, "a string or a list of strings");
  bg__run *r = bg__run_current(L);
  udp_op *u = calloc(1, sizeof *u);
  if (u == NULL) return luaL_error(L, "out of memory");
  if (copy_data(L, u) != 0) {
    op_free(u);
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }
  u->op.run = r;
  u->op.cancel = udp_cancel;
  uv_loop_t *loop = bg__io_runtime(L)->loop;
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&u->addr) == 0 ||
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)&u->addr) == 0) {
    int rc = start_sending(u, loop); /* on success r is resumed from send_cb, after the yield */
    if (rc == 0) return bg__run_wait(L, &u->op);
    lua_pushnil(L);
    lua_pushstring(L, uv_strerror(rc));
    return 2;
  }
  char service[8];
  snprintf(service, sizeof service, "%d", port);
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  u->gai.data = u;
  int rc = uv_getaddrinfo(loop, &u->gai, resolve_cb, host, service, &hints);
  if (rc != 0) {
    op_free(u);
    lua_pushnil(L);
    lua_pushstring(L, uv_strerror(rc));
    return 2;
  }
  return bg__run_wait(L, &u->op);
}

/* Sets udp_send in the __bg table on top of L. */
void bg__script_open_io_udp(lua_State *L) {
  static const luaL_Reg fns[] = {{"udp_send", pl_udp_send}, {NULL, NULL}};
  bg__io_setfuncs(L, fns);
}
