/* A small-block allocator for one Lua state: the channel states of script.c.
 *
 * A delivery allocates and frees about a hundred small blocks (strings, tables, their parts)
 * in its channel's state; glibc's malloc and free took ~190 instructions a block there, a
 * tenth of a delivery. Once started (bg_lpool_start), blocks of up to BG_LPOOL_MAX bytes come
 * from per-size free lists (16-byte classes) carved from chunks of 4 KiB doubling to 64 KiB,
 * at most BG_LPOOL_CHUNKS of them; larger blocks, and small ones past that, go to malloc. Lua
 * tells the allocator each block's size on free and realloc, so blocks carry no header: a block
 * is the pool's if its address is inside one of the chunks, else malloc's. Before the start
 * everything goes to malloc, so a state that never delivers holds no chunk (the pool's free
 * lists keep memory that only blocks of the same class reuse: +150 KiB RSS for an idle agent
 * whose every plugin state pooled from its load on).
 *
 * Small blocks freed stay in their class for the state's next allocation of that size; the
 * chunks go back to malloc only when the state is closed (bg_lpool_destroy after lua_close).
 *
 * Under AddressSanitizer every block goes to malloc, so that ASan still sees each one.
 * One pool per state, used on one thread. A zeroed bg_lpool is an empty, unstarted pool. */
#ifndef BG_LPOOL_H
#define BG_LPOOL_H

#include <stddef.h>

#define BG_LPOOL_MAX 512
#define BG_LPOOL_STEP 16
#define BG_LPOOL_CLASSES (BG_LPOOL_MAX / BG_LPOOL_STEP)
#define BG_LPOOL_CHUNKS 24

typedef struct bg_lpool {
  void *free[BG_LPOOL_CLASSES];                    /* class c holds blocks of (c + 1) * 16 bytes */
  char *bump, *end;                                /* the newest chunk's part not carved yet */
  char *lo[BG_LPOOL_CHUNKS], *hi[BG_LPOOL_CHUNKS]; /* the chunks, oldest first */
  int nchunks;
  int on;      /* started: new small blocks come from the pool */
  size_t held; /* bytes in chunks */
} bg_lpool;

#if defined(__SANITIZE_ADDRESS__)
#define BG_LPOOL_MALLOC_ONLY 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BG_LPOOL_MALLOC_ONLY 1
#endif
#endif

/* Everything but a free of a pool block or an allocation served from a free list. */
void *bg__lpool_slow(bg_lpool *p, void *ptr, size_t osize, size_t nsize);

/* Whether ptr is a block of the pool (inside one of its chunks). */
static inline int bg_lpool_owns(const bg_lpool *p, const void *ptr) {
  const char *c = ptr;
  for (int i = p->nchunks - 1; i >= 0; i--)
    if (c >= p->lo[i] && c < p->hi[i]) return 1;
  return 0;
}

/* lua_Alloc's contract: nsize 0 frees ptr (osize bytes) and returns NULL; otherwise returns a
 * block of nsize bytes holding the first min(osize, nsize) bytes of ptr (ptr NULL: a new
 * block), or NULL with ptr untouched. The two common cases are inline: a Lua state calls this
 * for every object it makes and frees. */
static inline void *bg_lpool_alloc(bg_lpool *p, void *ptr, size_t osize, size_t nsize) {
#ifndef BG_LPOOL_MALLOC_ONLY
  if (nsize == 0) {
    if (ptr != NULL && osize <= BG_LPOOL_MAX && bg_lpool_owns(p, ptr)) {
      size_t c = (osize - 1) / BG_LPOOL_STEP;
      *(void **)ptr = p->free[c];
      p->free[c] = ptr;
      return NULL;
    }
  } else if (ptr == NULL && nsize <= BG_LPOOL_MAX) {
    size_t c = (nsize - 1) / BG_LPOOL_STEP;
    void *b = p->free[c];
    if (b != NULL) {
      p->free[c] = *(void **)b;
      return b;
    }
  }
#endif
  return bg__lpool_slow(p, ptr, osize, nsize);
}

/* From now on, new small blocks come from the pool. */
void bg_lpool_start(bg_lpool *p);

/* Gives back every chunk; the pool's blocks are gone (blocks from malloc are not touched).
 * The pool is empty and unstarted again. */
void bg_lpool_destroy(bg_lpool *p);

/* Bytes the pool's chunks take. */
size_t bg_lpool_held(const bg_lpool *p);

#endif
