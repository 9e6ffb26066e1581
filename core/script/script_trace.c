/* script_trace.c: what ties the log to the tracer. core/base/log.c knows nothing of spans; this
 * hook, installed by the agent (agent.trace's T.configure, through the FFI), gives every log
 * line the current span's ids and records it for the log exporters (bg_trace_log_record does
 * nothing while no exporter of logs is configured). It sits here, with the runs that carry
 * the current span across their waits, because base may not use trace. */
#include <string.h>

#include "base/bg.h"
#include "base/log.h"
#include "script/script.h"
#include "trace/trace.h"

#define MAX_KV 64 /* pairs recorded; bg_log's callers pass at most 32 */

static int trace_log_hook(int level, const char *msg, const char *const *kv, size_t nkv,
                          const char *scope, char trace_id[32], char span_id[16]) {
  bg_tracer *t = bg_tracer_default();
  if (t == NULL) return 0;
  if (nkv > MAX_KV) nkv = MAX_KV;
  const char *v[2 * MAX_KV];
  size_t lens[2 * MAX_KV];
  for (size_t i = 0; i < 2 * nkv; i++) {
    v[i] = kv[i] != NULL ? kv[i] : "";
    lens[i] = strlen(v[i]);
  }
  if (scope == NULL) scope = "beagle";
  /* the scope is the plugin's name, as a config names it: its file without ".lua" */
  size_t slen = strlen(scope);
  if (slen > 4 && memcmp(scope + slen - 4, ".lua", 4) == 0) slen -= 4;
  bg_trace_log_record(t, level, msg, strlen(msg), v, lens, nkv, scope, slen);
  const bg_span_ctx *c = bg_trace_current(t);
  if (!bg_span_ctx_valid(c)) return 0;
  bg_trace_hex(c->trace_id, BG_TRACE_ID_LEN, trace_id);
  bg_trace_hex(c->span_id, BG_SPAN_ID_LEN, span_id);
  return 1;
}

void bg_trace_log_install(void) {
  bg_log_set_hook(trace_log_hook);
}
