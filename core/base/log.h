/* log: structured logging to stderr, one line per event, logfmt (default) or JSON lines.
 * Every line carries time, level and msg, then key/value fields in the order given; a
 * trace id is added when the caller passes one (tracing arrives later). Single-threaded. */
#ifndef BG_LOG_H
#define BG_LOG_H

#include <stddef.h>

#include "base/bg.h"

enum { BG_LOG_DEBUG = 0, BG_LOG_INFO = 1, BG_LOG_WARN = 2, BG_LOG_ERROR = 3 };

/* "logfmt" or "json". Returns 0 or BG_EINVAL. */
int bg_log_set_format(const char *format);
/* "debug", "info", "warn"/"warning" or "error". Returns 0 or BG_EINVAL. */
int bg_log_set_level(const char *level);
int bg_log_level(void);
/* Parses a level name; returns the level or BG_EINVAL. */
int bg_log_level_parse(const char *level);

/* Writes one event: msg plus nkv key/value pairs (kv[2i] key, kv[2i+1] value, values may
 * be NULL for an empty value). Borrowed strings; can't fail (drops the line on ENOMEM). */
BG_EXPORT void bg_log_kv(int level, const char *msg, const char *const *kv, size_t nkv);

/* Convenience: fields as a NULL-terminated list of key, value strings. */
void bg_log(int level, const char *msg, ...);

/* Where lines go; NULL restores stderr. For tests. */
void bg_log_set_sink(void (*sink)(void *ud, const char *line, size_t len), void *ud);

#endif
