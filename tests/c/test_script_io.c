/* test_script_io: the synchronous helpers of a plugin's __bg table (script_io_sync.c), in a
 * plain lua_State with an allocator that has a limit. read_file: regular files only (a FIFO
 * would block the loop forever, /dev/zero never ends), the descriptor closed on every path,
 * also when the state runs out of memory mid-read (issue 14: 74 descriptors leaked in 15 s). */
#include <dirent.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <lualib.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include "script/script_io_int.h"
#include "test_support.h"

typedef struct mem {
  size_t used, limit; /* limit 0: none */
} mem;

static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  mem *m = ud;
  if (nsize == 0) {
    if (ptr) m->used -= osize;
    free(ptr);
    return NULL;
  }
  size_t old = ptr ? osize : 0;
  if (m->limit && nsize > old && m->used + (nsize - old) > m->limit) return NULL;
  void *p = realloc(ptr, nsize);
  if (p) m->used = m->used - old + nsize;
  return p;
}

static int open_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  ASSERT(d != NULL);
  for (struct dirent *e; (e = readdir(d)) != NULL;)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

static mem M;
static lua_State *L;

/* Runs chunk (with bg = the __bg functions); it returns true or an error text. */
static void expect(const char *chunk) {
  if (luaL_loadstring(L, chunk) != 0 || lua_pcall(L, 0, 1, 0) != 0) {
    fprintf(stderr, "lua error: %s\n  in: %s\n", lua_tostring(L, -1), chunk);
    exit(1);
  }
  if (lua_type(L, -1) != LUA_TBOOLEAN || !lua_toboolean(L, -1)) {
    fprintf(stderr, "check failed: %s\n  in: %s\n", lua_tostring(L, -1), chunk);
    exit(1);
  }
  lua_pop(L, 1);
}

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "test_script_io: read_file blocked (a FIFO?)\n";
  (void)!write(2, msg, sizeof msg - 1);
  _exit(1);
}

int main(void) {
  signal(SIGALRM, on_alarm);
  alarm(20); /* the old read_file blocked forever on a FIFO */
  L = lua_newstate(limited_alloc, &M);
  ASSERT(L != NULL);
  luaL_openlibs(L);
  lua_newtable(L);
  bg__script_open_io_sync(L);
  lua_setglobal(L, "bg");

  char dir[] = "/tmp/test_script_io.XXXXXX";
  ASSERT(mkdtemp(dir) != NULL);
  char fifo[64], big[64], chunk[256];
  snprintf(fifo, sizeof fifo, "%s/fifo", dir);
  snprintf(big, sizeof big, "%s/big", dir);
  ASSERT(mkfifo(fifo, 0600) == 0);
  FILE *f = fopen(big, "wb");
  ASSERT(f != NULL);
  for (int i = 0; i < 4 << 20; i += 16)
    fwrite("0123456789abcdef", 1, 16, f);
  fclose(f);

  /* not regular: refused at once, nothing read, nothing left open */
  int fds = open_fds();
  snprintf(chunk, sizeof chunk,
           "local d, e = bg.read_file('%s'); return d == nil and e == '%s: not a regular file' "
           "or tostring(e)",
           fifo, fifo);
  expect(chunk);
  expect("local d, e = bg.read_file('/dev/zero', 1e9); return d == nil and "
         "e == '/dev/zero: not a regular file' or tostring(e)");
  expect("local d, e = bg.read_file('/dev/null'); return d == nil or 'read /dev/null'");
  expect("local d, e = bg.read_file('/no/such/file'); "
         "return d == nil and e == '/no/such/file: No such file or directory' or tostring(e)");
  ASSERT_EQ_INT(open_fds(), fds);

  /* regular files, /proc's too: whole, or the first max bytes */
  snprintf(chunk, sizeof chunk,
           "local d = bg.read_file('%s', 1e9); return #d == 4 * 1024 * 1024 and "
           "d:sub(1, 20) == '0123456789abcdef0123' or #d",
           big);
  expect(chunk);
  snprintf(chunk, sizeof chunk, "return bg.read_file('%s') == ('0123456789abcdef'):rep(65536)",
           big);
  expect(chunk);
  snprintf(chunk, sizeof chunk, "return bg.read_file('%s', 10) == '0123456789'", big);
  expect(chunk);
  snprintf(chunk, sizeof chunk,
           "local ok, e = pcall(bg.read_file, '%s', 0); "
           "return not ok and e:find('max must be', 1, true) ~= nil or tostring(e)",
           big);
  expect(chunk);
  expect("local d = bg.read_file('/proc/self/status'); return d:find('Name:', 1, true) == 1");

  /* out of memory mid-read: the error reaches the caller, the descriptor does not leak */
  lua_gc(L, LUA_GCCOLLECT, 0);
  fds = open_fds();
  M.limit = M.used + (512 << 10);
  snprintf(chunk, sizeof chunk,
           "for i = 1, 20 do local ok, e = pcall(bg.read_file, '%s', 1e9) "
           "if ok then return 'read past the limit' end end return true",
           big);
  expect(chunk);
  M.limit = 0;
  ASSERT_EQ_INT(open_fds(), fds);

  lua_close(L);
  unlink(fifo);
  unlink(big);
  rmdir(dir);
  puts("test_script_io: ok");
  return 0;
}
