/* test_script_memory: a run's `memory` limit (script.c) through the real runtime, with a
 * stand-in lua/agent/sandbox.lua whose entry points allocate on cue. A run may grow its state
 * by its limit: what the state held when it started (after a full collection) is the floor.
 * Before, a run was credited with every byte freed while it ran, so garbage another run left
 * behind (8 MB here) let a 1 MB run hold 8 MB once the collector swept it. */
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "script/script.h"
#include "test_support.h"

static const char sandbox[] =
    "jit.off()\n"
    "local function blocks(c, n) local t = {} for i = 1, n do t[i] = c:rep(100 * 1024) .. i end "
    "return t end\n"
    /* 8 MB, garbage once it returns */
    "function make() return #blocks('y', 80) end\n"
    /* a full collection first (it frees make's garbage, if any is left), then 8 MB */
    "function take() collectgarbage('collect') return #blocks('x', 80) end\n"
    /* 4 MB the state keeps; then a run that drops them and makes 4 MB anew */
    "function keep() kept = blocks('k', 40) return #kept end\n"
    "function shrink() kept = nil collectgarbage('collect') return #blocks('w', 40) end\n"
    /* one 3 MB string */
    "function huge() return #('h'):rep(3 * 1024 * 1024) end\n";

static const char host[] =
    "local s = assert(script_new { name = 't' })\n"
    "results = {}\n"
    "function start(fname, memory)\n"
    "  s:run(fname, {}, { memory = memory, timeout = 20 }, function(ok, v)\n"
    "    results[#results + 1] = fname .. ' ' .. tostring(ok) .. ' ' .. tostring(v) end)\n"
    "end\n";

static lua_State *H;
static uv_loop_t *loop;

/* Runs fname with that memory limit (0: none) and waits for it; returns its outcome. */
static const char *run(const char *fname, double memory) {
  lua_getglobal(H, "start");
  lua_pushstring(H, fname);
  lua_pushnumber(H, memory);
  if (lua_pcall(H, 2, 0, 0) != 0) {
    fprintf(stderr, "start: %s\n", lua_tostring(H, -1));
    exit(1);
  }
  lua_getglobal(H, "results");
  size_t before = lua_objlen(H, -1);
  lua_pop(H, 1);
  for (int i = 0; i < 100000; i++) {
    uv_run(loop, UV_RUN_ONCE);
    lua_getglobal(H, "results");
    if (lua_objlen(H, -1) > before) {
      lua_rawgeti(H, -1, (int)before + 1);
      static char out[256];
      snprintf(out, sizeof out, "%s", lua_tostring(H, -1));
      lua_pop(H, 2);
      return out;
    }
    lua_pop(H, 1);
  }
  fprintf(stderr, "%s never ended\n", fname);
  exit(1);
}

int main(void) {
  char dir[] = "/tmp/test_script_memory.XXXXXX", sub[64], path[96];
  ASSERT(mkdtemp(dir) != NULL);
  snprintf(sub, sizeof sub, "%s/agent", dir);
  ASSERT(mkdir(sub, 0700) == 0);
  snprintf(path, sizeof path, "%s/sandbox.lua", sub);
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL && fputs(sandbox, f) >= 0 && fclose(f) == 0);

  loop = uv_default_loop();
  bg_runtime rt = {.loop = loop, .lua_dir = dir};
  H = luaL_newstate();
  luaL_openlibs(H);
  lua_newtable(H);
  bg_script_open_host(H, &rt);
  lua_getfield(H, -1, "script_new");
  lua_setglobal(H, "script_new");
  lua_pop(H, 1);
  if (luaL_dostring(H, host) != 0) {
    fprintf(stderr, "host: %s\n", lua_tostring(H, -1));
    return 1;
  }

  /* garbage another run left is no room for this one */
  ASSERT_EQ_STR(run("make", 0), "make true 80");
  ASSERT_EQ_STR(run("take", 1 << 20), "take false memory limit");
  /* what a run frees of its state's own is room: the state does not grow */
  ASSERT_EQ_STR(run("keep", 0), "keep true 40");
  ASSERT_EQ_STR(run("shrink", 1 << 20), "shrink true 40");
  /* one allocation far past the limit fails at once */
  ASSERT_EQ_STR(run("huge", 1 << 20), "huge false memory limit");
  /* and the limit is per run: the same state runs on */
  ASSERT_EQ_STR(run("make", 16 << 20), "make true 80");

  lua_close(H); /* the script's __gc closes it */
  uv_run(loop, UV_RUN_DEFAULT);
  bg_script_runtime_close(&rt);
  uv_run(loop, UV_RUN_DEFAULT);
  snprintf(path, sizeof path, "rm -rf %s", dir);
  return system(path) == 0 ? 0 : 1;
}
