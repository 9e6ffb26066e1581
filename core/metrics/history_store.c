/* history_store: the rollups of core/metrics/history in SQLite. A file database in WAL mode has two
 * connections: one that only writes (from the flush, which may run on a threadpool worker)
 * and one that only reads (queries on the loop thread), so that a read never waits for a
 * flush. synchronous=NORMAL: in WAL mode a crash of the process loses nothing committed; a
 * power loss may lose the last transactions, which is within the one-flush bound anyway.
 * Without a directory the store is one private in-memory database and one connection. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <sqlite3.h>

#include "metrics/history_int.h"
#include "store/store.h"

struct bg__hstore {
  sqlite3 *wdb, *rdb; /* rdb == wdb in memory */
  sqlite3_stmt *ins, *del, *sel;
  int slot;    /* the file's health (store.h, bg_store_adopt); -1 in memory */
  int errcode; /* of the last failed write, for bg__hstore_report */
  char errmsg[256];
};

static const char *SCHEMA =
    "CREATE TABLE IF NOT EXISTS rollups(series TEXT NOT NULL, minute INTEGER NOT NULL,"
    " min REAL, max REAL, sum REAL, count INTEGER, last REAL,"
    " PRIMARY KEY(series, minute)) WITHOUT ROWID";

static int fail(sqlite3 *db, const char *what, char *err, size_t errlen) {
  if (err && errlen)
    snprintf(err, errlen, "history store: %s: %s", what, db ? sqlite3_errmsg(db) : "no database");
  return BG_EIO;
}

void bg__hstore_close(bg__hstore *s) {
  if (s == NULL) return;
  bg_store_report_closed(s->slot);
  sqlite3_finalize(s->ins);
  sqlite3_finalize(s->del);
  sqlite3_finalize(s->sel);
  if (s->rdb != s->wdb) sqlite3_close(s->rdb);
  sqlite3_close(s->wdb);
  free(s);
}

int bg__hstore_is_memory(const bg__hstore *s) {
  return s->rdb == s->wdb;
}

int bg__hstore_open(bg__hstore **out, const char *dir, char *err, size_t errlen) {
  *out = NULL;
  bg__hstore *s = calloc(1, sizeof *s);
  if (s == NULL) return BG_ENOMEM;
  s->slot = -1;
  char path[4096];
  int rc = BG_EIO;
  if (dir != NULL) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
      if (err && errlen) snprintf(err, errlen, "history store: mkdir %s: %s", dir, strerror(errno));
      free(s);
      return BG_EIO;
    }
    if ((size_t)snprintf(path, sizeof path, "%s/history.db", dir) >= sizeof path) {
      if (err && errlen) snprintf(err, errlen, "history store: data dir path too long");
      free(s);
      return BG_EINVAL;
    }
    /* a file SQLite cannot use is moved aside and made fresh, and its trouble is shown with
     * the state store's (/health, beagle_store_*) */
    if ((rc = bg_store_adopt(path, &s->slot, NULL, 0, err, errlen)) != 0) {
      free(s);
      return rc;
    }
  } else {
    strcpy(path, ":memory:");
  }
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  bg_sqlite_setup();
  if (sqlite3_open_v2(path, &s->wdb, flags, NULL) != SQLITE_OK) {
    rc = fail(s->wdb, path, err, errlen);
    goto err;
  }
  sqlite3_busy_timeout(s->wdb, 5000);
  if (dir != NULL &&
      (sqlite3_exec(s->wdb, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
       sqlite3_exec(s->wdb, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL) != SQLITE_OK)) {
    rc = fail(s->wdb, "pragma", err, errlen);
    goto err;
  }
  if (sqlite3_exec(s->wdb, SCHEMA, NULL, NULL, NULL) != SQLITE_OK) {
    rc = fail(s->wdb, "create table", err, errlen);
    goto err;
  }
  if (dir != NULL) {
    if (sqlite3_open_v2(path, &s->rdb, SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, NULL) !=
        SQLITE_OK) {
      rc = fail(s->rdb, path, err, errlen);
      goto err;
    }
    sqlite3_busy_timeout(s->rdb, 5000);
  } else {
    s->rdb = s->wdb;
  }
  if (sqlite3_prepare_v2(s->wdb,
                         "INSERT OR REPLACE INTO rollups(series, minute, min, max, sum, count,"
                         " last) VALUES(?,?,?,?,?,?,?)",
                         -1, &s->ins, NULL) != SQLITE_OK ||
      sqlite3_prepare_v2(s->wdb,
                         "DELETE FROM rollups WHERE series IN (SELECT DISTINCT series FROM"
                         " rollups) AND minute < ?",
                         -1, &s->del, NULL) != SQLITE_OK) {
    rc = fail(s->wdb, "prepare", err, errlen);
    goto err;
  }
  if (sqlite3_prepare_v2(s->rdb,
                         "SELECT minute, min, max, sum, count, last FROM rollups"
                         " WHERE series = ? AND minute BETWEEN ? AND ? ORDER BY minute",
                         -1, &s->sel, NULL) != SQLITE_OK) {
    rc = fail(s->rdb, "prepare", err, errlen);
    goto err;
  }
  *out = s;
  return 0;
err:
  bg__hstore_close(s);
  return rc;
}

/* A NULL column (NaN is stored as NULL by SQLite) reads back as NaN. */
static double col_double(sqlite3_stmt *st, int i) {
  return sqlite3_column_type(st, i) == SQLITE_NULL ? (double)NAN : sqlite3_column_double(st, i);
}

int bg__hstore_write(bg__hstore *s, const bg__hrow *rows, size_t n, int64_t delete_before) {
  sqlite3 *db = s->wdb;
  if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) goto fail;
  for (size_t i = 0; i < n; i++) {
    const bg__hrow *r = &rows[i];
    sqlite3_bind_text(s->ins, 1, r->key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s->ins, 2, r->minute);
    sqlite3_bind_double(s->ins, 3, r->min);
    sqlite3_bind_double(s->ins, 4, r->max);
    sqlite3_bind_double(s->ins, 5, r->sum);
    sqlite3_bind_int64(s->ins, 6, (sqlite3_int64)r->count);
    sqlite3_bind_double(s->ins, 7, r->last);
    int rc = sqlite3_step(s->ins);
    sqlite3_reset(s->ins);
    if (rc != SQLITE_DONE) goto err;
  }
  sqlite3_clear_bindings(s->ins);
  if (delete_before > 0) {
    sqlite3_bind_int64(s->del, 1, delete_before);
    int rc = sqlite3_step(s->del);
    sqlite3_reset(s->del);
    if (rc != SQLITE_DONE) goto err;
  }
  if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) goto err;
  return 0;
err:
  s->errcode = sqlite3_extended_errcode(db);
  snprintf(s->errmsg, sizeof s->errmsg, "%s", sqlite3_errmsg(db));
  sqlite3_clear_bindings(s->ins);
  sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
  return BG_EIO;
fail:
  s->errcode = sqlite3_extended_errcode(db);
  snprintf(s->errmsg, sizeof s->errmsg, "%s", sqlite3_errmsg(db));
  return BG_EIO;
}

void bg__hstore_report(bg__hstore *s, int rc) {
  if (s == NULL) return;
  if (rc == 0)
    bg_store_report(s->slot, BG_STORE_OP_COMMIT, 0, NULL);
  else if (rc == BG_EIO)
    bg_store_report(s->slot, BG_STORE_OP_COMMIT, s->errcode ? s->errcode : SQLITE_IOERR, s->errmsg);
}

int bg__hstore_load(bg__hstore *s, void (*fn)(void *ud, const bg__hrow *row), void *ud) {
  sqlite3_stmt *st;
  /* SQLite takes the bare columns from the row that holds max(minute). */
  if (sqlite3_prepare_v2(s->rdb,
                         "SELECT series, max(minute), min, max, sum, count, last FROM rollups"
                         " GROUP BY series",
                         -1, &st, NULL) != SQLITE_OK)
    return BG_EIO;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    bg__hrow r = {(char *)sqlite3_column_text(st, 0),
                  sqlite3_column_int64(st, 1),
                  col_double(st, 2),
                  col_double(st, 3),
                  col_double(st, 4),
                  col_double(st, 6),
                  (uint64_t)sqlite3_column_int64(st, 5)};
    if (r.key) fn(ud, &r);
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : BG_EIO;
}

int bg__hstore_read(bg__hstore *s, const char *key, int64_t from, int64_t to, bg__hrow **rows,
                    size_t *n, size_t *cap) {
  sqlite3_bind_text(s->sel, 1, key, -1, SQLITE_STATIC);
  sqlite3_bind_int64(s->sel, 2, from);
  sqlite3_bind_int64(s->sel, 3, to);
  int rc, out = 0;
  while ((rc = sqlite3_step(s->sel)) == SQLITE_ROW) {
    if (*n == *cap) {
      size_t nc = *cap ? *cap * 2 : 64;
      bg__hrow *p = realloc(*rows, nc * sizeof *p);
      if (p == NULL) {
        out = BG_ENOMEM;
        break;
      }
      *rows = p;
      *cap = nc;
    }
    bg__hrow *r = &(*rows)[(*n)++];
    r->key = NULL;
    r->minute = sqlite3_column_int64(s->sel, 0);
    r->min = col_double(s->sel, 1);
    r->max = col_double(s->sel, 2);
    r->sum = col_double(s->sel, 3);
    r->count = (uint64_t)sqlite3_column_int64(s->sel, 4);
    r->last = col_double(s->sel, 5);
  }
  if (out == 0 && rc != SQLITE_DONE) out = BG_EIO;
  sqlite3_reset(s->sel);
  sqlite3_clear_bindings(s->sel);
  return out;
}
