/* tsz: a Gorilla-style time-series codec (Pelkonen et al., VLDB 2015), written from the
 * paper's description. It owns the bit stream of one chunk: (ts_ms, value) samples packed as
 * delta-of-delta timestamps in variable-length buckets and values XOR'd against the previous
 * one with a leading/trailing-zero window. One extension over the paper: when consecutive
 * values are exact decimals with at most BG_TSZ_MAX_SCALE fractional digits (counters, byte
 * counts, percentages rounded to 0.01), the encoder may instead write the delta-of-delta of
 * the scaled integers, which costs 5-14 bits where an XOR of such values costs 30-60; it picks
 * whichever is shorter per sample. Round trips are bit-exact for every double (NaN payloads,
 * -0.0, infinities) and every int64 timestamp sequence (arithmetic wraps; timestamps need not
 * increase, though the cheap buckets assume they do).
 *
 * Chunk layout: 64-bit first timestamp, 64-bit first value, then per sample a timestamp code
 * and a value code. Bits are written most-significant first. A chunk knows its own sample
 * count; the stream carries no end marker, so readers pass the count back in.
 *
 * Single-threaded per encoder; a finished stream can be read from any thread. */
#ifndef BG_TSZ_H
#define BG_TSZ_H

#include <stddef.h>
#include <stdint.h>

#include "base/bg.h"

#define BG_TSZ_MAX_SCALE 6

/* Encoder state of one open chunk. Zero-initialise or bg_tsz_init; bg_tsz_free releases. */
typedef struct bg_tsz {
  uint8_t *data; /* the stream; owned */
  uint32_t cap;  /* bytes allocated */
  uint32_t nbits;
  uint32_t n;          /* samples */
  int64_t t0;          /* first timestamp */
  int64_t t;           /* last timestamp */
  int64_t dt;          /* last timestamp delta */
  uint64_t v;          /* last value's bits */
  uint8_t lead, trail; /* current XOR window */
  int8_t scale;        /* decimal scale of the last value, -1 if it is not a short decimal */
  int64_t m, dm;       /* last scaled value and its delta */
} bg_tsz;

void bg_tsz_init(bg_tsz *e);
void bg_tsz_free(bg_tsz *e); /* NULL is a no-op; leaves e initialised and empty */

/* Appends one sample. Returns 0 or BG_ENOMEM (the chunk is unchanged then). */
int bg_tsz_append(bg_tsz *e, int64_t ts, double v);

/* Whether a chunk should close before taking a sample at ts: it holds max_n samples or ts is
 * max_span_ms or more after its first sample. 0 for either limit means none. */
int bg_tsz_full(const bg_tsz *e, int64_t ts, uint32_t max_n, int64_t max_span_ms);

/* Bytes the stream occupies (nbits rounded up). */
static inline size_t bg_tsz_bytes(uint32_t nbits) {
  return (nbits + 7u) / 8u;
}

/* Reads a stream of n samples and nbits bits. The iterator borrows data. */
typedef struct bg_tsz_iter {
  const uint8_t *data;
  uint32_t nbits, pos, n, i;
  int64_t t, dt;
  uint64_t v;
  uint8_t lead, trail;
  int8_t scale;
  int64_t m, dm;
} bg_tsz_iter;

void bg_tsz_iter_init(bg_tsz_iter *it, const uint8_t *data, uint32_t nbits, uint32_t n);
/* Next sample: 1 and *ts, *v set; 0 at the end; BG_EIO when the stream is truncated or
 * corrupt (the iterator then stays at its end). */
int bg_tsz_iter_next(bg_tsz_iter *it, int64_t *ts, double *v);

#endif
