/* Tests for core/export/encode_datadog: the v2 series body read back with cjson, every field of
 * every series (counts with their intervals, gauges, histograms as .count/.sum/.bucket, tags
 * with special characters and UTF-8, the host resource), NaN/Inf skipped and counted, rates,
 * differences over two collections, the same id made by another series (a batch kept across a
 * restart), an empty batch, and what it refuses. Resets are test_delta.c's (a registry's
 * counters never go down). */
#include <stdlib.h>

#include "export/encode_datadog.h"
#include "test_encode_fixture.h"

static const char *const GLOBAL[] = {"env", "prod", "host", "global"}; /* sorted by key */
static const char *const RESOURCE[] = {"host", "h1", "service.name", "api"};

static void test_first(void) {
  fixture f;
  fx_init(&f);
  bg_delta *d = bg_delta_new(0);
  double t = f.made + 10;
  bg_batch *b = fx_batch(f.r, t);
  bg_encode_opts o = {.prefix = "bg.",
                      .labels = GLOBAL,
                      .nlabels = 2,
                      .resource = RESOURCE,
                      .nresource = 2,
                      .delta = d};
  char *json = fx_encode(bg_encode_datadog, b, &o);
  CHECK_INT(o.skipped, 2); /* inf and nan */
  char prelude[128];
  snprintf(prelude, sizeof prelude, "T = %.0f", floor(t));
  fx_json_eq(
      json, prelude,
      "(function()\n"
      "  local R = { { type = 'host', name = 'h1' } }\n"
      "  local function s(metric, type, value, interval, tags)\n"
      "    return { metric = metric, type = type, points = { { timestamp = T, value = value } },\n"
      "      interval = interval, tags = tags, resources = R }\n"
      "  end\n"
      "  local G = { 'env:prod', 'host:global' }\n"
      "  local L = { 'env:prod', 'host:global', 'route:/x\"q\\\\\\n' }\n"
      "  local function b(le) local t = { unpack(L) }; t[4] = 'upper_bound:' .. le; return t end\n"
      "  return { series = {\n"
      "    s('bg.api_requests', 1, 3, 10, { 'env:prod', 'host:global', 'method:POST',\n"
      "      'path:/a b|c:d,e#f@g' }),\n"
      "    s('bg.api_requests', 1, 1, 10, { 'env:prod', 'host:global', 'method:GET',\n"
      "      'path:/\\195\\188' }),\n"
      "    s('bg.cpu', 3, 67.5, nil, { 'env:prod', 'host:web-1' }),\n"
      "    s('bg.latency.count', 1, 4, 10, L),\n"
      "    s('bg.latency.sum', 1, 2.8125, 10, L),\n"
      "    s('bg.latency.bucket', 1, 1, 10, b('0.1')),\n"
      "    s('bg.latency.bucket', 1, 3, 10, b('0.5')),\n"
      "    s('bg.latency.bucket', 1, 3, 10, b('1')),\n"
      "    s('bg.latency.bucket', 1, 4, 10, b('inf')),\n"
      "    s('bg.temp', 3, -3.25, nil, G),\n"
      "  } }\n"
      "end)()");
  free(json);

  /* the next collection as rates: the increase per second over the 15 s between them */
  bg_counter_add(f.post, 2.5);
  bg_histogram_observe(f.lat, 0.5);
  double t2 = f.made + 25;
  bg_batch *b2 = fx_batch(f.r, t2);
  bg_encode_opts o2 = {.flavor = "rate", .delta = d};
  json = fx_encode(bg_encode_datadog, b2, &o2);
  snprintf(prelude, sizeof prelude, "T = %.0f", floor(t2));
  fx_json_eq(
      json, prelude,
      "(function()\n"
      "  local function s(metric, type, value, interval, tags)\n"
      "    return { metric = metric, type = type, points = { { timestamp = T, value = value } },\n"
      "      interval = interval, tags = tags }\n"
      "  end\n"
      "  local L = { 'route:/x\"q\\\\\\n' }\n"
      "  local function b(le) return { L[1], 'upper_bound:' .. le } end\n"
      "  return { series = {\n"
      "    s('api_requests', 2, 2.5 / 15, 15, { 'method:POST', 'path:/a b|c:d,e#f@g' }),\n"
      "    s('api_requests', 2, 0, 15, { 'method:GET', 'path:/\\195\\188' }),\n"
      "    s('cpu', 3, 67.5, nil, { 'host:web-1' }),\n"
      "    s('latency.count', 2, 1 / 15, 15, L),\n"
      "    s('latency.sum', 2, 0.5 / 15, 15, L),\n"
      "    s('latency.bucket', 2, 0, 15, b('0.1')),\n"
      "    s('latency.bucket', 2, 1 / 15, 15, b('0.5')),\n"
      "    s('latency.bucket', 2, 1 / 15, 15, b('1')),\n"
      "    s('latency.bucket', 2, 1 / 15, 15, b('inf')),\n"
      "    s('temp', 3, -3.25, nil, nil),\n"
      "  } }\n"
      "end)()");
  free(json);

  fx_check_gzip(bg_encode_datadog, b2, o2, "rate", "rate,gzip");
  fx_check_gzip(bg_encode_datadog, b2, o2, NULL, "gzip,count");

  /* the same id made by another series (another registry numbers from 1 too, as a new process
   * does after a restart): a series born since the delta started, all of it since its creation */
  bg_registry *r2 = bg_registry_new();
  const char *post[] = {"method", "POST", "path", "x"};
  bg_counter_add(fx_get(r2, BG_COUNTER, "api.requests", NULL, post, 2, NULL, 0), 2);
  bg_batch *b3 = fx_batch(r2, f.made + 40);
  bg_encode_opts o3 = {.delta = d};
  json = fx_encode(bg_encode_datadog, b3, &o3);
  snprintf(prelude, sizeof prelude, "T, I = %.0f, %.0f", floor(f.made + 40),
           floor(f.made + 40 - bg_batch_at(b3, 0)->created + 0.5));
  fx_json_eq(json, prelude,
             "{ series = { { metric = 'api_requests', type = 1, points = { { timestamp = T,\n"
             "  value = 2 } }, interval = I, tags = { 'method:POST', 'path:x' } } } }");
  free(json);

  /* series older than the delta send nothing at first sight: only the gauges */
  bg_delta *late = bg_delta_new(f.made + 1e6);
  bg_encode_opts o4 = {.delta = late};
  json = fx_encode(bg_encode_datadog, b, &o4);
  CHECK(strstr(json, "api_requests") == NULL && strstr(json, "latency") == NULL);
  CHECK(strstr(json, "\"metric\":\"cpu\"") != NULL);
  free(json);

  bg_batch_unref(b);
  bg_batch_unref(b2);
  bg_batch_unref(b3);
  bg_delta_free(d);
  bg_delta_free(late);
  bg_registry_free(r2);
  bg_registry_free(f.r);
}

static void test_edges(void) {
  bg_registry *r = bg_registry_new();
  bg_batch *empty = fx_batch(r, 1e9);
  bg_encode_opts o = {0};
  char *json = fx_encode(bg_encode_datadog, empty, &o);
  CHECK_STR(json, ""); /* nothing to send */
  free(json);
  bg_gauge_set(fx_get(r, BG_GAUGE, "only_nan", NULL, NULL, 0, NULL, 0), NAN);
  bg_batch *nan = fx_batch(r, 1e9);
  json = fx_encode(bg_encode_datadog, nan, &o);
  CHECK_STR(json, "");
  CHECK_INT(o.skipped, 1);
  free(json);
  bg_counter_add(fx_get(r, BG_COUNTER, "c", NULL, NULL, 0, NULL, 0), 1);
  bg_batch *b = fx_batch(r, 1e9);
  bg_buf out = {0};
  char err[256] = "";
  CHECK_INT(bg_encode_datadog(b, &o, &out, err, sizeof err), BG_EINVAL); /* no delta */
  CHECK_ERR(err, "delta");
  bg_encode_opts bad = {.flavor = "rate,zip"};
  CHECK_INT(bg_encode_datadog(b, &bad, &out, err, sizeof err), BG_EINVAL);
  CHECK_ERR(err, "flavor");
  bg_buf_free(&out);
  bg_batch_unref(empty);
  bg_batch_unref(nan);
  bg_batch_unref(b);
  bg_registry_free(r);
}

int main(void) {
  test_first();
  test_edges();
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  return failures != 0;
}
