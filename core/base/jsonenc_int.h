/* jsonenc_int: what the two JSON encoders share (jsonenc.c, json.lua's bytes; jsonenc_compact.c,
 * cjson's): the string scan, inline because it is their hottest loop, and the layout of a
 * number's digits. Not part of the API. */
#ifndef BG_JSONENC_INT_H
#define BG_JSONENC_INT_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* esc(): Lua's %c (iscntrl in the C locale, as LuaJIT's own table has it) plus '"' and '\\'.
 * A table: the scan of every string's bytes is the encoder's hottest loop. */
#define E1(c) [c] = 1
static const unsigned char esc_table[256] = {
    E1(0x00), E1(0x01), E1(0x02), E1(0x03), E1(0x04), E1(0x05), E1(0x06), E1(0x07), E1(0x08),
    E1(0x09), E1(0x0a), E1(0x0b), E1(0x0c), E1(0x0d), E1(0x0e), E1(0x0f), E1(0x10), E1(0x11),
    E1(0x12), E1(0x13), E1(0x14), E1(0x15), E1(0x16), E1(0x17), E1(0x18), E1(0x19), E1(0x1a),
    E1(0x1b), E1(0x1c), E1(0x1d), E1(0x1e), E1(0x1f), E1('"'),  E1('\\'), E1(0x7f)};
#undef E1
static inline int needs_esc(unsigned char c) {
  return esc_table[c];
}

/* Copies s[i..] to *dst up to the first byte that needs an escape (or n), advancing *dst;
 * returns that byte's index. The destination must have room for n - i bytes. Long runs go
 * eight bytes at a time (SWAR: a byte below 0x20, '"', '\\' or DEL sets its high bit in the
 * test; no false negatives, and a false positive only falls back to the byte loop), stored as
 * they are tested: a separate memcpy per run was a call for every key and short value. */
static inline size_t copy_plain(char **dst, const char *s, size_t i, size_t n) {
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  char *p = *dst;
  while (i + 8 <= n) {
    uint64_t x;
    memcpy(&x, s + i, 8);
    uint64_t q = x ^ (ones * '"'), bs = x ^ (ones * '\\'), del = x ^ (ones * 0x7f);
    if ((((x - ones * 0x20) | (q - ones) | (bs - ones) | (del - ones)) & ~x & highs) != 0) break;
    memcpy(p, &x, 8);
    p += 8;
    i += 8;
  }
  while (i < n && !needs_esc((unsigned char)s[i]))
    *p++ = s[i++];
  *dst = p;
  return i;
}

/* Writes the significant digits r (10^(prec-1) <= r < 10^prec) of a number whose first digit
 * has decimal exponent e the way %.<prec>g lays them out: trailing zeros dropped, exponent form
 * outside 1e-4 <= |v| < 10^prec. Returns the length written to buf. */
int bg__json_g_digits(char *buf, int neg, uint64_t r, int e, int prec);

#endif
