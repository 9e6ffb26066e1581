/* encode_text: the three text formats a backend sends without a client library, and what they
 * share. Each encoder has the bg_encoder shape (export/encode.h) and is listed by format name
 * in core/script/script_io_encode.c:
 *   graphite    Graphite plaintext, `path value seconds\n`    (encode_graphite.c)
 *   influx      InfluxDB line protocol                         (encode_influx.c)
 *   prometheus  Prometheus text 0.0.4 without timestamps, for a Pushgateway (encode_prometheus.c)
 * Each one's mapping is described above its function in its file and in
 * docs/plugins/<plugin>.md.
 * What they share with the other encoders (numbers, merged labels) is in encode_util.h. */
#ifndef BG_ENCODE_TEXT_H
#define BG_ENCODE_TEXT_H

#include "export/encode.h"
#include "export/encode_util.h"

#include <string.h>

int bg_encode_graphite(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err, size_t errlen);
int bg_encode_influx(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err, size_t errlen);
int bg_encode_prometheus(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err,
                         size_t errlen);

#endif
