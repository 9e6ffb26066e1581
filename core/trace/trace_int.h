/* trace_int.h: what trace.c, trace_batch.c and w3c.c share and nothing else may use.
 *
 * A span is one of two records. A non-recording span (`lite`) is its context and the context
 * that was current before it, taken from a free list of slabs: no malloc on its path. A
 * recording span (`rec`) adds everything the exporters read, with an arena inside the record
 * so that setting attributes allocates nothing either; finished, it moves to the tracer's span
 * buffer, then into a batch, and back to a pool when the batch goes. Log records are `rec`s
 * too (kind 0), so buffers, batches, the pool and the byte format are shared. */
#ifndef BG_TRACE_INT_H
#define BG_TRACE_INT_H

#include <string.h>

#include "trace/trace.h"

/* NULL is the empty state: no call for it (the common case, on every span). */
#define bg__tracestate_ref(ts) ((ts) != NULL ? bg__tracestate_ref_(ts) : (void)0)
#define bg__tracestate_unref(ts) ((ts) != NULL ? bg__tracestate_unref_(ts) : (void)0)
void bg__tracestate_ref_(bg_tracestate *ts);
void bg__tracestate_unref_(bg_tracestate *ts);
int bg__tracestate_equal(const bg_tracestate *a, const bg_tracestate *b);
int bg__tracestate_key_valid(const char *k, size_t n);
int bg__tracestate_value_valid(const char *v, size_t n);

typedef struct lite {
  bg_span pub;
  uint8_t is_rec, live;
  struct lite *next; /* free list, or the live list of recording spans */
  struct lite *prev_live;
  bg_span_ctx ctx;
  bg_span_ctx prev; /* what was current before the span began */
} lite;

typedef struct arena_blk {
  struct arena_blk *next;
  size_t cap;
  max_align_t data[];
} arena_blk;

#define REC_INLINE 512 /* arena bytes inside the record */
#define REC_ATTRS 8    /* a span's first attributes, inside the record too */
#define REC_ALIGN 8    /* what the arena aligns to: pointers, int64, double */
/* The most block bytes one record's arena grows by, and all records together. Every set copies
 * its value (a replaced one is not reclaimed), so without a bound one span set in a loop could
 * hold the agent's memory outside any plugin's limit. Past either, what would need more is
 * dropped and counted in the record's dropped attributes. A record may hold its 128 attributes
 * at the 4,096-byte cut and its events; all records, 64 MiB (2,048 buffered spans of 32 KiB). */
#define REC_ARENA_MAX (640u * 1024u)
#define TRACE_ARENA_MAX ((size_t)64 * 1024 * 1024)
/* Bytes of arena blocks all records hold now (trace.c). */
extern size_t bg__trace_arena_bytes;

typedef struct rec {
  lite base;
  uint8_t parent_span_id[BG_SPAN_ID_LEN];
  uint8_t is_log;
  int kind, status, severity;
  const char *name, *status_msg, *scope; /* for a log: name is the body */
  uint32_t name_len, status_len, scope_len;
  uint64_t start_ns, end_ns; /* a log's time is start_ns */
  bg_attr *attrs;
  uint32_t nattrs, attrs_cap, dropped_attrs;
  bg_span_event_view *events;
  uint32_t nevents, events_cap, dropped_events;
  uint32_t ev_attrs_cap; /* of the last event */
  uint8_t ev_open;       /* the last bg_span_add_event was kept: its attributes go there */
  /* the arena: a bump pointer in the inline bytes, then in blocks */
  char *ap, *aend;
  arena_blk *blocks;
  size_t grown; /* bytes of blocks: at most REC_ARENA_MAX */
  /* not cleared when the record is reused (all of the above is) */
  bg_attr attrs_inline[REC_ATTRS];
  max_align_t inline_mem[REC_INLINE / sizeof(max_align_t)];
} rec;

/* A record from the pool (or malloc), empty; NULL on ENOMEM. */
rec *bg__rec_new(void);
/* Back to the pool, or freed when there is no tracer or the pool is full. */
void bg__rec_free(rec *r);
/* n bytes of r's arena, REC_ALIGN aligned (the slow path: a new block); NULL on ENOMEM. */
void *bg__rec_grow(rec *r, size_t n);
static inline void *bg__rec_alloc(rec *r, size_t n) {
  n = (n + REC_ALIGN - 1) & ~(size_t)(REC_ALIGN - 1);
  if ((size_t)(r->aend - r->ap) < n) return bg__rec_grow(r, n);
  void *p = r->ap;
  r->ap += n;
  return p;
}
/* n bytes of s to d. Names, keys and short values are most of what a span copies: up to 16
 * bytes are two overlapping fixed-size moves (never outside s's n bytes), not a call. */
static inline void bg__copy(char *d, const char *s, size_t n) {
  if (n > 16) {
    memcpy(d, s, n);
  } else if (n >= 8) {
    memcpy(d, s, 8);
    memcpy(d + n - 8, s + n - 8, 8);
  } else if (n >= 4) {
    memcpy(d, s, 4);
    memcpy(d + n - 4, s + n - 4, 4);
  } else {
    for (size_t i = 0; i < n; i++)
      d[i] = s[i];
  }
}

/* n bytes of s copied into r's arena with a NUL; NULL on ENOMEM. */
static inline const char *bg__rec_str(rec *r, const char *s, size_t n) {
  char *p = (char *)bg__rec_alloc(r, n + 1);
  if (p == NULL) return NULL;
  bg__copy(p, s, n);
  p[n] = '\0';
  return p;
}

/* The tracer's clock (real time, ns): what spans, events and log records are stamped with. */
uint64_t bg__trace_now(void);

/* The finished-record buffers: a ring of records. */
typedef struct ring {
  rec **a;
  size_t alloc, head, len; /* alloc: a power of two */
} ring;

int bg__ring_push(ring *q, rec *r, size_t cap);
void bg__ring_free(ring *q);
/* The tracer's rings, for trace_batch.c. */
ring *bg__tracer_ring(bg_tracer *t, int logs);
/* After a take: the ready callback may fire again. */
void bg__tracer_rearm(bg_tracer *t, int logs);

#endif
