/* metrics_route: GET /metrics rendered in C, called as the server calls it (no socket): the
 * format by Accept, the body in place after what the buffer held, gzip, the hook, errors. */
#include <zlib.h>

#include "metrics/expo.h"
#include "metrics/metrics_route.h"
#include "metrics/window.h"
#include "test_support.h"

static int hook_calls;
static void hook(void *ud) {
  hook_calls++;
  bg_gauge_set(ud, 42); /* what the hook sets is in the same render */
}

static bg_http_request request(bg_http_header *h, size_t nh) {
  bg_http_request req = {"GET", "/metrics", 8, "", 0, h, nh, "", 0, "127.0.0.1", 1, NULL, 0};
  return req;
}

static bg_http_header hdr(const char *name, const char *value) {
  bg_http_header h = {name, strlen(name), value, strlen(value)};
  return h;
}

/* Renders with these headers into out (after "X" already there); returns the response. */
static bg_http_response render(bg_metrics_route *m, bg_http_header *h, size_t nh, bg_buf *out) {
  bg_http_request req = request(h, nh);
  bg_http_response res = {200, NULL, NULL, 0, NULL, NULL, 0};
  bg_buf_reset(out);
  bg_buf_puts(out, "X");
  ASSERT_EQ_INT(bg_metrics_route_render(m, &req, &res, out), 0);
  ASSERT(out->data[0] == 'X');
  return res;
}

static void test_formats(void) {
  bg_registry *r = bg_registry_new();
  bg_window *w = bg_window_new();
  char err[256];
  const char *kv[] = {"code", "200"};
  bg_series *c = bg_series_get(r, BG_COUNTER, "api.requests", NULL, kv, 1, NULL, 0, err, 256);
  bg_series *g = bg_series_get(r, BG_GAUGE, "hooked", NULL, NULL, 0, NULL, 0, err, 256);
  ASSERT(c && g);
  bg_counter_add(c, 3);
  bg_metrics_route *m;
  ASSERT_EQ_INT(bg_metrics_route_new(r, w, &m), 0);
  bg_metrics_route_set_hook(m, hook, g);
  bg_buf out = {0}, want = {0};

  /* no Accept: Prometheus 0.0.4, the same bytes as the renderer's */
  bg_http_response res = render(m, NULL, 0, &out);
  ASSERT_EQ_INT(hook_calls, 1);
  ASSERT_EQ_INT(res.status, 200);
  ASSERT_EQ_STR(res.content_type, BG_PROM_CONTENT_TYPE);
  ASSERT_EQ_STR(res.headers, "Vary: Accept, Accept-Encoding\r\n");
  ASSERT(res.body == NULL);
  ASSERT_EQ_INT(bg_expo_prometheus(r, &want), 0);
  ASSERT_EQ_STR(out.data + 1, want.data);
  ASSERT(strstr(out.data, "\nhooked 42\n") != NULL);

  /* OpenMetrics, whatever the header's case, and the last Accept wins */
  bg_http_header h[3] = {
      hdr("Accept", "application/json"),
      hdr("ACCEPT", "application/openmetrics-text; version=1.0.0,text/plain;q=0.5"),
      hdr("Accept-Encoding", "identity")};
  res = render(m, h, 3, &out);
  ASSERT_EQ_STR(res.content_type, BG_OPENMETRICS_CONTENT_TYPE);
  ASSERT(strstr(out.data, "api_requests_total{code=\"200\"} 3\n") != NULL);
  ASSERT(strcmp(out.data + out.len - 6, "# EOF\n") == 0);

  /* JSON carries the windows of GET /metrics/performance */
  h[0] = hdr("accept", "application/json");
  res = render(m, h, 1, &out);
  ASSERT_EQ_STR(res.content_type, "application/json");
  ASSERT(strncmp(out.data, "X{\"metrics\":[", 13) == 0);
  ASSERT_EQ_INT(hook_calls, 3);

  /* a body under 1 KiB is not worth compressing */
  h[0] = hdr("Accept-Encoding", "gzip, deflate");
  res = render(m, h, 1, &out);
  ASSERT_EQ_STR(res.headers, "Vary: Accept, Accept-Encoding\r\n");
  ASSERT_EQ_STR(out.data + 1, want.data);

  /* a larger one is gzipped in place, and inflates to the plain body */
  for (int i = 0; i < 100; i++) {
    char v[16];
    snprintf(v, sizeof v, "%d", i);
    const char *kv2[] = {"code", v};
    bg_counter_add(bg_series_get(r, BG_COUNTER, "api.requests", NULL, kv2, 1, NULL, 0, err, 256),
                   1);
  }
  bg_buf_reset(&want);
  ASSERT_EQ_INT(bg_expo_prometheus(r, &want), 0);
  ASSERT(want.len > 1024);
  res = render(m, h, 1, &out);
  ASSERT_EQ_STR(res.headers, "Content-Encoding: gzip\r\nVary: Accept, Accept-Encoding\r\n");
  ASSERT(out.len - 1 < want.len / 2);
  ASSERT((unsigned char)out.data[1] == 0x1f && (unsigned char)out.data[2] == 0x8b);
  char *plain = malloc(want.len + 1);
  z_stream zs = {0};
  ASSERT_EQ_INT(inflateInit2(&zs, 15 + 16), Z_OK);
  zs.next_in = (Bytef *)out.data + 1;
  zs.avail_in = (uInt)(out.len - 1);
  zs.next_out = (Bytef *)plain;
  zs.avail_out = (uInt)want.len + 1;
  ASSERT_EQ_INT(inflate(&zs, Z_FINISH), Z_STREAM_END);
  ASSERT_EQ_INT(zs.total_out, want.len);
  plain[want.len] = '\0';
  ASSERT_EQ_STR(plain, want.data);
  inflateEnd(&zs);
  free(plain);

  /* no hook: still renders */
  bg_metrics_route_set_hook(m, NULL, NULL);
  res = render(m, NULL, 0, &out);
  ASSERT_EQ_INT(hook_calls, 5);
  ASSERT_EQ_STR(out.data + 1, want.data);

  bg_buf_free(&out);
  bg_buf_free(&want);
  bg_metrics_route_free(m);
  bg_metrics_route_free(NULL);
  bg_window_free(w);
  bg_registry_free(r);
}

int main(void) {
  RUN(test_formats);
  return 0;
}
