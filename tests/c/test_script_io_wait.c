/* test_script_io_wait: the __bg calls that wait on the libuv threadpool (script_io_fs.c,
 * script_io_dns.c, script_io_crypto.c's pbkdf2) through the real runtime, with a stand-in
 * lua/agent/sandbox.lua that calls them directly. Their answers, and their cancellation: with
 * one threadpool thread held by a long key derivation, runs whose stat, statvfs, list_dir,
 * read_pidfile, lookup or derivation is still queued end with "timeout", and a state closed
 * while its runs wait frees everything (run it under ASan: a request completing after its
 * run is gone must touch nothing of it). */
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
    "local bg = __bg\n"
    "local function j(...) local t = { n = select('#', ...), ... }\n"
    "  for i = 1, t.n do t[i] = tostring(t[i]) end return table.concat(t, '|', 1, t.n) end\n"
    "function stat(a) local s, e, c = bg.stat(a.path)\n"
    "  if not s then return j(s, e, c) end\n"
    "  return j(s.type, s.size, ('%o'):format(s.mode), s.mtime > 1e9) end\n"
    "function statvfs(a) local t, av, f, ff = bg.statvfs(a.path)\n"
    "  if not t then return j(t, av, f) end\n"
    "  return j(t > 0, av >= 0 and av <= t, f > 0, ff >= 0 and ff <= f) end\n"
    "function list(a) local t, e = bg.list_dir(a.path) if not t then return j(t, e) end\n"
    "  return table.concat(t, ',') end\n"
    "function pid(a) return j(bg.read_pidfile(a.path)) end\n"
    "function dns(a) local t, e = bg.dns_resolve(a.name, a.family or 0)\n"
    "  if not t then return j(t, e) end return table.concat(t, ',') end\n"
    "function kdf(a) local k, e = bg.crypto_pbkdf2_sha256('password', 'salt', a.iter, 32)\n"
    "  if not k then return j(k, e) end\n"
    "  return (k:gsub('.', function(c) return ('%02x'):format(c:byte()) end)) end\n";

static const char host[] =
    "local s = assert(script_new { name = 't' })\n"
    "results = {}\n"
    "function start(fname, args, timeout)\n"
    "  s:run(fname, args, { timeout = timeout }, function(ok, v)\n"
    "    results[#results + 1] = fname .. ' ' .. tostring(ok) .. ' ' .. tostring(v) end)\n"
    "end\n";

static lua_State *H;
static uv_loop_t *loop;

static size_t nresults(void) {
  lua_getglobal(H, "results");
  size_t n = lua_objlen(H, -1);
  lua_pop(H, 1);
  return n;
}

/* Starts fname(args) (a Lua table constructor) with that timeout in seconds. */
static void start(const char *fname, const char *args, double timeout) {
  char chunk[1024];
  snprintf(chunk, sizeof chunk, "start(%s, %s, %g)", fname, args, timeout);
  /* fname is quoted by the caller's format below */
  if (luaL_dostring(H, chunk) != 0) {
    fprintf(stderr, "start: %s\n", lua_tostring(H, -1));
    exit(1);
  }
}

/* Runs the loop until n results are in. */
static void wait_for(size_t n) {
  for (int i = 0; i < 1000000 && nresults() < n; i++)
    uv_run(loop, UV_RUN_ONCE);
  ASSERT(nresults() >= n);
}

/* Result i (1-based). */
static const char *result(size_t i) {
  static char out[512];
  lua_getglobal(H, "results");
  lua_rawgeti(H, -1, (int)i);
  snprintf(out, sizeof out, "%s", lua_tostring(H, -1));
  lua_pop(H, 2);
  return out;
}

/* Runs one call to its end and returns its outcome. */
static const char *run(const char *fname, const char *args) {
  size_t n = nresults();
  char quoted[64];
  snprintf(quoted, sizeof quoted, "'%s'", fname);
  start(quoted, args, 20);
  wait_for(n + 1);
  return result(n + 1);
}

int main(void) {
  /* one worker: a derivation holds it, whatever comes after waits in the queue */
  setenv("UV_THREADPOOL_SIZE", "1", 1);
  setenv("UV_USE_IO_URING", "0", 1); /* a newer libuv would stat through io_uring, not the pool */
  char dir[] = "/tmp/test_script_io_wait.XXXXXX", sub[64], path[128], args[256], want[512];
  ASSERT(mkdtemp(dir) != NULL);
  snprintf(sub, sizeof sub, "%s/agent", dir);
  ASSERT(mkdir(sub, 0700) == 0);
  snprintf(path, sizeof path, "%s/sandbox.lua", sub);
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL && fputs(sandbox, f) >= 0 && fclose(f) == 0);
  snprintf(path, sizeof path, "%s/good.pid", dir);
  f = fopen(path, "w");
  ASSERT(f != NULL && fputs(" 4321\nsecret\n", f) >= 0 && fclose(f) == 0);
  ASSERT(chmod(path, 0604) == 0);
  snprintf(path, sizeof path, "%s/bad.pid", dir);
  f = fopen(path, "w");
  ASSERT(f != NULL && fputs("4321x\n", f) >= 0 && fclose(f) == 0);

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

  /* answers */
  snprintf(args, sizeof args, "{ path = '%s/good.pid' }", dir);
  ASSERT_EQ_STR(run("stat", args), "stat true file|13|604|true");
  ASSERT_EQ_STR(run("pid", args), "pid true 4321");
  snprintf(args, sizeof args, "{ path = '%s/bad.pid' }", dir);
  snprintf(want, sizeof want, "pid true nil|%s/bad.pid: no process id on its first line|EINVAL",
           dir);
  ASSERT_EQ_STR(run("pid", args), want);
  snprintf(args, sizeof args, "{ path = '%s/nope' }", dir);
  snprintf(want, sizeof want, "stat true nil|%s/nope: no such file or directory|ENOENT", dir);
  ASSERT_EQ_STR(run("stat", args), want);
  snprintf(args, sizeof args, "{ path = '%s' }", dir);
  ASSERT_EQ_STR(run("list", args), "list true agent,bad.pid,good.pid");
  ASSERT_EQ_STR(run("statvfs", args), "statvfs true true|true|true|true");
  ASSERT_EQ_STR(run("dns", "{ name = '127.0.0.1' }"), "dns true 127.0.0.1");
  ASSERT_EQ_STR(run("dns", "{ name = 'no-such.invalid' }"),
                "dns true nil|no-such.invalid: unknown node or service");
  ASSERT_EQ_STR(run("kdf", "{ iter = 4096 }"),
                "kdf true c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a");

  /* cancelled while queued behind a derivation that holds the only worker */
  size_t base = nresults();
  start("'kdf'", "{ iter = 1000000 }", 60);
  start("'stat'", args, 0.05);
  start("'statvfs'", args, 0.05);
  start("'list'", args, 0.05);
  start("'pid'", args, 0.05);
  start("'dns'", "{ name = 'localhost' }", 0.05);
  start("'kdf'", "{ iter = 1 }", 0.05);
  wait_for(base + 7);
  int timeouts = 0;
  for (size_t i = base + 1; i <= base + 7; i++)
    if (strstr(result(i), " false timeout") != NULL) timeouts++;
  ASSERT_EQ_INT(timeouts, 6);

  /* a state closed while its runs wait: queued and running requests end without it */
  start("'kdf'", "{ iter = 1000000 }", 60);
  start("'stat'", args, 60);
  start("'dns'", "{ name = 'localhost' }", 60);
  for (int i = 0; i < 5; i++)
    uv_run(loop, UV_RUN_NOWAIT);
  lua_close(H); /* the script's __gc closes it */
  uv_run(loop, UV_RUN_DEFAULT);
  bg_script_runtime_close(&rt);
  uv_run(loop, UV_RUN_DEFAULT);
  snprintf(path, sizeof path, "rm -rf %s", dir);
  puts("test_script_io_wait: ok");
  return system(path) == 0 ? 0 : 1;
}
