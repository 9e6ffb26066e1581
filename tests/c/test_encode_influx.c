/* Tests for core/export/encode_influx.c: the fixture registry (encode_fixture.h) encoded as line
 * protocol, read back by a parser written here from the line protocol reference (escapes: a
 * backslash before a character the element escapes is dropped, any other backslash is
 * literal), mapped back to the Prometheus data model and compared sample by sample, in both
 * metric versions, with a prefix and extra labels; exact text of the escaping cases; NaN and
 * infinities left out and counted; precisions; an empty batch; a bad flavor. */
#include "encode_fixture.h"
#include "export/encode_text.h"

#include <zlib.h>

/* ---- a line protocol parser ---------------------------------------------------------------- */

typedef struct lp_line {
  char meas[256];
  int nt, nf;
  char tk[40][64], tv[40][320];
  char fk[80][200];
  double fv[80];
  char ts[32];
} lp_line;

/* Reads up to an unescaped byte of stops (or the end of the line) into out; returns that byte
 * (0 at the end of the text) and moves *p past it. esc: the bytes a backslash escapes here. */
static char lp_token(const char **p, char *out, size_t n, const char *stops, const char *esc) {
  size_t len = 0;
  const char *s = *p;
  for (;;) {
    char c = *s;
    if (c == '\0' || c == '\n' || strchr(stops, c)) {
      out[len < n ? len : n - 1] = '\0';
      *p = c ? s + 1 : s;
      return c;
    }
    if (c == '\\' && s[1] && strchr(esc, s[1])) {
      c = s[1];
      s++;
    }
    if (len + 1 < n) out[len++] = c;
    s++;
  }
}

/* One line; 0 when it does not parse. */
static int lp_parse(const char **p, lp_line *l) {
  memset(l, 0, sizeof *l);
  char stop = lp_token(p, l->meas, sizeof l->meas, ", ", ", ");
  if (l->meas[0] == '\0') return 0;
  while (stop == ',') {
    if (lp_token(p, l->tk[l->nt], sizeof l->tk[0], "=", ",= ") != '=') return 0;
    stop = lp_token(p, l->tv[l->nt], sizeof l->tv[0], ", ", ",= ");
    if (l->tk[l->nt][0] == '\0' || l->tv[l->nt][0] == '\0') return 0;
    l->nt++;
  }
  if (stop != ' ') return 0;
  do {
    char val[64];
    if (lp_token(p, l->fk[l->nf], sizeof l->fk[0], "=", ",= ") != '=') return 0;
    stop = lp_token(p, val, sizeof val, ", ", "");
    /* a float field: a number without the i or u of integers, not a string or boolean */
    char *end;
    l->fv[l->nf] = strtod(val, &end);
    if (end == val || *end != '\0' || !isfinite(l->fv[l->nf])) return 0;
    l->nf++;
  } while (stop == ',');
  if (stop != ' ') return 0;
  const char *s = *p;
  size_t n = strspn(s, "0123456789");
  if (n == 0 || n >= sizeof l->ts || s[n] != '\n') return 0;
  memcpy(l->ts, s, n);
  *p = s + n + 1;
  return 1;
}

/* Every line of text into the model: version 1 or 2 mapping undone. Returns the number of
 * lines, -1 if one does not parse; each line's timestamp must be ts. */
static int lp_model(const char *text, int v2, const char *ts, fx_set *out) {
  const char *p = text;
  int lines = 0;
  static lp_line l;
  while (*p) {
    if (!lp_parse(&p, &l)) {
      fprintf(stderr, "unparsable line %d: %.200s\n", lines + 1, p);
      return -1;
    }
    lines++;
    CHECK_STR(l.ts, ts);
    char name[400];
    for (int f = 0; f < l.nf; f++) {
      const char *field = l.fk[f];
      fx_sample *s;
      if (v2) {
        CHECK_STR(l.meas, "prometheus");
        s = fx_add(out, field, l.fv[f]);
      } else if (strcmp(field, "counter") == 0 || strcmp(field, "gauge") == 0) {
        s = fx_add(out, l.meas, l.fv[f]);
      } else if (strcmp(field, "count") == 0 || strcmp(field, "sum") == 0) {
        snprintf(name, sizeof name, "%s_%s", l.meas, field);
        s = fx_add(out, name, l.fv[f]);
      } else {
        snprintf(name, sizeof name, "%s_bucket", l.meas);
        s = fx_add(out, name, l.fv[f]);
        fx_label(s, "le", field);
      }
      for (int t = 0; t < l.nt; t++)
        fx_label(s, l.tk[t], l.tv[t]);
    }
  }
  return lines;
}

/* What InfluxDB gets of a label: no empty values, none ending in a backslash, tab, newline,
 * carriage return and form feed as two characters. */
static int influx_label(const char *k, const char *v, char *ko, char *vo) {
  size_t n = strlen(v);
  if (n == 0 || v[n - 1] == '\\' || strcmp(k, "le") == 0) return 0;
  strcpy(ko, k);
  for (; *v; v++) {
    const char *two = *v == '\t'   ? "\\t"
                      : *v == '\n' ? "\\n"
                      : *v == '\r' ? "\\r"
                      : *v == '\f' ? "\\f"
                                   : NULL;
    if (two) {
      memcpy(vo, two, 2);
      vo += 2;
    } else {
      *vo++ = *v;
    }
  }
  *vo = '\0';
  return 1;
}

/* ---- tests --------------------------------------------------------------------------------- */

static const char *const EXTRA[] = {"env", "prod", "le", "x", "method", "EXTRA", "zone", "a b,c"};

static void round_trip(int v2, const char *prefix) {
  bg_registry *r = fx_registry();
  bg_batch *b = fx_batch(r);
  bg_encode_opts o = {.labels = EXTRA, .nlabels = 4, .prefix = prefix, .flavor = v2 ? "v2" : NULL};
  char *text = fx_encode(bg_encode_influx, b, &o);
  fx_set got = {0}, want = {0};
  int lines = lp_model(text, v2, "1764300000250000000", &got);
  /* "le" once; NaN, +Inf, -Inf gauges; inf_hist's sum; the dir label ending in a backslash */
  CHECK_INT(o.skipped, 6);
  const char *const kv[] = {"env", "prod", "method", "EXTRA", "zone", "a b,c"};
  fx_want w = {.prefix = prefix, .kv = kv, .nkv = 3, .label = influx_label, .finite_only = 1};
  fx_expected(&want, &w);
  FX_CHECK_SAME(&got, &want);
  /* version 1: a line per series (12 of the 15 are finite); version 2 also a line per bucket */
  CHECK_INT(lines, v2 ? 9 + 5 + 5 + 3 : 12);
  fx_free(&got);
  fx_free(&want);
  free(text);
  bg_batch_unref(b);
  bg_registry_free(r);
}

static void test_round_trip(void) {
  round_trip(0, NULL);
  round_trip(1, NULL);
  round_trip(0, "my app,x=");
  round_trip(1, "my app,x=");
}

/* The escaping, byte for byte. */
static void test_exact(void) {
  bg_registry *r = fx_registry();
  bg_batch *b = fx_batch(r);
  bg_encode_opts o = {0};
  char *text = fx_encode(bg_encode_influx, b, &o);
  const char *want[] = {
      "api_requests_total,method=POST,path=/a\\ b\\,c\\=d.html counter=3 1764300000250000000\n",
      "api_requests_total,method=GET counter=1.5 1764300000250000000\n",
      "temp_celsius,note=line1\\nline2\\ttab\\r\\f,room=quote\"back\\slash gauge=67.5 "
      "1764300000250000000\n",
      "temp_celsius,note=a\\=b;c~d\\ e\\,f,room=h\xc3\xa9llo\\ w\xc3\xb6rld\\ \xe2\x9c\x93\\ "
      "\xe6\x97\xa5 gauge=-2.5 1764300000250000000\n",
      "latency_seconds,endpoint=/z count=0,sum=0,0.1=0,0.5=0,1=0,+Inf=0 1764300000250000000\n",
      "inf_hist count=2,1=1,+Inf=2 1764300000250000000\n",
      "big gauge=1e+21 1764300000250000000\n",
      "tiny gauge=-1.25e-07 1764300000250000000\n",
      "ratio gauge=0.3333333333333333 1764300000250000000\n",
      "trailing,name=x gauge=1 1764300000250000000\n",
      "wide,l00=v0,l01=v1,l02=v2,l03=v3,l04=v4,l05=v5,l06=v6,l07=v7,l08=v8,l09=v9,l10=v10,"
      "l11=v11,l12=v12,l13=v13,l14=v14,l15=v15 gauge=7 1764300000250000000\n",
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
    if (text == NULL || strstr(text, want[i]) == NULL) {
      fprintf(stderr, "missing line:\n%s--- in:\n%s\n", want[i], text ? text : "");
      failures++;
    }
  CHECK(strstr(text, "nan_value") == NULL);
  CHECK(strstr(text, "inf_value") == NULL);
  CHECK_INT(o.skipped, 5);
  free(text);

  /* version 2: the bucket lines carry le in key order, with the series' tags */
  o = (bg_encode_opts){.flavor = "v2,s", .prefix = "p_"};
  text = fx_encode(bg_encode_influx, b, &o);
  CHECK(strstr(text, "prometheus,endpoint=/z p_latency_seconds_count=0,p_latency_seconds_sum=0 "
                     "1764300000\n") != NULL);
  CHECK(strstr(text, "prometheus,endpoint=/z,le=0.5 p_latency_seconds_bucket=0 1764300000\n") !=
        NULL);
  CHECK(strstr(text, "prometheus,dir=C:\\temp\\") == NULL);
  CHECK(strstr(text, "prometheus,le=+Inf p_inf_hist_bucket=2 1764300000\n") != NULL);
  CHECK(strstr(text, "prometheus,method=POST,path=/a\\ b\\,c\\=d.html p_api_requests_total=3 ") !=
        NULL);
  free(text);

  /* an extra label sorts among the series' own; a tag key with a space is escaped */
  const char *const extra[] = {"a key", "1", "m", "2"};
  o = (bg_encode_opts){.labels = extra, .nlabels = 2};
  text = fx_encode(bg_encode_influx, b, &o);
  CHECK(
      strstr(text,
             "api_requests_total,a\\ key=1,m=2,method=POST,path=/a\\ b\\,c\\=d.html counter=3 ") !=
      NULL);
  CHECK(strstr(text, "ratio,a\\ key=1,m=2 gauge=") != NULL);
  free(text);
  bg_batch_unref(b);
  bg_registry_free(r);
}

static void test_precision(void) {
  bg_registry *r = fx_registry();
  bg_batch *b = fx_batch(r);
  const char *flavors[] = {"ns", "us", "ms", "s", "v1,ms", "ms,v2"};
  const char *ts[] = {" 1764300000250000000\n", " 1764300000250000\n", " 1764300000250\n",
                      " 1764300000\n",          " 1764300000250\n",    " 1764300000250\n"};
  for (int i = 0; i < 6; i++) {
    bg_encode_opts o = {.flavor = flavors[i]};
    char *text = fx_encode(bg_encode_influx, b, &o);
    char line[64];
    snprintf(line, sizeof line, "%s%s",
             i == 5 ? "prometheus ratio=0.3333333333333333" : "ratio gauge=0.3333333333333333",
             ts[i]);
    if (text == NULL || strstr(text, line) == NULL) {
      fprintf(stderr, "flavor %s: no \"%s\"\n", flavors[i], line);
      failures++;
    }
    free(text);
  }
  char err[256] = "";
  bg_buf out = {0};
  bg_encode_opts o = {.flavor = "v3"};
  CHECK_INT(bg_encode_influx(b, &o, &out, err, sizeof err), BG_EINVAL);
  CHECK_ERR(err, "\"v3\"");
  CHECK_INT(out.len, 0);
  bg_buf_free(&out);
  bg_batch_unref(b);
  bg_registry_free(r);
}

/* "gzip": the same text, gzipped (read back with zlib); nothing for no lines. */
static void test_gzip(void) {
  bg_registry *r = fx_registry();
  bg_batch *b = fx_batch(r);
  bg_encode_opts o = {.flavor = "v2"}, oz = {.flavor = "gzip,v2"};
  char *plain = fx_encode(bg_encode_influx, b, &o);
  bg_buf gz = {0};
  char err[256];
  CHECK_INT(bg_encode_influx(b, &oz, &gz, err, sizeof err), 0);
  CHECK_INT(oz.skipped, o.skipped);
  CHECK(gz.len > 18 && (unsigned char)gz.data[0] == 0x1f && (unsigned char)gz.data[1] == 0x8b);
  size_t cap = strlen(plain) + 64;
  char *back = calloc(1, cap);
  z_stream z = {0};
  CHECK_INT(inflateInit2(&z, 16 + MAX_WBITS), Z_OK);
  z.next_in = (unsigned char *)gz.data;
  z.avail_in = (unsigned)gz.len;
  z.next_out = (unsigned char *)back;
  z.avail_out = (unsigned)cap - 1;
  CHECK_INT(inflate(&z, Z_FINISH), Z_STREAM_END);
  inflateEnd(&z);
  CHECK_STR(back, plain);
  free(back);
  free(plain);
  bg_buf_free(&gz);
  bg_batch_unref(b);
  bg_registry_free(r);

  r = bg_registry_new();
  b = fx_batch(r);
  oz = (bg_encode_opts){.flavor = "gzip"};
  CHECK_INT(bg_encode_influx(b, &oz, &gz, err, sizeof err), 0);
  CHECK_INT(gz.len, 0);
  bg_buf_free(&gz);
  bg_batch_unref(b);
  bg_registry_free(r);
}

static void test_empty(void) {
  bg_registry *r = bg_registry_new();
  bg_batch *b = fx_batch(r);
  bg_encode_opts o = {0};
  char *text = fx_encode(bg_encode_influx, b, &o);
  CHECK_STR(text, "");
  CHECK_INT(o.skipped, 0);
  free(text);
  bg_batch_unref(b);
  bg_registry_free(r);
}

int main(void) {
  test_round_trip();
  test_exact();
  test_precision();
  test_gzip();
  test_empty();
  if (failures) {
    fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  return 0;
}
