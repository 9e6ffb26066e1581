/* encode_otlp: the bg_encoder of "otlp": an OTLP/HTTP JSON metrics request (cumulative sums,
 * gauges, explicit-bucket histograms). The mapping is described at the top of encode_otlp.c
 * and in docs/plugins/otlp_metrics.md. Loop thread only. */
#ifndef BG_ENCODE_OTLP_H
#define BG_ENCODE_OTLP_H

#include "export/encode.h"

/* Appends the ExportMetricsServiceRequest JSON of b to out, or nothing when no data point is
 * left; flavor "gzip" gzips it. Returns 0, BG_ENOMEM, BG_EIO (zlib) or BG_EINVAL (an unknown
 * flavor, more than 64 extra labels). */
int bg_encode_otlp(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err, size_t errlen);

#endif
