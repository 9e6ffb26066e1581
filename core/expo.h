/* expo: renders a registry for the outside world. Prometheus text format 0.0.4 now;
 * OpenMetrics 1.0 and JSON come with the metrics issue. Pure functions over
 * bg_registry_walk: they allocate only in the caller's bg_buf. */
#ifndef BG_EXPO_H
#define BG_EXPO_H

#include "bg.h"
#include "metrics.h"

#define BG_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Appends the Prometheus text exposition (0.0.4) of every series to out.
 * Returns 0 or BG_ENOMEM. Output passes `promtool check metrics`. */
int bg_expo_prometheus(bg_registry *r, bg_buf *out);

/* The same for Lua (FFI): r NULL means the default registry. Returns a NUL-terminated
 * string the caller frees with bg_expo_free and its length in *len (may be NULL), or NULL
 * when out of memory. */
BG_EXPORT char *bg_expo_prometheus_string(bg_registry *r, size_t *len);
BG_EXPORT void bg_expo_free(void *p);

#endif
