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
  /* the label strings in one piece: the pointers, then the strings, which the registry keeps
   * contiguous (metrics.h, bg_series_view): one copy, and the pointers moved by its offset */
  size_t strbytes = 0;
  if (v->nlabels > 0) {
    const char *last = v->kv[2 * v->nlabels - 1];
    strbytes = (size_t)(last + strlen(last) + 1 - v->kv[0]);
  }
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
  if (strbytes > 0) memcpy(p, v->kv[0], strbytes);
  for (int k = 0; k < 2 * v->nlabels; k++)
    kv[k] = p + (v->kv[k] - v->kv[0]);
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

/* ---- a batch as bytes, for a buffer spilled to disk ------------------------------------------
 * "BGB1", the instant (double), the count (u32), then per sample: type (u8), nlabels (u8),
 * nbuckets (u16), id (u32), value, created (doubles), count (u64), name, help and the label
 * strings (u32 length + bytes each), the bounds (doubles) and the counts (u64s). Native byte
 * order: the bytes are read back by the same machine. */

#define MAGIC "BGB1"

static int put_str(bg_buf *out, const char *s) {
  uint32_t n = (uint32_t)strlen(s);
  if (bg_buf_append(out, &n, sizeof n) != 0) return BG_ENOMEM;
  return bg_buf_append(out, s, n);
}

int bg_batch_encode(const bg_batch *b, bg_buf *out) {
  uint32_t n = (uint32_t)b->n;
  double now = b->snap->now;
  int rc = bg_buf_append(out, MAGIC, 4);
  rc |= bg_buf_append(out, &now, sizeof now);
  rc |= bg_buf_append(out, &n, sizeof n);
  for (size_t i = 0; i < b->n && rc == 0; i++) {
    const bg_sample *s = bg_batch_at(b, i);
    uint8_t head[2] = {(uint8_t)s->type, (uint8_t)s->nlabels};
    uint16_t nb = (uint16_t)s->nbuckets;
    rc |= bg_buf_append(out, head, sizeof head);
    rc |= bg_buf_append(out, &nb, sizeof nb);
    rc |= bg_buf_append(out, &s->id, sizeof s->id);
    rc |= bg_buf_append(out, &s->value, sizeof s->value);
    rc |= bg_buf_append(out, &s->created, sizeof s->created);
    rc |= bg_buf_append(out, &s->count, sizeof s->count);
    rc |= put_str(out, s->name);
    rc |= put_str(out, s->help);
    for (int k = 0; k < 2 * s->nlabels; k++)
      rc |= put_str(out, s->kv[k]);
    if (s->type == BG_HISTOGRAM) {
      rc |= bg_buf_append(out, s->bounds, (size_t)nb * sizeof(double));
      rc |= bg_buf_append(out, s->bucket_counts, ((size_t)nb + 1) * sizeof(uint64_t));
    }
  }
  return rc == 0 ? 0 : BG_ENOMEM;
}

typedef struct reader {
  const char *p, *end;
} reader;

static int take(reader *r, void *dst, size_t n) {
  if ((size_t)(r->end - r->p) < n) return -1;
  memcpy(dst, r->p, n);
  r->p += n;
  return 0;
}

/* A string of the bytes into the snapshot's arena; NULL when truncated or out of memory. */
static const char *take_str(reader *r, bg_snapshot *s) {
  uint32_t n;
  if (take(r, &n, sizeof n) != 0 || (size_t)(r->end - r->p) < n) return NULL;
  char *p = arena_alloc(s, (size_t)n + 1);
  if (p == NULL) return NULL;
  memcpy(p, r->p, n);
  p[n] = '\0';
  r->p += n;
  return p;
}

static const char *decode_into(bg_snapshot *s, reader *r, uint32_t n) {
  s->samples = calloc(n ? n : 1, sizeof *s->samples);
  if (s->samples == NULL) return "out of memory";
  s->cap = n;
  s->bytes += (size_t)n * sizeof *s->samples;
  for (uint32_t i = 0; i < n; i++) {
    bg_sample *x = &s->samples[i];
    uint8_t head[2];
    uint16_t nb;
    if (take(r, head, sizeof head) || take(r, &nb, sizeof nb) || take(r, &x->id, sizeof x->id) ||
        take(r, &x->value, sizeof x->value) || take(r, &x->created, sizeof x->created) ||
        take(r, &x->count, sizeof x->count))
      return "truncated";
    if (head[0] > BG_HISTOGRAM || head[1] > BG_METRICS_MAX_LABELS) return "a sample out of range";
    x->type = head[0];
    x->nlabels = head[1];
    if ((x->name = take_str(r, s)) == NULL || (x->help = take_str(r, s)) == NULL)
      return "truncated";
    const char **kv = arena_alloc(s, (size_t)(2 * x->nlabels + 1) * sizeof *kv);
    if (kv == NULL) return "out of memory";
    for (int k = 0; k < 2 * x->nlabels; k++)
      if ((kv[k] = take_str(r, s)) == NULL) return "truncated";
    x->kv = kv;
    if (x->type == BG_HISTOGRAM) {
      double *bounds = arena_alloc(s, (size_t)nb * sizeof *bounds + 1);
      uint64_t *counts = arena_alloc(s, ((size_t)nb + 1) * sizeof *counts);
      if (bounds == NULL || counts == NULL) return "out of memory";
      if (take(r, bounds, (size_t)nb * sizeof *bounds) ||
          take(r, counts, ((size_t)nb + 1) * sizeof *counts))
        return "truncated";
      x->nbuckets = nb;
      x->bounds = bounds;
      x->bucket_counts = counts;
    }
    s->n = i + 1;
  }
  return r->p == r->end ? NULL : "trailing bytes";
}

bg_batch *bg_batch_decode(const char *p, size_t len, const char **why) {
  reader r = {p, p + len};
  char magic[4];
  double now;
  uint32_t n;
  *why = NULL;
  if (take(&r, magic, 4) || memcmp(magic, MAGIC, 4) != 0 || take(&r, &now, sizeof now) ||
      take(&r, &n, sizeof n)) {
    *why = "not a batch";
    return NULL;
  }
  if (n > len / 32) { /* every sample takes more than 32 bytes */
    *why = "a count past its bytes";
    return NULL;
  }
  bg_snapshot *s = calloc(1, sizeof *s);
  if (s == NULL) {
    *why = "out of memory";
    return NULL;
  }
  s->refs = 1;
  s->now = now;
  s->bytes = sizeof *s;
  *why = decode_into(s, &r, n);
  bg_batch *b = *why ? NULL : bg_batch_new(s, 0, s->n);
  if (*why == NULL && b == NULL) *why = "out of memory";
  bg_snapshot_unref(s);
  return b;
}
