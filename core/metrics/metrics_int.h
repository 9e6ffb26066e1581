/* metrics_int: what metrics.c (the registry) and metrics_names.c (the checks on names, labels
 * and buckets; label values cut and escaped) share. Not for other modules. */
#ifndef BG_METRICS_INT_H
#define BG_METRICS_INT_H

#include "metrics/metrics.h"

#include <stddef.h>

#define MAX_NAME 200 /* mapped name, without the "_total" a counter gets on the wire */

/* Formats into err (when err is not NULL and errlen > 0). */
__attribute__((format(printf, 3, 4))) void bg__metrics_seterr(char *err, size_t errlen,
                                                              const char *fmt, ...);

/* 1 when s is valid UTF-8 (no overlongs, no surrogates), else 0. */
int bg__metric_valid_utf8(const char *s);
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
