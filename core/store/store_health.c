/* store_health: the process-wide record of each file database's trouble (store.h, "health"):
 * which failures count, the failing episodes and their two log lines. */
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

#include "base/bg.h"
#include "base/log.h"
#include "store/store_int.h"

#define SLOTS 8

static bg_store_health slots[SLOTS];
static int nslots;
static unsigned epoch;

static const char *const op_names[BG_STORE_NOPS] = {"open",  "begin", "commit",
                                                    "write", "read",  "checkpoint"};

const char *bg_store_op_name(int op) {
  return op >= 0 && op < BG_STORE_NOPS ? op_names[op] : "?";
}

int bg_store_health_count(void) {
  return nslots;
}

const bg_store_health *bg_store_health_at(int i) {
  return i >= 0 && i < nslots ? &slots[i] : NULL;
}

unsigned bg_store_health_epoch(void) {
  return epoch;
}

/* "state" of ".../state.db" */
static void db_name(const char *path, char *out, size_t n) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t len = strlen(base);
  if (len > 3 && strcmp(base + len - 3, ".db") == 0) len -= 3;
  if (len >= n) len = n - 1;
  memcpy(out, base, len);
  out[len] = '\0';
}

int bg__store_health_slot(const char *path) {
  if (path == NULL || *path == '\0' || strcmp(path, ":memory:") == 0 ||
      strncmp(path, "file::memory:", 13) == 0)
    return -1;
  for (int i = 0; i < nslots; i++)
    if (strcmp(slots[i].path, path) == 0) return i;
  if (nslots == SLOTS) return -1;
  bg_store_health *h = &slots[nslots];
  memset(h, 0, sizeof *h);
  snprintf(h->path, sizeof h->path, "%s", path);
  db_name(path, h->db, sizeof h->db);
  h->durable = 1;
  return nslots++;
}

/* The failures that are the file's (or the machine's), not the statement's. */
static int counts(int rc) {
  switch (rc & 0xff) {
  case SQLITE_OK:
  case SQLITE_ROW:
  case SQLITE_DONE:
  case SQLITE_ERROR:
  case SQLITE_CONSTRAINT:
  case SQLITE_MISMATCH:
  case SQLITE_RANGE:
  case SQLITE_MISUSE:
  case SQLITE_TOOBIG:
  case SQLITE_INTERRUPT:
  case SQLITE_ABORT:
    return 0;
  default:
    return 1;
  }
}

int bg__store_note_error(int slot, int op, int rc, const char *msg) {
  if (slot < 0 || slot >= nslots || !counts(rc)) return rc;
  bg_store_health *h = &slots[slot];
  h->errors[op]++;
  snprintf(h->error, sizeof h->error, "%s", msg && *msg ? msg : sqlite3_errstr(rc));
  /* a failed checkpoint loses nothing (the WAL keeps the pages): counted, not an episode */
  if (op == BG_STORE_OP_CHECKPOINT || h->failing) {
    if (h->failing) h->episode_errors++;
    return rc;
  }
  h->failing = 1;
  h->failing_op = op;
  h->since = bg_wall_time();
  h->episode_errors = 1;
  epoch++;
  bg_log(BG_LOG_ERROR, "store is failing: changes are not kept until it recovers", "db", h->db,
         "op", op_names[op], "error", h->error, "path", h->path, NULL);
  return rc;
}

void bg__store_note_ok(int slot, int op) {
  if (slot < 0 || slot >= nslots) return;
  bg_store_health *h = &slots[slot];
  if (!h->failing) return;
  if (op == BG_STORE_OP_READ && h->failing_op != BG_STORE_OP_READ) return;
  char n[32], secs[32];
  snprintf(n, sizeof n, "%llu", h->episode_errors);
  snprintf(secs, sizeof secs, "%.3f", bg_wall_time() - h->since);
  h->failing = 0;
  h->since = 0;
  epoch++;
  bg_log(BG_LOG_INFO, "store recovered", "db", h->db, "op", op_names[op], "failures", n, "seconds",
         secs, NULL);
}

void bg__store_note_open(int slot, int open) {
  if (slot < 0 || slot >= nslots) return;
  bg_store_health *h = &slots[slot];
  h->open = open;
  if (open) {
    h->durable = 1;
    h->failing = 0;
    h->since = 0;
  }
  epoch++;
}

void bg__store_note_unusable(int slot, const char *why) {
  if (slot < 0 || slot >= nslots) return;
  bg_store_health *h = &slots[slot];
  h->errors[BG_STORE_OP_OPEN]++;
  h->durable = 0;
  h->open = 0;
  h->since = bg_wall_time();
  snprintf(h->error, sizeof h->error, "%s", why ? why : "");
  epoch++;
  bg_log(BG_LOG_ERROR, "store cannot be opened: running without it, nothing is kept", "db", h->db,
         "error", h->error, "path", h->path, NULL);
}

void bg__store_note_replaced(int slot, const char *moved, const char *why) {
  if (slot < 0 || slot >= nslots) return;
  bg_store_health *h = &slots[slot];
  h->errors[BG_STORE_OP_OPEN]++;
  snprintf(h->replaced, sizeof h->replaced, "%s", moved);
  snprintf(h->error, sizeof h->error, "%s", why ? why : "");
  epoch++;
  bg_log(BG_LOG_ERROR, "store file could not be used: moved aside, starting with an empty one",
         "db", h->db, "error", h->error, "path", h->path, "moved_to", h->replaced, NULL);
}

void bg_store_report(int slot, int op, int rc, const char *msg) {
  if (rc == SQLITE_OK)
    bg__store_note_ok(slot, op);
  else
    bg__store_note_error(slot, op, rc, msg);
}

void bg_store_report_closed(int slot) {
  bg__store_note_open(slot, 0);
}
