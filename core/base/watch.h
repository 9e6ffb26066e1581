/* watch: directory watching with debounce. One bg_watch follows one directory (not
 * recursive) with uv_fs_event and reports the set of file names that changed once no event
 * has arrived for debounce_ms, so an editor's write-rename-chmod burst is one reload.
 * Single-threaded. */
#ifndef BG_WATCH_H
#define BG_WATCH_H

#include <stddef.h>
#include <uv.h>

typedef struct bg_watch bg_watch;

/* names: the distinct file names (no directory) that changed, n of them; borrowed for the
 * call. */
typedef void (*bg_watch_cb)(void *ud, const char *const *names, size_t n);

/* Starts watching dir. Returns 0 and *out, or a negative libuv error (UV_ENOENT ...). */
int bg_watch_start(uv_loop_t *loop, const char *dir, unsigned debounce_ms, bg_watch_cb cb, void *ud,
                   bg_watch **out);

/* Stops and frees (after its handles close); cb is not called again. NULL is a no-op. */
void bg_watch_stop(bg_watch *w);

#endif
