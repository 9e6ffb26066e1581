/* Tests for core/export/encode_statsd: StatsD and DogStatsD lines byte for byte (names and tags
 * made safe, UTF-8 kept, negative gauges, NaN/Inf skipped), datagrams packed under the maximum,
 * differences over two collections, the same id made by another series (a batch kept across a
 * restart), an empty batch, and what it refuses. Resets are test_delta.c's (a registry's
 * counters never go down). */
#include <stdlib.h>

#include "export/encode_statsd.h"
#include "test_encode_fixture.h"

static const char *const GLOBAL[] = {"env", "prod", "host", "global"};

static void test_plain(void) {
  fixture f;
  fx_init(&f);
  bg_delta *d = bg_delta_new(0); /* every series is new: all of it is sent */
  bg_batch *b = fx_batch(f.r, f.made + 10);
  bg_encode_opts o = {.prefix = "bg.", .delta = d};
  char *text = fx_encode(bg_encode_statsd, b, &o);
  CHECK_STR(text, "bg.api_requests:3|c\n"
                  "bg.api_requests:1|c\n"
                  "bg.cpu:67.5|g\n"
                  "bg.latency.count:4|c\n"
                  "bg.latency.sum:2.8125|c\n"
                  "bg.temp:0|g\n"
                  "bg.temp:-3.25|g\n"
                  "\n");
  CHECK_INT(o.skipped, 2); /* inf and nan */
  free(text);

  /* the next collection: differences; a retry of the same batch gives the same text */
  bg_counter_add(f.post, 2.5);
  bg_histogram_observe(f.lat, 0.0625);
  bg_batch *b2 = fx_batch(f.r, f.made + 25);
  for (int retry = 0; retry < 2; retry++) {
    bg_encode_opts o2 = {.flavor = "statsd", .delta = d};
    text = fx_encode(bg_encode_statsd, b2, &o2);
    CHECK_STR(text, "api_requests:2.5|c\n"
                    "api_requests:0|c\n"
                    "cpu:67.5|g\n"
                    "latency.count:1|c\n"
                    "latency.sum:0.0625|c\n"
                    "temp:0|g\n"
                    "temp:-3.25|g\n"
                    "\n");
    free(text);
  }

  /* the same id made by another series (another registry numbers from 1 too, as a new process
   * does after a restart): born since the delta started, so all of it, not 8 - 5.5 */
  bg_registry *r2 = bg_registry_new();
  const char *post[] = {"method", "POST", "path", "/a b|c:d,e#f@g"};
  bg_counter_add(fx_get(r2, BG_COUNTER, "api.requests", NULL, post, 2, NULL, 0), 8);
  bg_batch *b3 = fx_batch(r2, f.made + 40);
  bg_encode_opts o3 = {.delta = d};
  text = fx_encode(bg_encode_statsd, b3, &o3);
  CHECK_STR(text, "api_requests:8|c\n\n");
  free(text);

  /* series older than the delta: nothing at first sight, but gauges */
  bg_delta *late = bg_delta_new(f.made + 1e6);
  bg_encode_opts o4 = {.delta = late};
  text = fx_encode(bg_encode_statsd, b, &o4);
  CHECK_STR(text, "cpu:67.5|g\ntemp:0|g\ntemp:-3.25|g\n\n");
  free(text);

  bg_batch_unref(b);
  bg_batch_unref(b2);
  bg_batch_unref(b3);
  bg_delta_free(d);
  bg_delta_free(late);
  bg_registry_free(r2);
  bg_registry_free(f.r);
}

static void test_dogstatsd(void) {
  fixture f;
  fx_init(&f);
  bg_delta *d = bg_delta_new(0);
  bg_batch *b = fx_batch(f.r, f.made + 10);
  bg_encode_opts o = {.flavor = "dogstatsd", .labels = GLOBAL, .nlabels = 2, .delta = d};
  /* GLOBAL must be sorted by key for the merge */
  static const char *const sorted[] = {"env", "prod", "host", "global"};
  o.labels = sorted;
  char *text = fx_encode(bg_encode_statsd, b, &o);
  const char *tags = "|#env:prod,host:global";
  const char *lat = "|#env:prod,host:global,route:/x\"q\\_";
  char want[2048];
  snprintf(want, sizeof want,
           "api_requests:3|c%s,method:POST,path:/a b_c:d_e_f@g\n"
           "api_requests:1|c%s,method:GET,path:/\xc3\xbc\n"
           "cpu:67.5|g|#env:prod,host:web-1\n"
           "latency.count:4|c%s\n"
           "latency.sum:2.8125|c%s\n"
           "latency.bucket:1|c%s,upper_bound:0.1\n"
           "latency.bucket:3|c%s,upper_bound:0.5\n"
           "latency.bucket:3|c%s,upper_bound:1\n"
           "latency.bucket:4|c%s,upper_bound:inf\n"
           "temp:-3.25|g%s\n"
           "\n",
           tags, tags, lat, lat, lat, lat, lat, lat, tags);
  CHECK_STR(text, want);
  CHECK_INT(o.skipped, 2);
  free(text);
  bg_batch_unref(b);
  bg_delta_free(d);
  bg_registry_free(f.r);
}

/* Names with every reserved character, and datagrams under a small maximum. */
static void test_names_and_packing(void) {
  bg_registry *r = bg_registry_new();
  char name[64];
  for (int i = 0; i < 20; i++) {
    snprintf(name, sizeof name, "g%02d", i);
    bg_gauge_set(fx_get(r, BG_GAUGE, name, NULL, NULL, 0, NULL, 0), i % 3 == 0 ? -i : i);
  }
  bg_batch *b = fx_batch(r, 1e9);
  bg_encode_opts o = {.prefix = "a:b|c@d#e,f g\n.", .max_payload = 50};
  char *text = fx_encode(bg_encode_statsd, b, &o);
  CHECK(strncmp(text, "a_b_c_d_e_f_g_.g00:0|g\na_b_c_d_e_f_g_.g01:1|g\n\n", 47) == 0);
  /* every datagram ends with an empty line and holds at most 50 bytes, or one unit: a line, or
   * the two lines of a negative gauge (never split: 0 then the value) */
  int dgrams = 0, lines = 0;
  for (char *p = text; *p;) {
    char *end = strstr(p, "\n\n");
    CHECK(end != NULL);
    if (end == NULL) break;
    size_t len = (size_t)(end - p);
    int nl = 0;
    for (char *q = p; q < end; q++)
      nl += *q == '\n';
    int pair = nl == 1 && strncmp(strchr(p, ':'), ":0|g\n", 5) == 0 &&
               strncmp(strchr(p, '\n') + 1, p, (size_t)(strchr(p, ':') - p)) == 0 &&
               strchr(strchr(p, '\n'), ':')[1] == '-';
    CHECK(len <= 50 || nl == 0 || pair);
    CHECK(strncmp(p, "a_b_c_d_e_f_g_.", 15) == 0);
    /* a datagram never ends with the 0 of a pair */
    CHECK(!(end - p > 4 && strncmp(end - 4, ":0|g", 4) == 0 && end[-5] != '0'));
    lines += nl + 1;
    dgrams++;
    p = end + 2;
  }
  CHECK_INT(lines, 26); /* 20 gauges, 6 of them negative */
  CHECK(dgrams >= 14);
  free(text);

  /* the default maximum: 1432 */
  bg_encode_opts o2 = {0};
  text = fx_encode(bg_encode_statsd, b, &o2);
  CHECK(strstr(text, "\n\n") == text + strlen(text) - 2); /* one datagram */
  free(text);
  bg_batch_unref(b);
  bg_registry_free(r);
}

static void test_edges(void) {
  bg_registry *r = bg_registry_new();
  bg_batch *empty = fx_batch(r, 1e9);
  bg_encode_opts o = {0};
  char *text = fx_encode(bg_encode_statsd, empty, &o);
  CHECK_STR(text, "");
  free(text);
  bg_counter_add(fx_get(r, BG_COUNTER, "c", NULL, NULL, 0, NULL, 0), 1);
  bg_batch *b = fx_batch(r, 1e9);
  bg_buf out = {0};
  char err[256] = "";
  CHECK_INT(bg_encode_statsd(b, &o, &out, err, sizeof err), BG_EINVAL); /* no delta */
  CHECK_ERR(err, "delta");
  bg_encode_opts bad = {.flavor = "graphite"};
  CHECK_INT(bg_encode_statsd(b, &bad, &out, err, sizeof err), BG_EINVAL);
  CHECK_ERR(err, "flavor");
  bg_buf_free(&out);
  bg_batch_unref(empty);
  bg_batch_unref(b);
  bg_registry_free(r);
}

int main(void) {
  test_plain();
  test_dogstatsd();
  test_names_and_packing();
  test_edges();
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  return failures != 0;
}
