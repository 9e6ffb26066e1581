/* Tests for core/store/store_health.c and bg_store_open_recover: which failures count, one
 * log line per failing episode and one when it ends, a real write failure (a file-size limit:
 * EFBIG, as on a full disk) failing a commit, and files that cannot be used: moved aside and
 * replaced (garbage, truncated, a directory, read-only), or, in a read-only directory, not
 * kept at all. What permissions decide runs as nobody in a child when the test runs as root. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/log.h"
#include "store/store.h"
#include "test_support.h"

static char err[1024];
static char dir[64];
static char path[128];

static void mk_dir(void) {
  strcpy(dir, "/tmp/beagle-storeh.XXXXXX");
  ASSERT(mkdtemp(dir) != NULL);
  snprintf(path, sizeof path, "%s/state.db", dir);
}

static void rm_dir(void) {
  char cmd[200];
  snprintf(cmd, sizeof cmd, "chmod -R u+w %s; rm -rf %s", dir, dir);
  ASSERT_EQ_INT(system(cmd), 0);
}

/* log lines, captured */
static char logbuf[16384];
static size_t loglen;
static void sink(void *ud, const char *line, size_t len) {
  (void)ud;
  if (loglen + len < sizeof logbuf) {
    memcpy(logbuf + loglen, line, len);
    loglen += len;
    logbuf[loglen] = '\0';
  }
}

static int count_in(const char *hay, const char *needle) {
  int n = 0;
  for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
    n++;
  return n;
}

static const bg_store_health *health_of(const char *p) {
  for (int i = 0; i < bg_store_health_count(); i++)
    if (strcmp(bg_store_health_at(i)->path, p) == 0) return bg_store_health_at(i);
  return NULL;
}

static int insert(bg_store *s, int k) {
  sqlite3_stmt *st;
  ASSERT_EQ_INT(
      bg_store_prepare(s, "INSERT INTO t(k, v) VALUES(?, zeroblob(3000))", &st, err, sizeof err),
      0);
  sqlite3_bind_int(st, 1, k);
  int rc = bg_store_step(s, st, err, sizeof err);
  bg_store_done(s, st);
  return rc;
}

/* A full database (max_page_count: SQLITE_FULL from the connection itself): counted, one
 * episode, one line each way; a constraint error is the caller's and not counted. */
static void test_episode(void) {
  mk_dir();
  loglen = 0;
  bg_log_set_sink(sink, NULL);
  bg_store *s = NULL;
  ASSERT_EQ_INT(bg_store_open(path, &s, err, sizeof err), 0);
  ASSERT_EQ_INT(bg_store_exec(s, "CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB)", err, sizeof err),
                0);
  const bg_store_health *h = health_of(path);
  ASSERT(h != NULL);
  ASSERT_EQ_STR(h->db, "state");
  ASSERT_EQ_INT(h->open, 1);
  ASSERT_EQ_INT(h->failing, 0);
  unsigned e0 = bg_store_health_epoch();

  ASSERT_EQ_INT(insert(s, 1), 0);
  ASSERT(insert(s, 1) < 0); /* constraint: not the file's */
  ASSERT_EQ_INT(h->errors[BG_STORE_OP_WRITE], 0);
  ASSERT_EQ_INT(h->failing, 0);

  long long pages = 0;
  sqlite3_stmt *st;
  ASSERT_EQ_INT(bg_store_prepare(s, "PRAGMA page_count", &st, err, sizeof err), 0);
  ASSERT_EQ_INT(bg_store_step(s, st, err, sizeof err), 1);
  pages = sqlite3_column_int64(st, 0);
  bg_store_done(s, st);
  char sql[64];
  snprintf(sql, sizeof sql, "PRAGMA max_page_count=%lld", pages);
  ASSERT_EQ_INT(bg_store_exec(s, sql, err, sizeof err), 0);
  int fails = 0;
  for (int k = 2; k < 40; k++)
    if (insert(s, k) < 0) fails++;
  ASSERT(fails >= 30);
  ASSERT(strstr(err, "database or disk is full") != NULL);
  ASSERT_EQ_INT(h->errors[BG_STORE_OP_WRITE], fails);
  ASSERT_EQ_INT(h->failing, 1);
  ASSERT(h->since > 0);
  ASSERT(strstr(h->error, "database or disk is full") != NULL);
  ASSERT(bg_store_health_epoch() != e0);
  ASSERT_EQ_INT(count_in(logbuf, "store is failing"), 1);
  ASSERT(strstr(logbuf, "database or disk is full") != NULL);
  ASSERT_EQ_INT(count_in(logbuf, "store recovered"), 0);

  /* in a transaction too: the commit's failure is counted as a commit or a write */
  ASSERT_EQ_INT(bg_store_begin(s, err, sizeof err), 0);
  ASSERT(insert(s, 100) < 0);
  bg_store_rollback(s, NULL, 0);

  ASSERT_EQ_INT(bg_store_exec(s, "PRAGMA max_page_count=1000000", err, sizeof err), 0);
  ASSERT_EQ_INT(bg_store_begin(s, err, sizeof err), 0);
  ASSERT_EQ_INT(insert(s, 200), 0);
  ASSERT_EQ_INT(h->failing, 1); /* not before the commit */
  ASSERT_EQ_INT(bg_store_commit(s, err, sizeof err), 0);
  ASSERT_EQ_INT(h->failing, 0);
  ASSERT_EQ_INT(count_in(logbuf, "store recovered"), 1);
  ASSERT_EQ_INT(count_in(logbuf, "store is failing"), 1);
  bg_store_close(s);
  ASSERT_EQ_INT(h->open, 0);
  bg_log_set_sink(NULL, NULL);
  rm_dir();
}

/* A real failed write: past RLIMIT_FSIZE (SIGXFSZ ignored, as the agent does) write() fails
 * with EFBIG, which is how a full disk reaches SQLite too. In a child, so the limit stays there. */
static void test_write_failure(void) {
  mk_dir();
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    loglen = 0;
    bg_log_set_sink(sink, NULL);
    bg_store *s = NULL;
    ASSERT_EQ_INT(bg_store_open(path, &s, err, sizeof err), 0);
    ASSERT_EQ_INT(
        bg_store_exec(s, "CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB)", err, sizeof err), 0);
    struct rlimit rl = {64 * 1024, RLIM_INFINITY};
    ASSERT_EQ_INT(setrlimit(RLIMIT_FSIZE, &rl), 0);
    int failed = 0, k;
    for (k = 1; k < 200 && !failed; k++) {
      ASSERT_EQ_INT(bg_store_begin(s, err, sizeof err), 0);
      if (insert(s, k) < 0) {
        bg_store_rollback(s, NULL, 0);
        failed = 1;
      } else if (bg_store_commit(s, err, sizeof err) != 0) {
        failed = 2;
      }
    }
    ASSERT(failed != 0);
    const bg_store_health *h = health_of(path);
    ASSERT_EQ_INT(h->failing, 1);
    ASSERT(h->errors[BG_STORE_OP_COMMIT] + h->errors[BG_STORE_OP_WRITE] >= 1);
    ASSERT(strstr(logbuf, "store is failing") != NULL);
    /* nothing past the failure is in the file: a second connection sees k-2 rows at most */
    /* the limit lifted, the next commit succeeds and ends the episode */
    rl.rlim_cur = RLIM_INFINITY;
    ASSERT_EQ_INT(setrlimit(RLIMIT_FSIZE, &rl), 0);
    ASSERT_EQ_INT(bg_store_begin(s, err, sizeof err), 0);
    ASSERT_EQ_INT(insert(s, 1000), 0);
    ASSERT_EQ_INT(bg_store_commit(s, err, sizeof err), 0);
    ASSERT_EQ_INT(h->failing, 0);
    ASSERT_EQ_INT(count_in(logbuf, "store recovered"), 1);
    bg_store_close(s);
    _exit(0);
  }
  int status = 0;
  ASSERT(waitpid(pid, &status, 0) == pid);
  ASSERT(WIFEXITED(status));
  ASSERT_EQ_INT(WEXITSTATUS(status), 0);
  rm_dir();
}

static void write_file(const char *p, const void *data, size_t n) {
  FILE *f = fopen(p, "w");
  ASSERT(f != NULL);
  ASSERT_EQ_INT(fwrite(data, 1, n, f), n);
  fclose(f);
}

/* A database with a few pages of rows, closed (checkpointed into the file). */
static void make_db(void) {
  bg_store *s = NULL;
  ASSERT_EQ_INT(bg_store_open(path, &s, err, sizeof err), 0);
  ASSERT_EQ_INT(bg_store_exec(s, "CREATE TABLE t(k INTEGER PRIMARY KEY, v BLOB)", err, sizeof err),
                0);
  for (int k = 0; k < 20; k++)
    ASSERT_EQ_INT(insert(s, k), 0);
  bg_store_close(s);
}

/* Opens path with recovery; expects it moved aside (moved != "") and a working fresh file. */
static void expect_replaced(const char *what) {
  fprintf(stderr, "  %s\n", what);
  char moved[1100];
  bg_store *s = NULL;
  int rc = bg_store_open_recover(path, &s, moved, sizeof moved, err, sizeof err);
  if (rc != 0) fprintf(stderr, "%s: %s\n", what, err);
  ASSERT_EQ_INT(rc, 0);
  ASSERT(strstr(moved, "/state.db.broken-") != NULL);
  struct stat sb;
  ASSERT_EQ_INT(lstat(moved, &sb), 0);
  const bg_store_health *h = health_of(path);
  ASSERT_EQ_STR(h->replaced, moved);
  ASSERT_EQ_INT(h->durable, 1);
  ASSERT_EQ_INT(h->open, 1);
  ASSERT(h->error[0] != '\0');
  ASSERT_EQ_INT(
      bg_store_exec(s, "CREATE TABLE fresh(x); INSERT INTO fresh VALUES(1)", err, sizeof err), 0);
  bg_store_close(s);
}

static void test_recover(void) {
  mk_dir();
  loglen = 0;
  bg_log_set_sink(sink, NULL);
  /* a good file is opened as it is */
  make_db();
  char moved[1100] = "x";
  bg_store *s = NULL;
  ASSERT_EQ_INT(bg_store_open_recover(path, &s, moved, sizeof moved, err, sizeof err), 0);
  ASSERT_EQ_STR(moved, "");
  bg_store_close(s);
  /* an empty file is a new database */
  unlink(path);
  write_file(path, "", 0);
  ASSERT_EQ_INT(bg_store_open_recover(path, &s, moved, sizeof moved, err, sizeof err), 0);
  ASSERT_EQ_STR(moved, "");
  bg_store_close(s);
  unlink(path);

  /* garbage where the header is */
  char junk[8192];
  for (size_t i = 0; i < sizeof junk; i++)
    junk[i] = (char)(i * 7 + 3);
  write_file(path, junk, sizeof junk);
  expect_replaced("garbage header");
  ASSERT(strstr(logbuf, "moved aside") != NULL);
  unlink(path);

  /* truncated: the header is fine, the pages it names are gone */
  make_db();
  struct stat sb;
  ASSERT_EQ_INT(stat(path, &sb), 0);
  ASSERT(sb.st_size > 8 * 4096);
  ASSERT_EQ_INT(truncate(path, 4096 + 100), 0);
  expect_replaced("truncated");
  unlink(path);

  /* a directory in its place */
  ASSERT_EQ_INT(mkdir(path, 0755), 0);
  expect_replaced("a directory");
  unlink(path);

  /* a read-only file: as root, in a child that becomes nobody (permissions do not stop root) */
  make_db();
  ASSERT_EQ_INT(chmod(path, 0444), 0);
  ASSERT_EQ_INT(chmod(dir, 0777), 0);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
    expect_replaced("read-only file");
    _exit(0);
  }
  int status = 0;
  ASSERT(waitpid(pid, &status, 0) == pid);
  ASSERT(WIFEXITED(status));
  ASSERT_EQ_INT(WEXITSTATUS(status), 0);
  bg_log_set_sink(NULL, NULL);
  rm_dir();
}

/* In a read-only directory nothing can be moved or made: not durable, and said so. As root, in
 * a child that becomes nobody (permissions do not stop root). */
static void test_readonly_dir(void) {
  mk_dir();
  make_db();
  unlink(path);
  char wal[160];
  snprintf(wal, sizeof wal, "%s-wal", path);
  unlink(wal);
  /* a database that needs its WAL made, in a directory nobody may write */
  write_file(path, "garbage garbage garbage garbage garbage garbage garbage garbage", 64);
  ASSERT_EQ_INT(chmod(path, 0644), 0);
  ASSERT_EQ_INT(chmod(dir, 0555), 0);
  pid_t pid = fork();
  ASSERT(pid >= 0);
  if (pid == 0) {
    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(3);
    loglen = 0;
    bg_log_set_sink(sink, NULL);
    char moved[1100];
    bg_store *s = NULL;
    int rc = bg_store_open_recover(path, &s, moved, sizeof moved, err, sizeof err);
    ASSERT(rc < 0);
    ASSERT(s == NULL);
    ASSERT(strstr(err, "cannot move it aside") != NULL);
    const bg_store_health *h = health_of(path);
    ASSERT(h != NULL);
    ASSERT_EQ_INT(h->durable, 0);
    ASSERT_EQ_INT(h->open, 0);
    ASSERT_EQ_INT(h->errors[BG_STORE_OP_OPEN], 1);
    ASSERT(strstr(logbuf, "running without it") != NULL);
    _exit(0);
  }
  int status = 0;
  ASSERT(waitpid(pid, &status, 0) == pid);
  ASSERT(WIFEXITED(status));
  ASSERT_EQ_INT(WEXITSTATUS(status), 0);
  struct stat sb;
  ASSERT_EQ_INT(stat(path, &sb), 0); /* left where it was */
  rm_dir();
}

int main(void) {
  RUN(test_episode);
  RUN(test_write_failure);
  RUN(test_recover);
  RUN(test_readonly_dir);
  fprintf(stderr, "ok\n");
  return 0;
}
