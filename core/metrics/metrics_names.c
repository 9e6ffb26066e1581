/* metrics_names: what a metric name, its labels and its buckets may be, and how a name maps
 * to its exposition name (Prometheus rules; '.' and '-' become '_'): the checks the registry
 * runs before it looks a series up, whose messages say what to change. Also a label value's
 * text: cut to the length limit on a UTF-8 boundary, escaped for the text formats. */
#include "metrics/metrics_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void bg__metrics_seterr(char *err, size_t errlen, const char *fmt, ...) {
  if (err == NULL || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

static int is_alpha(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static int is_digit(int c) {
  return c >= '0' && c <= '9';
}

/* Prints c for an error message: itself when printable, else as \xNN. */
static const char *show_char(char buf[8], unsigned char c) {
  if (c >= 0x20 && c < 0x7f)
    snprintf(buf, 8, "'%c'", c);
  else
    snprintf(buf, 8, "\\x%02x", c);
  return buf;
}

/* Maps name to the family base name (for a counter, without "_total"). */
int bg__metric_map_base(const char *name, int type, char *out, size_t outlen, char *err,
                        size_t errlen) {
  char cb[8];
  if (name == NULL || name[0] == '\0') {
    bg__metrics_seterr(err, errlen, "metric name is empty");
    return BG_EINVAL;
  }
  if (!is_alpha(name[0]) && name[0] != '_' && name[0] != ':') {
    bg__metrics_seterr(err, errlen, "metric name \"%.64s\" must start with a letter or underscore",
                       name);
    return BG_EINVAL;
  }
  size_t n = 0;
  for (const char *p = name; *p; p++, n++) {
    char c = *p;
    if (c == '.' || c == '-')
      c = '_';
    else if (!is_alpha(c) && !is_digit(c) && c != '_' && c != ':') {
      bg__metrics_seterr(
          err, errlen,
          "metric name \"%.64s\" has invalid character %s (use letters, digits, '_', '.', "
          "'-' or ':')",
          name, show_char(cb, (unsigned char)c));
      return BG_EINVAL;
    }
    if (n >= MAX_NAME || n + 1 >= outlen) {
      bg__metrics_seterr(err, errlen, "metric name \"%.64s...\" is too long (max %d characters)",
                         name, MAX_NAME);
      return BG_EINVAL;
    }
    out[n] = c;
  }
  out[n] = '\0';
  if (type == BG_COUNTER && n >= 6 && strcmp(out + n - 6, "_total") == 0) {
    if (n == 6) {
      bg__metrics_seterr(err, errlen, "metric name \"%s\" is empty without its _total suffix",
                         name);
      return BG_EINVAL;
    }
    out[n - 6] = '\0';
  }
  return 0;
}

int bg_metric_name_map(const char *name, int type, char *out, size_t outlen, char *err,
                       size_t errlen) {
  if (type < BG_COUNTER || type > BG_HISTOGRAM) {
    bg__metrics_seterr(err, errlen, "unknown metric type %d", type);
    return BG_EINVAL;
  }
  if (out == NULL || outlen == 0) {
    bg__metrics_seterr(err, errlen, "no room for the mapped name");
    return BG_EINVAL;
  }
  char base[MAX_NAME + 1];
  int rc = bg__metric_map_base(name, type, base, sizeof base, err, errlen);
  if (rc != 0) return rc;
  size_t n = strlen(base);
  const char *suffix = type == BG_COUNTER ? "_total" : "";
  if (n + strlen(suffix) + 1 > outlen) {
    bg__metrics_seterr(err, errlen, "metric name \"%.64s\" does not fit in %zu bytes", name,
                       outlen);
    return BG_EINVAL;
  }
  memcpy(out, base, n);
  strcpy(out + n, suffix);
  return 0;
}

static int check_label_name(const char *metric, const char *k, int type, char *err, size_t errlen) {
  char cb[8];
  if (k == NULL || k[0] == '\0') {
    bg__metrics_seterr(err, errlen, "metric \"%.64s\": label name is empty", metric);
    return BG_EINVAL;
  }
  if (!is_alpha(k[0]) && k[0] != '_') {
    bg__metrics_seterr(err, errlen,
                       "metric \"%.64s\": label name \"%.64s\" must start with a letter or "
                       "underscore",
                       metric, k);
    return BG_EINVAL;
  }
  for (const char *p = k; *p; p++) {
    if (!is_alpha(*p) && !is_digit(*p) && *p != '_') {
      bg__metrics_seterr(
          err, errlen,
          "metric \"%.64s\": label name \"%.64s\" has invalid character %s (use letters, "
          "digits or '_')",
          metric, k, show_char(cb, (unsigned char)*p));
      return BG_EINVAL;
    }
  }
  if (k[0] == '_' && k[1] == '_') {
    bg__metrics_seterr(err, errlen,
                       "metric \"%.64s\": label name \"%.64s\" is reserved (starts with \"__\")",
                       metric, k);
    return BG_EINVAL;
  }
  if (strlen(k) > MAX_NAME) {
    bg__metrics_seterr(err, errlen, "metric \"%.64s\": label name \"%.64s...\" is too long", metric,
                       k);
    return BG_EINVAL;
  }
  /* "le" holds a histogram's bucket bound; promtool flags it on other types too. */
  if (strcmp(k, "le") == 0) {
    bg__metrics_seterr(err, errlen,
                       "metric \"%.64s\": label name \"le\" is reserved for histogram buckets",
                       metric);
    return BG_EINVAL;
  }
  (void)type;
  return 0;
}

/* Validates the labels and fills order[] with pair indices sorted by key. */
int bg__metric_check_labels(const char *metric, int type, const char *const *kv, int nlabels,
                            int *order, char *err, size_t errlen) {
  if (nlabels < 0 || nlabels > BG_METRICS_MAX_LABELS) {
    bg__metrics_seterr(err, errlen, "metric \"%.64s\": %d labels (at most %d)", metric, nlabels,
                       BG_METRICS_MAX_LABELS);
    return BG_EINVAL;
  }
  if (nlabels > 0 && kv == NULL) {
    bg__metrics_seterr(err, errlen, "metric \"%.64s\": labels missing", metric);
    return BG_EINVAL;
  }
  for (int i = 0; i < nlabels; i++) {
    const char *k = kv[2 * i], *v = kv[2 * i + 1];
    int rc = check_label_name(metric, k, type, err, errlen);
    if (rc != 0) return rc;
    if (v == NULL) {
      bg__metrics_seterr(err, errlen, "metric \"%.64s\": label \"%s\" has no value", metric, k);
      return BG_EINVAL;
    }
    if (!bg_utf8_valid(v)) {
      bg__metrics_seterr(err, errlen, "metric \"%.64s\": label \"%s\" value is not valid UTF-8",
                         metric, k);
      return BG_EINVAL;
    }
    /* Insertion sort: at most 16 labels. */
    int j = i;
    while (j > 0 && strcmp(kv[2 * order[j - 1]], k) > 0) {
      order[j] = order[j - 1];
      j--;
    }
    order[j] = i;
  }
  for (int i = 1; i < nlabels; i++) {
    if (strcmp(kv[2 * order[i - 1]], kv[2 * order[i]]) == 0) {
      bg__metrics_seterr(err, errlen, "metric \"%.64s\": duplicate label name \"%s\"", metric,
                         kv[2 * order[i]]);
      return BG_EINVAL;
    }
  }
  return 0;
}

/* Validates custom buckets; *nb drops a trailing +Inf, which is implied. */
int bg__metric_check_buckets(const char *metric, const double *b, int *nb, char *err,
                             size_t errlen) {
  int n = *nb;
  if (n > 0 && isinf(b[n - 1]) && b[n - 1] > 0) n--;
  if (n > BG_METRICS_MAX_BUCKETS) {
    bg__metrics_seterr(err, errlen, "metric \"%.64s\": %d buckets (at most %d)", metric, n,
                       BG_METRICS_MAX_BUCKETS);
    return BG_EINVAL;
  }
  for (int i = 0; i < n; i++) {
    if (!isfinite(b[i])) {
      bg__metrics_seterr(err, errlen, "metric \"%.64s\": bucket %d is not a finite number", metric,
                         i + 1);
      return BG_EINVAL;
    }
    if (i > 0 && !(b[i] > b[i - 1])) {
      bg__metrics_seterr(err, errlen,
                         "metric \"%.64s\": buckets must be in increasing order (%g after %g)",
                         metric, b[i], b[i - 1]);
      return BG_EINVAL;
    }
  }
  *nb = n;
  return 0;
}

/* Length of v cut to at most max bytes without splitting a UTF-8 sequence. */
size_t bg__metric_utf8_cut(const char *v, size_t max) {
  size_t n = max;
  while (n > 0 && ((unsigned char)v[n] & 0xc0) == 0x80)
    n--;
  return n;
}

#define SPECIALS "\\\n\"" /* what a label value escapes: backslash, newline, quote */

/* Bytes of v with the specials escaped. */
size_t bg__metric_escaped_len(const char *v) {
  size_t n = 0;
  for (;;) {
    size_t k = strcspn(v, SPECIALS);
    n += k;
    if (v[k] == '\0') return n;
    n += 2;
    v += k + 1;
  }
}

char *bg__metric_escape(char *p, const char *v) {
  for (;;) {
    size_t k = strcspn(v, SPECIALS);
    memcpy(p, v, k);
    p += k;
    if (v[k] == '\0') return p;
    *p++ = '\\';
    *p++ = v[k] == '\n' ? 'n' : v[k];
    v += k + 1;
  }
}
