/* batch: snapshots of a registry and the batches cut from them (see batch.h). */
#include "export/batch.h"

#include <stdlib.h>
#include <string.h>

/* Strings and arrays go into blocks that never move (pointers into them are handed out while
 * the snapshot is built); a block is at least ARENA_BLOCK bytes. */
#define ARENA_BLOCK (64 * 1024)

typedef struct block {
  struct block *next;
  size_t used, cap;
  max_align_t data[];
} block;

struct bg_snapshot {
  int refs;
  int failed; /* out of memory while taking it */
  double now;
  bg_sample *samples;
  size_t n, cap;
  block *blocks;
  size_t bytes;
  /* the family being copied: its name, help and bounds are shared by its series */
  const char *fname, *fhelp;
  const double *fbounds;
};

struct bg_batch {
  int refs;
  uint32_t id; /* 0 until published */
  bg_snapshot *snap;
  size_t first, n;
};

static void *arena_alloc(bg_snapshot *s, size_t n) {
  n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
  block *b = s->blocks;
  if (b == NULL || b->cap - b->used < n) {
    size_t cap = n > ARENA_BLOCK ? n : ARENA_BLOCK;
    b = malloc(sizeof *b + cap);
    if (b == NULL) return NULL;
    b->cap = cap;
    b->used = 0;
    b->next = s->blocks;
    s->blocks = b;
    s->bytes += sizeof *b + cap;
  }
  void *p = (char *)b->data + b->used;
  b->used += n;
  return p;
}

static const char *arena_str(bg_snapshot *s, const char *v) {
  size_t n = strlen(v) + 1;
  char *p = arena_alloc(s, n);
  if (p != NULL) memcpy(p, v, n);
  return p;
}

static void on_family(void *ud, const bg_family_view *f) {
  bg_snapshot *s = ud;
  if (s->failed) return;
  s->fname = arena_str(s, f->name);
  s->fhelp = arena_str(s, f->help ? f->help : "");
  s->fbounds = NULL;
  if (f->type == BG_HISTOGRAM && f->nbuckets > 0) {
    double *b = arena_alloc(s, (size_t)f->nbuckets * sizeof *b);
    if (b != NULL) memcpy(b, f->buckets, (size_t)f->nbuckets * sizeof *b);
    s->fbounds = b;
    if (b == NULL) s->failed = 1;
  }
  if (s->fname == NULL || s->fhelp == NULL) s->failed = 1;
}

static void on_series(void *ud, const bg_family_view *f, const bg_series_view *v) {
  bg_snapshot *s = ud;
  if (s->failed) return;
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 256;
    bg_sample *p = realloc(s->samples, cap * sizeof *p);
    if (p == NULL) {
      s->failed = 1;
      return;
    }
    s->bytes += (cap - s->cap) * sizeof *p;
    s->samples = p;
    s->cap = cap;
  }
  /* the label strings in one piece: the pointers, then the strings */
  size_t strbytes = 0;
  for (int k = 0; k < 2 * v->nlabels; k++)
    strbytes += strlen(v->kv[k]) + 1;
  size_t ptrbytes = (size_t)(2 * v->nlabels) * sizeof(char *);
  size_t hbytes = f->type == BG_HISTOGRAM ? ((size_t)f->nbuckets + 1) * sizeof(uint64_t) : 0;
  char *mem = arena_alloc(s, ptrbytes + hbytes + strbytes);
  if (mem == NULL) {
    s->failed = 1;
    return;
  }
  const char **kv = (const char **)(void *)mem;
  uint64_t *counts = hbytes ? (uint64_t *)(void *)(mem + ptrbytes) : NULL;
  char *p = mem + ptrbytes + hbytes;
  for (int k = 0; k < 2 * v->nlabels; k++) {
    size_t len = strlen(v->kv[k]) + 1;
    memcpy(p, v->kv[k], len);
    kv[k] = p;
    p += len;
  }
  if (counts != NULL) memcpy(counts, v->bucket_counts, hbytes);
  s->samples[s->n++] = (bg_sample){
      .name = s->fname,
      .help = s->fhelp,
      .kv = kv,
      .nlabels = v->nlabels,
      .type = f->type,
      .nbuckets = f->type == BG_HISTOGRAM ? f->nbuckets : 0,
      .bounds = f->type == BG_HISTOGRAM ? s->fbounds : NULL,
      .bucket_counts = counts,
      .value = v->value,
      .count = v->count,
      .created = v->created,
      .id = v->id,
  };
}

static void snapshot_free(bg_snapshot *s) {
  for (block *b = s->blocks, *next; b; b = next) {
    next = b->next;
    free(b);
  }
  free(s->samples);
  free(s);
}

bg_snapshot *bg_snapshot_take(bg_registry *r, double now) {
  bg_snapshot *s = calloc(1, sizeof *s);
  if (s == NULL) return NULL;
  s->refs = 1;
  s->now = now;
  s->bytes = sizeof *s;
  bg_registry_walk(r, on_family, on_series, s);
  if (s->failed) {
    snapshot_free(s);
    return NULL;
  }
  return s;
}

void bg_snapshot_ref(bg_snapshot *s) {
  s->refs++;
}

void bg_snapshot_unref(bg_snapshot *s) {
  if (s != NULL && --s->refs == 0) snapshot_free(s);
}

size_t bg_snapshot_size(const bg_snapshot *s) {
  return s->n;
}

size_t bg_snapshot_bytes(const bg_snapshot *s) {
  return s->bytes;
}

/* ---- batches and their numbers ------------------------------------------------------------- */

/* The published batches: an open-addressing table keyed by id (ids count up from 1 and are
 * never reused within a process, so a stale number finds nothing). */
static bg_batch **ids;
static size_t ids_cap, ids_used;
static uint32_t ids_next = 1;

static size_t id_slot(uint32_t id) {
  return (size_t)(id * 2654435761u) & (ids_cap - 1);
}

static bg_batch **id_find_slot(uint32_t id) {
  for (size_t i = id_slot(id);; i = (i + 1) & (ids_cap - 1))
    if (ids[i] == NULL || ids[i]->id == id) return &ids[i];
}

static int ids_grow(void) {
  size_t cap = ids_cap ? ids_cap * 2 : 64;
  bg_batch **old = ids;
  size_t oldcap = ids_cap;
  bg_batch **t = calloc(cap, sizeof *t);
  if (t == NULL) return BG_ENOMEM;
  ids = t;
  ids_cap = cap;
  for (size_t i = 0; i < oldcap; i++)
    if (old[i] != NULL) *id_find_slot(old[i]->id) = old[i];
  free(old);
  return 0;
}

static void id_remove(bg_batch *b) {
  if (b->id == 0 || ids_cap == 0) return;
  bg_batch **slot = id_find_slot(b->id);
  if (*slot != b) return;
  *slot = NULL;
  ids_used--;
  /* close the gap: re-place the run that follows */
  size_t i = (size_t)(slot - ids);
  for (size_t j = (i + 1) & (ids_cap - 1); ids[j] != NULL; j = (j + 1) & (ids_cap - 1)) {
    bg_batch *e = ids[j];
    ids[j] = NULL;
    *id_find_slot(e->id) = e;
  }
  if (ids_used == 0) { /* nothing published: give the table back */
    free(ids);
    ids = NULL;
    ids_cap = 0;
  }
}

bg_batch *bg_batch_new(bg_snapshot *s, size_t first, size_t n) {
  bg_batch *b = calloc(1, sizeof *b);
  if (b == NULL) return NULL;
  if (first > s->n) first = s->n;
  if (n > s->n - first) n = s->n - first;
  b->refs = 1;
  b->snap = s;
  b->first = first;
  b->n = n;
  bg_snapshot_ref(s);
  return b;
}

void bg_batch_ref(bg_batch *b) {
  b->refs++;
}

void bg_batch_unref(bg_batch *b) {
  if (b == NULL || --b->refs > 0) return;
  id_remove(b);
  bg_snapshot_unref(b->snap);
  free(b);
}

size_t bg_batch_len(const bg_batch *b) {
  return b->n;
}

const bg_sample *bg_batch_at(const bg_batch *b, size_t i) {
  return i < b->n ? &b->snap->samples[b->first + i] : NULL;
}

int64_t bg_batch_time_ms(const bg_batch *b) {
  return (int64_t)(b->snap->now * 1000.0);
}

double bg_batch_time(const bg_batch *b) {
  return b->snap->now;
}

uint32_t bg_batch_id(bg_batch *b) {
  if (b->id != 0) return b->id;
  if ((ids_used + 1) * 2 > ids_cap && ids_grow() != 0) return 0;
  b->id = ids_next++;
  if (ids_next == 0) ids_next = 1;
  *id_find_slot(b->id) = b;
  ids_used++;
  return b->id;
}

bg_batch *bg_batch_find(uint32_t id) {
  if (id == 0 || ids_cap == 0) return NULL;
  return *id_find_slot(id);
}
