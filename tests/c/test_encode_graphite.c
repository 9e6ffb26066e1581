/* Tests for core/export/encode_graphite.c: the fixture registry (encode_fixture.h) encoded as
 * Graphite plaintext in both flavors, read back by a parser written here (a line is
 * `path value timestamp`; a Graphite 1.1 tagged path is name;tag=value;...), mapped back to
 * the Prometheus data model and compared sample by sample, with a prefix and extra labels;
 * exact text of the sanitising cases; NaN and infinities left out and counted; an empty
 * batch; a bad flavor; a prefix too long. */
#include "encode_fixture.h"
#include "export/encode_text.h"

#include <ctype.h>

/* ---- a plaintext parser -------------------------------------------------------------------- */

/* Splits text into lines of three space-separated fields, checks each timestamp, and maps the
 * paths back: prefix (sanitised, with its "."), then the name, then, tagged, ";k=v" pairs, or,
 * folded (path), ".k.v" pairs; a histogram's .count, .sum, .bucket with le. Returns the number
 * of lines, -1 when one does not parse. */
static int gr_model(const char *text, int path, const char *prefix, fx_set *out) {
  int lines = 0;
  size_t plen = strlen(prefix);
  for (const char *p = text; *p;) {
    const char *nl = strchr(p, '\n');
    if (nl == NULL) return -1;
    char line[2048], *sp1, *sp2;
    size_t n = (size_t)(nl - p);
    if (n >= sizeof line) return -1;
    memcpy(line, p, n);
    line[n] = '\0';
    p = nl + 1;
    lines++;
    if ((sp1 = strchr(line, ' ')) == NULL || (sp2 = strchr(sp1 + 1, ' ')) == NULL ||
        strchr(sp2 + 1, ' ') != NULL) {
      fprintf(stderr, "not three fields: %s\n", line);
      return -1;
    }
    *sp1 = *sp2 = '\0';
    char *end;
    double v = strtod(sp1 + 1, &end);
    if (*end != '\0' || !isfinite(v)) return -1;
    CHECK_STR(sp2 + 1, "1764300000");
    if (strncmp(line, prefix, plen) != 0) {
      fprintf(stderr, "no prefix %s: %s\n", prefix, line);
      return -1;
    }
    char *rest = line + plen;
    char *tags = strchr(rest, ';');
    if (tags) *tags++ = '\0';
    /* the path's nodes after the prefix */
    char *node[80];
    int nn = 0;
    for (char *tok = strtok(rest, "."); tok && nn < 80; tok = strtok(NULL, "."))
      node[nn++] = tok;
    if (nn == 0) return -1;
    char name[300];
    const char *le = NULL;
    /* folded: name, key-value pairs, then 1 node (count, sum) or 2 (bucket, le_<b>) */
    int pairs = 0;
    if (path && nn % 2 == 1 && nn >= 3 && strcmp(node[nn - 2], "bucket") == 0 &&
        strncmp(node[nn - 1], "le_", 3) == 0)
      pairs = (nn - 3) / 2;
    else if (path)
      pairs = (nn - 1) / 2;
    int tail = 1 + 2 * pairs;
    if (tail < nn) { /* a histogram's part */
      if (strcmp(node[tail], "bucket") == 0) {
        snprintf(name, sizeof name, "%s_bucket", node[0]);
        le = path ? node[tail + 1] + 3 : "";
      } else {
        snprintf(name, sizeof name, "%s_%s", node[0], node[tail]);
      }
    } else {
      snprintf(name, sizeof name, "%s", node[0]);
    }
    fx_sample *s = fx_add(out, name, v);
    for (int i = 0; i < pairs; i++)
      fx_label(s, node[1 + 2 * i], node[2 + 2 * i]);
    if (le && path) {
      char num[64];
      size_t k = 0;
      for (const char *q = le; *q && k + 1 < sizeof num; q++)
        num[k++] = *q == '_' ? '.' : *q;
      num[k] = '\0';
      fx_label(s, "le", strcmp(num, "inf") == 0 ? "+Inf" : num);
    }
    for (char *tok = tags ? strtok(tags, ";") : NULL; tok; tok = strtok(NULL, ";")) {
      char *eq = strchr(tok, '=');
      if (eq == NULL || eq == tok || eq[1] == '\0' || eq[1] == '~') return -1;
      *eq = '\0';
      fx_label(s, tok, eq + 1);
    }
  }
  return lines;
}

/* What a tag arrives as: "name" renamed, ; ! ^ = and blanks out of names, ; ~ and blanks out
 * of values, empty values left out. */
static int tag_label(const char *k, const char *v, char *ko, char *vo) {
  if (v[0] == '\0' || strcmp(k, "le") == 0) return 0;
  if (strcmp(k, "name") == 0) k = "exported_name";
  for (; *k; k++)
    *ko++ = strchr(";!^=", *k) || (unsigned char)*k <= ' ' ? '_' : *k;
  *ko = '\0';
  for (; *v; v++)
    *vo++ = *v == ';' || *v == '~' || (unsigned char)*v <= ' ' ? '_' : *v;
  *vo = '\0';
  return 1;
}

/* A path node: [A-Za-z0-9_:-], anything else one "_" per character. */
static void node_of(const char *s, char *o) {
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if ((c & 0xc0) == 0x80) continue;
    *o++ = isalnum(c) || c == '_' || c == ':' || c == '-' ? (char)c : '_';
  }
  *o = '\0';
}

static int path_label(const char *k, const char *v, char *ko, char *vo) {
  if (v[0] == '\0' || strcmp(k, "le") == 0) return 0;
  node_of(k, ko);
  node_of(v, vo);
  return 1;
}

/* ---- tests --------------------------------------------------------------------------------- */

static const char *const EXTRA[] = {"a!b=c^d;e f", "1",      "env",   "prod", "le",
                                    "x",           "method", "EXTRA", "zone", "a b;c"};

static void round_trip(int path, const char *prefix, const char *sanitised) {
  bg_registry *r = fx_registry();
  bg_batch *b = fx_batch(r);
  bg_encode_opts o = {
      .labels = EXTRA, .nlabels = 5, .prefix = prefix, .flavor = path ? "path" : "tags"};
  char *text = fx_encode(bg_encode_graphite, b, &o);
  fx_set got = {0}, want = {0};
  int lines = gr_model(text, path, sanitised, &got);
  /* "le" once; the NaN, +Inf and -Inf gauges; inf_hist's sum */
  CHECK_INT(o.skipped, 5);
  const char *const kv[] = {"a!b=c^d;e f", "1", "env", "prod", "method", "EXTRA", "zone", "a b;c"};
  fx_want w = {.kv = kv, .nkv = 4, .label = path ? path_label : tag_label, .finite_only = 1};
  fx_expected(&want, &w);
  FX_CHECK_SAME(&got, &want);
  CHECK_INT(lines, want.n);
  fx_free(&got);
  fx_free(&want);
  free(text);
  bg_batch_unref(b);
  bg_registry_free(r);
}

static void test_round_trip(void) {
  round_trip(0, NULL, "");
  round_trip(1, NULL, "");
  round_trip(0, "servers.web 1..x.", "servers.web_1.x.");
  round_trip(1, ".a;b.\xc3\xa9t\xc3\xa9", "a_b._t_.");
}

static void check_lines(const char *text, const char *const *want, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (text == NULL || strstr(text, want[i]) == NULL) {
      fprintf(stderr, "missing line:\n%s--- in:\n%s\n", want[i], text ? text : "");
      failures++;
    }
}

static void test_exact(void) {
  bg_registry *r = fx_registry();
  bg_batch *b = fx_batch(r);
  bg_encode_opts o = {0};
  char *text = fx_encode(bg_encode_graphite, b, &o);
  const char *tags[] = {
      "api_requests_total;method=POST;path=/a_b,c=d.html 3 1764300000\n",
      "api_requests_total;method=GET 1.5 1764300000\n",
      "temp_celsius;note=line1_line2_tab__;room=quote\"back\\slash 67.5 1764300000\n",
      "temp_celsius;note=a=b_c_d_e,f;room=h\xc3\xa9llo_w\xc3\xb6rld_\xe2\x9c\x93_\xe6\x97\xa5 -2.5 "
      "1764300000\n",
      "latency_seconds.count;endpoint=/z 0 1764300000\n",
      "latency_seconds.sum;endpoint=/z 0 1764300000\n",
      "latency_seconds.bucket;endpoint=/z;le=0.5 0 1764300000\n",
      "latency_seconds.bucket;endpoint=/x_y;le=+Inf 4 1764300000\n",
      "inf_hist.count 2 1764300000\ninf_hist.bucket;le=1 1 1764300000\n"
      "inf_hist.bucket;le=+Inf 2 1764300000\n",
      "trailing;dir=C:\\temp\\;exported_name=x 1 1764300000\n",
      "big 1e+21 1764300000\n",
      "tiny -1.25e-07 1764300000\n",
      "wide;l00=v0;l01=v1;l02=v2;l03=v3;l04=v4;l05=v5;l06=v6;l07=v7;l08=v8;l09=v9;l10=v10;l11=v11;"
      "l12=v12;l13=v13;l14=v14;l15=v15 7 1764300000\n",
  };
  check_lines(text, tags, sizeof tags / sizeof tags[0]);
  CHECK(strstr(text, "inf_hist.sum") == NULL);
  CHECK(strstr(text, "nan_value") == NULL);
  CHECK(strstr(text, "inf_value") == NULL);
  CHECK_INT(o.skipped, 4);
  free(text);

  o = (bg_encode_opts){.flavor = "path", .prefix = "beagle.host-1"};
  text = fx_encode(bg_encode_graphite, b, &o);
  const char *path[] = {
      "beagle.host-1.api_requests_total.method.POST.path._a_b_c_d_html 3 1764300000\n",
      "beagle.host-1.api_requests_total.method.GET 1.5 1764300000\n",
      "beagle.host-1.temp_celsius.note.a_b_c_d_e_f.room.h_llo_w_rld____ -2.5 1764300000\n",
      "beagle.host-1.latency_seconds.endpoint._x_y.count 4 1764300000\n",
      "beagle.host-1.latency_seconds.endpoint._x_y.bucket.le_0_1 1 1764300000\n",
      "beagle.host-1.latency_seconds.endpoint._x_y.bucket.le_1 3 1764300000\n",
      "beagle.host-1.latency_seconds.endpoint._x_y.bucket.le_inf 4 1764300000\n",
      "beagle.host-1.trailing.dir.C:_temp_.name.x 1 1764300000\n",
  };
  check_lines(text, path, sizeof path / sizeof path[0]);
  free(text);

  /* tag names lose ; ! ^ = and blanks */
  o = (bg_encode_opts){.labels = EXTRA, .nlabels = 1};
  text = fx_encode(bg_encode_graphite, b, &o);
  const char *keys[] = {"ratio;a_b_c_d_e_f=1 0.3333333333333333 1764300000\n"};
  check_lines(text, keys, 1);
  free(text);
  bg_batch_unref(b);
  bg_registry_free(r);
}

static void test_errors(void) {
  bg_registry *r = fx_registry();
  bg_batch *b = fx_batch(r);
  char err[256] = "", long_prefix[300];
  memset(long_prefix, 'a', sizeof long_prefix - 1);
  long_prefix[sizeof long_prefix - 1] = '\0';
  bg_buf out = {0};
  bg_encode_opts o = {.flavor = "folded"};
  CHECK_INT(bg_encode_graphite(b, &o, &out, err, sizeof err), BG_EINVAL);
  CHECK_ERR(err, "flavor");
  o = (bg_encode_opts){.prefix = long_prefix};
  CHECK_INT(bg_encode_graphite(b, &o, &out, err, sizeof err), BG_EINVAL);
  CHECK_ERR(err, "prefix");
  CHECK_INT(out.len, 0);
  bg_buf_free(&out);
  bg_batch_unref(b);
  bg_registry_free(r);

  r = bg_registry_new();
  b = fx_batch(r);
  o = (bg_encode_opts){0};
  char *text = fx_encode(bg_encode_graphite, b, &o);
  CHECK_STR(text, "");
  free(text);
  bg_batch_unref(b);
  bg_registry_free(r);
}

int main(void) {
  test_round_trip();
  test_exact();
  test_errors();
  if (failures) {
    fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  return 0;
}
