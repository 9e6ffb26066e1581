/* Tests for core/export/encode_prometheus.c: the fixture registry (encode_fixture.h) encoded as
 * Prometheus text 0.0.4, read back by a parser written here (HELP and TYPE once per family and
 * before its samples, no timestamps, label values unescaped), compared sample by sample with
 * a prefix and extra labels; the same bytes as GET /metrics (bg_expo_prometheus) without
 * them; `promtool check metrics`; a batch that starts inside a family; an empty batch. */
#include "encode_fixture.h"
#include "export/encode_text.h"
#include "metrics/expo.h"

#include <unistd.h>

/* ---- a text format parser ------------------------------------------------------------------ */

/* Reads a label value or HELP text up to its end (a quote, or the end of the line) into out,
 * unescaping \\, \n and (quoted) \"; returns the byte after it. */
static const char *pr_unescape(const char *p, char *out, size_t n, int quoted) {
  size_t len = 0;
  while (*p && *p != '\n' && !(quoted && *p == '"')) {
    char c = *p++;
    if (c == '\\') {
      c = *p++;
      if (c == 'n')
        c = '\n';
      else if (c != '\\' && !(quoted && c == '"'))
        return NULL; /* no other escape exists */
    }
    if (len + 1 < n) out[len++] = c;
  }
  out[len] = '\0';
  return p;
}

typedef struct pr_family {
  char name[200], type[16], help[400];
} pr_family;

/* The samples of text into out, checking the family lines on the way: a sample's name must be
 * its family's (x, or a histogram's x_bucket/_sum/_count), each family declared once. Returns
 * the number of families, -1 when something does not parse. */
static int pr_model(const char *text, fx_set *out, pr_family *fams, int maxfam) {
  int nfam = 0;
  pr_family *cur = NULL;
  for (const char *p = text; *p;) {
    char name[200];
    if (strncmp(p, "# HELP ", 7) == 0) {
      if (nfam == maxfam) return -1;
      cur = &fams[nfam++];
      size_t n = strcspn(p + 7, " \n");
      if (n >= sizeof cur->name || p[7 + n] != ' ') return -1;
      memcpy(cur->name, p + 7, n);
      cur->name[n] = '\0';
      for (int i = 0; i < nfam - 1; i++)
        if (strcmp(fams[i].name, cur->name) == 0) return -1; /* declared twice */
      p = pr_unescape(p + 8 + n, cur->help, sizeof cur->help, 0);
      if (p == NULL || *p != '\n') return -1;
      p++;
      if (strncmp(p, "# TYPE ", 7) != 0 || strncmp(p + 7, cur->name, strlen(cur->name)) != 0)
        return -1;
      p += 7 + strlen(cur->name);
      if (sscanf(p, " %15[a-z]", cur->type) != 1) return -1;
      p = strchr(p, '\n') + 1;
      continue;
    }
    if (cur == NULL || *p == '#') return -1;
    size_t n = strcspn(p, "{ \n");
    if (n == 0 || n >= sizeof name) return -1;
    memcpy(name, p, n);
    name[n] = '\0';
    size_t fl = strlen(cur->name);
    int ok = strcmp(name, cur->name) == 0;
    if (strcmp(cur->type, "histogram") == 0)
      ok = strncmp(name, cur->name, fl) == 0 &&
           (strcmp(name + fl, "_bucket") == 0 || strcmp(name + fl, "_sum") == 0 ||
            strcmp(name + fl, "_count") == 0);
    if (!ok) {
      fprintf(stderr, "sample %s outside its family %s\n", name, cur->name);
      return -1;
    }
    p += n;
    fx_sample *s = fx_add(out, name, 0);
    if (*p == '{') {
      p++;
      while (*p != '}') {
        char k[64], v[320];
        size_t kn = strcspn(p, "=");
        if (kn == 0 || kn >= sizeof k || p[kn + 1] != '"') return -1;
        memcpy(k, p, kn);
        k[kn] = '\0';
        p = pr_unescape(p + kn + 2, v, sizeof v, 1);
        if (p == NULL || *p != '"') return -1;
        fx_label(s, k, v);
        p++;
        if (*p == ',') p++;
      }
      p++;
    }
    if (*p != ' ') return -1;
    char val[64], *end;
    n = strcspn(++p, " \n");
    if (n >= sizeof val || p[n] != '\n') return -1; /* a timestamp would follow a space */
    memcpy(val, p, n);
    val[n] = '\0';
    s->value = strtod(val, &end);
    if (*end != '\0' || end == val) return -1;
    p += n + 1;
  }
  return nfam;
}

/* ---- tests --------------------------------------------------------------------------------- */

/* sorted by key; "__x", "bad key", "le" and the value that is not UTF-8 are left out */
static const char *const EXTRA[] = {"__x",  "y",           "bad key", "v",      "env",
                                    "prod", "le",          "x",       "method", "EXTRA",
                                    "zone", "a b;c\"\\\n", "zz",      "\xff"};

static void test_round_trip(void) {
  bg_registry *r = fx_registry();
  bg_batch *b = fx_batch(r);
  const char *prefixes[] = {NULL, "9 my:app-"}, *names[] = {"", "_9_my:app_"};
  for (int i = 0; i < 2; i++) {
    bg_encode_opts o = {.labels = EXTRA, .nlabels = 7, .prefix = prefixes[i]};
    char *text = fx_encode(bg_encode_prometheus, b, &o);
    CHECK_INT(o.skipped, 4);
    fx_set got = {0}, want = {0};
    pr_family fams[32];
    int nfam = pr_model(text, &got, fams, 32);
    /* api_requests, big, inf_value, inf_hist, latency_seconds, nan_value, ratio, temp_celsius,
       tiny, trailing, wide */
    CHECK_INT(nfam, 11);
    const char *const kv[] = {"env", "prod", "method", "EXTRA", "zone", "a b;c\"\\\n"};
    fx_want w = {.prefix = names[i], .kv = kv, .nkv = 3};
    fx_expected(&want, &w);
    FX_CHECK_SAME(&got, &want);
    for (int f = 0; f < nfam && nfam > 0; f++) {
      char want_name[200];
      if (strstr(fams[f].name, "latency_seconds")) {
        snprintf(want_name, sizeof want_name, "%slatency_seconds", names[i]);
        CHECK_STR(fams[f].name, want_name);
        CHECK_STR(fams[f].type, "histogram");
        CHECK_STR(fams[f].help, "Latency.\nIn s\\.");
      }
      if (strstr(fams[f].name, "temp_celsius")) {
        CHECK_STR(fams[f].type, "gauge");
        CHECK_STR(fams[f].help, "Temperature \\ \"now\"\nsecond line");
      }
      if (strstr(fams[f].name, "api_requests")) {
        snprintf(want_name, sizeof want_name, "%sapi_requests_total", names[i]);
        CHECK_STR(fams[f].name, want_name);
        CHECK_STR(fams[f].type, "counter");
        CHECK_STR(fams[f].help, "Requests served.");
      }
      if (strstr(fams[f].name, "ratio")) CHECK_STR(fams[f].help, "Metric recorded by beagle.");
    }
    fx_free(&got);
    fx_free(&want);
    free(text);
  }
  bg_batch_unref(b);
  bg_registry_free(r);
}

/* Without a prefix or extra labels, the bytes GET /metrics serves; promtool accepts them. */
static void test_as_metrics(void) {
  bg_registry *r = fx_registry();
  bg_batch *b = fx_batch(r);
  bg_encode_opts o = {0};
  char *text = fx_encode(bg_encode_prometheus, b, &o);
  bg_buf ref = {0};
  CHECK_INT(bg_expo_prometheus(r, &ref), 0);
  CHECK_STR(text, ref.data);
  CHECK_INT(o.skipped, 0);
  CHECK(strstr(text,
               "temp_celsius{note=\"line1\\nline2\ttab\r\f\",room=\"quote\\\"back\\\\slash\"} "
               "67.5\n") != NULL);
  CHECK(strstr(text, "inf_hist_bucket{le=\"+Inf\"} 2\ninf_hist_sum +Inf\ninf_hist_count 2\n") !=
        NULL);
  CHECK(strstr(text, "nan_value NaN\n") != NULL);
  CHECK(strstr(text, "inf_value{sign=\"-\"} -Inf\n") != NULL);

  char path[] = "/tmp/beagle_test_push_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  FILE *f = fdopen(fd, "w");
  fputs(text, f);
  fclose(f);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
  FILE *p = popen(cmd, "r");
  char out[4096] = "";
  size_t n = fread(out, 1, sizeof out - 1, p);
  out[n] = '\0';
  CHECK_INT(pclose(p), 0);
  CHECK_STR(out, "");
  unlink(path);
  free(text);
  bg_buf_free(&ref);
  bg_batch_unref(b);
  bg_registry_free(r);
}

/* A batch that starts in the middle of a family declares it again. */
static void test_split_family(void) {
  bg_registry *r = fx_registry();
  bg_snapshot *snap = bg_snapshot_take(r, FX_TIME);
  bg_batch *b = bg_batch_new(snap, 1, 2); /* api_requests{GET}, big */
  bg_encode_opts o = {0};
  char *text = fx_encode(bg_encode_prometheus, b, &o);
  CHECK_STR(text, "# HELP api_requests_total Requests served.\n"
                  "# TYPE api_requests_total counter\n"
                  "api_requests_total{method=\"GET\",path=\"\"} 1.5\n"
                  "# HELP big Metric recorded by beagle.\n"
                  "# TYPE big gauge\n"
                  "big 1e+21\n");
  free(text);
  bg_batch_unref(b);

  b = bg_batch_new(snap, 0, 0);
  text = fx_encode(bg_encode_prometheus, b, &o);
  CHECK_STR(text, "");
  free(text);
  bg_batch_unref(b);
  bg_snapshot_unref(snap);
  bg_registry_free(r);
}

int main(void) {
  test_round_trip();
  test_as_metrics();
  test_split_family();
  if (failures) {
    fprintf(stderr, "%d failures\n", failures);
    return 1;
  }
  return 0;
}
