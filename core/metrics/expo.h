/* expo: renders a registry for the outside world: Prometheus text 0.0.4, OpenMetrics 1.0 text
 * and JSON, picks one from an Accept header, and gzips a body. Pure functions over
 * bg_registry_walk: they allocate only in the caller's bg_buf (or, for the *_string FFI
 * variants, a string the caller frees with bg_expo_free). Loop thread only. */
#ifndef BG_EXPO_H
#define BG_EXPO_H

#include "base/bg.h"
#include "metrics/metrics.h"

enum { BG_EXPO_PROMETHEUS = 0, BG_EXPO_OPENMETRICS = 1, BG_EXPO_JSON = 2 };

#define BG_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define BG_OPENMETRICS_CONTENT_TYPE "application/openmetrics-text; version=1.0.0; charset=utf-8"
#define BG_JSON_CONTENT_TYPE "application/json"

/* Appends the Prometheus text exposition (0.0.4) of every series to out.
 * Returns 0 or BG_ENOMEM. Output passes `promtool check metrics`. */
int bg_expo_prometheus(bg_registry *r, bg_buf *out);

/* Appends OpenMetrics 1.0 text: families named without _total, counters as x_total plus
 * x_created, histograms with _bucket/_count/_sum/_created, # UNIT for names ending in a base
 * unit (_seconds, _bytes, ...), and the closing "# EOF". Returns 0 or BG_ENOMEM. */
int bg_expo_openmetrics(bg_registry *r, bg_buf *out);

/* The hook where windowed statistics (1/5/15-minute, from history) join the JSON: called
 * once per series, after its standard fields and before the closing brace; it appends
 * `,"key":value` pairs to out (or nothing). Returns 0 or BG_ENOMEM. */
typedef int (*bg_expo_json_extra)(void *ud, const bg_family_view *f, const bg_series_view *s,
                                  bg_buf *out);

/* Appends {"metrics":[{"name","type","help","series":[...]}]}: a counter's or gauge's series
 * is {"labels":{...},"value":v}, a histogram's {"labels","count","sum","min","max","mean",
 * "p50","p90","p95","p99","buckets":[[le,cumulative count],...,["+Inf",count]]}, with current
 * values (p* from the sketch, 1% relative error). Non-finite numbers are null. extra may be
 * NULL. Names are exposition base names (a counter's without _total). Returns 0 or
 * BG_ENOMEM. */
int bg_expo_json(bg_registry *r, bg_buf *out, bg_expo_json_extra extra, void *ud);

/* Any of the three by BG_EXPO_* (JSON without the hook). BG_EINVAL for an unknown format. */
int bg_expo_render(bg_registry *r, int format, bg_buf *out);

/* The Content-Type for a BG_EXPO_* format (the 0.0.4 one for an unknown value). Static. */
BG_EXPORT const char *bg_expo_content_type(int format);

/* Which format an Accept header asks for: the supported media range with the highest q
 * (the first on a tie); application/openmetrics-text -> OPENMETRICS, application/json ->
 * JSON; text/plain, a wildcard, nothing usable or NULL -> PROMETHEUS. */
BG_EXPORT int bg_expo_negotiate(const char *accept_header);

/* 1 when an Accept-Encoding header accepts gzip (gzip, x-gzip or *, with q > 0), else 0. */
BG_EXPORT int bg_expo_accepts_gzip(const char *accept_encoding);

/* Appends the gzip (RFC 1952) compression of in[0..n) to out; level 1-9, or 0 or less for
 * zlib's default (6). Returns 0, BG_ENOMEM, or BG_EIO if zlib fails. */
int bg_gzip(const void *in, size_t n, int level, bg_buf *out);

/* FFI variants: r NULL means the default registry. Each returns a string the caller frees
 * with bg_expo_free, its length in *len (may be NULL), or NULL when out of memory (or, for
 * render, an unknown format). */
BG_EXPORT char *bg_expo_prometheus_string(bg_registry *r, size_t *len);
BG_EXPORT char *bg_expo_render_string(bg_registry *r, int format, size_t *len);
BG_EXPORT char *bg_gzip_string(const char *in, size_t n, int level, size_t *len);
BG_EXPORT void bg_expo_free(void *p);

#endif
