/* What the encoder tests of the push formats share (test_encode_statsd.c, _datadog.c,
 * _otlp.c): one registry with every kind of series and the awkward labels (characters the
 * formats reserve, UTF-8, escapes), its batches, and a JSON check through cjson in an embedded
 * LuaJIT (the C tests have no JSON parser of their own). */
#ifndef TEST_ENCODE_FIXTURE_H
#define TEST_ENCODE_FIXTURE_H

#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <zlib.h>

#include "base/bg.h"
#include "export/batch.h"
#include "export/delta.h"
#include "export/encode.h"
#include "metrics/metrics.h"
#include "test_check.h"

static char ferr[256];

static bg_series *fx_get(bg_registry *r, int type, const char *name, const char *help,
                         const char *const *kv, int n, const double *bounds, int nb) {
  bg_series *s = bg_series_get(r, type, name, help, kv, n, bounds, nb, ferr, sizeof ferr);
  if (s == NULL) fprintf(stderr, "fixture: %s\n", ferr);
  return s;
}

/* The registry every encoder test reads (families sort by name: api_requests, cpu, inf,
 * latency, nan, temp):
 *   api_requests{method="POST",path="/a b|c:d,e#f@g"} 3   (counter, help "Requests served.")
 *   api_requests{method="GET",path="/ü"} 1
 *   cpu{host="web-1"} 67.5                                (gauge)
 *   inf +Inf, nan NaN, temp{empty=""} -3.25               (gauges)
 *   latency{route="/x\"q\\\n"} observed 0.0625 0.25 0.5 2, bounds 0.1 0.5 1: buckets 1 2 0 1,
 *     sum 2.8125 (histogram, help "Latency.") */
typedef struct fixture {
  bg_registry *r;
  bg_series *post, *get, *cpu, *temp, *lat;
  double made; /* wall time right after the series were made */
} fixture;

static void fx_init(fixture *f) {
  f->r = bg_registry_new();
  const char *post[] = {"method", "POST", "path", "/a b|c:d,e#f@g"};
  const char *get[] = {"method", "GET", "path", "/\xc3\xbc"};
  const char *host[] = {"host", "web-1"};
  const char *empty[] = {"empty", ""};
  const char *route[] = {"route", "/x\"q\\\n"};
  const double bounds[] = {0.1, 0.5, 1};
  f->post = fx_get(f->r, BG_COUNTER, "api.requests", "Requests served.", post, 2, NULL, 0);
  f->get = fx_get(f->r, BG_COUNTER, "api.requests", NULL, get, 2, NULL, 0);
  f->cpu = fx_get(f->r, BG_GAUGE, "cpu", NULL, host, 1, NULL, 0);
  bg_gauge_set(fx_get(f->r, BG_GAUGE, "inf", NULL, NULL, 0, NULL, 0), INFINITY);
  bg_gauge_set(fx_get(f->r, BG_GAUGE, "nan", NULL, NULL, 0, NULL, 0), NAN);
  f->temp = fx_get(f->r, BG_GAUGE, "temp", NULL, empty, 1, NULL, 0);
  f->lat = fx_get(f->r, BG_HISTOGRAM, "latency", "Latency.", route, 1, bounds, 3);
  bg_counter_add(f->post, 3);
  bg_counter_add(f->get, 1);
  bg_gauge_set(f->cpu, 67.5);
  bg_gauge_set(f->temp, -3.25);
  bg_histogram_observe(f->lat, 0.0625);
  bg_histogram_observe(f->lat, 0.25);
  bg_histogram_observe(f->lat, 0.5);
  bg_histogram_observe(f->lat, 2);
  f->made = bg_wall_time();
}

/* All of r's series at time t, as one batch. */
static bg_batch *fx_batch(bg_registry *r, double t) {
  bg_snapshot *s = bg_snapshot_take(r, t);
  bg_batch *b = bg_batch_new(s, 0, bg_snapshot_size(s));
  bg_snapshot_unref(s);
  return b;
}

/* Encodes b with fn and o; the text (malloc'ed, "" when empty), rc checked to be 0. */
static char *fx_encode(bg_encoder fn, const bg_batch *b, bg_encode_opts *o) {
  bg_buf out = {0};
  char err[256] = "";
  int rc = fn(b, o, &out, err, sizeof err);
  if (rc != 0) fprintf(stderr, "encode: %d %s\n", rc, err);
  CHECK_INT(rc, 0);
  if (out.data == NULL) return calloc(1, 1);
  bg_buf_append(&out, "", 1);
  return out.data;
}

/* The gunzipped text of in[0..n) (malloc'ed, NUL-terminated), or NULL when it is not gzip. */
static inline char *fx_gunzip(const char *in, size_t n) {
  z_stream z = {0};
  if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) return NULL;
  size_t cap = 1 << 20;
  char *out = malloc(cap);
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)n;
  z.next_out = (Bytef *)out;
  z.avail_out = (uInt)(cap - 1);
  int rc = inflate(&z, Z_FINISH);
  size_t len = cap - 1 - z.avail_out;
  inflateEnd(&z);
  if (rc != Z_STREAM_END) {
    free(out);
    return NULL;
  }
  out[len] = '\0';
  return out;
}

/* fn with flavor gz gunzips to what it writes with flavor plain (same batch, same delta). */
static inline void fx_check_gzip(bg_encoder fn, const bg_batch *b, bg_encode_opts o,
                                 const char *plain, const char *gz) {
  o.flavor = plain;
  char *text = fx_encode(fn, b, &o);
  o.flavor = gz;
  bg_buf out = {0};
  char err[256] = "";
  CHECK_INT(fn(b, &o, &out, err, sizeof err), 0);
  CHECK(out.len > 18 && (unsigned char)out.data[0] == 0x1f && (unsigned char)out.data[1] == 0x8b);
  char *back = fx_gunzip(out.data, out.len);
  CHECK_STR(back, text);
  free(back);
  free(text);
  bg_buf_free(&out);
}

/* Runs check (Lua source) with the global `doc` = cjson.decode(json); 0 when it returns
 * without error, else prints why and counts a failure. */
static inline int fx_json(const char *json, const char *check) {
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  int rc = luaL_dostring(L, "cjson = require 'cjson'");
  if (rc == 0) {
    lua_getglobal(L, "cjson");
    lua_getfield(L, -1, "decode");
    lua_pushstring(L, json);
    rc = lua_pcall(L, 1, 1, 0);
    if (rc == 0) lua_setglobal(L, "doc");
  }
  if (rc == 0) rc = luaL_dostring(L, check);
  if (rc != 0) {
    fprintf(stderr, "json check failed: %s\n--- json\n%s\n", lua_tostring(L, -1), json);
    failures++;
  }
  lua_close(L);
  return rc;
}

/* The JSON decodes (cjson) to exactly the value of the Lua expression want (the globals T,
 * T0... set by prelude first): every field and no other, numbers compared as doubles, arrays in
 * order. Counts a failure and prints the first difference. */
static inline void fx_json_eq(const char *json, const char *prelude, const char *want) {
  char check[16384];
  snprintf(
      check, sizeof check,
      "%s\n"
      "local want = %s\n"
      "local function eq(a, b, path)\n"
      "  if type(a) ~= type(b) then error(path .. ': ' .. type(a) .. ' ~= ' .. type(b) .. "
      "' (' .. tostring(a) .. ' vs ' .. tostring(b) .. ')') end\n"
      "  if type(a) ~= 'table' then\n"
      "    if a ~= b then error(('%%s: %%s ~= %%s'):format(path, tostring(a), tostring(b))) end\n"
      "    return\n"
      "  end\n"
      "  for k, v in pairs(b) do eq(a[k], v, path .. '.' .. tostring(k)) end\n"
      "  for k in pairs(a) do if b[k] == nil then error(path .. '.' .. tostring(k) .. ' not "
      "expected') end end\n"
      "end\n"
      "eq(doc, want, 'doc')\n",
      prelude, want);
  fx_json(json, check);
}

#endif
