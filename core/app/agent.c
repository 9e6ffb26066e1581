#include "app/agent.h"

#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "app/host.h"
#include "base/bg.h"
#include "base/log.h"
#include "metrics/looplag.h"
#include "metrics/metrics.h"
#include "net/fetch.h"
#include "script/script.h"
#include "trace/trace.h"

static char g_home[4096];

const char *bg_agent_home(void) {
  if (g_home[0]) return g_home;
  const char *env = getenv("BEAGLE_HOME");
  char probe[4200];
  if (env != NULL && env[0]) {
    snprintf(g_home, sizeof g_home, "%s", env);
    return g_home;
  }
  snprintf(probe, sizeof probe, "%s/lua/agent/init.lua", BG_SOURCE_DIR);
  if (access(probe, R_OK) == 0)
    snprintf(g_home, sizeof g_home, "%s", BG_SOURCE_DIR);
  else
    snprintf(g_home, sizeof g_home, "%s", BG_SHARE_DIR);
  return g_home;
}

static void walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

int bg_agent_main(int argc, char **argv) {
  /* Broken pipes are reported per write; they must not kill the agent. Nor must a file-size
   * limit (ulimit -f): past it a write fails with EFBIG, which the store reports like a full
   * disk. */
  signal(SIGPIPE, SIG_IGN);
  signal(SIGXFSZ, SIG_IGN);
  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0) {
    fprintf(stderr, "beagle: cannot create the event loop\n");
    return 1;
  }
  char lua_dir[4200];
  snprintf(lua_dir, sizeof lua_dir, "%s/lua", bg_agent_home());
  bg_runtime rt = {.loop = &loop, .fetcher = NULL, .lua_dir = lua_dir};
  if (bg_fetcher_new(&loop, &rt.fetcher) != 0) {
    fprintf(stderr, "beagle: cannot create the HTTP client\n");
    return 1;
  }

  lua_State *L = luaL_newstate();
  if (L == NULL) {
    fprintf(stderr, "beagle: out of memory\n");
    return 1;
  }
  luaL_openlibs(L);
  char path[9000];
  snprintf(path, sizeof path, "%s/?.lua;%s/?/init.lua", lua_dir, lua_dir);
  lua_getglobal(L, "package");
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  lua_pop(L, 1);
  bg_host_open(L, &rt);

  int code = 0;
  lua_getglobal(L, "require");
  lua_pushstring(L, "agent");
  if (lua_pcall(L, 1, 1, 0) != 0) {
    fprintf(stderr, "beagle: cannot load the agent from %s: %s\n", lua_dir, lua_tostring(L, -1));
    code = 1;
    goto out;
  }
  lua_getfield(L, -1, "main");
  lua_createtable(L, argc, 0);
  for (int i = 1; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i);
  }
  lua_pushstring(L, bg_agent_home());
  /* main(args, home) -> nil to keep running, or an exit code to return at once */
  if (lua_pcall(L, 2, 1, 0) != 0) {
    fprintf(stderr, "beagle: %s\n", lua_tostring(L, -1));
    code = 1;
    goto out;
  }
  if (lua_isnumber(L, -1)) {
    code = (int)lua_tointeger(L, -1);
    /* some commands (check) run the loop until they call stop themselves */
    if (code >= 0) goto out;
  }
  lua_settop(L, 0);
  /* beagle_loop_lag_seconds: measured in C on every turn, from the first one on */
  bg_looplag *lag = NULL;
  int lrc = bg_looplag_start(&loop, bg_registry_default(), 0, &lag);
  if (lrc != 0) fprintf(stderr, "beagle: loop lag is not measured: %s\n", bg_strerror(lrc));
  uv_run(&loop, UV_RUN_DEFAULT);
  bg_looplag_stop(lag);
  code = bg_host_exit_code();

out:
  lua_close(L); /* runs __gc of every handle the agent still held */
  /* A plugin state closed by now (at the shutdown, or by that __gc) is freed by its reaper, an
   * idle handle, outside any call of its own: one turn of the loop runs them. Every handle
   * that calls into the agent's Lua was closed by its __gc, so nothing else reaches it. */
  uv_run(&loop, UV_RUN_NOWAIT);
  bg_fetcher_free(rt.fetcher);
  uv_walk(&loop, walk_close, NULL);
  while (uv_run(&loop, UV_RUN_NOWAIT) != 0) {
  }
  uv_loop_close(&loop);
  bg_tracer_shutdown(); /* after every handle that could end a span or hold a batch */
  return code;
}
