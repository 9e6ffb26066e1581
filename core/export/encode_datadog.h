/* encode_datadog: the bg_encoder of "datadog": the JSON body of Datadog's v2 series API,
 * counters and histograms as counts or rates of their increases (export/delta.h). The mapping
 * is described at the top of encode_datadog.c and in docs/plugins/datadog.md. Loop thread only. */
#ifndef BG_ENCODE_DATADOG_H
#define BG_ENCODE_DATADOG_H

#include "export/encode.h"

/* Appends {"series":[...]} for b to out, or nothing when no series is left. Returns 0,
 * BG_ENOMEM, or BG_EINVAL (an unknown flavor: "count" or "rate", "gzip"; or a counter or histogram
 * without o->delta; why in err). */
int bg_encode_datadog(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err, size_t errlen);

#endif
