/* statsd: StatsD and DogStatsD ingest. Owns a UDP socket, a TCP listener with its client
 * streams, and a sink: the line parser that turns `name:value|type[|@rate][|#tags]...` into
 * adds on series of a bg_registry, with a cache from the raw name/type/tags bytes to the
 * series handle so that a known line costs no allocation and no registry lookup. Types:
 *   c   counter, adds value/rate (a negative value is a bad line);
 *   g   gauge, sets the value; a leading '+' or '-' adds instead (etsy statsd);
 *   ms  timer: observed in seconds into histogram "<name>_seconds" (unless the name already
 *       ends in "seconds");
 *   h d histogram (DogStatsD "d" distribution too), value as sent;
 *   s   set: gauge "<name>" = distinct values seen since the last bg_statsd_flush_sets: exact
 *       up to 128 values, then a HyperLogLog estimate (1.6 % standard error); 4.2 KiB a set
 *       at most, and max_set_bytes for all of them (statsd_set.c).
 * A sample rate scales counters only; timers, histograms and distributions observe each value
 * once whatever the rate, and gauges and sets ignore it. Packed values (`name:1:2:3|ms`) apply
 * one by one. `#k:v` tags become labels ('.' and '-' in keys map to '_', a tag without ':' gets
 * the value "true"). `|c:` container ids, `|T` timestamps and unknown fields are ignored;
 * DogStatsD events (`_e{`) and service checks (`_sc|`) are counted as ignored. A bad line is
 * counted in beagle_statsd_bad_lines_total and skipped; the rest of the packet is kept.
 * Single-threaded: every function runs on the loop thread that owns the registry. */
#ifndef BG_STATSD_H
#define BG_STATSD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/bg.h"
#include "metrics/metrics.h"

typedef struct bg_statsd bg_statsd;
typedef struct bg_statsd_sink bg_statsd_sink;

typedef struct bg_statsd_opts {
  const char *udp;      /* "host:port" (IPv4, [IPv6] or localhost; port 0 picks one);
                           NULL, "" or "off": no UDP */
  const char *tcp;      /* same forms; NULL: the UDP host and (bound) port; "off": no TCP */
  size_t max_line;      /* longest TCP line; longer ones are bad lines (default 65536) */
  int rcvbuf;           /* UDP SO_RCVBUF bytes (default 8 MiB; < 0 leaves the system's) */
  int max_clients;      /* TCP streams at once; more are closed at accept (default 1024) */
  size_t max_cache;     /* line-key cache entries before it is cleared (default 100000) */
  size_t max_set_bytes; /* memory for the values of all sets in one interval (default 32 MiB);
                           past it new values of sets that would need more are dropped */
} bg_statsd_opts;

/* Counters since start. Plain uint64_t fields so that the LuaJIT FFI can read them. */
typedef struct bg_statsd_stats {
  uint64_t packets;      /* UDP datagrams plus TCP reads */
  uint64_t lines;        /* non-empty lines, good or bad */
  uint64_t bad_lines;    /* skipped as unparseable or rejected by the registry */
  uint64_t ignored;      /* DogStatsD events and service checks */
  uint64_t dropped;      /* data we lost: truncated datagrams, refused TCP clients, set values
                            past max_set_bytes, read errors */
  uint64_t kernel_drops; /* datagrams the kernel dropped on our socket (SO_MEMINFO), if known */
  uint64_t cache_entries;
  uint64_t tcp_clients; /* connected now */
  uint64_t rcvbuf;      /* the UDP socket's SO_RCVBUF as the kernel reports it */
  uint64_t set_bytes;   /* memory the sets' values hold now (at most max_set_bytes) */
} bg_statsd_stats;

/* Fills o with the defaults above (udp "127.0.0.1:8125", tcp NULL). Can't fail. */
void bg_statsd_opts_default(bg_statsd_opts *o);

/* Binds UDP and TCP as the options say and starts reading on loop; lines go into reg, which
 * must outlive the server. o NULL means the defaults; it is copied. Returns 0 and *out, or
 * BG_EINVAL (bad address), BG_ENOMEM, or a libuv error (UV_EADDRINUSE...), in which case
 * nothing is left open. The server owns itself until bg_statsd_stop's done callback. */
int bg_statsd_start(uv_loop_t *loop, bg_registry *reg, const bg_statsd_opts *o, bg_statsd **out);

/* Closes the sockets and client streams, frees the server and its sink, then calls done(ud)
 * (may be NULL) from the loop. Series already written stay in the registry. Can't fail. */
void bg_statsd_stop(bg_statsd *sd, void (*done)(void *ud), void *ud);

/* The bound UDP (or TCP) port, or BG_ENOENT when that side is off. */
int bg_statsd_port(const bg_statsd *sd);
int bg_statsd_tcp_port(const bg_statsd *sd);

/* The server's sink (for bg_statsd_flush_sets and friends); owned by the server. */
bg_statsd_sink *bg_statsd_get_sink(bg_statsd *sd);

/* Copies the counters into out (kernel_drops and rcvbuf read now). For Lua through the FFI.
 * Can't fail. */
BG_EXPORT void bg_statsd_get_stats(const bg_statsd *sd, bg_statsd_stats *out);

/* --- The sink: parsing and applying lines, shared by UDP, TCP, tests and the fuzzer. --- */

/* Creates a sink writing into reg (which must outlive it) and registers its own counters
 * beagle_statsd_{packets,lines,bad_lines}_total there. Only max_cache and max_set_bytes of o
 * apply (NULL: defaults). Returns 0 and *out, or BG_ENOMEM / BG_EINVAL. */
int bg_statsd_sink_new(bg_registry *reg, const bg_statsd_opts *o, bg_statsd_sink **out);
void bg_statsd_sink_free(bg_statsd_sink *sink); /* NULL is a no-op */

/* Applies one packet: newline-separated lines ("\r\n" too), each independent. buf is
 * borrowed and need not be NUL-terminated. Counts one packet. Returns the number of bad lines
 * in it (0 when all were good). Can't fail otherwise. */
int bg_statsd_ingest(bg_statsd_sink *sink, const char *buf, size_t len);

/* Zeroes every set gauge and forgets the values seen. The agent calls it once per
 * metrics_collection_interval, right after sampling, so each sample is the distinct count
 * over one interval. */
BG_EXPORT void bg_statsd_flush_sets(bg_statsd_sink *sink);

/* Drops the cache of series handles (and the set state). Needed before series that the sink
 * wrote are removed from the registry with bg_series_remove; the handles would dangle. */
void bg_statsd_sink_forget(bg_statsd_sink *sink);

/* Why the last bad line was bad ("" when none yet); owned by the sink. */
const char *bg_statsd_last_error(const bg_statsd_sink *sink);

void bg_statsd_sink_stats(const bg_statsd_sink *sink, bg_statsd_stats *out);

/* Internal, for the TCP path and the fuzzer: stream framing. Feeds len bytes of a stream;
 * complete lines are ingested (one packet per call), a trailing partial line is kept in
 * st->partial (at most max_line bytes; a longer line is one bad line and is skipped up to its
 * newline). eof ingests what is left. Returns 0 or BG_ENOMEM. */
typedef struct bg__statsd_stream {
  bg_buf partial;
  int discarding; /* inside an overlong line */
} bg__statsd_stream;

int bg__statsd_feed(bg_statsd_sink *sink, bg__statsd_stream *st, const char *data, size_t len,
                    size_t max_line, int eof);

/* Internal, for statsd_net.c: counts data lost before it reached the sink. */
void bg__statsd_dropped(bg_statsd_sink *sink, uint64_t n);

#endif
