#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static int g_json = 0;
static int g_level = BG_LOG_INFO;
static void (*g_sink)(void *ud, const char *line, size_t len) = NULL;
static void *g_sink_ud = NULL;
static bg_log_hook g_hook = NULL;
static int g_in_hook = 0;

static const char *level_names[] = {"debug", "info", "warn", "error"};

int bg_log_set_format(const char *format) {
  if (format == NULL) return BG_EINVAL;
  if (strcmp(format, "logfmt") == 0)
    g_json = 0;
  else if (strcmp(format, "json") == 0)
    g_json = 1;
  else
    return BG_EINVAL;
  return 0;
}

int bg_log_level_parse(const char *level) {
  if (level == NULL) return BG_EINVAL;
  if (strcasecmp(level, "debug") == 0) return BG_LOG_DEBUG;
  if (strcasecmp(level, "info") == 0) return BG_LOG_INFO;
  if (strcasecmp(level, "warn") == 0 || strcasecmp(level, "warning") == 0) return BG_LOG_WARN;
  if (strcasecmp(level, "error") == 0) return BG_LOG_ERROR;
  return BG_EINVAL;
}

int bg_log_set_level(const char *level) {
  int l = bg_log_level_parse(level);
  if (l < 0) return l;
  g_level = l;
  return 0;
}

int bg_log_level(void) {
  return g_level;
}

void bg_log_set_hook(bg_log_hook hook) {
  g_hook = hook;
}

void bg_log_set_sink(void (*sink)(void *ud, const char *line, size_t len), void *ud) {
  g_sink = sink;
  g_sink_ud = ud;
}

/* logfmt quotes a value that is empty or holds a space, '=', '"' or a control byte. */
static int logfmt_value(bg_buf *b, const char *v) {
  size_t n = strlen(v);
  int quote = n == 0;
  for (size_t i = 0; i < n && !quote; i++) {
    unsigned char c = (unsigned char)v[i];
    if (c <= ' ' || c == '=' || c == '"' || c == '\\') quote = 1;
  }
  if (!quote) return bg_buf_append(b, v, n);
  int rc = bg_buf_puts(b, "\"");
  if (rc == 0) rc = bg_buf_json_str(b, v, n);
  if (rc == 0) rc = bg_buf_puts(b, "\"");
  return rc;
}

static int json_field(bg_buf *b, const char *k, const char *v) {
  int rc = bg_buf_puts(b, ",\"");
  if (rc == 0) rc = bg_buf_json_str(b, k, strlen(k));
  if (rc == 0) rc = bg_buf_puts(b, "\":\"");
  if (rc == 0) rc = bg_buf_json_str(b, v, strlen(v));
  if (rc == 0) rc = bg_buf_puts(b, "\"");
  return rc;
}

void bg_log_kv(int level, const char *msg, const char *const *kv, size_t nkv) {
  bg_log_kv_scope(level, msg, kv, nkv, NULL);
}

void bg_log_kv_scope(int level, const char *msg, const char *const *kv, size_t nkv,
                     const char *scope) {
  if (level < g_level || level < 0 || level > BG_LOG_ERROR) return;
  char tid[33], sid[17];
  int ids = 0;
  if (g_hook != NULL && !g_in_hook) {
    g_in_hook = 1;
    ids = g_hook(level, msg, kv, nkv, scope, tid, sid);
    g_in_hook = 0;
  }
  tid[32] = sid[16] = '\0';
  char ts[40];
  double now = bg_wall_time();
  time_t secs = (time_t)now;
  struct tm tm;
  gmtime_r(&secs, &tm);
  size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + tl, sizeof ts - tl, ".%03dZ", (int)((now - (double)secs) * 1000));

  bg_buf b = {0};
  int rc;
  if (g_json) {
    rc = bg_buf_printf(&b, "{\"time\":\"%s\",\"level\":\"%s\",\"msg\":\"", ts, level_names[level]);
    if (rc == 0) rc = bg_buf_json_str(&b, msg, strlen(msg));
    if (rc == 0) rc = bg_buf_puts(&b, "\"");
    for (size_t i = 0; rc == 0 && i < nkv; i++)
      rc = json_field(&b, kv[2 * i], kv[2 * i + 1] ? kv[2 * i + 1] : "");
    if (rc == 0 && ids) rc = json_field(&b, "trace_id", tid);
    if (rc == 0 && ids) rc = json_field(&b, "span_id", sid);
    if (rc == 0) rc = bg_buf_puts(&b, "}\n");
  } else {
    rc = bg_buf_printf(&b, "time=%s level=%s msg=", ts, level_names[level]);
    if (rc == 0) rc = logfmt_value(&b, msg);
    for (size_t i = 0; rc == 0 && i < nkv; i++) {
      rc = bg_buf_printf(&b, " %s=", kv[2 * i]);
      if (rc == 0) rc = logfmt_value(&b, kv[2 * i + 1] ? kv[2 * i + 1] : "");
    }
    if (rc == 0 && ids) rc = bg_buf_printf(&b, " trace_id=%s span_id=%s", tid, sid);
    if (rc == 0) rc = bg_buf_puts(&b, "\n");
  }
  if (rc == 0) {
    if (g_sink)
      g_sink(g_sink_ud, b.data, b.len);
    else {
      ssize_t w = write(STDERR_FILENO, b.data, b.len);
      (void)w;
    }
  }
  bg_buf_free(&b);
}

void bg_log(int level, const char *msg, ...) {
  const char *kv[32];
  size_t n = 0;
  va_list ap;
  va_start(ap, msg);
  for (;;) {
    const char *k = va_arg(ap, const char *);
    if (k == NULL || n >= 30) break;
    kv[n++] = k;
    kv[n++] = va_arg(ap, const char *);
  }
  va_end(ap);
  bg_log_kv(level, msg, kv, n / 2);
}
