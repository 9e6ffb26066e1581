/* Tests for core/export/encode_otlp: the OTLP/HTTP JSON request read back with cjson, every field
 * (resource with and without service.name, scope, one metric per family with its description,
 * sums, gauges, histograms with string counts and bounds, 64-bit times as strings, attributes
 * with special characters and UTF-8), NaN/Inf skipped and counted, a family cut between two
 * batches, and an empty batch. The protobuf JSON mapping itself is checked by the integration
 * test (tests/integration/backend_otlp_spec.lua) with OpenTelemetry's own schema. */
#include <stdlib.h>

#include "export/encode_otlp.h"
#include "test_encode_fixture.h"

static const char *const GLOBAL[] = {"env", "prod"};
static const char *const RESOURCE[] = {"host.name", "h1", "service.name", "api"};

/* "<epoch seconds as ns>" as the encoder writes it */
static void ns(char *buf, size_t len, double secs) {
  snprintf(buf, len, "'%.0f'", floor(secs * 1e9 + 0.5));
}

static void test_request(void) {
  fixture f;
  fx_init(&f);
  double t = f.made + 10;
  bg_batch *b = fx_batch(f.r, t);
  bg_encode_opts o = {.prefix = "bg.", .labels = GLOBAL, .nlabels = 1};
  char *json = fx_encode(bg_encode_otlp, b, &o);
  CHECK_INT(o.skipped, 2); /* inf and nan */
  char prelude[512], tn[40], c0[40], c1[40], c6[40];
  ns(tn, sizeof tn, t);
  ns(c0, sizeof c0, bg_batch_at(b, 0)->created); /* api_requests POST */
  ns(c1, sizeof c1, bg_batch_at(b, 1)->created); /* api_requests GET */
  ns(c6, sizeof c6, bg_batch_at(b, 4)->created); /* latency */
  snprintf(prelude, sizeof prelude, "T, C0, C1, C6, V = %s, %s, %s, %s, '%s'", tn, c0, c1, c6,
           BG_VERSION);
  fx_json_eq(
      json, prelude,
      "(function()\n"
      "  local function attrs(kv)\n"
      "    local t = {}\n"
      "    for i = 1, #kv, 2 do t[#t + 1] = { key = kv[i], value = { stringValue = kv[i + 1] } } "
      "end\n"
      "    return t\n"
      "  end\n"
      "  return { resourceMetrics = { {\n"
      "    resource = { attributes = attrs { 'service.name', 'beagle' } },\n"
      "    scopeMetrics = { { scope = { name = 'beagle', version = V }, metrics = {\n"
      "      { name = 'bg.api_requests', description = 'Requests served.', sum = {\n"
      "        aggregationTemporality = 2, isMonotonic = true, dataPoints = {\n"
      "          { attributes = attrs { 'env', 'prod', 'method', 'POST', 'path', '/a b|c:d,e#f@g' "
      "},\n"
      "            startTimeUnixNano = C0, timeUnixNano = T, asDouble = 3 },\n"
      "          { attributes = attrs { 'env', 'prod', 'method', 'GET', 'path', '/\\195\\188' },\n"
      "            startTimeUnixNano = C1, timeUnixNano = T, asDouble = 1 } } } },\n"
      "      { name = 'bg.cpu', gauge = { dataPoints = {\n"
      "          { attributes = attrs { 'env', 'prod', 'host', 'web-1' }, timeUnixNano = T,\n"
      "            asDouble = 67.5 } } } },\n"
      "      { name = 'bg.latency', description = 'Latency.', histogram = {\n"
      "        aggregationTemporality = 2, dataPoints = {\n"
      "          { attributes = attrs { 'env', 'prod', 'route', '/x\"q\\\\\\n' },\n"
      "            startTimeUnixNano = C6, timeUnixNano = T, count = '4', sum = 2.8125,\n"
      "            bucketCounts = { '1', '2', '0', '1' }, explicitBounds = { 0.1, 0.5, 1 } } } } "
      "},\n"
      "      { name = 'bg.temp', gauge = { dataPoints = {\n"
      "          { attributes = attrs { 'empty', '', 'env', 'prod' }, timeUnixNano = T,\n"
      "            asDouble = -3.25 } } } },\n"
      "    } } } } } }\n"
      "end)()");
  free(json);
  fx_check_gzip(bg_encode_otlp, b, o, NULL, "gzip");

  /* resource attributes as given, service.name among them; a family cut between two batches is
   * one metric in each */
  bg_snapshot *snap = bg_snapshot_take(f.r, t);
  bg_batch *first = bg_batch_new(snap, 0, 1), *rest = bg_batch_new(snap, 1, 1);
  bg_snapshot_unref(snap);
  bg_encode_opts o2 = {.resource = RESOURCE, .nresource = 2};
  json = fx_encode(bg_encode_otlp, rest, &o2);
  fx_json_eq(
      json, prelude,
      "{ resourceMetrics = { { resource = { attributes = {\n"
      "  { key = 'host.name', value = { stringValue = 'h1' } },\n"
      "  { key = 'service.name', value = { stringValue = 'api' } } } },\n"
      "  scopeMetrics = { { scope = { name = 'beagle', version = V }, metrics = {\n"
      "    { name = 'api_requests', description = 'Requests served.', sum = {\n"
      "      aggregationTemporality = 2, isMonotonic = true, dataPoints = {\n"
      "        { attributes = { { key = 'method', value = { stringValue = 'GET' } },\n"
      "          { key = 'path', value = { stringValue = '/\\195\\188' } } },\n"
      "          startTimeUnixNano = C1, timeUnixNano = T, asDouble = 1 } } } } } } } } } }");
  free(json);
  json = fx_encode(bg_encode_otlp, first, &o2);
  CHECK(strstr(json, "\"asDouble\":3}") != NULL && strstr(json, "GET") == NULL);
  free(json);
  bg_batch_unref(first);
  bg_batch_unref(rest);
  bg_batch_unref(b);
  bg_registry_free(f.r);
}

static void test_edges(void) {
  bg_registry *r = bg_registry_new();
  bg_batch *empty = fx_batch(r, 1e9);
  bg_encode_opts o = {0};
  char *json = fx_encode(bg_encode_otlp, empty, &o);
  CHECK_STR(json, "");
  free(json);
  bg_buf junk = {0};
  char err[256] = "";
  bg_encode_opts bad = {.flavor = "zstd"};
  CHECK_INT(bg_encode_otlp(empty, &bad, &junk, err, sizeof err), BG_EINVAL);
  CHECK_ERR(err, "flavor");
  bg_buf_free(&junk);
  /* a histogram whose sum is infinite goes without it (sum is optional in OTLP) */
  const double bounds[] = {1};
  bg_histogram_observe(fx_get(r, BG_HISTOGRAM, "h", NULL, NULL, 0, bounds, 1), INFINITY);
  bg_gauge_set(fx_get(r, BG_GAUGE, "g", NULL, NULL, 0, NULL, 0), -INFINITY);
  bg_batch *b = fx_batch(r, 1e9);
  json = fx_encode(bg_encode_otlp, b, &o);
  CHECK_INT(o.skipped, 2);
  fx_json(json, "local m = doc.resourceMetrics[1].scopeMetrics[1].metrics\n"
                "assert(#m == 1 and m[1].name == 'h', 'only h')\n"
                "local p = m[1].histogram.dataPoints[1]\n"
                "assert(p.sum == nil and p.count == '1', 'no sum')\n"
                "assert(p.bucketCounts[1] == '0' and p.bucketCounts[2] == '1', 'buckets')\n"
                "assert(p.timeUnixNano == '1000000000000000000', p.timeUnixNano)\n");
  free(json);
  bg_batch_unref(empty);
  bg_batch_unref(b);
  bg_registry_free(r);
}

int main(void) {
  test_request();
  test_edges();
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  return failures != 0;
}
