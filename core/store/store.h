/* store: the agent's durable state in one SQLite file (alert states, the notification log
 * that is also the delivery outbox, silences, rules created over the API). The schema lives
 * with its users in Lua (lua/agent/rules/store.lua); this module owns the connection: its
 * pragmas, a cache of prepared statements keyed by SQL text, nestable transactions, and the
 * Lua binding (store_open) the agent and the specs use.
 *
 * Durability: WAL with synchronous=NORMAL. A commit is one write to the WAL, no fsync; the
 * fsync happens at checkpoints. A crash of the process (kill -9) loses nothing committed; a
 * power loss or kernel crash may lose the last transactions, never part of one. That suits
 * the outbox: an alert-state change and its notification rows commit together, so a lost
 * suffix is re-decided by the next evaluation, and a lost "sent" mark only causes a resend
 * that carries the same dedup key. Who needs power-loss durability runs
 * "PRAGMA synchronous=FULL" (the Lua open takes { synchronous = "full" }); see the commit
 * costs measured in tests/c/test_store.c.
 *
 * Threads: a store is used from one thread, the loop's; every call is synchronous. The
 * statements are small (single-row upserts, indexed counts), so a call costs microseconds
 * and a commit tens of microseconds; a writer from another process (the CLI) can make a
 * call wait up to the busy timeout (BG_STORE_BUSY_MS). */
#ifndef BG_STORE_H
#define BG_STORE_H

#include <stddef.h>

#include <lua.h>
#include <sqlite3.h>
#include <uv.h>

#include "base/bg.h"

#define BG_STORE_BUSY_MS 2000
/* Prepared statements kept per store; the least recently used idle one is finalized first. */
#define BG_STORE_CACHE_MAX 64

typedef struct bg_store bg_store;

/* Opens (creating if needed) the database file at path (":memory:" for a private in-memory
 * one; the directory must exist) with WAL, synchronous=NORMAL, foreign keys on and a busy
 * timeout. *out is owned by the caller, freed with bg_store_close. Returns 0 or a BG_E* code
 * with a message in err. */
int bg_store_open(const char *path, bg_store **out, char *err, size_t errlen);

/* Rolls back an open transaction, finalizes every statement and closes. NULL is a no-op. */
void bg_store_close(bg_store *s);

/* Checkpoints off the loop: from now on a commit that leaves BG_STORE_CKPT_PAGES or more in
 * the WAL queues a PASSIVE checkpoint on libuv's thread pool, through a second connection of
 * its own, instead of SQLite's automatic one running inside that commit (copying the WAL
 * into the database and two fsyncs: 0.05-0.25 s of a blocked loop after a burst of outbox
 * rows). Only if the WAL still reaches BG_STORE_CKPT_INLINE_PAGES (the pool is stuck, or the
 * loop is not running, as in a CLI command) does a commit checkpoint in place again. The
 * worker's connection uses `synchronous` as given ("normal" or "full"). A file database
 * only; 0, or a BG_E* code. bg_store_close does not wait for a running checkpoint: its
 * connection is closed when the work ends. */
#define BG_STORE_CKPT_PAGES 1000
#define BG_STORE_CKPT_INLINE_PAGES 25000
int bg_store_checkpoint_in_background(bg_store *s, uv_loop_t *loop, const char *synchronous);

/* Background checkpoints completed (SQLITE_OK) so far. */
unsigned bg_store_checkpoints(const bg_store *s);

/* The process-wide SQLite settings, once, before the first connection (both stores call
 * it): no memory statistics, whose global mutex every SQLite malloc and free took, and no
 * bulk page-cache block per connection (pages are allocated as they are read). */
void bg_sqlite_setup(void);

/* Runs one or more SQL statements without parameters (schema, pragmas). 0 or a BG_E* code
 * with "store: <sqlite message> (in: <sql>)" in err. */
int bg_store_exec(bg_store *s, const char *sql, char *err, size_t errlen);

/* A prepared statement for sql, reset and with no bindings, from the cache (prepared on a
 * miss). Borrowed: hand it back with bg_store_done, which resets it. While it is out, asking
 * for the same SQL gives a separate statement (nested use is safe). 0 or a BG_E* code. */
int bg_store_prepare(bg_store *s, const char *sql, sqlite3_stmt **out, char *err, size_t errlen);

/* Steps st: 1 for a row, 0 when done, a BG_E* code on error (message with the SQL in err). */
int bg_store_step(bg_store *s, sqlite3_stmt *st, char *err, size_t errlen);

/* Resets st and clears its bindings; a statement not from the cache is finalized. */
void bg_store_done(bg_store *s, sqlite3_stmt *st);

/* Transactions nest: the outermost is BEGIN IMMEDIATE ... COMMIT, inner ones are savepoints.
 * A failed commit rolls its level back, so every begin that returned 0 is closed by exactly
 * one commit or rollback. 0 or a BG_E* code. */
int bg_store_begin(bg_store *s, char *err, size_t errlen);
int bg_store_commit(bg_store *s, char *err, size_t errlen);
int bg_store_rollback(bg_store *s, char *err, size_t errlen);
/* Open transaction levels (0: none). */
int bg_store_depth(const bg_store *s);

/* ---- health -------------------------------------------------------------------------------
 * Every file database reports its trouble under its name (the file's base name without ".db":
 * "state"), process-wide and kept across close and reopen, so that /health and /metrics can
 * show it (core.store_status). Counted are the failures that are the file's, not the SQL's: a
 * full disk, I/O errors, a read-only, locked, corrupt or unopenable file, no memory; a
 * constraint or syntax error is the caller's and only returned. The first counted failure
 * after success starts a failing episode and logs one warning with SQLite's message; the first
 * write that succeeds after it (or read, for an episode begun by a read) ends it and logs that.
 * Loop thread only. */
enum {
  BG_STORE_OP_OPEN,
  BG_STORE_OP_BEGIN,
  BG_STORE_OP_COMMIT,
  BG_STORE_OP_WRITE,
  BG_STORE_OP_READ,
  BG_STORE_OP_CHECKPOINT,
  BG_STORE_NOPS
};

typedef struct bg_store_health {
  char db[64];     /* "state" */
  char path[1024]; /* as given to open */
  int open;        /* a connection is open */
  int durable;     /* 0: the file could not be opened and the process runs without it */
  int failing;     /* a counted failure not yet followed by a success */
  int failing_op;  /* the op that began the episode */
  double since;    /* wall time the episode (or the unusable state) began; 0: none */
  unsigned long long errors[BG_STORE_NOPS];
  unsigned long long episode_errors; /* failures in the current or last episode */
  char error[512];                   /* SQLite's message of the last failure ("" none) */
  char replaced[1100];               /* where a file that could not be used was moved ("" none) */
} bg_store_health;

/* "open", "begin", "commit", "write", "read", "checkpoint". */
const char *bg_store_op_name(int op);
/* The databases seen so far, in the order first opened; borrowed, valid until the next store
 * call. bg_store_health_epoch changes with every change of open, durable, failing or replaced
 * (not with counts within an episode), for a cheap poll. */
int bg_store_health_count(void);
const bg_store_health *bg_store_health_at(int i);
unsigned bg_store_health_epoch(void);

/* bg_store_open, and for a file SQLite cannot use (not a database, corrupt per quick_check
 * (up to BG_STORE_QUICK_CHECK_MAX bytes; a bigger file has only its schema read),
 * read-only, a directory in its place) moves it and its -wal and -shm aside to
 * "<path>.broken-<yyyymmddThhmmssZ>" and opens a fresh one; the new name goes to moved ("" when
 * nothing was moved). A locked file (BG_EBUSY) or no memory is never moved. When the move
 * fails (a read-only directory) the open's error is returned with why, and the database's
 * health says it is not durable. */
#define BG_STORE_QUICK_CHECK_MAX (64 << 20)
int bg_store_open_recover(const char *path, bg_store **out, char *moved, size_t movedlen, char *err,
                          size_t errlen);

/* For a database another module opens with connections of its own (the history's rollups):
 * bg_store_adopt makes sure the file at path can be used, as bg_store_open_recover does (moved
 * aside and made fresh when not, or reported not durable), and gives its health slot in *slot,
 * marked open. The module then reports from the loop thread: bg_store_report with rc 0 for an
 * op that succeeded, else SQLite's code and message (counted as bg_store_* failures are), and
 * bg_store_report_closed when it closes. A slot of -1 is ignored. */
int bg_store_adopt(const char *path, int *slot, char *moved, size_t movedlen, char *err,
                   size_t errlen);
void bg_store_report(int slot, int op, int rc, const char *msg);
void bg_store_report_closed(int slot);

/* The connection, borrowed, for what the API above does not cover (changes, rowid). */
sqlite3 *bg_store_db(bg_store *s);

/* Adds store_open(path[, opts]) to the table on top of L's stack (the agent's "agent.core").
 * The db handles it makes are described in store.c. */
void bg_store_open_lua(lua_State *L, uv_loop_t *loop);

/* The same binding as a Lua C module, for a plain luajit (busted specs):
 * package.loadlib(BEAGLE_LIB, "luaopen_beagle_store")() -> { store_open = fn }. */
BG_EXPORT int luaopen_beagle_store(lua_State *L);

#endif
