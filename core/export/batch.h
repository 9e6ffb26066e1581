/* batch: what the metric backends send. A snapshot is an immutable copy of a registry's
 * samples at one instant (one sample per series: a counter's or gauge's value, a histogram's
 * buckets, sum and count); a batch is a run of at most a backend's batch size of them. Both
 * are reference counted, so one snapshot serves every backend that collects at that tick and a
 * batch waiting for a target that is down holds only what it needs.
 *
 * Loop thread only (the references and the ids are not atomic). Nothing here knows Lua: the
 * agent's binding is in core/app/host_backend.c, the plugins' in core/script/script_io_encode.c,
 * and the encoders (core/export/encode_*.c) read batches through bg_batch_at. */
#ifndef BG_BATCH_H
#define BG_BATCH_H

#include "metrics/metrics.h"

#include <stddef.h>
#include <stdint.h>

/* One sample, as the encoders read it. Every pointer is owned by the snapshot and valid while
 * the batch that returned it is referenced. */
typedef struct bg_sample {
  const char *name;      /* the family's exposition base name ("api_requests": a counter
                            without "_total"); the same pointer for every series of a family */
  const char *help;      /* "" when none */
  const char *const *kv; /* label pairs k0, v0, k1, v1, ... sorted by key */
  int nlabels;
  int type;                      /* BG_COUNTER, BG_GAUGE, BG_HISTOGRAM */
  int nbuckets;                  /* histogram: upper bounds, +Inf implied */
  const double *bounds;          /* histogram: nbuckets ascending upper bounds */
  const uint64_t *bucket_counts; /* histogram: nbuckets + 1 counts, NOT cumulative (last: +Inf) */
  double value;                  /* counter and gauge: the value; histogram: the sum */
  uint64_t count;                /* histogram: the number of observations */
  double created;                /* wall time (epoch seconds) the series was created */
  uint32_t id;                   /* the registry's bg_series_id: stable for the series' life, never
                                    reused, so an encoder may cache what it derives from the labels */
} bg_sample;

typedef struct bg_snapshot bg_snapshot;
typedef struct bg_batch bg_batch;

/* Copies every series of r at wall time now (epoch seconds); refcount 1. NULL when out of
 * memory. The agent's own series are included like any other. */
bg_snapshot *bg_snapshot_take(bg_registry *r, double now);
void bg_snapshot_ref(bg_snapshot *s);
void bg_snapshot_unref(bg_snapshot *s); /* NULL is fine */
size_t bg_snapshot_size(const bg_snapshot *s);
/* Bytes the snapshot holds (its series and strings), for the agent's memory report. */
size_t bg_snapshot_bytes(const bg_snapshot *s);

/* Samples [first, first + n) of s (clamped to its size), taking a reference to s; refcount 1.
 * NULL when out of memory. */
bg_batch *bg_batch_new(bg_snapshot *s, size_t first, size_t n);
void bg_batch_ref(bg_batch *b);
void bg_batch_unref(bg_batch *b); /* NULL is fine */
size_t bg_batch_len(const bg_batch *b);
/* The i-th sample (0-based, i < bg_batch_len); NULL past the end. */
const bg_sample *bg_batch_at(const bg_batch *b, size_t i);
/* The snapshot's instant: epoch milliseconds, and epoch seconds. Every sample has it. */
int64_t bg_batch_time_ms(const bg_batch *b);
double bg_batch_time(const bg_batch *b);

/* Batches cross from the agent's state to a plugin's state by number (values cross states by
 * deep copy, and a batch is C memory): bg_batch_id publishes b and returns its number (the same
 * one each time, never 0; 0 only when out of memory); bg_batch_find returns the batch of a number,
 * or NULL when it has been freed. A batch leaves the table when its last reference goes. */
uint32_t bg_batch_id(bg_batch *b);
bg_batch *bg_batch_find(uint32_t id);

/* A batch as bytes and back, for a backend's buffer kept on disk across restarts: encode
 * appends to out (0 or BG_ENOMEM); decode returns a new batch of its own (refcount 1) or NULL
 * with *why ("truncated", "not a batch", ...) for bytes it cannot trust. */
int bg_batch_encode(const bg_batch *b, bg_buf *out);
bg_batch *bg_batch_decode(const char *p, size_t len, const char **why);

#endif
