/* log: structured logging to stderr, one line per event, logfmt (default) or JSON lines.
 * Every line carries time, level and msg, then key/value fields in the order given, then
 * trace_id and span_id when a span is current. Base knows nothing of spans: the tracing part
 * installs a hook (bg_log_set_hook) that answers the ids and records the line for export.
 * Single-threaded. */
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

/* bg_log_kv on behalf of scope: the plugin whose line it is (NULL: the agent itself). The
 * scope only reaches the hook (the instrumentation scope of an exported record); a plugin's
 * name is in its fields already. */
BG_EXPORT void bg_log_kv_scope(int level, const char *msg, const char *const *kv, size_t nkv,
                               const char *scope);

/* Called for each line that passes the level, before it is written: returns 1 and fills
 * trace_id (32 hex) and span_id (16 hex) when a span is current, so that the line carries
 * them, else 0; it may record the line elsewhere too (the tracer's log buffer). A line logged
 * from inside the hook is written without calling it again. NULL removes it. */
typedef int (*bg_log_hook)(int level, const char *msg, const char *const *kv, size_t nkv,
                           const char *scope, char trace_id[32], char span_id[16]);
BG_EXPORT void bg_log_set_hook(bg_log_hook hook);

/* Convenience: fields as a NULL-terminated list of key, value strings. */
void bg_log(int level, const char *msg, ...);

/* Where lines go; NULL restores stderr. For tests. */
void bg_log_set_sink(void (*sink)(void *ud, const char *line, size_t len), void *ud);

#endif
