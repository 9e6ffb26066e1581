#include "script/lpool.h"

#include <stdlib.h>
#include <string.h>

#ifndef BG_LPOOL_MALLOC_ONLY
#define CHUNK_MIN 4096
#define CHUNK_MAX 65536

static inline size_t class_of(size_t n) {
  return (n - 1) / BG_LPOOL_STEP;
}

static inline void put(bg_lpool *p, void *b, size_t c) {
  *(void **)b = p->free[c];
  p->free[c] = b;
}

/* A new chunk; what is left of the current one goes to the free list of its size. -1 when
 * the pool has all the chunks it may have (the block then comes from malloc). */
static int grow(bg_lpool *p) {
  if (p->nchunks == BG_LPOOL_CHUNKS) return -1;
  size_t size = CHUNK_MIN << (p->nchunks < 4 ? p->nchunks : 4);
  if (size > CHUNK_MAX) size = CHUNK_MAX;
  char *ch = malloc(size);
  if (ch == NULL) return -1;
  size_t rest = (size_t)(p->end - p->bump); /* < BG_LPOOL_MAX: a block did not fit */
  if (rest >= BG_LPOOL_STEP) put(p, p->bump, class_of(rest));
  p->lo[p->nchunks] = ch;
  p->hi[p->nchunks] = ch + size;
  p->nchunks++;
  p->held += size;
  p->bump = ch;
  p->end = ch + size;
  return 0;
}

/* A block of class c from the pool, or NULL. */
static void *get(bg_lpool *p, size_t c) {
  void *b = p->free[c];
  if (b != NULL) {
    p->free[c] = *(void **)b;
    return b;
  }
  size_t size = (c + 1) * BG_LPOOL_STEP;
  if ((size_t)(p->end - p->bump) < size && grow(p) != 0) return NULL;
  b = p->bump;
  p->bump += size;
  return b;
}

/* A new block of n bytes: the pool's when started and small (and it has room), else malloc's. */
static void *fresh(bg_lpool *p, size_t n) {
  if (p->on && n <= BG_LPOOL_MAX) {
    void *b = get(p, class_of(n));
    if (b != NULL) return b;
  }
  return malloc(n);
}

#endif

void *bg__lpool_slow(bg_lpool *p, void *ptr, size_t osize, size_t nsize) {
#ifdef BG_LPOOL_MALLOC_ONLY
  (void)p;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
#else
  if (nsize == 0) { /* a pool block's free is inline: this is malloc's */
    free(ptr);
    return NULL;
  }
  if (ptr == NULL) return fresh(p, nsize);
  int mine = bg_lpool_owns(p, ptr);
  if (!mine) {
    /* malloc's block: stays with malloc unless it becomes small in a started pool */
    if (!(p->on && nsize <= BG_LPOOL_MAX)) return realloc(ptr, nsize);
  } else if (nsize <= BG_LPOOL_MAX && class_of(osize) == class_of(nsize)) {
    return ptr;
  }
  void *b = fresh(p, nsize);
  if (b == NULL) return NULL;
  memcpy(b, ptr, osize < nsize ? osize : nsize);
  if (mine)
    put(p, ptr, class_of(osize));
  else
    free(ptr);
  return b;
#endif
}

void bg_lpool_start(bg_lpool *p) {
  p->on = 1;
}

void bg_lpool_destroy(bg_lpool *p) {
  for (int i = 0; i < p->nchunks; i++)
    free(p->lo[i]);
  memset(p, 0, sizeof *p);
}

size_t bg_lpool_held(const bg_lpool *p) {
  return p->held;
}
