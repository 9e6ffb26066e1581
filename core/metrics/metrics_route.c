/* metrics_route.c: GET /metrics in C (see metrics_route.h). Before this, the scrape went C ->
 * Lua -> C: the renderer's buffer, a malloc'ed copy for the FFI, a Lua string, the host's
 * response buffer and the connection's output buffer held the body in turn. Now the renderer
 * appends to the output buffer itself; with gzip, it renders into a kept buffer and zlib writes
 * into the output buffer. */
#include "metrics/metrics_route.h"

#include "metrics/expo.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GZIP_MIN 1024 /* compressing a smaller body costs more than it saves */

static const char vary[] = "Vary: Accept, Accept-Encoding\r\n";
static const char gzip_vary[] = "Content-Encoding: gzip\r\nVary: Accept, Accept-Encoding\r\n";
static const char oom[] = "{\"error\":\"out of memory\",\"status\":500}";

struct bg_metrics_route {
  bg_registry *reg;
  bg_window *win;
  bg_metrics_route_hook hook;
  void *hook_ud;
  size_t last;  /* the last body's length, before gzip */
  bg_buf plain; /* the body to gzip; kept, like the server's spare output buffer */
};

int bg_metrics_route_new(bg_registry *r, bg_window *w, bg_metrics_route **out) {
  bg_metrics_route *m = calloc(1, sizeof *m);
  if (m == NULL) return BG_ENOMEM;
  m->reg = r;
  m->win = w;
  *out = m;
  return 0;
}

void bg_metrics_route_free(bg_metrics_route *m) {
  if (m == NULL) return;
  bg_buf_free(&m->plain);
  free(m);
}

void bg_metrics_route_set_hook(bg_metrics_route *m, bg_metrics_route_hook hook, void *ud) {
  m->hook = hook;
  m->hook_ud = ud;
}

int bg_metrics_route_attach(bg_metrics_route *m, bg_http_server *srv, const char *path) {
  return bg_http_set_render(srv, path, bg_metrics_route_render, m);
}

/* The value of the last header called name (lower case), or NULL: the Lua router kept the
 * last of repeated headers, and so does this. */
static const char *header(const bg_http_request *req, const char *name) {
  size_t n = strlen(name);
  const char *v = NULL;
  for (size_t i = 0; i < req->nheaders; i++)
    if (req->headers[i].name_len == n && strncasecmp(req->headers[i].name, name, n) == 0)
      v = req->headers[i].value;
  return v;
}

/* Appends the body in format to out. Returns 0 or BG_ENOMEM. */
static int render(bg_metrics_route *m, int format, bg_buf *out) {
  /* room for the last body and some growth: no realloc chain while it renders */
  if (bg_buf_reserve(out, m->last + m->last / 16) != 0) return BG_ENOMEM;
  size_t at = out->len;
  int rc = format != BG_EXPO_JSON ? bg_expo_render(m->reg, format, out)
           : m->win               ? bg_window_render_json(m->win, m->reg, bg_wall_time(), out)
                                  : bg_expo_json(m->reg, out, NULL, NULL);
  if (rc == 0) m->last = out->len - at;
  return rc;
}

int bg_metrics_route_render(void *ud, const bg_http_request *req, bg_http_response *res,
                            bg_buf *out) {
  bg_metrics_route *m = ud;
  if (m->hook) m->hook(m->hook_ud);
  int format = bg_expo_negotiate(header(req, "accept"));
  int gzip = bg_expo_accepts_gzip(header(req, "accept-encoding"));
  size_t at = out->len;
  /* to be gzipped, the body is rendered into m->plain and compressed into out */
  bg_buf *dst = gzip ? &m->plain : out;
  bg_buf_reset(&m->plain);
  int rc = render(m, format, dst);
  if (rc == 0 && gzip && m->plain.len <= GZIP_MIN) {
    rc = bg_buf_append(out, m->plain.data, m->plain.len);
    gzip = 0;
  } else if (rc == 0 && gzip && bg_gzip(m->plain.data, m->plain.len, 1, out) != 0) {
    out->len = at; /* when zlib fails the plain body goes out, as it did in Lua */
    rc = bg_buf_append(out, m->plain.data, m->plain.len);
    gzip = 0;
  }
  if (rc != 0) {
    out->len = at;
    res->status = 500;
    res->content_type = "application/json";
    res->body = oom;
    res->body_len = sizeof oom - 1;
    return 0;
  }
  res->status = 200;
  res->content_type = bg_expo_content_type(format);
  res->headers = gzip ? gzip_vary : vary;
  return 0;
}
