/* store: one SQLite connection with its pragmas, a statement cache and nestable
 * transactions. The Lua binding is in store_lua.c. */
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "store/store_int.h"

typedef struct centry {
  char *sql;
  sqlite3_stmt *st;
  uint64_t used; /* tick of the last prepare, for eviction */
  uint32_t hash;
  int busy;          /* handed out and not yet done */
  const char *asked; /* the caller's pointer the last time: a Lua string is the same object
                        each time a call site runs, so this finds it without hashing the text */
} centry;

/* The background checkpointer: its own struct, because it may outlive the store (closed
 * while a checkpoint runs: the work's end frees it). */
typedef struct ckpt {
  uv_work_t req;
  char *path;
  const char *sync;
  sqlite3 *db;   /* the worker's connection, opened by the first checkpoint */
  int busy;      /* a checkpoint queued or running */
  int orphan;    /* the store is closed: the work's end frees this */
  int slot;      /* the store's health slot (store_int.h) */
  int rc;        /* of the last checkpoint */
  unsigned done; /* checkpoints that returned SQLITE_OK */
} ckpt;

struct bg_store {
  sqlite3 *db;
  uint64_t tick;
  int ncache;
  int depth;
  int slot; /* health (store_int.h); -1 for a memory database */
  uv_loop_t *loop;
  ckpt *ck;
  centry cache[BG_STORE_CACHE_MAX];
};

static int code_of(int rc) {
  switch (rc & 0xff) {
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return BG_EBUSY;
  case SQLITE_NOMEM:
    return BG_ENOMEM;
  case SQLITE_FULL:
    return BG_ELIMIT;
  case SQLITE_ERROR:
  case SQLITE_CONSTRAINT:
  case SQLITE_MISMATCH:
  case SQLITE_RANGE:
  case SQLITE_MISUSE:
    return BG_EINVAL;
  default:
    return BG_EIO;
  }
}

/* Formats the connection's last error with the SQL it came from, counts it as a failure of op
 * (store_health.c decides whether it is the file's); returns the BG_E* code. */
static int fail(bg_store *s, int op, int rc, const char *sql, char *err, size_t errlen) {
  const char *msg = s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc);
  bg__store_note_error(s->slot, op, rc, msg);
  if (err && errlen) snprintf(err, errlen, "store: %s (in: %s)", msg, sql ? sql : "?");
  return code_of(rc);
}

static int exec_sql(bg_store *s, int op, const char *sql, char *err, size_t errlen) {
  char *msg = NULL;
  sqlite3_int64 before = sqlite3_total_changes64(s->db);
  int rc = sqlite3_exec(s->db, sql, NULL, NULL, &msg);
  if (rc == SQLITE_OK) {
    /* rows written and committed: the file takes writes again (a pragma says nothing) */
    if (op == BG_STORE_OP_WRITE && sqlite3_get_autocommit(s->db) &&
        sqlite3_total_changes64(s->db) != before)
      bg__store_note_ok(s->slot, op);
    return 0;
  }
  bg__store_note_error(s->slot, op, rc, msg ? msg : sqlite3_errstr(rc));
  if (err && errlen)
    snprintf(err, errlen, "store: %s (in: %s)", msg ? msg : sqlite3_errstr(rc), sql);
  sqlite3_free(msg);
  return code_of(rc);
}

int bg_store_exec(bg_store *s, const char *sql, char *err, size_t errlen) {
  return exec_sql(s, BG_STORE_OP_WRITE, sql, err, errlen);
}

/* First column of the first row of sql as text, into buf. */
static int query_text(bg_store *s, const char *sql, char *buf, size_t n, char *err, size_t errlen) {
  sqlite3_stmt *st;
  int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
  if (rc != SQLITE_OK) return fail(s, BG_STORE_OP_OPEN, rc, sql, err, errlen);
  rc = sqlite3_step(st);
  if (rc != SQLITE_ROW) {
    int code = fail(s, BG_STORE_OP_OPEN, rc == SQLITE_DONE ? SQLITE_ERROR : rc, sql, err, errlen);
    sqlite3_finalize(st);
    return code;
  }
  const unsigned char *t = sqlite3_column_text(st, 0);
  snprintf(buf, n, "%s", t ? (const char *)t : "");
  sqlite3_finalize(st);
  return 0;
}

static pthread_once_t sqlite_once = PTHREAD_ONCE_INIT;

static void sqlite_setup_once(void) {
  /* SQLITE_MISUSE if SQLite was started already (another user in the process): harmless */
  sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  /* no bulk page-cache allocation per connection: Debian builds with PCACHE_INITSZ=20, and
   * the bulk block is written through when carved, so each connection held 20 pages (~86 KB)
   * of RSS from its first read, used or not; pages now come one by one as they are read */
  sqlite3_config(SQLITE_CONFIG_PAGECACHE, (void *)0, 0, 0);
}

void bg_sqlite_setup(void) {
  pthread_once(&sqlite_once, sqlite_setup_once);
}

int bg_store_open(const char *path, bg_store **out, char *err, size_t errlen) {
  *out = NULL;
  bg_sqlite_setup();
  if (path == NULL || *path == '\0') {
    if (err && errlen) snprintf(err, errlen, "store: no database path");
    return BG_EINVAL;
  }
  bg_store *s = calloc(1, sizeof *s);
  if (s == NULL) return BG_ENOMEM;
  s->slot = -1; /* failures while opening are reported by the caller (bg_store_open_recover) */
  /* NOMUTEX: the connection belongs to the loop thread (see store.h). */
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
  int rc = sqlite3_open_v2(path, &s->db, flags, NULL);
  if (rc != SQLITE_OK) {
    if (err && errlen)
      snprintf(err, errlen, "store: %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
    rc = code_of(rc);
    goto err;
  }
  sqlite3_busy_timeout(s->db, BG_STORE_BUSY_MS);
  char mode[16];
  if ((rc = query_text(s, "PRAGMA journal_mode=WAL", mode, sizeof mode, err, errlen)) != 0)
    goto err;
  const char *file = sqlite3_db_filename(s->db, "main");
  int memory = file == NULL || *file == '\0';
  if (!memory && strcmp(mode, "wal") != 0) {
    if (err && errlen) snprintf(err, errlen, "store: %s: journal mode is %s, not wal", path, mode);
    rc = BG_EIO;
    goto err;
  }
  /* journal_size_limit: the WAL file is truncated back to 16 MiB after a checkpoint. */
  rc = exec_sql(s, BG_STORE_OP_OPEN,
                "PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;"
                " PRAGMA journal_size_limit=16777216",
                err, errlen);
  if (rc != 0) goto err;
  if (!memory) {
    s->slot = bg__store_health_slot(path);
    bg__store_note_open(s->slot, 1);
  }
  *out = s;
  return 0;
err:
  bg_store_close(s);
  return rc;
}

static void ckpt_free(ckpt *c) {
  sqlite3_close_v2(c->db);
  free(c->path);
  free(c);
}

/* On a pool thread: one checkpoint at a time (busy), so the connection is never shared. */
static void ckpt_work(uv_work_t *req) {
  ckpt *c = req->data;
  if (c->db == NULL) {
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    if (sqlite3_open_v2(c->path, &c->db, flags, NULL) != SQLITE_OK) {
      c->rc = SQLITE_CANTOPEN;
      sqlite3_close_v2(c->db);
      c->db = NULL;
      return;
    }
    sqlite3_busy_timeout(c->db, BG_STORE_BUSY_MS);
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA synchronous=%s", c->sync);
    sqlite3_exec(c->db, sql, NULL, NULL, NULL);
  }
  c->rc = sqlite3_wal_checkpoint_v2(c->db, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
}

static void ckpt_after(uv_work_t *req, int status) {
  (void)status;
  ckpt *c = req->data;
  c->busy = 0;
  if (c->rc == SQLITE_OK) c->done++;
  /* busy: a reader or writer was in the way, the next one catches up */
  else if ((c->rc & 0xff) != SQLITE_BUSY)
    bg__store_note_error(c->slot, BG_STORE_OP_CHECKPOINT, c->rc, sqlite3_errstr(c->rc));
  if (c->orphan) ckpt_free(c);
}

/* After every commit, with the WAL's size in pages. */
static int on_wal(void *arg, sqlite3 *db, const char *name, int pages) {
  bg_store *s = arg;
  ckpt *c = s->ck;
  if (pages >= BG_STORE_CKPT_INLINE_PAGES) {
    sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
  } else if (pages >= BG_STORE_CKPT_PAGES && !c->busy) {
    c->req.data = c;
    if (uv_queue_work(s->loop, &c->req, ckpt_work, ckpt_after) == 0) c->busy = 1;
  }
  return SQLITE_OK;
}

int bg_store_checkpoint_in_background(bg_store *s, uv_loop_t *loop, const char *synchronous) {
  const char *file = sqlite3_db_filename(s->db, "main");
  if (loop == NULL || file == NULL || *file == '\0') return BG_EINVAL;
  if (s->ck != NULL) return 0;
  ckpt *c = calloc(1, sizeof *c);
  if (c == NULL || (c->path = strdup(file)) == NULL) {
    free(c);
    return BG_ENOMEM;
  }
  c->slot = s->slot;
  c->sync = synchronous != NULL && strcmp(synchronous, "full") == 0 ? "FULL" : "NORMAL";
  s->ck = c;
  s->loop = loop;
  sqlite3_wal_hook(s->db, on_wal, s); /* replaces SQLite's automatic checkpoint */
  return 0;
}

unsigned bg_store_checkpoints(const bg_store *s) {
  return s->ck != NULL ? s->ck->done : 0;
}

void bg_store_close(bg_store *s) {
  if (s == NULL) return;
  if (s->slot >= 0) bg__store_note_open(s->slot, 0);
  if (s->ck != NULL) {
    if (s->ck->busy)
      s->ck->orphan = 1;
    else
      ckpt_free(s->ck);
  }
  if (s->db && !sqlite3_get_autocommit(s->db)) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
  for (int i = 0; i < s->ncache; i++) {
    sqlite3_finalize(s->cache[i].st);
    free(s->cache[i].sql);
  }
  /* close_v2: a statement the caller still holds outside the cache does not keep us open */
  sqlite3_close_v2(s->db);
  free(s);
}

sqlite3 *bg_store_db(bg_store *s) {
  return s->db;
}

int bg_store_depth(const bg_store *s) {
  return s->depth;
}

/* ---- statements ---------------------------------------------------------------------------- */

static uint32_t hash_str(const char *p) {
  uint32_t h = 2166136261u; /* FNV-1a */
  for (; *p; p++)
    h = (h ^ (unsigned char)*p) * 16777619u;
  return h;
}

static int only_space(const char *p) {
  for (; *p; p++)
    if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r' && *p != ';') return 0;
  return 1;
}

/* A free cache slot: a new one, or the least recently used idle statement finalized. NULL
 * when every slot is handed out. */
static centry *slot(bg_store *s) {
  if (s->ncache < BG_STORE_CACHE_MAX) return &s->cache[s->ncache++];
  centry *lru = NULL;
  for (int i = 0; i < s->ncache; i++)
    if (!s->cache[i].busy && (lru == NULL || s->cache[i].used < lru->used)) lru = &s->cache[i];
  if (lru == NULL) return NULL;
  sqlite3_finalize(lru->st);
  free(lru->sql);
  memset(lru, 0, sizeof *lru);
  return lru;
}

int bg_store_prepare(bg_store *s, const char *sql, sqlite3_stmt **out, char *err, size_t errlen) {
  *out = NULL;
  for (int i = 0; i < s->ncache; i++) {
    centry *e = &s->cache[i];
    if (e->asked != sql || e->busy || strcmp(e->sql, sql) != 0) continue;
    e->busy = 1;
    e->used = ++s->tick;
    *out = e->st;
    return 0;
  }
  uint32_t h = hash_str(sql);
  int nested = 0;
  for (int i = 0; i < s->ncache; i++) {
    centry *e = &s->cache[i];
    if (e->hash != h || strcmp(e->sql, sql) != 0) continue;
    if (e->busy) {
      nested = 1;
      break;
    }
    e->busy = 1;
    e->used = ++s->tick;
    e->asked = sql;
    *out = e->st;
    return 0;
  }
  sqlite3_stmt *st = NULL;
  const char *tail = NULL;
  int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, &tail);
  if (rc != SQLITE_OK) return fail(s, BG_STORE_OP_READ, rc, sql, err, errlen);
  if (st == NULL || (tail && !only_space(tail))) {
    sqlite3_finalize(st);
    if (err && errlen)
      snprintf(err, errlen, "store: %s (in: %s)", st ? "more than one statement" : "no statement",
               sql);
    return BG_EINVAL;
  }
  /* nested use, no memory for the key or every slot out: an uncached statement */
  char *copy = nested ? NULL : strdup(sql);
  centry *e = copy ? slot(s) : NULL;
  if (e == NULL) {
    free(copy);
    *out = st;
    return 0;
  }
  e->sql = copy;
  e->st = st;
  e->hash = h;
  e->busy = 1;
  e->used = ++s->tick;
  e->asked = sql;
  *out = st;
  return 0;
}

int bg_store_step(bg_store *s, sqlite3_stmt *st, char *err, size_t errlen) {
  int rc = sqlite3_step(st);
  if (rc == SQLITE_ROW) return 1;
  int op = sqlite3_stmt_readonly(st) ? BG_STORE_OP_READ : BG_STORE_OP_WRITE;
  if (rc == SQLITE_DONE) {
    /* a write outside a transaction is committed now */
    if (op == BG_STORE_OP_READ || sqlite3_get_autocommit(s->db)) bg__store_note_ok(s->slot, op);
    return 0;
  }
  return fail(s, op, rc, sqlite3_sql(st), err, errlen);
}

void bg_store_done(bg_store *s, sqlite3_stmt *st) {
  if (st == NULL) return;
  for (int i = 0; i < s->ncache; i++) {
    if (s->cache[i].st == st) {
      sqlite3_reset(st);
      sqlite3_clear_bindings(st);
      s->cache[i].busy = 0;
      return;
    }
  }
  sqlite3_finalize(st);
}

/* ---- transactions -------------------------------------------------------------------------- */

int bg_store_begin(bg_store *s, char *err, size_t errlen) {
  char sql[32];
  /* IMMEDIATE takes the write lock now: a deferred transaction that reads and then writes
   * can fail with SQLITE_BUSY against another writer, whatever the busy timeout. */
  if (s->depth == 0)
    snprintf(sql, sizeof sql, "BEGIN IMMEDIATE");
  else
    snprintf(sql, sizeof sql, "SAVEPOINT bg%d", s->depth);
  int rc = exec_sql(s, BG_STORE_OP_BEGIN, sql, err, errlen);
  if (rc == 0) s->depth++;
  return rc;
}

static int no_tx(const char *what, char *err, size_t errlen) {
  if (err && errlen) snprintf(err, errlen, "store: %s without a transaction", what);
  return BG_EINVAL;
}

int bg_store_rollback(bg_store *s, char *err, size_t errlen) {
  if (s->depth == 0) return no_tx("rollback", err, errlen);
  int level = --s->depth;
  /* SQLite may already have rolled everything back (SQLITE_FULL, IOERR, NOMEM) */
  if (sqlite3_get_autocommit(s->db)) return 0;
  char sql[64];
  if (level == 0)
    snprintf(sql, sizeof sql, "ROLLBACK");
  else
    snprintf(sql, sizeof sql, "ROLLBACK TO bg%d; RELEASE bg%d", level, level);
  return exec_sql(s, BG_STORE_OP_COMMIT, sql, err, errlen);
}

int bg_store_commit(bg_store *s, char *err, size_t errlen) {
  if (s->depth == 0) return no_tx("commit", err, errlen);
  if (sqlite3_get_autocommit(s->db)) {
    s->depth--;
    if (err && errlen) snprintf(err, errlen, "store: the transaction was rolled back by an error");
    return BG_EIO;
  }
  int level = s->depth - 1;
  char sql[32];
  if (level == 0)
    snprintf(sql, sizeof sql, "COMMIT");
  else
    snprintf(sql, sizeof sql, "RELEASE bg%d", level);
  int rc = exec_sql(s, BG_STORE_OP_COMMIT, sql, err, errlen);
  if (rc == 0) {
    s->depth--;
    if (level == 0) bg__store_note_ok(s->slot, BG_STORE_OP_COMMIT);
    return 0;
  }
  bg_store_rollback(s, NULL, 0);
  return rc;
}

/* ---- opening a file that may be unusable ------------------------------------------------------
 */

/* 0 when the open store s can be used as it is; else a BG_E* code with why in err: the file is
 * read-only, or quick_check's first complaint (a truncated or damaged file opens, and fails
 * only at the first read of a missing page). */
static int unfit(bg_store *s, char *err, size_t errlen) {
  if (sqlite3_db_readonly(s->db, "main") == 1) {
    if (err && errlen) snprintf(err, errlen, "store: the file is read-only");
    return BG_EIO;
  }
  char res[256];
  /* quick_check reads every page: past BG_STORE_QUICK_CHECK_MAX bytes only the schema is read
   * (garbage and a bad header still show; a missing page shows when it is read) */
  const char *file = sqlite3_db_filename(s->db, "main");
  struct stat sb;
  if (file != NULL && *file && stat(file, &sb) == 0 && sb.st_size > BG_STORE_QUICK_CHECK_MAX)
    return query_text(s, "SELECT count(*) FROM sqlite_master", res, sizeof res, err, errlen);
  int rc = query_text(s, "PRAGMA quick_check", res, sizeof res, err, errlen);
  if (rc != 0) return rc;
  if (strcmp(res, "ok") != 0) {
    if (err && errlen) snprintf(err, errlen, "store: the file is damaged: %s", res);
    return BG_EIO;
  }
  return 0;
}

/* Renames from + suffix to to + suffix; 0, or errno (ENOENT is not an error here). */
static int move_one(const char *from, const char *to, const char *suffix) {
  char a[1200], b[1200];
  snprintf(a, sizeof a, "%s%s", from, suffix);
  snprintf(b, sizeof b, "%s%s", to, suffix);
  if (rename(a, b) == 0 || errno == ENOENT) return 0;
  return errno;
}

int bg_store_open_recover(const char *path, bg_store **out, char *moved, size_t movedlen, char *err,
                          size_t errlen) {
  char why[512] = "";
  if (moved && movedlen) *moved = '\0';
  int rc = bg_store_open(path, out, why, sizeof why);
  if (rc == 0 && (rc = unfit(*out, why, sizeof why)) == 0) return 0;
  bg_store_close(*out);
  *out = NULL;
  int slot = bg__store_health_slot(path);
  struct stat sb;
  if (rc == BG_EBUSY || rc == BG_ENOMEM || lstat(path, &sb) != 0) {
    bg__store_note_unusable(slot, why);
    if (err && errlen) snprintf(err, errlen, "%s", why);
    return rc;
  }
  char to[1100], stamp[32];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
  snprintf(to, sizeof to, "%s.broken-%s", path, stamp);
  for (int i = 1; i < 100 && lstat(to, &sb) == 0; i++)
    snprintf(to, sizeof to, "%s.broken-%s.%d", path, stamp, i);
  int e = move_one(path, to, "");
  if (e == 0) e = move_one(path, to, "-wal");
  if (e == 0) e = move_one(path, to, "-shm");
  if (e != 0) {
    size_t n = strlen(why);
    snprintf(why + n, sizeof why - n, "; cannot move it aside: %s", strerror(e));
    bg__store_note_unusable(slot, why);
    if (err && errlen) snprintf(err, errlen, "%s", why);
    return rc;
  }
  char again[512] = "";
  rc = bg_store_open(path, out, again, sizeof again);
  if (rc == 0 && (rc = unfit(*out, again, sizeof again)) != 0) {
    bg_store_close(*out);
    *out = NULL;
  }
  if (rc != 0) {
    bg__store_note_unusable(slot, again);
    if (err && errlen) snprintf(err, errlen, "%s", again);
    return rc;
  }
  bg__store_note_replaced(slot, to, why);
  if (moved && movedlen) snprintf(moved, movedlen, "%s", to);
  return 0;
}

int bg_store_adopt(const char *path, int *slot, char *moved, size_t movedlen, char *err,
                   size_t errlen) {
  *slot = -1;
  bg_store *s = NULL;
  int rc = bg_store_open_recover(path, &s, moved, movedlen, err, errlen);
  if (rc != 0) return rc;
  int i = s->slot;
  bg_store_close(s);
  bg__store_note_open(i, 1); /* held open by the adopter's own connections */
  *slot = i;
  return 0;
}
