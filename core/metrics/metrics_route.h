/* metrics_route: GET /metrics answered in C from the registry. Owns the route's state (the
 * registry and window store it reads, the pre-render hook, a kept buffer for bodies to gzip)
 * and its bg_http_render_cb: Accept picks Prometheus 0.0.4, OpenMetrics 1.0 or JSON (with the
 * 1/5/15-minute windows, as GET /metrics/performance); the body is rendered straight into the
 * connection's output buffer, or, when Accept-Encoding allows gzip and the body is over 1 KiB,
 * compressed into it (level 1). Every answer carries "Vary: Accept, Accept-Encoding". Loop
 * thread only. */
#ifndef BG_METRICS_ROUTE_H
#define BG_METRICS_ROUTE_H

#include "metrics/metrics.h"
#include "metrics/window.h"
#include "net/http_server.h"

typedef struct bg_metrics_route bg_metrics_route;

/* Runs before each render, to refresh gauges that are read on demand. */
typedef void (*bg_metrics_route_hook)(void *ud);

/* Creates the route state over r and w (borrowed; w NULL: JSON without windows). Returns 0
 * and *out, or BG_ENOMEM. */
int bg_metrics_route_new(bg_registry *r, bg_window *w, bg_metrics_route **out);

/* Frees m (NULL is a no-op). Remove its routes first: the server must not call it again. */
void bg_metrics_route_free(bg_metrics_route *m);

/* Sets (or, with hook NULL, clears) the pre-render hook. ud is borrowed. Can't fail. */
void bg_metrics_route_set_hook(bg_metrics_route *m, bg_metrics_route_hook hook, void *ud);

/* Serves GET and HEAD on path of srv from m (bg_http_set_render). Returns 0 or BG_ENOMEM. */
int bg_metrics_route_attach(bg_metrics_route *m, bg_http_server *srv, const char *path);

/* The bg_http_render_cb itself (ud is the bg_metrics_route), for tests without a socket. */
int bg_metrics_route_render(void *ud, const bg_http_request *req, bg_http_response *res,
                            bg_buf *out);

#endif
