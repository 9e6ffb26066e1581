/* script_io_dns: ctx.dns.resolve, a name looked up with uv_getaddrinfo (the system's resolver
 * on the libuv threadpool) while the run waits. */
#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "base/bg.h"
#include "script/script_io_int.h"

#define DNS_MAX_NAME 1024 /* longer than any name the resolver takes (253) */

typedef struct dns_op {
  bg__op op;
  uv_getaddrinfo_t gai;
  char name[];
} dns_op;

static void dns_cancel(bg__op *op) {
  dns_op *d = (dns_op *)op;
  /* queued: its callback runs with UV_EAI_CANCELED; running: it runs when the lookup is done.
   * Either way the callback frees d, and op.run is already NULL. */
  uv_cancel((uv_req_t *)&d->gai);
}

/* The addresses of res as strings in an array on co: textual, each once, in the resolver's
 * order. */
static void push_addresses(lua_State *co, const struct addrinfo *res) {
  lua_newtable(co);
  int n = 0;
  for (const struct addrinfo *a = res; a != NULL; a = a->ai_next) {
    char ip[64];
    int rc = a->ai_family == AF_INET
                 ? uv_ip4_name((const struct sockaddr_in *)a->ai_addr, ip, sizeof ip)
             : a->ai_family == AF_INET6
                 ? uv_ip6_name((const struct sockaddr_in6 *)a->ai_addr, ip, sizeof ip)
                 : UV_EAI_FAMILY;
    if (rc != 0) continue;
    int dup = 0;
    for (int i = 1; i <= n && !dup; i++) {
      lua_rawgeti(co, -1, i);
      dup = strcmp(lua_tostring(co, -1), ip) == 0;
      lua_pop(co, 1);
    }
    if (dup) continue;
    lua_pushstring(co, ip);
    lua_rawseti(co, -2, ++n);
  }
}

static void dns_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  dns_op *d = req->data;
  bg__run *r = d->op.run;
  if (r != NULL) {
    lua_State *co = r->co;
    if (status != 0) {
      lua_pushnil(co);
      lua_pushfstring(co, "%s: %s", d->name, uv_strerror(status));
    } else {
      push_addresses(co, res);
      lua_pushnil(co);
    }
  }
  if (res != NULL) uv_freeaddrinfo(res);
  free(d);
  if (r != NULL) bg__run_resume(r, 2);
}

/* dns_resolve(name, family) -> { address, ... } | nil, err. family: 0 any, 4 or 6. */
static int pl_dns_resolve(lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  int family = (int)luaL_optinteger(L, 2, 0);
  if (len == 0 || len > DNS_MAX_NAME || strlen(name) != len)
    return luaL_argerror(L, 1, "a host name of 1..1024 bytes without NUL");
  if (family != 0 && family != 4 && family != 6) return luaL_argerror(L, 2, "0, 4 or 6");
  bg__run *r = bg__run_current(L);
  dns_op *d = calloc(1, sizeof *d + len + 1);
  if (d == NULL) return luaL_error(L, "out of memory");
  memcpy(d->name, name, len + 1);
  d->op.run = r;
  d->op.cancel = dns_cancel;
  d->gai.data = d;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = family == 4 ? AF_INET : family == 6 ? AF_INET6 : AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM; /* one entry per address, not one per socket type */
  int rc = uv_getaddrinfo(bg__io_runtime(L)->loop, &d->gai, dns_cb, d->name, NULL, &hints);
  if (rc != 0) {
    free(d);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", name, uv_strerror(rc));
    return 2;
  }
  return bg__run_wait(L, &d->op);
}

/* Sets dns_resolve in the __bg table on top of L. */
void bg__script_open_io_dns(lua_State *L) {
  static const luaL_Reg fns[] = {{"dns_resolve", pl_dns_resolve}, {NULL, NULL}};
  bg__io_setfuncs(L, fns);
}
