/* encode_statsd: the bg_encoder of "statsd": StatsD or DogStatsD lines packed into datagrams,
 * counters and histograms as differences (export/delta.h). The mapping is described at the top
 * of encode_statsd.c and in docs/plugins/statsd.md. Loop thread only. */
#ifndef BG_ENCODE_STATSD_H
#define BG_ENCODE_STATSD_H

#include "export/encode.h"

/* Appends the lines of b to out, each datagram ended by an empty line. Returns 0, BG_ENOMEM, or
 * BG_EINVAL (an unknown flavor, or a counter or histogram without o->delta; why in err). */
int bg_encode_statsd(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err, size_t errlen);

#endif
