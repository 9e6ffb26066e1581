/* Tests for core/store/store: pragmas on open (WAL, synchronous, foreign keys, busy timeout), the
 * statement cache, transactions with savepoints, error messages, data kept across a reopen
 * and across a kill -9 after a commit, the Lua binding driven from C, checkpoints on the
 * thread pool instead of inside a commit, and the cost of one
 * commit with synchronous=NORMAL and FULL (printed; STORE_BENCH_N commits each, default 200). */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "store/store.h"
#include "test_support.h"

static char err[512];
static char dir[64];
static char path[128];

static void mk_dir(void) {
  strcpy(dir, "/tmp/beagle-store.XXXXXX");
  ASSERT(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/state.db", dir);
}

static void rm_dir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ASSERT_EQ_INT(system(cmd), 0);
}

static bg_store *open_s(void) {
  bg_store *s = NULL;
  int rc = bg_store_open(path, &s, err, sizeof err);
  if (rc != 0) fprintf(stderr, "open: %s\n", err);
  ASSERT_EQ_INT(rc, 0);
  return s;
}

static void exec_ok(bg_store *s, const char *sql) {
  int rc = bg_store_exec(s, sql, err, sizeof err);
  if (rc != 0) fprintf(stderr, "exec: %s\n", err);
  ASSERT_EQ_INT(rc, 0);
}

/* The integer in the first column of the one row sql returns. */
static long long q_int(bg_store *s, const char *sql) {
  sqlite3_stmt *st;
  ASSERT_EQ_INT(bg_store_prepare(s, sql, &st, err, sizeof err), 0);
  ASSERT_EQ_INT(bg_store_step(s, st, err, sizeof err), 1);
  long long v = sqlite3_column_int64(st, 0);
  ASSERT_EQ_INT(bg_store_step(s, st, err, sizeof err), 0);
  bg_store_done(s, st);
  return v;
}

static void q_text(bg_store *s, const char *sql, char *buf, size_t n) {
  sqlite3_stmt *st;
  ASSERT_EQ_INT(bg_store_prepare(s, sql, &st, err, sizeof err), 0);
  ASSERT_EQ_INT(bg_store_step(s, st, err, sizeof err), 1);
  snprintf(buf, n, "%s", (const char *)sqlite3_column_text(st, 0));
  bg_store_done(s, st);
}

static void insert(bg_store *s, long long k, const char *v) {
  sqlite3_stmt *st;
  ASSERT_EQ_INT(bg_store_prepare(s, "INSERT INTO t(k, v) VALUES(?, ?)", &st, err, sizeof err), 0);
  sqlite3_bind_int64(st, 1, k);
  sqlite3_bind_text(st, 2, v, -1, SQLITE_TRANSIENT);
  int rc = bg_store_step(s, st, err, sizeof err);
  if (rc != 0) fprintf(stderr, "insert: %s\n", err);
  ASSERT_EQ_INT(rc, 0);
  bg_store_done(s, st);
}

static void test_open_pragmas(void) {
  mk_dir();
  bg_store *s = open_s();
  char mode[16];
  q_text(s, "PRAGMA journal_mode", mode, sizeof mode);
  ASSERT_EQ_STR(mode, "wal");
  ASSERT_EQ_INT(q_int(s, "PRAGMA synchronous"), 1); /* NORMAL */
  ASSERT_EQ_INT(q_int(s, "PRAGMA foreign_keys"), 1);
  ASSERT_EQ_INT(q_int(s, "PRAGMA busy_timeout"), BG_STORE_BUSY_MS);
  ASSERT_EQ_INT(bg_store_depth(s), 0);
  bg_store_close(s);
  bg_store_close(NULL);
  /* an in-memory database is accepted without WAL */
  ASSERT_EQ_INT(bg_store_open(":memory:", &s, err, sizeof err), 0);
  bg_store_close(s);
  rm_dir();
}

static void test_statements(void) {
  mk_dir();
  bg_store *s = open_s();
  exec_ok(s, "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT); CREATE INDEX t_v ON t(v)");
  for (int i = 1; i <= 5; i++)
    insert(s, i, i % 2 ? "odd" : "even");
  ASSERT_EQ_INT(q_int(s, "SELECT count(*) FROM t"), 5);

  const char *sql = "SELECT k FROM t WHERE v = ? ORDER BY k";
  sqlite3_stmt *a, *b, *c;
  ASSERT_EQ_INT(bg_store_prepare(s, sql, &a, err, sizeof err), 0);
  /* the same SQL while a is out: a separate statement, so iterating a is not disturbed */
  ASSERT_EQ_INT(bg_store_prepare(s, sql, &b, err, sizeof err), 0);
  ASSERT(a != b);
  sqlite3_bind_text(a, 1, "odd", -1, SQLITE_STATIC);
  sqlite3_bind_text(b, 1, "even", -1, SQLITE_STATIC);
  long long sum_a = 0, sum_b = 0;
  while (bg_store_step(s, a, err, sizeof err) == 1) {
    sum_a += sqlite3_column_int64(a, 0);
    if (bg_store_step(s, b, err, sizeof err) == 1) sum_b += sqlite3_column_int64(b, 0);
  }
  ASSERT_EQ_INT(sum_a, 1 + 3 + 5);
  ASSERT_EQ_INT(sum_b, 2 + 4);
  bg_store_done(s, b); /* uncached: finalized */
  bg_store_done(s, a);
  /* a again from the cache, reset and without bindings */
  ASSERT_EQ_INT(bg_store_prepare(s, sql, &c, err, sizeof err), 0);
  ASSERT(c == a);
  ASSERT_EQ_INT(bg_store_step(s, c, err, sizeof err), 0); /* v = NULL matches nothing */
  bg_store_done(s, c);

  /* more distinct statements than the cache holds: the oldest idle ones are finalized */
  for (int i = 0; i < 3 * BG_STORE_CACHE_MAX; i++) {
    char q[64];
    snprintf(q, sizeof q, "SELECT %d + count(*) FROM t", i);
    ASSERT_EQ_INT(q_int(s, q), i + 5);
  }
  ASSERT_EQ_INT(bg_store_prepare(s, sql, &c, err, sizeof err), 0);
  bg_store_done(s, c);
  bg_store_close(s);
  rm_dir();
}

static void test_transactions(void) {
  mk_dir();
  bg_store *s = open_s();
  exec_ok(s, "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)");

  ASSERT_EQ_INT(bg_store_begin(s, err, sizeof err), 0);
  insert(s, 1, "a");
  ASSERT_EQ_INT(bg_store_rollback(s, err, sizeof err), 0);
  ASSERT_EQ_INT(q_int(s, "SELECT count(*) FROM t"), 0);

  ASSERT_EQ_INT(bg_store_begin(s, err, sizeof err), 0);
  insert(s, 1, "a");
  ASSERT_EQ_INT(bg_store_begin(s, err, sizeof err), 0); /* savepoint */
  ASSERT_EQ_INT(bg_store_depth(s), 2);
  insert(s, 2, "b");
  ASSERT_EQ_INT(bg_store_begin(s, err, sizeof err), 0);
  insert(s, 3, "c");
  ASSERT_EQ_INT(bg_store_commit(s, err, sizeof err), 0);   /* 3 folds into level 2 */
  ASSERT_EQ_INT(bg_store_rollback(s, err, sizeof err), 0); /* undoes 2 and 3 */
  ASSERT_EQ_INT(q_int(s, "SELECT count(*) FROM t"), 1);
  ASSERT_EQ_INT(bg_store_begin(s, err, sizeof err), 0);
  insert(s, 4, "d");
  ASSERT_EQ_INT(bg_store_commit(s, err, sizeof err), 0);
  ASSERT_EQ_INT(bg_store_commit(s, err, sizeof err), 0);
  ASSERT_EQ_INT(bg_store_depth(s), 0);
  ASSERT_EQ_INT(q_int(s, "SELECT sum(k) FROM t"), 1 + 4);

  ASSERT_EQ_INT(bg_store_commit(s, err, sizeof err), BG_EINVAL);
  ASSERT_EQ_STR(err, "store: commit without a transaction");
  ASSERT_EQ_INT(bg_store_rollback(s, err, sizeof err), BG_EINVAL);

  /* a failed statement inside a transaction leaves it open for the caller to decide */
  ASSERT_EQ_INT(bg_store_begin(s, err, sizeof err), 0);
  insert(s, 5, "e");
  sqlite3_stmt *st;
  ASSERT_EQ_INT(bg_store_prepare(s, "INSERT INTO t(k, v) VALUES(1, 'dup')", &st, err, sizeof err),
                0);
  ASSERT_EQ_INT(bg_store_step(s, st, err, sizeof err), BG_EINVAL);
  bg_store_done(s, st);
  ASSERT_EQ_INT(bg_store_commit(s, err, sizeof err), 0);
  ASSERT_EQ_INT(q_int(s, "SELECT count(*) FROM t"), 3);

  /* close with a transaction open rolls it back */
  ASSERT_EQ_INT(bg_store_begin(s, err, sizeof err), 0);
  insert(s, 6, "f");
  bg_store_close(s);
  s = open_s();
  ASSERT_EQ_INT(q_int(s, "SELECT count(*) FROM t"), 3);
  bg_store_close(s);
  rm_dir();
}

static void test_errors(void) {
  mk_dir();
  bg_store *s = open_s();
  ASSERT_EQ_INT(bg_store_exec(s, "SELEC 1", err, sizeof err), BG_EINVAL);
  ASSERT_EQ_STR(err, "store: near \"SELEC\": syntax error (in: SELEC 1)");
  sqlite3_stmt *st;
  ASSERT_EQ_INT(bg_store_prepare(s, "SELECT * FROM nope", &st, err, sizeof err), BG_EINVAL);
  ASSERT_EQ_STR(err, "store: no such table: nope (in: SELECT * FROM nope)");
  ASSERT(st == NULL);
  ASSERT_EQ_INT(bg_store_prepare(s, "SELECT 1; SELECT 2", &st, err, sizeof err), BG_EINVAL);
  ASSERT_EQ_STR(err, "store: more than one statement (in: SELECT 1; SELECT 2)");
  ASSERT_EQ_INT(bg_store_prepare(s, "  -- nothing", &st, err, sizeof err), BG_EINVAL);
  ASSERT_EQ_INT(bg_store_prepare(s, "SELECT 1;  ", &st, err, sizeof err), 0);
  bg_store_done(s, st);

  exec_ok(s, "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT NOT NULL)");
  ASSERT_EQ_INT(bg_store_prepare(s, "INSERT INTO t(k) VALUES(1)", &st, err, sizeof err), 0);
  ASSERT_EQ_INT(bg_store_step(s, st, err, sizeof err), BG_EINVAL);
  ASSERT_EQ_STR(err, "store: NOT NULL constraint failed: t.v (in: INSERT INTO t(k) VALUES(1))");
  bg_store_done(s, st);
  exec_ok(s, "CREATE TABLE p(id INTEGER PRIMARY KEY);"
             " CREATE TABLE c(pid INTEGER REFERENCES p(id))");
  ASSERT_EQ_INT(bg_store_exec(s, "INSERT INTO c VALUES(7)", err, sizeof err), BG_EINVAL);
  ASSERT_EQ_STR(err, "store: FOREIGN KEY constraint failed (in: INSERT INTO c VALUES(7))");
  bg_store_close(s);

  bg_store *x = (bg_store *)&x;
  ASSERT(bg_store_open("/nonexistent-dir/x.db", &x, err, sizeof err) < 0);
  ASSERT(x == NULL);
  ASSERT(strstr(err, "store: /nonexistent-dir/x.db: unable to open") == err);
  ASSERT_EQ_INT(bg_store_open("", &x, err, sizeof err), BG_EINVAL);
  /* a file that is not a database */
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL);
  fputs("this is not a database, not at all; sixteen bytes at least\n", f);
  fclose(f);
  ASSERT(bg_store_open(path, &x, err, sizeof err) < 0);
  ASSERT(strstr(err, "file is not a database") != NULL);
  rm_dir();
}

static void test_reopen_and_crash(void) {
  mk_dir();
  bg_store *s = open_s();
  exec_ok(s, "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)");
  insert(s, 1, "kept");
  bg_store_close(s);
  s = open_s();
  char v[16];
  q_text(s, "SELECT v FROM t WHERE k = 1", v, sizeof v);
  ASSERT_EQ_STR(v, "kept");
  bg_store_close(s);

  /* a child commits one row, opens a transaction with another, and is killed */
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    bg_store *c = NULL;
    if (bg_store_open(path, &c, err, sizeof err) != 0) _exit(2);
    if (bg_store_begin(c, err, sizeof err) != 0) _exit(3);
    insert(c, 2, "committed");
    if (bg_store_commit(c, err, sizeof err) != 0) _exit(4);
    if (bg_store_begin(c, err, sizeof err) != 0) _exit(5);
    insert(c, 3, "in flight");
    kill(getpid(), SIGKILL);
  }
  int status;
  ASSERT(waitpid(pid, &status, 0) == pid);
  ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  s = open_s();
  q_text(s, "SELECT v FROM t WHERE k = 2", v, sizeof v);
  ASSERT_EQ_STR(v, "committed");
  ASSERT_EQ_INT(q_int(s, "SELECT count(*) FROM t"), 2);
  bg_store_close(s);
  rm_dir();
}

/* The binding as the agent and specs see it, driven by a chunk; it raises on a failure. */
static const char *LUA_TEST =
    "local m = ...\n"
    "local db = assert(m.store_open(':memory:'))\n"
    "assert(db:exec('CREATE TABLE t(k INTEGER PRIMARY KEY, s TEXT, r REAL, b INTEGER, n)'))\n"
    "local ch, id = db:run('INSERT INTO t(s, r, b, n) VALUES(?, ?, ?, ?)',\n"
    "  'x\\0y', 1.5, true, nil)\n"
    "assert(ch == 1 and id == 1, tostring(ch))\n"
    "assert(db:run('INSERT INTO t(k, s, r, b) VALUES(?, ?, ?, ?)', 2^40, 'z', 3, false))\n"
    "local rows = assert(db:query('SELECT * FROM t ORDER BY k'))\n"
    "assert(#rows == 2)\n"
    "assert(rows[1].s == 'x\\0y' and rows[1].r == 1.5 and rows[1].b == 1 and rows[1].n == nil)\n"
    "assert(rows[2].k == 2^40 and rows[2].r == 3 and rows[2].b == 0)\n"
    "local r, e = db:query('SELECT nope FROM t')\n"
    "assert(r == nil and e == 'store: no such column: nope (in: SELECT nope FROM t)', e)\n"
    "local jt = assert(db:query('SELECT ? AS j', { 1, 'two', { x = true } }))\n"
    "assert(jt[1].j == '[1,\"two\",{\"x\":true}]', jt[1].j)\n"
    "local jn, je = db:query('SELECT ?', { print })\n"
    "assert(jn == nil and je:find('^store: JSON: parameter 1:'), je)\n"
    "assert(not pcall(db.query, db, 'SELECT ?', print))\n"
    "local ok, pe = pcall(db.query, db, 'SELECT ?, ?', 1)\n"
    "assert(not ok and pe:find('1 parameters for 2 placeholders'), pe)\n"
    "local a, b = db:tx(function(x)\n"
    "  db:run('DELETE FROM t WHERE k = ?', x)\n"
    "  return 'a', 'b'\n"
    "end, 2^40)\n"
    "assert(a == 'a' and b == 'b')\n"
    "ok, pe = pcall(db.tx, db, function()\n"
    "  db:run('DELETE FROM t')\n"
    "  db:tx(function() db:run('INSERT INTO t(k) VALUES(9)') end)\n"
    "  error({ code = 7 })\n"
    "end)\n"
    "assert(not ok and type(pe) == 'table' and pe.code == 7)\n"
    "rows = db:query('SELECT k FROM t')\n"
    "assert(#rows == 1 and rows[1].k == 1, #rows)\n"
    "ok = pcall(db.tx, db, function() db:tx(function() error('inner') end) end)\n"
    "assert(not ok)\n"
    "db:tx(function()\n"
    "  pcall(db.tx, db, function() db:run('DELETE FROM t') error('undo the inner one') end)\n"
    "  db:run('INSERT INTO t(k) VALUES(10)')\n"
    "end)\n"
    "assert(#db:query('SELECT k FROM t') == 2)\n"
    "assert(not pcall(db.tx, db, function() db:close() end))\n"
    "assert(tostring(db) == 'store (:memory:)')\n"
    "db:close()\n"
    "assert(not pcall(db.query, db, 'SELECT 1'))\n"
    "db:close()\n"
    "local nodb, oe = m.store_open('/nonexistent-dir/x.db')\n"
    "assert(nodb == nil and oe:find('^store: /nonexistent%-dir/x.db: unable to open'), oe)\n"
    "assert(m.store_open(':memory:', { synchronous = 'full' }))\n"
    "assert(not pcall(m.store_open, ':memory:', { synchronous = 'off' }))\n"
    "local g = m.store_open(':memory:'); g:exec('BEGIN'); g = nil\n" /* collected open */
    "collectgarbage()\n";

static void test_lua_binding(void) {
  lua_State *L = luaL_newstate();
  ASSERT(L != NULL);
  luaL_openlibs(L);
  ASSERT_EQ_INT(luaL_loadstring(L, LUA_TEST), 0);
  ASSERT_EQ_INT(luaopen_beagle_store(L), 1);
  /* the agent's way: store_open added to an existing table */
  lua_newtable(L);
  bg_store_open_lua(L, NULL);
  lua_getfield(L, -1, "store_open");
  ASSERT(lua_iscfunction(L, -1));
  lua_pop(L, 2);
  if (lua_pcall(L, 1, 0, 0) != 0) {
    fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
    ASSERT(0);
  }
  lua_close(L);
}

static long long file_size(const char *suffix) {
  char p[160];
  snprintf(p, sizeof p, "%s%s", path, suffix);
  struct stat st;
  return stat(p, &st) == 0 ? (long long)st.st_size : -1;
}

/* rows of 4 KB in one transaction: about one WAL page each */
static void big_tx(bg_store *s, long long from, int rows) {
  static char v[4001];
  memset(v, 'x', 4000);
  ASSERT_EQ_INT(bg_store_begin(s, err, sizeof err), 0);
  for (int i = 0; i < rows; i++)
    insert(s, from + i, v);
  ASSERT_EQ_INT(bg_store_commit(s, err, sizeof err), 0);
}

/* A commit past BG_STORE_CKPT_PAGES leaves the database file as it was (SQLite's own
 * checkpoint would have copied the WAL into it inside the commit); the loop's thread pool
 * does it, through its own connection; a store closed while that runs is freed by the
 * work's end. Without the background checkpointer the same commit checkpoints in place. */
static void test_background_checkpoint(void) {
  mk_dir();
  uv_loop_t loop;
  ASSERT_EQ_INT(uv_loop_init(&loop), 0);
  bg_store *s = open_s();
  ASSERT_EQ_INT(bg_store_checkpoint_in_background(s, &loop, "normal"), 0);
  exec_ok(s, "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)");
  long long db0 = file_size("");
  big_tx(s, 0, 1500);
  ASSERT(file_size("-wal") > 1500LL * 4096);
  ASSERT_EQ_INT(file_size(""), db0); /* nothing checkpointed inside the commit */
  ASSERT_EQ_INT(bg_store_checkpoints(s), 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ_INT(bg_store_checkpoints(s), 1);
  ASSERT(file_size("") > 1500LL * 4000); /* the rows are in the database file now */
  ASSERT_EQ_INT(q_int(s, "SELECT count(*) FROM t"), 1500);
  /* more writes go on, and the next burst queues the next checkpoint */
  big_tx(s, 1500, 1200);
  ASSERT_EQ_INT(q_int(s, "SELECT count(*) FROM t"), 2700);
  /* closed while that checkpoint is queued or running: the work's end frees it */
  bg_store_close(s);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ_INT(uv_loop_close(&loop), 0);
  /* a ":memory:" store has no WAL to checkpoint */
  bg_store *m = NULL;
  ASSERT_EQ_INT(bg_store_open(":memory:", &m, err, sizeof err), 0);
  ASSERT_EQ_INT(bg_store_checkpoint_in_background(m, &loop, "normal"), BG_EINVAL);
  bg_store_close(m);
  rm_dir();

  /* the same commit without it: SQLite checkpoints inside the commit */
  mk_dir();
  s = open_s();
  exec_ok(s, "CREATE TABLE t(k INTEGER PRIMARY KEY, v TEXT)");
  big_tx(s, 0, 1500);
  ASSERT(file_size("") > 1500LL * 4000);
  bg_store_close(s);
  rm_dir();
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

/* One upsert + commit, as save_instances does for one changed alert. */
static void bench_commit(const char *sync) {
  mk_dir();
  bg_store *s = open_s();
  char pragma[64];
  snprintf(pragma, sizeof pragma, "PRAGMA synchronous=%s", sync);
  exec_ok(s, pragma);
  exec_ok(s, "CREATE TABLE a(fp TEXT PRIMARY KEY, state TEXT, value REAL, at REAL) WITHOUT ROWID");
  const char *env = getenv("STORE_BENCH_N");
  int n = env ? atoi(env) : 200;
  if (n < 10) n = 10;
  uint64_t *t = calloc((size_t)n, sizeof *t);
  ASSERT(t != NULL);
  for (int i = 0; i < n; i++) {
    uint64_t t0 = bg_now_ns();
    ASSERT_EQ_INT(bg_store_begin(s, err, sizeof err), 0);
    sqlite3_stmt *st;
    ASSERT_EQ_INT(bg_store_prepare(s,
                                   "INSERT INTO a VALUES(?, 'firing', ?, ?) ON CONFLICT(fp)"
                                   " DO UPDATE SET value = excluded.value, at = excluded.at",
                                   &st, err, sizeof err),
                  0);
    char fp[32];
    snprintf(fp, sizeof fp, "%016x", i % 16);
    sqlite3_bind_text(st, 1, fp, -1, SQLITE_TRANSIENT);
    sqlite3_bind_double(st, 2, i * 0.5);
    sqlite3_bind_double(st, 3, 1.7e9 + i);
    ASSERT_EQ_INT(bg_store_step(s, st, err, sizeof err), 0);
    bg_store_done(s, st);
    ASSERT_EQ_INT(bg_store_commit(s, err, sizeof err), 0);
    t[i] = bg_now_ns() - t0;
  }
  qsort(t, (size_t)n, sizeof *t, cmp_u64);
  fprintf(stderr,
          "  commit (upsert + COMMIT), synchronous=%s, %d runs: median %.1f us, p99 %.1f us\n",
          sync, n, t[n / 2] / 1e3, t[n * 99 / 100] / 1e3);
  free(t);
  bg_store_close(s);
  rm_dir();
}

int main(void) {
  RUN(test_open_pragmas);
  RUN(test_statements);
  RUN(test_transactions);
  RUN(test_errors);
  RUN(test_reopen_and_crash);
  RUN(test_lua_binding);
  RUN(test_background_checkpoint);
  fprintf(stderr, "bench_commit\n");
  bench_commit("NORMAL");
  bench_commit("FULL");
  fprintf(stderr, "ok\n");
  return 0;
}
