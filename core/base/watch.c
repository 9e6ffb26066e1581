#include "base/watch.h"

#include <stdlib.h>
#include <string.h>

#include "base/bg.h"

#define WATCH_MAX_PENDING 256

struct bg_watch {
  uv_fs_event_t ev;
  uv_timer_t timer;
  unsigned debounce_ms;
  bg_watch_cb cb;
  void *ud;
  char *pending[WATCH_MAX_PENDING];
  size_t npending;
  int overflow; /* more names than we keep: report "" meaning "rescan everything" */
  int closing;
  int open_handles;
};

static void flush(bg_watch *w) {
  const char *names[WATCH_MAX_PENDING + 1];
  size_t n = 0;
  for (size_t i = 0; i < w->npending; i++)
    names[n++] = w->pending[i];
  if (w->overflow) names[n++] = "";
  if (n > 0 && !w->closing) w->cb(w->ud, names, n);
  for (size_t i = 0; i < w->npending; i++)
    free(w->pending[i]);
  w->npending = 0;
  w->overflow = 0;
}

static void timer_cb(uv_timer_t *t) {
  flush(t->data);
}

static void event_cb(uv_fs_event_t *h, const char *filename, int events, int status) {
  (void)events;
  bg_watch *w = h->data;
  if (w->closing) return;
  if (status < 0 || filename == NULL) {
    w->overflow = 1;
  } else {
    int seen = 0;
    for (size_t i = 0; i < w->npending && !seen; i++)
      seen = strcmp(w->pending[i], filename) == 0;
    if (!seen) {
      char *copy = w->npending < WATCH_MAX_PENDING ? strdup(filename) : NULL;
      if (copy != NULL)
        w->pending[w->npending++] = copy;
      else
        w->overflow = 1;
    }
  }
  uv_timer_start(&w->timer, timer_cb, w->debounce_ms, 0);
}

int bg_watch_start(uv_loop_t *loop, const char *dir, unsigned debounce_ms, bg_watch_cb cb, void *ud,
                   bg_watch **out) {
  bg_watch *w = calloc(1, sizeof *w);
  if (w == NULL) return BG_ENOMEM;
  w->cb = cb;
  w->ud = ud;
  w->debounce_ms = debounce_ms;
  uv_fs_event_init(loop, &w->ev);
  uv_timer_init(loop, &w->timer);
  w->ev.data = w->timer.data = w;
  w->open_handles = 2;
  int rc = uv_fs_event_start(&w->ev, event_cb, dir, 0);
  if (rc != 0) {
    bg_watch_stop(w);
    return rc;
  }
  *out = w;
  return 0;
}

static void close_cb(uv_handle_t *h) {
  bg_watch *w = h->data;
  if (--w->open_handles == 0) {
    for (size_t i = 0; i < w->npending; i++)
      free(w->pending[i]);
    free(w);
  }
}

void bg_watch_stop(bg_watch *w) {
  if (w == NULL || w->closing) return;
  w->closing = 1;
  uv_close((uv_handle_t *)&w->ev, close_cb);
  uv_close((uv_handle_t *)&w->timer, close_cb);
}
