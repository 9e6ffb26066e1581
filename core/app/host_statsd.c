/* host_statsd: core.statsd_start, the StatsD/DogStatsD listener (metrics/statsd.h) feeding the
 * process-wide registry, and its handle's ports, stats, flush_sets and stop. */
#include "app/host_int.h"
#include "base/bg.h"
#include "metrics/metrics.h"
#include "metrics/statsd.h"

#define STATSD_MT "agent.core.statsd"

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
  int rc = bg_statsd_start(bg__host_rt(L)->loop, bg_registry_default(), &o, &h->sd);
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
  lua_createtable(L, 0, 10);
  bg__host_setnum(L, "packets", (double)st.packets);
  bg__host_setnum(L, "lines", (double)st.lines);
  bg__host_setnum(L, "bad_lines", (double)st.bad_lines);
  bg__host_setnum(L, "ignored", (double)st.ignored);
  bg__host_setnum(L, "dropped", (double)st.dropped);
  bg__host_setnum(L, "kernel_drops", (double)st.kernel_drops);
  bg__host_setnum(L, "cache_entries", (double)st.cache_entries);
  bg__host_setnum(L, "tcp_clients", (double)st.tcp_clients);
  bg__host_setnum(L, "rcvbuf", (double)st.rcvbuf);
  bg__host_setnum(L, "set_bytes", (double)st.set_bytes);
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

/* Registers the metatable and sets core.statsd_start in the table on top of L. */
void bg__host_open_statsd(lua_State *L, bg_runtime *rt) {
  static const luaL_Reg statsd_m[] = {{"ports", l_statsd_ports},
                                      {"stats", l_statsd_stats},
                                      {"flush_sets", l_statsd_flush_sets},
                                      {"stop", l_statsd_stop},
                                      {NULL, NULL}};
  bg__host_set_meta(L, STATSD_MT, statsd_m, l_statsd_stop);
  static const luaL_Reg fns[] = {{"statsd_start", l_statsd_start}, {NULL, NULL}};
  bg__host_setfuncs(L, rt, fns);
}
