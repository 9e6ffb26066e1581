/* A small-block allocator for one Lua state: the plugin states of script.c.
 *
 * A plugin run allocates and frees about a hundred small blocks (strings, tables, their
 * parts) per notification; glibc's malloc and free took ~190 instructions a block there, a
 * tenth of a delivery. Blocks of up to BG_LPOOL_MAX bytes come from per-size free lists
 * (16-byte classes) carved from chunks of up to 64 KiB; larger ones go to malloc. Lua tells
 * the allocator each block's size on free and realloc, so blocks carry no header.
 *
 * Small blocks freed stay in their class for the state's next allocation of that size; the
 * memory goes back to malloc only when the state is closed (bg_lpool_destroy after
 * lua_close). bg_lpool_held() is what the chunks take.
 *
 * Under AddressSanitizer every block goes to malloc, so that ASan still sees each one.
 * One pool per state, used on one thread. */
#ifndef BG_LPOOL_H
#define BG_LPOOL_H

#include <stddef.h>

#define BG_LPOOL_MAX 512
#define BG_LPOOL_STEP 16
#define BG_LPOOL_CLASSES (BG_LPOOL_MAX / BG_LPOOL_STEP)

typedef struct bg_lpool {
  void *free[BG_LPOOL_CLASSES]; /* class c holds blocks of (c + 1) * 16 bytes */
  char *bump, *end;             /* the newest chunk's part not carved yet */
  void *chunks;                 /* linked through each chunk's first word */
  size_t next_chunk;            /* the next chunk's size: 4 KiB doubling to 64 KiB */
  size_t held;                  /* bytes in chunks */
} bg_lpool;

#if defined(__SANITIZE_ADDRESS__)
#define BG_LPOOL_MALLOC_ONLY 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BG_LPOOL_MALLOC_ONLY 1
#endif
#endif

/* Everything but a free or an allocation served from its class's free list. */
void *bg__lpool_slow(bg_lpool *p, void *ptr, size_t osize, size_t nsize);

/* lua_Alloc's contract: nsize 0 frees ptr (osize bytes) and returns NULL; otherwise returns a
 * block of nsize bytes holding the first min(osize, nsize) bytes of ptr (ptr NULL: a new
 * block), or NULL with ptr untouched. A zeroed bg_lpool is an empty pool. The two common
 * cases are inline: a Lua state calls this for every object it makes and frees. */
static inline void *bg_lpool_alloc(bg_lpool *p, void *ptr, size_t osize, size_t nsize) {
#ifndef BG_LPOOL_MALLOC_ONLY
  if (nsize == 0) {
    if (ptr != NULL && osize <= BG_LPOOL_MAX) {
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

/* Gives back every chunk; the blocks handed out are gone. The pool is empty again. */
void bg_lpool_destroy(bg_lpool *p);

/* Bytes the pool's chunks take (blocks larger than BG_LPOOL_MAX are not counted). */
size_t bg_lpool_held(const bg_lpool *p);

#endif
