/* Tests for core/trace/w3c.c: traceparent and tracestate as W3C Trace Context level 1 has
 * them, in the spirit of the W3C test suite (test/test.py of w3c/trace-context): every
 * malformed traceparent refused, later versions read by their first 55 characters, and
 * tracestate's keys, values, limits, duplicates, empty members, OWS and the order of a set. */
#include <stdlib.h>
#include <string.h>

#include "test_check.h"
#include "trace/trace.h"

#define TP "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

static int tp_ok(const char *s) {
  bg_span_ctx c;
  int rc = bg_traceparent_parse(s, strlen(s), &c);
  if (rc != 0) {
    /* a refusal leaves nothing behind */
    static const bg_span_ctx zero;
    if (memcmp(&c, &zero, sizeof c) != 0) return -99;
  }
  return rc == 0;
}

static void test_traceparent_valid(void) {
  bg_span_ctx c;
  CHECK_INT(bg_traceparent_parse(TP, strlen(TP), &c), 0);
  char hex[32];
  bg_trace_hex(c.trace_id, 16, hex);
  CHECK(memcmp(hex, "0af7651916cd43dd8448eb211c80319c", 32) == 0);
  bg_trace_hex(c.span_id, 8, hex);
  CHECK(memcmp(hex, "b7ad6b7169203331", 16) == 0);
  CHECK_INT(c.flags, 1);
  CHECK_INT(c.remote, 1);
  CHECK(c.state == NULL);
  CHECK(bg_span_ctx_valid(&c) && bg_span_ctx_sampled(&c));
  char out[56] = {0};
  bg_traceparent_format(&c, out);
  CHECK_STR(out, TP);
  /* not sampled */
  CHECK_INT(tp_ok("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"), 1);
  bg_traceparent_parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", 55, &c);
  CHECK(!bg_span_ctx_sampled(&c));
  /* flags: any two hex digits; only the sampled bit is kept and passed on */
  CHECK_INT(bg_traceparent_parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-ff", 55, &c),
            0);
  CHECK_INT(c.flags, 1);
  bg_traceparent_format(&c, out);
  CHECK_STR(out, TP);
  bg_traceparent_parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-fe", 55, &c);
  CHECK_INT(c.flags, 0);
  bg_traceparent_parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-09", 55, &c);
  CHECK_INT(c.flags, 1);
  /* OWS around the field value is not part of it */
  CHECK_INT(tp_ok(" \t" TP " \t"), 1);
  /* not NUL-terminated: the length decides */
  char buf[80];
  memcpy(buf, TP "zzzz", 59);
  CHECK_INT(bg_traceparent_parse(buf, 55, &c), 0);
  CHECK_INT(bg_traceparent_parse(buf, 59, &c), BG_EINVAL);
}

static void test_traceparent_versions(void) {
  /* a later version is read as 00: its first 55 characters, then '-' or the end */
  CHECK_INT(tp_ok("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), 1);
  CHECK_INT(tp_ok("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), 1);
  CHECK_INT(tp_ok("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-the-future-"
                  "will-be-like"),
            1);
  CHECK_INT(tp_ok("fe-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-"), 1);
  /* ... but not run on into more characters */
  CHECK_INT(tp_ok("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01what-the-future"), 0);
  CHECK_INT(tp_ok("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01.x"), 0);
  /* and still 55 characters of version 00's shape */
  CHECK_INT(tp_ok("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1"), 0);
  CHECK_INT(tp_ok("cc-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01-x"), 0);
  bg_span_ctx c;
  bg_traceparent_parse("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x", 57, &c);
  char out[56] = {0};
  bg_traceparent_format(&c, out);
  CHECK_STR(out, TP); /* what we send is version 00 */
  /* version ff is forbidden; version 00 is exactly 55 characters */
  CHECK_INT(tp_ok("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), 0);
  CHECK_INT(tp_ok("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x"), 0);
  CHECK_INT(tp_ok(TP "-"), 0);
  CHECK_INT(tp_ok(TP "-what-the-future-will-be-like"), 0);
  CHECK_INT(tp_ok(TP "0"), 0);
  /* a version must be two lower-case hex digits */
  CHECK_INT(tp_ok("0-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), 0);
  CHECK_INT(tp_ok("000-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), 0);
  CHECK_INT(tp_ok("0A-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), 0);
  CHECK_INT(tp_ok("CC-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), 0);
  CHECK_INT(tp_ok("g0-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), 0);
  CHECK_INT(tp_ok("-0-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), 0);
}

static void test_traceparent_malformed(void) {
  static const char *bad[] = {
      "",
      " ",
      "00",
      "00-",
      /* zero ids */
      "00-00000000000000000000000000000000-b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
      "00-00000000000000000000000000000000-0000000000000000-01",
      /* upper case */
      "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319C-b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c-B7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0A",
      /* not hex */
      "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333.-01",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-.1",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0x",
      "00-+af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      /* lengths */
      "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319cc-b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333-01",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033311-01",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-001",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-",
      /* separators */
      "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331_01",
      "000af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
      /* spaces inside are not OWS */
      "00 -0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c -b7ad6b7169203331-01",
      "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331- 1",
      /* extra data after a version-00 value */
      TP "-",
      TP "-01",
      TP ",00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int ok = tp_ok(bad[i]);
    if (ok != 0) fprintf(stderr, "accepted (or dirty): \"%s\" (%d)\n", bad[i], ok);
    CHECK_INT(ok, 0);
  }
  /* a NUL inside the length is a character like any other */
  char buf[56];
  memcpy(buf, TP, 55);
  buf[20] = '\0';
  bg_span_ctx c;
  CHECK_INT(bg_traceparent_parse(buf, 55, &c), BG_EINVAL);
}

/* ---- tracestate ---- */

static const char *ts_of(bg_span_ctx *c) {
  static char out[8192];
  size_t n;
  const char *s = bg_tracestate_str(c->state, &n);
  if (s == NULL) return "(none)";
  memcpy(out, s, n);
  out[n] = '\0';
  return out;
}

static int ts_parse(bg_span_ctx *c, const char *s) {
  return bg_tracestate_parse(c, s, strlen(s));
}

static void test_tracestate_parse(void) {
  bg_span_ctx c = {0};
  CHECK_INT(ts_parse(&c, "foo=1,bar=2"), 0);
  CHECK_STR(ts_of(&c), "foo=1,bar=2");
  /* OWS around members, empty and blank members */
  CHECK_INT(ts_parse(&c, " foo=1 ,\t bar=2\t, ,,"), 0);
  CHECK_STR(ts_of(&c), "foo=1,bar=2");
  CHECK_INT(ts_parse(&c, ",,foo=1"), 0);
  CHECK_STR(ts_of(&c), "foo=1");
  /* empty header: no state */
  CHECK_INT(ts_parse(&c, ""), 0);
  CHECK(c.state == NULL);
  CHECK_INT(ts_parse(&c, " , ,\t"), 0);
  CHECK(c.state == NULL);
  /* values: printable ASCII, spaces inside, '=' and ',' never */
  CHECK_INT(ts_parse(&c, "foo=a b  c"), 0);
  CHECK_STR(ts_of(&c), "foo=a b  c");
  CHECK_INT(ts_parse(&c, "foo= lead"), 0);
  CHECK_STR(ts_of(&c), "foo= lead");
  CHECK_INT(ts_parse(&c, "foo=!\"#$%&'()*+-./:;<>?@[\\]^_`{|}~"), 0);
  CHECK_INT(ts_parse(&c, "foo=a=b"), BG_EINVAL);
  CHECK(c.state == NULL);
  CHECK_INT(ts_parse(&c, "foo="), BG_EINVAL);
  CHECK_INT(ts_parse(&c, "foo=   "), BG_EINVAL);
  CHECK_INT(ts_parse(&c, "foo=\x7f"), BG_EINVAL);
  CHECK_INT(ts_parse(&c, "foo=\x01x"), BG_EINVAL);
  CHECK_INT(ts_parse(&c, "foo=caf\xc3\xa9"), BG_EINVAL);
  CHECK_INT(ts_parse(&c, "foo=a\tb"), BG_EINVAL);
  CHECK_INT(ts_parse(&c, "foo"), BG_EINVAL);
  CHECK_INT(ts_parse(&c, "=1"), BG_EINVAL);
  /* one bad member discards the whole header, even with a good state before */
  CHECK_INT(ts_parse(&c, "foo=1"), 0);
  CHECK_INT(ts_parse(&c, "foo=1,BAR=2"), BG_EINVAL);
  CHECK(c.state == NULL);
  /* keys */
  static const char *good_keys[] = {"a",          "foo", "a0_-*/",   "0a@b",
                                    "tenant@sys", "a@b", "t_-*/9@s", "abc@z0_-*/"};
  for (size_t i = 0; i < sizeof good_keys / sizeof good_keys[0]; i++) {
    char h[64];
    snprintf(h, sizeof h, "%s=v", good_keys[i]);
    if (ts_parse(&c, h) != 0) fprintf(stderr, "refused key %s\n", good_keys[i]);
    CHECK(c.state != NULL);
  }
  static const char *bad_keys[] = {"0a",  "Foo", "_a",  "a b",   "a.b",   "a@", "@b",  "a@0b",
                                   "a@B", "A@b", "-@b", "a@b@c", "a@b.c", "é",  "a:b", "a@b c"};
  for (size_t i = 0; i < sizeof bad_keys / sizeof bad_keys[0]; i++) {
    char h[64];
    snprintf(h, sizeof h, "%s=v", bad_keys[i]);
    if (ts_parse(&c, h) == 0) fprintf(stderr, "accepted key %s\n", bad_keys[i]);
    CHECK(c.state == NULL);
  }
  bg_span_ctx_clear(&c);
}

static void test_tracestate_limits(void) {
  bg_span_ctx c = {0};
  char h[16384];
  /* a simple key up to 256 characters */
  memset(h, 'k', 256);
  strcpy(h + 256, "=v");
  CHECK_INT(ts_parse(&c, h), 0);
  memset(h, 'k', 257);
  strcpy(h + 257, "=v");
  CHECK_INT(ts_parse(&c, h), BG_EINVAL);
  /* tenant up to 241, system up to 14 */
  memset(h, 't', 241);
  strcpy(h + 241, "@ssssssssssssss=v");
  CHECK_INT(ts_parse(&c, h), 0);
  memset(h, 't', 242);
  strcpy(h + 242, "@s=v");
  CHECK_INT(ts_parse(&c, h), BG_EINVAL);
  strcpy(h, "t@sssssssssssssss=v");
  CHECK_INT(ts_parse(&c, h), BG_EINVAL);
  /* a value up to 256 */
  strcpy(h, "k=");
  memset(h + 2, 'v', 256);
  h[258] = '\0';
  CHECK_INT(ts_parse(&c, h), 0);
  CHECK_INT(strlen(ts_of(&c)), 258);
  memset(h + 2, 'v', 257);
  h[259] = '\0';
  CHECK_INT(ts_parse(&c, h), BG_EINVAL);
  /* 32 members, not 33 */
  size_t n = 0;
  for (int i = 0; i < 32; i++)
    n += (size_t)snprintf(h + n, sizeof h - n, "%sk%d=%d", i ? "," : "", i, i);
  CHECK_INT(ts_parse(&c, h), 0);
  CHECK_STR(ts_of(&c), h);
  strcat(h, ",,, ,"); /* empty members do not count */
  CHECK_INT(ts_parse(&c, h), 0);
  strcat(h, "k32=32");
  CHECK_INT(ts_parse(&c, h), BG_EINVAL);
  CHECK(c.state == NULL);
  /* duplicates discard the header */
  CHECK_INT(ts_parse(&c, "foo=1,bar=2,foo=3"), BG_EINVAL);
  CHECK(c.state == NULL);
  CHECK_INT(ts_parse(&c, "foo=1,bar=2,foo=1"), BG_EINVAL);
  CHECK_INT(ts_parse(&c, "a@b=1,a@c=2,a@b=3"), BG_EINVAL);
  CHECK_INT(ts_parse(&c, "a@b=1,a@c=2"), 0);
  bg_span_ctx_clear(&c);
}

static void test_tracestate_set(void) {
  bg_span_ctx c = {0};
  CHECK_INT(bg_tracestate_set(&c, "us", 2, "1", 1), 0);
  CHECK_STR(ts_of(&c), "us=1");
  CHECK_INT(ts_parse(&c, "a=1,b=2,c=3"), 0);
  /* a new key goes left */
  CHECK_INT(bg_tracestate_set(&c, "us", 2, "x", 1), 0);
  CHECK_STR(ts_of(&c), "us=x,a=1,b=2,c=3");
  /* an updated key moves left */
  CHECK_INT(bg_tracestate_set(&c, "b", 1, "9", 1), 0);
  CHECK_STR(ts_of(&c), "b=9,us=x,a=1,c=3");
  CHECK_INT(bg_tracestate_set(&c, "b", 1, "8", 1), 0);
  CHECK_STR(ts_of(&c), "b=8,us=x,a=1,c=3");
  /* invalid key or value: nothing changes */
  CHECK_INT(bg_tracestate_set(&c, "B", 1, "1", 1), BG_EINVAL);
  CHECK_INT(bg_tracestate_set(&c, "k", 1, "a,b", 3), BG_EINVAL);
  CHECK_INT(bg_tracestate_set(&c, "k", 1, "", 0), BG_EINVAL);
  CHECK_INT(bg_tracestate_set(&c, "k", 1, "v ", 2), BG_EINVAL);
  CHECK_STR(ts_of(&c), "b=8,us=x,a=1,c=3");
  /* a copy shares the state; a set on the copy leaves the original */
  bg_span_ctx d;
  bg_span_ctx_copy(&d, &c);
  CHECK(d.state == c.state);
  CHECK_INT(bg_tracestate_set(&d, "z", 1, "0", 1), 0);
  CHECK_STR(ts_of(&d), "z=0,b=8,us=x,a=1,c=3");
  CHECK_STR(ts_of(&c), "b=8,us=x,a=1,c=3");
  bg_span_ctx_clear(&d);
  CHECK(d.state == NULL);
  /* past 32, the rightmost goes */
  char h[1024];
  size_t n = 0;
  for (int i = 0; i < 32; i++)
    n += (size_t)snprintf(h + n, sizeof h - n, "%sk%d=%d", i ? "," : "", i, i);
  CHECK_INT(ts_parse(&c, h), 0);
  CHECK_INT(bg_tracestate_set(&c, "new", 3, "1", 1), 0);
  const char *s = ts_of(&c);
  CHECK(strncmp(s, "new=1,k0=0,k1=1,", 16) == 0);
  CHECK(strstr(s, "k30=30") != NULL);
  CHECK(strstr(s, "k31=31") == NULL);
  int commas = 0;
  for (const char *p = s; *p; p++)
    commas += *p == ',';
  CHECK_INT(commas, 31);
  /* updating an existing key of 32 keeps the other 31 */
  CHECK_INT(bg_tracestate_set(&c, "k30", 3, "x", 1), 0);
  s = ts_of(&c);
  CHECK(strncmp(s, "k30=x,new=1,k0=0,", 17) == 0);
  CHECK(strstr(s, "k29=29") != NULL);
  bg_span_ctx_clear(&c);
}

static void test_hex(void) {
  uint8_t id[4] = {0x00, 0x9f, 0xa0, 0xff};
  char out[9] = {0};
  bg_trace_hex(id, 4, out);
  CHECK_STR(out, "009fa0ff");
}

int main(void) {
  test_traceparent_valid();
  test_traceparent_versions();
  test_traceparent_malformed();
  test_tracestate_parse();
  test_tracestate_limits();
  test_tracestate_set();
  test_hex();
  if (failures) fprintf(stderr, "%d failures\n", failures);
  return failures != 0;
}
