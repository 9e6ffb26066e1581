/* Tests for core/export/encode_otlp_json: spans and log records made through the tracer
 * (trace/trace.h), taken into batches, encoded, and read back with cjson, every field: ids as
 * lower-case hex, times and intValue as decimal strings, kind, status code and severityNumber
 * as integers, AnyValue of every type (arrays included; NaN and infinities as the mapping's
 * strings), events with attributes, dropped counts, traceState, flags, the resource with and
 * without service.name, one scopeSpans per scope in order of first appearance, invalid UTF-8
 * repaired, gzip, an empty batch. The protobuf JSON mapping itself is checked by the
 * integration test (tests/integration/backend_otlp_traces_spec.lua) with OpenTelemetry's own
 * schema.
 *
 * `test_encode_otlp_json bench [spans] [batch] [rounds]` measures the encoder alone (spans of a
 * check run's shape: 6 attributes, one event in ten) and prints ns_per_span. */
#include <stdlib.h>
#include <time.h>

#include "base/log.h"
#include "export/encode_otlp_json.h"
#include "trace/trace.h"
/* the fixture's registry helpers are for the metric encoders: only its JSON and gzip checks are
 * used here */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "test_encode_fixture.h"
#pragma GCC diagnostic pop

#define S(lit) lit, sizeof lit - 1

static char *encode_spans(const bg_span_batch *b, const bg_otlp_json_opts *o) {
  bg_buf out = {0};
  CHECK_INT(bg_encode_otlp_traces(b, o, &out), 0);
  bg_buf_append(&out, "", 1);
  return out.data;
}

static char *encode_logs(const bg_log_batch *b, const bg_otlp_json_opts *o) {
  bg_buf out = {0};
  CHECK_INT(bg_encode_otlp_logs(b, o, &out), 0);
  bg_buf_append(&out, "", 1);
  return out.data;
}

static void hex(const uint8_t *id, size_t n, char *buf) {
  bg_trace_hex(id, n, buf);
  buf[2 * n] = '\0';
}

static const char *const RESOURCE[] = {"host.name", "h1", "service.name", "api"};

static void test_spans(void) {
  bg_tracer *t = bg_tracer_default();
  bg_tracer_set_ratio(t, 1);
  bg_tracer_set_recording(t, 1, 1);
  /* a remote parent with a tracestate: the root here continues it */
  bg_span_ctx remote;
  CHECK_INT(
      bg_traceparent_parse(S("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), &remote),
      0);
  CHECK_INT(bg_tracestate_parse(&remote, S("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")), 0);

  bg_span *root = bg_span_begin(t, &remote, S("GET /health"), BG_SPAN_SERVER, NULL, 0);
  CHECK(root->recording);
  char root_id[17], trace_id[33];
  hex(bg_span_context(root)->span_id, BG_SPAN_ID_LEN, root_id);
  hex(bg_span_context(root)->trace_id, BG_TRACE_ID_LEN, trace_id);
  CHECK_STR(trace_id, "0af7651916cd43dd8448eb211c80319c");
  bg_span_set_str(root, S("http.method"), S("GET"));
  bg_span_set_int(root, S("http.status_code"), 200);
  bg_span_set_int(root, S("big"), -9007199254740993LL); /* past 2^53: only a string holds it */
  bg_span_set_double(root, S("ratio"), 0.25);
  bg_span_set_double(root, S("nan"), NAN);
  bg_span_set_double(root, S("inf"), -INFINITY);
  bg_span_set_bool(root, S("ok"), 1);
  bg_span_set_bool(root, S("no"), 0);
  const char *vs[] = {"a", "b\"c"};
  const size_t vl[] = {1, 3};
  bg_span_set_array(root, S("tags"), BG_ATTR_STRING, 2, vs, vl, NULL, NULL);
  const int64_t vi[] = {1, -2, 3};
  bg_span_set_array(root, S("ints"), BG_ATTR_INT, 3, NULL, NULL, vi, NULL);
  const double vd[] = {1.5, 2};
  bg_span_set_array(root, S("dbls"), BG_ATTR_DOUBLE, 2, NULL, NULL, NULL, vd);
  const int64_t vb[] = {1, 0};
  bg_span_set_array(root, S("bools"), BG_ATTR_BOOL, 2, NULL, NULL, vb, NULL);
  bg_span_set_str(root, S("utf8"), S("h\xc3\xa9llo \xff\xfe end")); /* two bad bytes */
  bg_span_set_str(root, S("ctl"), S("a\nb\tc\x01"));

  /* a child in a plugin's scope, with events and an error */
  bg_span *child = bg_span_begin(t, NULL, S("query"), BG_SPAN_CLIENT, S("plugin_a"));
  char child_id[17];
  hex(bg_span_context(child)->span_id, BG_SPAN_ID_LEN, child_id);
  bg_span_add_event(child, S("retry"), 1700000000123456789ULL);
  bg_span_event_set_int(child, S("attempt"), 2);
  bg_span_event_set_str(child, S("why"), S("timeout"));
  bg_span_record_exception(child, S("error"), S("boom"), S("stack traceback:\n\t[C]: in ?"));
  bg_span_set_status(child, BG_STATUS_ERROR, S("boom"));
  bg_span_end(t, child, 1700000000200000000ULL);

  /* a second span of the beagle scope after the plugin's: the same scopeSpans as the root (the
   * scopes in the order they first appear: spans are in the order they ended) */
  bg_span *other = bg_span_begin(t, NULL, S("rules"), BG_SPAN_INTERNAL, S("beagle"));
  char other_id[17];
  hex(bg_span_context(other)->span_id, BG_SPAN_ID_LEN, other_id);
  bg_span_set_status(other, BG_STATUS_OK, NULL, 0);
  bg_span_end(t, other, 1700000000300000000ULL);

  bg_span_end(t, root, 1700000000400000000ULL);

  bg_span_batch *b = bg_trace_take_spans(t, 100);
  CHECK(b != NULL);
  if (b == NULL) return;
  CHECK_INT(bg_span_batch_len(b), 3);
  bg_span_view v;
  bg_span_batch_view(b, 2, &v); /* the root ended last */
  char prelude[1024];
  snprintf(prelude, sizeof prelude,
           "TR, ROOT, CHILD, OTHER, V = '%s', '%s', '%s', '%s', '%s'\n"
           "ROOT_START = '%llu'\n",
           trace_id, root_id, child_id, other_id, BG_VERSION, (unsigned long long)v.start_ns);
  bg_otlp_json_opts o = {.resource = RESOURCE, .nresource = 2};
  char *json = encode_spans(b, &o);
  fx_json_eq(
      json, prelude,
      "(function()\n"
      "  local function s(x) return { stringValue = x } end\n"
      "  local function kv(k, v) return { key = k, value = v } end\n"
      "  local rs = { resource = { attributes = { kv('host.name', s'h1'), kv('service.name', "
      "s'api') } },\n"
      "    scopeSpans = {} }\n"
      "  local sp = doc.resourceSpans[1].scopeSpans\n"
      "  -- the child's start time is whatever the clock said: taken as written\n"
      "  local cstart = sp[1] and sp[1].spans[1] and sp[1].spans[1].startTimeUnixNano\n"
      "  local ostart = sp[2] and sp[2].spans[1] and sp[2].spans[1].startTimeUnixNano\n"
      "  assert(type(cstart) == 'string' and cstart:match('^%d+$'), 'child start')\n"
      "  rs.scopeSpans[2] = { scope = { name = 'beagle', version = V }, spans = {\n"
      "    { traceId = TR, spanId = OTHER, parentSpanId = ROOT, flags = 1, name = 'rules',\n"
      "      traceState = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7',\n"
      "      kind = 1, startTimeUnixNano = ostart, endTimeUnixNano = '1700000000300000000',\n"
      "      status = { code = 1 } },\n"
      "    { traceId = TR, spanId = ROOT, parentSpanId = 'b7ad6b7169203331', flags = 1,\n"
      "      traceState = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7',\n"
      "      name = 'GET /health', kind = 2, startTimeUnixNano = ROOT_START,\n"
      "      endTimeUnixNano = '1700000000400000000', attributes = {\n"
      "        kv('http.method', s'GET'), kv('http.status_code', { intValue = '200' }),\n"
      "        kv('big', { intValue = '-9007199254740993' }), kv('ratio', { doubleValue = 0.25 "
      "}),\n"
      "        kv('nan', { doubleValue = 'NaN' }), kv('inf', { doubleValue = '-Infinity' }),\n"
      "        kv('ok', { boolValue = true }), kv('no', { boolValue = false }),\n"
      "        kv('tags', { arrayValue = { values = { s'a', s'b\"c' } } }),\n"
      "        kv('ints', { arrayValue = { values = { { intValue = '1' }, { intValue = '-2' },\n"
      "          { intValue = '3' } } } }),\n"
      "        kv('dbls', { arrayValue = { values = { { doubleValue = 1.5 }, { doubleValue = 2 } "
      "} } }),\n"
      "        kv('bools', { arrayValue = { values = { { boolValue = true }, { boolValue = false "
      "} } } }),\n"
      "        kv('utf8', s'h\\195\\169llo \\239\\191\\189\\239\\191\\189 end'),\n"
      "        kv('ctl', s'a\\nb\\tc\\1') } } } }\n"
      "  rs.scopeSpans[1] = { scope = { name = 'plugin_a' }, spans = {\n"
      "    { traceId = TR, spanId = CHILD, parentSpanId = ROOT, flags = 1, name = 'query',\n"
      "      traceState = 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7',\n"
      "      kind = 3, startTimeUnixNano = cstart, endTimeUnixNano = '1700000000200000000',\n"
      "      events = {\n"
      "        { timeUnixNano = '1700000000123456789', name = 'retry', attributes = {\n"
      "            kv('attempt', { intValue = '2' }), kv('why', s'timeout') } },\n"
      "        { timeUnixNano = doc.resourceSpans[1].scopeSpans[1].spans[1].events[2]."
      "timeUnixNano,\n"
      "          name = 'exception', attributes = {\n"
      "            kv('exception.type', s'error'), kv('exception.message', s'boom'),\n"
      "            kv('exception.stacktrace', s'stack traceback:\\n\\t[C]: in ?') } } },\n"
      "      status = { code = 2, message = 'boom' } } } }\n"
      "  return { resourceSpans = { rs } }\n"
      "end)()");
  free(json);

  /* the resource without service.name: beagle's, then the rest */
  bg_otlp_json_opts o2 = {.resource = RESOURCE, .nresource = 1};
  json = encode_spans(b, &o2);
  fx_json(json, "local a = doc.resourceSpans[1].resource.attributes\n"
                "assert(#a == 2, 'two attributes')\n"
                "assert(a[1].key == 'service.name' and a[1].value.stringValue == 'beagle')\n"
                "assert(a[2].key == 'host.name' and a[2].value.stringValue == 'h1')\n");
  free(json);
  json = encode_spans(b, NULL);
  fx_json(json, "local a = doc.resourceSpans[1].resource.attributes\n"
                "assert(#a == 1 and a[1].value.stringValue == 'beagle', 'default resource')\n");
  free(json);

  /* gzip: the same text, compressed */
  bg_otlp_json_opts gz = o;
  gz.gzip = 1;
  bg_buf out = {0};
  CHECK_INT(bg_encode_otlp_traces(b, &gz, &out), 0);
  CHECK(out.len > 18 && (unsigned char)out.data[0] == 0x1f && (unsigned char)out.data[1] == 0x8b);
  char *back = fx_gunzip(out.data, out.len);
  json = encode_spans(b, &o);
  CHECK_STR(back, json);
  free(back);
  free(json);
  bg_buf_free(&out);

  /* a batch through bytes and back encodes the same */
  bg_buf bytes = {0};
  CHECK_INT(bg_span_batch_encode(b, &bytes), 0);
  const char *why = NULL;
  bg_span_batch *b2 = bg_span_batch_decode(bytes.data, bytes.len, &why);
  CHECK(b2 != NULL);
  if (b2) {
    char *j1 = encode_spans(b, &o), *j2 = encode_spans(b2, &o);
    CHECK_STR(j2, j1);
    free(j1);
    free(j2);
    bg_span_batch_unref(b2);
  }
  bg_buf_free(&bytes);
  bg_span_batch_unref(b);
  bg_span_ctx_clear(&remote);

  /* nothing buffered: no batch; an unsampled span leaves nothing */
  CHECK(bg_trace_take_spans(t, 100) == NULL);
}

static void test_logs(void) {
  bg_tracer *t = bg_tracer_default();
  bg_tracer_set_recording(t, 1, 1);
  const char *kv[] = {"check", "db", "took", "12ms"};
  const size_t kvl[] = {5, 2, 4, 4};
  bg_trace_log_record(t, BG_LOG_WARN, S("slow \"query\""), kv, kvl, 2, S("plugin_b"));
  bg_span *s = bg_span_begin(t, NULL, S("check db"), BG_SPAN_INTERNAL, NULL, 0);
  char tid[33], sid[17];
  hex(bg_span_context(s)->trace_id, BG_TRACE_ID_LEN, tid);
  hex(bg_span_context(s)->span_id, BG_SPAN_ID_LEN, sid);
  bg_trace_log_record(t, BG_LOG_ERROR, S("failed"), NULL, NULL, 0, NULL, 0);
  bg_span_end(t, s, 0);
  bg_log_batch *b = bg_trace_take_logs(t, 100);
  CHECK(b != NULL);
  if (b == NULL) return;
  CHECK_INT(bg_log_batch_len(b), 2);
  bg_log_view v0, v1;
  bg_log_batch_view(b, 0, &v0);
  bg_log_batch_view(b, 1, &v1);
  char prelude[512];
  snprintf(prelude, sizeof prelude, "TID, SID, T0, T1, V = '%s', '%s', '%llu', '%llu', '%s'\n", tid,
           sid, (unsigned long long)v0.time_ns, (unsigned long long)v1.time_ns, BG_VERSION);
  char *json = encode_logs(b, NULL);
  fx_json_eq(json, prelude,
             "{ resourceLogs = { { resource = { attributes = {\n"
             "    { key = 'service.name', value = { stringValue = 'beagle' } } } },\n"
             "  scopeLogs = {\n"
             "    { scope = { name = 'plugin_b' }, logRecords = {\n"
             "      { timeUnixNano = T0, observedTimeUnixNano = T0, severityNumber = 13,\n"
             "        severityText = 'WARN', body = { stringValue = 'slow \"query\"' },\n"
             "        attributes = { { key = 'check', value = { stringValue = 'db' } },\n"
             "          { key = 'took', value = { stringValue = '12ms' } } } } } },\n"
             "    { scope = { name = 'beagle', version = V }, logRecords = {\n"
             "      { timeUnixNano = T1, observedTimeUnixNano = T1, severityNumber = 17,\n"
             "        severityText = 'ERROR', body = { stringValue = 'failed' }, flags = 1,\n"
             "        traceId = TID, spanId = SID } } } } } } }");
  free(json);
  bg_log_batch_unref(b);
  /* the span of that record is in the span buffer: leave nothing for the next test */
  bg_span_batch *rest = bg_trace_take_spans(t, 100);
  bg_span_batch_unref(rest);
}

/* A buffer with nothing in it gives no batch (so nothing is ever encoded from an empty one). */
static void test_empty(void) {
  CHECK(bg_trace_take_spans(bg_tracer_default(), 10) == NULL);
  CHECK(bg_trace_take_logs(bg_tracer_default(), 10) == NULL);
}

/* ---- the encoder alone -------------------------------------------------------------------- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int bench(int argc, char **argv) {
  size_t total = argc > 2 ? (size_t)atol(argv[2]) : 20000;
  size_t per = argc > 3 ? (size_t)atol(argv[3]) : 512;
  int rounds = argc > 4 ? atoi(argv[4]) : 5;
  bg_tracer *t = bg_tracer_default();
  bg_tracer_set_ratio(t, 1);
  bg_tracer_set_recording(t, 1, 0);
  bg_tracer_set_capacity(t, total, 16);
  for (size_t i = 0; i < total; i++) {
    bg_span *s = bg_span_begin(t, NULL, S("check run"), BG_SPAN_INTERNAL, S("bench_plugin"));
    bg_span_set_str(s, S("check"), S("database_primary"));
    bg_span_set_str(s, S("status"), S("healthy"));
    bg_span_set_int(s, S("attempt"), 1);
    bg_span_set_double(s, S("duration_ms"), 12.5 + (double)(i % 100));
    bg_span_set_bool(s, S("critical"), (int)(i & 1));
    bg_span_set_str(s, S("message"), S("SELECT 1 answered in 12 ms"));
    if (i % 10 == 0) {
      bg_span_add_event(s, S("retry"), 0);
      bg_span_event_set_int(s, S("attempt"), 2);
    }
    bg_span_end(t, s, 0);
  }
  size_t nb = (total + per - 1) / per, got = 0;
  bg_span_batch **bs = calloc(nb, sizeof *bs);
  for (size_t i = 0; i < nb; i++) {
    bs[i] = bg_trace_take_spans(t, per);
    if (bs[i]) got += bg_span_batch_len(bs[i]);
  }
  const char *const res[] = {"service.name", "beagle",          "host.name",
                             "bench-host",   "service.version", BG_VERSION};
  bg_otlp_json_opts o = {.resource = res, .nresource = 3};
  double best = 1e30;
  size_t bytes = 0;
  bg_buf out = {0};
  for (int r = 0; r < rounds; r++) {
    double t0 = now_s();
    bytes = 0;
    for (size_t i = 0; i < nb; i++) {
      if (!bs[i]) continue;
      out.len = 0;
      if (bg_encode_otlp_traces(bs[i], &o, &out) != 0) return 1;
      bytes += out.len;
    }
    double dt = now_s() - t0;
    if (dt < best) best = dt;
  }
  printf("spans=%zu batch=%zu ns_per_span=%.0f spans_per_s=%.0f bytes_per_span=%.0f\n", got, per,
         best * 1e9 / (double)got, (double)got / best, (double)bytes / (double)got);
  bg_buf_free(&out);
  for (size_t i = 0; i < nb; i++)
    bg_span_batch_unref(bs[i]);
  free(bs);
  bg_tracer_shutdown();
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "bench") == 0) return bench(argc, argv);
  test_spans();
  test_logs();
  test_empty();
  bg_tracer_shutdown();
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  return failures != 0;
}
