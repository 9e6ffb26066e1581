/* log: logfmt quoting, JSON escaping, levels. */
#include "base/bg.h"
#include "base/log.h"
#include "test_support.h"

static char last[1024];

static void sink(void *ud, const char *line, size_t len) {
  (void)ud;
  snprintf(last, sizeof last, "%.*s", (int)len, line);
}

static void test_logfmt(void) {
  last[0] = 0;
  ASSERT_EQ_INT(bg_log_set_format("logfmt"), 0);
  bg_log(BG_LOG_INFO, "plugin loaded", "plugin", "http", "file", "/a b/c.lua", "empty", "", NULL);
  const char *body = strstr(last, " level=");
  ASSERT(body != NULL);
  ASSERT(strncmp(last, "time=", 5) == 0);
  ASSERT_EQ_STR(body,
                " level=info msg=\"plugin loaded\" plugin=http file=\"/a b/c.lua\" empty=\"\"\n");
  bg_log(BG_LOG_WARN, "x", "q", "say \"hi\"\n", NULL);
  ASSERT_EQ_STR(strstr(last, " level="), " level=warn msg=x q=\"say \\\"hi\\\"\\n\"\n");
}

static void test_json(void) {
  ASSERT_EQ_INT(bg_log_set_format("json"), 0);
  bg_log(BG_LOG_ERROR, "bad \"thing\"", "k", "v\t1", NULL);
  const char *body = strstr(last, "\"level\"");
  ASSERT(last[0] == '{');
  ASSERT_EQ_STR(body, "\"level\":\"error\",\"msg\":\"bad \\\"thing\\\"\",\"k\":\"v\\t1\"}\n");
  ASSERT_EQ_INT(bg_log_set_format("xml"), BG_EINVAL);
  bg_log_set_format("logfmt");
}

static void test_levels(void) {
  ASSERT_EQ_INT(bg_log_set_level("warn"), 0);
  last[0] = 0;
  bg_log(BG_LOG_INFO, "hidden", NULL);
  ASSERT_EQ_STR(last, "");
  bg_log(BG_LOG_ERROR, "shown", NULL);
  ASSERT(strstr(last, "msg=shown") != NULL);
  ASSERT_EQ_INT(bg_log_set_level("loud"), BG_EINVAL);
  ASSERT_EQ_INT(bg_log_level_parse("WARNING"), BG_LOG_WARN);
  bg_log_set_level("info");
}

int main(void) {
  bg_log_set_sink(sink, NULL);
  RUN(test_logfmt);
  RUN(test_json);
  RUN(test_levels);
  return 0;
}
