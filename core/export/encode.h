/* encode: a batch (export/batch.h) written in a backend's wire format. One function per format,
 * each in its own file (core/export/encode_<format>.c), all with the same shape, listed in the
 * one table plugins reach them through (core/script/script_io_encode.c: ctx.encode.<format>).
 *
 * An encoder appends to out and returns 0, BG_ENOMEM, or BG_EINVAL with the reason in err (a
 * name or label its format cannot carry is skipped and counted in *skipped, not an error).
 * It never keeps a pointer into the batch or the options after it returns. */
#ifndef BG_ENCODE_H
#define BG_ENCODE_H

#include "base/bg.h"
#include "export/batch.h"

typedef struct bg_delta bg_delta; /* a backend's previous values, for delta formats */

typedef struct bg_encode_opts {
  const char *const *labels; /* extra label pairs k0, v0, ... sorted by key (external labels,
                                global tags); a series' own label of the same name wins */
  int nlabels;
  const char *const *resource; /* resource attributes k0, v0, ... sorted by key (OTLP) */
  int nresource;
  const char *prefix; /* put before every metric name, or NULL */
  const char *flavor; /* the format's variant ("dogstatsd", "v1"...), or NULL */
  double interval;    /* seconds between collections (rates), 0 when unknown */
  size_t max_payload; /* datagram formats (statsd): bytes per datagram, 0 for the default */
  bg_delta *delta;    /* the instance's previous values, for formats that send differences;
                         NULL for the others */
  size_t skipped;     /* out: samples or labels left out, counted by the encoder */
} bg_encode_opts;

typedef int (*bg_encoder)(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err,
                          size_t errlen);

#endif
