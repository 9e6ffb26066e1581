/* fuzz_trace: libFuzzer target for W3C Trace Context and the trace batches' bytes. The input is
 * split at its first 0xff byte (kept out of the way: no valid header holds one) into a header
 * value and, after it, the key and value of a tracestate set (split at the first '='). It goes
 * through traceparent and tracestate parsing, and the whole input through the span and log
 * batch decoders. Invariants: what parses formats to what parses again to the same thing
 * (traceparent: version 00, 55 bytes; tracestate: normalised, at most 32 unique members, and
 * parsing the normal form is a fixed point); a set that succeeds puts "key=value" first and
 * keeps the state valid; a decoded batch encodes to bytes that decode again. Build: cmake
 * -DBEAGLE_FUZZ=ON -DCMAKE_C_COMPILER=clang; run: build/tests/fuzz/fuzz_trace -max_len=2048 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trace/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_traceparent(const char *s, size_t n) {
  bg_span_ctx c, d;
  if (bg_traceparent_parse(s, n, &c) != 0) {
    static const bg_span_ctx zero;
    if (memcmp(&c, &zero, sizeof c) != 0) abort(); /* a refusal leaves nothing */
    return;
  }
  if (!bg_span_ctx_valid(&c) || c.flags > 1 || c.remote != 1 || c.state != NULL) abort();
  char out[55];
  bg_traceparent_format(&c, out);
  if (out[0] != '0' || out[1] != '0') abort();
  if (bg_traceparent_parse(out, sizeof out, &d) != 0) abort();
  if (memcmp(c.trace_id, d.trace_id, 16) != 0 || memcmp(c.span_id, d.span_id, 8) != 0 ||
      c.flags != d.flags)
    abort();
  /* a version-00 value read back is the same bytes, but for flags past bit 0 */
  if (n == 55 && s[0] == '0' && s[1] == '0' && memcmp(out, s, 53) != 0) abort();
}

/* The state is normal: members "k=v" without OWS, unique, at most 32, and a fixed point. */
static void check_state(const bg_span_ctx *c) {
  size_t len;
  const char *s = bg_tracestate_str(c->state, &len);
  if (s == NULL) {
    if (len != 0) abort();
    return;
  }
  if (len == 0 || s[len] != '\0' || strlen(s) != len) abort();
  size_t members = 1;
  for (size_t i = 0; i < len; i++) {
    if (s[i] == ',') members++;
    if (s[i] == '\t' || (unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) abort();
  }
  if (members > 32 || s[0] == ' ' || s[len - 1] == ' ' || s[0] == ',') abort();
  bg_span_ctx again = {0};
  if (bg_tracestate_parse(&again, s, len) != 0 || again.state == NULL) abort();
  size_t alen;
  const char *as = bg_tracestate_str(again.state, &alen);
  if (alen != len || memcmp(as, s, len) != 0) abort();
  bg_span_ctx_clear(&again);
}

static void check_tracestate(const char *s, size_t n, const char *kv, size_t kvn) {
  bg_span_ctx c = {0};
  int rc = bg_tracestate_parse(&c, s, n);
  if (rc != 0 && c.state != NULL) abort();
  check_state(&c);
  const char *eq = memchr(kv, '=', kvn);
  if (eq != NULL) {
    size_t kl = (size_t)(eq - kv), vl = kvn - kl - 1;
    bg_span_ctx copy;
    bg_span_ctx_copy(&copy, &c);
    if (bg_tracestate_set(&c, kv, kl, eq + 1, vl) == 0) {
      size_t len;
      const char *st = bg_tracestate_str(c.state, &len);
      if (st == NULL || len < kvn || memcmp(st, kv, kvn) != 0 || (len > kvn && st[kvn] != ','))
        abort();
      check_state(&c);
      /* the copy still holds what it held */
      size_t ol, cl;
      const char *o = bg_tracestate_str(copy.state, &ol);
      if (rc == 0) {
        bg_span_ctx fresh = {0};
        bg_tracestate_parse(&fresh, s, n);
        const char *f = bg_tracestate_str(fresh.state, &cl);
        if (ol != cl || (ol > 0 && memcmp(o, f, ol) != 0)) abort();
        bg_span_ctx_clear(&fresh);
      }
    }
    bg_span_ctx_clear(&copy);
  }
  bg_span_ctx_clear(&c);
}

static void check_batches(const char *p, size_t n) {
  const char *why;
  bg_span_batch *b = bg_span_batch_decode(p, n, &why);
  if ((b == NULL) != (why != NULL)) abort();
  if (b != NULL) {
    bg_buf out = {0};
    if (bg_span_batch_encode(b, &out) != 0) abort();
    bg_span_batch *d = bg_span_batch_decode(out.data, out.len, &why);
    if (d == NULL || bg_span_batch_len(d) != bg_span_batch_len(b)) abort();
    bg_span_batch_unref(d);
    bg_buf_free(&out);
    bg_span_batch_unref(b);
  }
  bg_log_batch *l = bg_log_batch_decode(p, n, &why);
  if ((l == NULL) != (why != NULL)) abort();
  if (l != NULL) {
    bg_buf out = {0};
    if (bg_log_batch_encode(l, &out) != 0) abort();
    bg_log_batch *d = bg_log_batch_decode(out.data, out.len, &why);
    if (d == NULL || bg_log_batch_len(d) != bg_log_batch_len(l)) abort();
    bg_log_batch_unref(d);
    bg_buf_free(&out);
    bg_log_batch_unref(l);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data;
  const char *sep = memchr(p, 0xff, size);
  size_t hn = sep ? (size_t)(sep - p) : size;
  const char *kv = sep ? sep + 1 : "";
  size_t kvn = sep ? size - hn - 1 : 0;
  check_traceparent(p, hn);
  check_tracestate(p, hn, kv, kvn);
  check_batches(p, size);
  return 0;
}
