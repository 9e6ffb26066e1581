/* encode_otlp_json: finished spans and log records (trace/trace.h's batches) as the bodies of
 * OTLP/HTTP JSON requests: ExportTraceServiceRequest (POST /v1/traces) and
 * ExportLogsServiceRequest (POST /v1/logs), in the protobuf JSON mapping OTLP specifies. The
 * mapping is described at the top of encode_otlp_json.c and in docs/plugins/otlp_traces.md.
 * Loop thread only; nothing is kept past a call. */
#ifndef BG_ENCODE_OTLP_JSON_H
#define BG_ENCODE_OTLP_JSON_H

#include "base/bg.h"
#include "trace/trace.h"

typedef struct bg_otlp_json_opts {
  const char *const *resource; /* string resource attributes k0, v0, ... (service.name is
                                  "beagle" unless given); NUL-terminated */
  int nresource;
  int gzip; /* nonzero: the body gzipped (Content-Encoding: gzip) */
} bg_otlp_json_opts;

/* Appends the ExportTraceServiceRequest JSON of b's spans to out (gzipped when o->gzip), or
 * nothing for an empty batch. Returns 0, BG_ENOMEM or BG_EIO (zlib). */
int bg_encode_otlp_traces(const bg_span_batch *b, const bg_otlp_json_opts *o, bg_buf *out);
/* The same for log records: an ExportLogsServiceRequest. */
int bg_encode_otlp_logs(const bg_log_batch *b, const bg_otlp_json_opts *o, bg_buf *out);

#endif
