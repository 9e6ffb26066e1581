/* metrics_int: what metrics.c (the registry), metrics_walk.c (walks and the limits report)
 * and metrics_names.c (the checks on names, labels and buckets; label values cut and escaped)
 * share. Not for other modules. */
#ifndef BG_METRICS_INT_H
#define BG_METRICS_INT_H

#include "metrics/metrics.h"

#include <stddef.h>

#define MAX_NAME 200 /* mapped name, without the "_total" a counter gets on the wire */

/* ---- the registry's structures (metrics.c and metrics_walk.c) ---- */

typedef struct family family;

struct bg_series {
  /* First, as Lua's cdef of a counter and a gauge says ({ double v; }): Lua adds and sets
   * it with a field write. Histograms keep their sum in the sketch. */
  double value;
  family *fam;      /* and its registry, for the misuse count */
  bg_series *hnext; /* hash chain */
  double created;
  uint32_t hash;
  uint32_t id;
  uint16_t lablen; /* bytes of the escaped label text */
  uint8_t nlabels;
  uint8_t type;
  uint8_t own; /* made by bg_series_get_own (or the registry): outside the limits */
};

/* A histogram's part, right after its struct. */
typedef struct hist {
  const double *bounds; /* the family's (padded, see bg__histogram_bucket) */
  int nb;
  bg_exemplar *ex;    /* nb + 1, allocated at the first observation made in a sampled trace */
  bg_sketch sk;       /* also the histogram's count, sum, min and max */
  uint64_t buckets[]; /* nb + 1 non-cumulative counts, last is +Inf */
} hist;

struct family {
  char *name; /* exposition base name (no _total) */
  char *help;
  int type;
  int nb;
  double *bounds;
  bg_registry *reg;
  family *hnext;
  uint64_t hash;
  bg_series **tab;
  size_t tabsz; /* power of two */
  size_t nseries;
  /* creation order, for walks: an array, not a list through the series, so a walk over a
   * family scattered across the heap can load the next series while it formats this one */
  bg_series **order;
  size_t ordcap;
  uint64_t dropped; /* series refused by a limit */
  int drop_reason;  /* the last limit it hit */
};

struct bg_registry {
  family **tab;
  size_t tabsz; /* power of two */
  size_t nfam;
  family **sorted; /* for walks; rebuilt when a family is added */
  int sorted_dirty;
  size_t nseries;
  uint64_t misuse;
  size_t max_series, max_per_metric;
  uint64_t dropped[2];  /* by BG_DROP_* reason */
  uint64_t dropped_new; /* of those, for metrics that had no family yet */
  uint64_t truncated;
  bg_series *dropped_s[2], *truncated_s; /* created on first use */
  size_t nown; /* of nseries, how many are own: they don't count against limits */
  uint32_t next_id;
};

static inline hist *hist_of(const bg_series *s) {
  return (hist *)(uintptr_t)(s + 1);
}

static inline size_t hist_size(int nb) {
  return sizeof(hist) + ((size_t)nb + 1) * sizeof(uint64_t);
}

/* The label strings' lengths (2 * nlabels, key then value); the escaped text and the strings
 * follow them. */
static inline const uint16_t *label_lens(const bg_series *s) {
  const char *p = (const char *)(s + 1);
  if (s->type == BG_HISTOGRAM) p += hist_size(hist_of(s)->nb);
  return (const uint16_t *)(const void *)p;
}

static inline const char *label_text(const bg_series *s) {
  return (const char *)(label_lens(s) + 2 * s->nlabels);
}

/* The strings, each NUL-terminated, in pair order. */
static inline const char *label_strings(const bg_series *s) {
  return label_text(s) + s->lablen;
}

/* Rebuilds r->sorted when a family was added (metrics_walk.c); on failure sorted_dirty stays. */
void bg__metrics_sort(bg_registry *r);

/* Formats into err (when err is not NULL and errlen > 0). */
__attribute__((format(printf, 3, 4))) void bg__metrics_seterr(char *err, size_t errlen,
                                                              const char *fmt, ...);

/* Maps name to the family base name (for a counter, without "_total") in out; 0 or BG_EINVAL
 * with the reason in err. */
int bg__metric_map_base(const char *name, int type, char *out, size_t outlen, char *err,
                        size_t errlen);
/* Validates nlabels key/value pairs of metric and fills order[] with the pair indices sorted
 * by key; 0 or BG_EINVAL. */
int bg__metric_check_labels(const char *metric, int type, const char *const *kv, int nlabels,
                            int *order, char *err, size_t errlen);
/* Validates custom buckets; *nb drops a trailing +Inf, which is implied. 0 or BG_EINVAL. */
int bg__metric_check_buckets(const char *metric, const double *b, int *nb, char *err,
                             size_t errlen);
/* Length of v cut to at most max bytes without splitting a UTF-8 sequence. */
size_t bg__metric_utf8_cut(const char *v, size_t max);
/* Bytes of the label value v with backslash, newline and quote escaped for the text formats. */
size_t bg__metric_escaped_len(const char *v);
/* Writes v escaped at p (room for bg__metric_escaped_len(v) bytes); returns the end. */
char *bg__metric_escape(char *p, const char *v);

#endif
