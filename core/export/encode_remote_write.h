/* encode_remote_write: a batch as a Prometheus remote write 1.0 request body, a
 * prometheus.WriteRequest (core/export/remote_write.proto, packed by protobuf-c) compressed
 * with snappy's block format. libsnappy is dlopen'ed on the first encode, so an agent that
 * sends no remote write never maps it (nor the libstdc++ it pulls in). Loop thread only. */
#ifndef BG_ENCODE_REMOTE_WRITE_H
#define BG_ENCODE_REMOTE_WRITE_H

#include "export/encode.h"

/* The bg_encoder of "remote_write". Every sample becomes series the way Prometheus names what
 * it scrapes: a counter <name>_total, a gauge <name>, a histogram <name>_bucket{le=...}
 * (cumulative), <name>_sum and <name>_count; o->prefix goes before every name. Labels are sorted
 * by name with __name__ among them, o->labels added to a series without a label of that name;
 * every sample has the batch's time. Returns 0, BG_ENOMEM, BG_EINVAL (an external label or the
 * prefix Prometheus cannot take, with why in err) or BG_EIO (libsnappy cannot be loaded). */
int bg_encode_remote_write(const bg_batch *b, bg_encode_opts *o, bg_buf *out, char *err,
                           size_t errlen);

/* Appends the snappy block compression of in[0..n) to out. Returns 0, BG_ENOMEM or BG_EIO
 * (libsnappy.so.1 cannot be loaded, or it failed). */
int bg_snappy_compress(const void *in, size_t n, bg_buf *out);

/* Appends the bytes of a snappy block in[0..n) to out. Returns 0, BG_ENOMEM, BG_EINVAL (not a
 * valid snappy block) or BG_EIO (libsnappy.so.1 cannot be loaded). */
int bg_snappy_uncompress(const void *in, size_t n, bg_buf *out);

/* Series whose packed labels the encoder keeps between encodes (for tests and reports). */
size_t bg__encode_remote_write_cached(void);

#endif
