/* metrics: the series registry. Owns metric families (name, type, help, buckets) and their
 * labelled series: counters, gauges and histograms. A series pointer is a stable handle for
 * the registry's lifetime; adding to it is one call, reached from Lua through the LuaJIT FFI
 * (lua/beagle/metrics.lua owns the cdef). Names are validated and mapped from the guide's
 * dotted form ("api.response_time") to the Prometheus form ("api_response_time"; counters
 * exposed with "_total"). Single-threaded: the loop thread owns every registry. */
#ifndef BG_METRICS_H
#define BG_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "bg.h"

typedef struct bg_registry bg_registry;
typedef struct bg_series bg_series;

enum { BG_COUNTER = 0, BG_GAUGE = 1, BG_HISTOGRAM = 2 };

#define BG_METRICS_MAX_LABELS 16
#define BG_METRICS_MAX_BUCKETS 64

/* The process-wide registry every Lua state and the agent share, created on first use.
 * Never NULL unless out of memory. */
BG_EXPORT bg_registry *bg_registry_default(void);

bg_registry *bg_registry_new(void);
void bg_registry_free(bg_registry *r); /* NULL is a no-op; every series handle dies with it */

/* Finds or creates the series of metric `name` with these labels (nlabels key/value
 * pairs in kv[0..2*nlabels)). `type` must match the family's type when it exists. help may
 * be NULL. buckets (ascending upper bounds, +Inf implied) apply to a new histogram family;
 * NULL/0 means the default latency buckets. On error returns NULL and writes a message
 * saying what was wrong into err (errlen bytes, may be 0). Strings are copied. */
BG_EXPORT bg_series *bg_series_get(bg_registry *r, int type, const char *name, const char *help,
                                   const char *const *kv, int nlabels, const double *buckets,
                                   int nbuckets, char *err, size_t errlen);

/* Hot paths. s must be a live handle of the matching type; they can't fail.
 * A counter ignores negative increments (and counts them as a misuse). */
BG_EXPORT void bg_counter_add(bg_series *s, double v);
BG_EXPORT void bg_gauge_set(bg_series *s, double v);
BG_EXPORT void bg_gauge_add(bg_series *s, double v);
BG_EXPORT void bg_histogram_observe(bg_series *s, double v);
BG_EXPORT double bg_series_value(const bg_series *s); /* counter/gauge value; histogram sum */
BG_EXPORT uint64_t bg_series_count(const bg_series *s); /* histogram count; 0 otherwise */

/* Removes one series (e.g. a plugin that was unloaded). The handle dies. */
void bg_series_remove(bg_registry *r, bg_series *s);

/* Maps a guide-style name to the exposition name for type into out (NUL-terminated).
 * Returns 0, or BG_EINVAL with a reason in err when it cannot be mapped. */
int bg_metric_name_map(const char *name, int type, char *out, size_t outlen, char *err,
                       size_t errlen);

size_t bg_registry_series_count(const bg_registry *r);
/* How many hot-path calls were ignored as misuse (negative or NaN counter adds, NaN
 * observations) since the registry was created. */
uint64_t bg_registry_misuse_count(const bg_registry *r);

/* Walks every family and series, in a stable order (families sorted by exposition name),
 * for the renderers in expo. See expo.h. */
typedef struct bg_family_view {
  const char *name; /* exposition base name, e.g. "api_requests" (no _total) */
  const char *help;
  int type;
  const double *buckets;
  int nbuckets;
} bg_family_view;

typedef struct bg_series_view {
  const char *const *kv; /* label pairs, sorted by key */
  int nlabels;
  double value;          /* counter/gauge; histogram sum */
  uint64_t count;        /* histogram */
  const uint64_t *bucket_counts; /* histogram, non-cumulative, nbuckets + 1 (last is +Inf) */
  double created;        /* wall time the series was created */
} bg_series_view;

typedef void (*bg_family_cb)(void *ud, const bg_family_view *f);
typedef void (*bg_series_cb)(void *ud, const bg_family_view *f, const bg_series_view *s);
void bg_registry_walk(bg_registry *r, bg_family_cb fam, bg_series_cb ser, void *ud);

#endif
