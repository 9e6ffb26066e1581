#include "lpool.h"

#include <stdlib.h>
#include <string.h>

#define CHUNK_MIN 4096
#define CHUNK_MAX 65536
#define CHUNK_HEAD 16 /* the link word, padded so that blocks stay 16-byte aligned */

static inline size_t class_of(size_t n) {
  return (n - 1) / BG_LPOOL_STEP;
}

static inline void put(bg_lpool *p, void *b, size_t c) {
  *(void **)b = p->free[c];
  p->free[c] = b;
}

/* A new chunk; what is left of the current one goes to the free list of its size. */
static int grow(bg_lpool *p) {
  size_t size = p->next_chunk ? p->next_chunk : CHUNK_MIN;
  char *ch = malloc(size);
  if (ch == NULL) return -1;
  size_t rest = (size_t)(p->end - p->bump); /* < BG_LPOOL_MAX: a block did not fit */
  if (rest >= BG_LPOOL_STEP) put(p, p->bump, class_of(rest));
  *(void **)ch = p->chunks;
  p->chunks = ch;
  p->held += size;
  p->bump = ch + CHUNK_HEAD;
  p->end = ch + size;
  p->next_chunk = size < CHUNK_MAX ? size * 2 : CHUNK_MAX;
  return 0;
}

static inline void *get(bg_lpool *p, size_t c) {
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
  if (nsize == 0) {
    if (ptr != NULL) {
      if (osize <= BG_LPOOL_MAX)
        put(p, ptr, class_of(osize));
      else
        free(ptr);
    }
    return NULL;
  }
  if (ptr == NULL) return nsize <= BG_LPOOL_MAX ? get(p, class_of(nsize)) : malloc(nsize);
  if (osize > BG_LPOOL_MAX && nsize > BG_LPOOL_MAX) return realloc(ptr, nsize);
  if (osize <= BG_LPOOL_MAX && nsize <= BG_LPOOL_MAX && class_of(osize) == class_of(nsize))
    return ptr;
  void *b = nsize <= BG_LPOOL_MAX ? get(p, class_of(nsize)) : malloc(nsize);
  if (b == NULL) {
    /* Lua counts on a shrink never failing: keep the larger block. Freed later with the
     * smaller size, it lands in a smaller class (or, from malloc, stays in the pool). */
    return nsize < osize ? ptr : NULL;
  }
  memcpy(b, ptr, osize < nsize ? osize : nsize);
  if (osize <= BG_LPOOL_MAX)
    put(p, ptr, class_of(osize));
  else
    free(ptr);
  return b;
#endif
}

void bg_lpool_destroy(bg_lpool *p) {
  void *ch = p->chunks;
  while (ch != NULL) {
    void *next = *(void **)ch;
    free(ch);
    ch = next;
  }
  memset(p, 0, sizeof *p);
}

size_t bg_lpool_held(const bg_lpool *p) {
  return p->held;
}
