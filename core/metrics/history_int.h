/* history_int: what history.c (series, sampling, flush), history_query.c (the query
 * functions) and history_store.c (SQLite) share. Not for other modules. */
#ifndef BG_HISTORY_INT_H
#define BG_HISTORY_INT_H

#include "metrics/history.h"
#include "metrics/tsz.h"

/* The rollup store (history_store.c). Rows carry their series key as text so that
 * a worker thread can write them without touching the history. */
typedef struct bg__hrow {
  char *key; /* owned by whoever owns the row array */
  int64_t minute;
  double min, max, sum, last;
  uint64_t count;
} bg__hrow;

typedef struct bg__hstore bg__hstore;
int bg__hstore_open(bg__hstore **out, const char *dir, char *err, size_t errlen);
void bg__hstore_close(bg__hstore *s);
int bg__hstore_is_memory(const bg__hstore *s);
/* Writes rows (insert or replace) and deletes minutes before delete_before (when > 0) in one
 * transaction on the write connection. Any thread, one call at a time. */
int bg__hstore_write(bg__hstore *s, const bg__hrow *rows, size_t n, int64_t delete_before);
/* Reports the last write's result (rc of bg__hstore_write) to the file's health (store.h);
 * on the loop thread, after the write. */
void bg__hstore_report(bg__hstore *s, int rc);
/* Calls fn for the latest row of every series. Loop thread. */
int bg__hstore_load(bg__hstore *s, void (*fn)(void *ud, const bg__hrow *row), void *ud);
/* Appends the rows of key with minute in [from, to] to *rows (grown with realloc; row keys
 * are NULL). Loop thread. */
int bg__hstore_read(bg__hstore *s, const char *key, int64_t from, int64_t to, bg__hrow **rows,
                    size_t *n, size_t *cap);

#define MINUTE 60000LL
#define HOUR (60 * MINUTE)
#define SWEEP_MS MINUTE
#define MAX_NAME 512
#define MALLOC_OVERHEAD 16

typedef struct chunk {
  struct chunk *next;
  int64_t t0, t1;
  uint32_t n, nbits;
  uint8_t data[];
} chunk;

typedef struct acc {
  int64_t minute;
  double min, max, sum, last;
  uint64_t count;
} acc;

typedef struct hmetric {
  struct hmetric *hnext;
  struct hseries *head, *tail;
  uint32_t hash;
  char name[];
} hmetric;

typedef struct hseries {
  struct hseries *hnext, *next;
  hmetric *metric;
  uint32_t hash;
  uint32_t nrows; /* rows in pending or inflight that point here: keeps it alive */
  uint16_t nlabels;
  uint8_t dirty; /* acc has samples the store has not been sent */
  uint32_t id;   /* unique in this history, never reused (fits the padding before head) */
  chunk *head, *tail;
  bg_tsz open;
  acc acc;
  int64_t last; /* latest sample time; INT64_MIN before the first */
  uint32_t labels_len;
  char labels[];
} hseries;

typedef struct prow {
  hseries *s;
  acc r;
  int snapshot; /* a copy of an acc still filling */
} prow;

typedef struct rowvec {
  prow *v;
  size_t n, cap;
} rowvec;

typedef struct flushjob {
  uv_work_t req;
  bg_history *h;
  bg__hstore *store;
  bg__hrow *rows;
  size_t n;
  int64_t delete_before;
  int rc;
  uint64_t t0;
} flushjob;

typedef struct hidslot {
  uint32_t key; /* 2 * registry series id + slot; 0: empty (ids start at 1) */
  hseries *s;
} hidslot;

struct bg_history {
  int64_t raw_ms, retention_ms, chunk_span;
  uint32_t chunk_n;
  hmetric **mtab;
  size_t mtabsz, nmetrics;
  hseries **stab;
  size_t stabsz, nseries;
  /* Sampling's shortcut from a registry series to its history series, keyed by the registry's
   * series id (never reused) and the slot (a histogram feeds _count and _sum): an open-addressing
   * table, emptied whenever a series is freed. Without it every sample hashed and compared the
   * series' labels (series_find), 40% of sampling. */
  hidslot *idtab;
  size_t idcap, nid;
  const void *id_registry; /* the registry idtab's ids belong to */
  uint32_t next_id;        /* the id of the next series created */
  rowvec pending, inflight;
  bg__hstore *store;
  int64_t now, last_sweep, last_delete;
  uint64_t dropped, flushed_rows, flush_errors;
  double last_flush_ms;
  /* bg_history_stats_get's walk over every series and chunk, kept until a sample or append
   * changes them: GET /metrics reads the stats on every scrape (4 ms at 100k series) */
  bg_history_stats walked;
  int walked_valid;
  int busy, closing;
  /* query scratch */
  int64_t *qts;
  double *qv;
  size_t qcap;
};

int64_t bg__floor_div(int64_t a, int64_t b);
/* The label pairs of s as pointers into its blob; returns how many (at most max). */
int bg__series_kv(const hseries *s, const char **kv, int max);
/* The text key, name{k="v",...}, NUL-terminated into b. 0 or BG_ENOMEM. */
int bg__series_key(const hseries *s, bg_buf *b);
/* The metric called name; created when create is set (NULL when out of memory). */
hmetric *bg__metric_find(bg_history *h, const char *name, int create);

#endif
