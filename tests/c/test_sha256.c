/* test_sha256: the FIPS 180-4 example vectors, RFC 4231 HMAC-SHA256 test cases 1-7, and the
 * incremental API against the one-shot digest at every split point. */
#include "base/sha256.h"
#include "test_support.h"

static const char *hex_of(const uint8_t *d, size_t n) {
  static char buf[2 * 256 + 1];
  bg_hex(d, n, buf);
  return buf;
}

static const char *sha_hex(const void *p, size_t n) {
  uint8_t d[BG_SHA256_LEN];
  bg_sha256(p, n, d);
  return hex_of(d, sizeof d);
}

static void test_fips_vectors(void) {
  ASSERT_EQ_STR(sha_hex("abc", 3),
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  ASSERT_EQ_INT(strlen(m448) * 8, 448);
  ASSERT_EQ_STR(sha_hex(m448, strlen(m448)),
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  ASSERT_EQ_STR(sha_hex("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  ASSERT_EQ_STR(sha_hex(NULL, 0),
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

  /* one million 'a': once in one call, once in uneven chunks */
  size_t n = 1000000;
  char *a = malloc(n);
  ASSERT(a != NULL);
  memset(a, 'a', n);
  const char *want = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0";
  ASSERT_EQ_STR(sha_hex(a, n), want);
  bg_sha256_ctx c;
  uint8_t d[BG_SHA256_LEN];
  bg_sha256_init(&c);
  for (size_t off = 0, step = 1; off < n; off += step, step = step * 3 % 1000 + 1)
    bg_sha256_update(&c, a + off, off + step > n ? n - off : step);
  bg_sha256_final(&c, d);
  ASSERT_EQ_STR(hex_of(d, sizeof d), want);
  free(a);
}

/* Messages of every length around the padding boundaries (55, 56, 63, 64 bytes ...) hash the
 * same one-shot and byte by byte: exercises both branches of the final block. */
static void test_padding_lengths(void) {
  uint8_t msg[130];
  for (size_t i = 0; i < sizeof msg; i++)
    msg[i] = (uint8_t)(i * 7 + 1);
  for (size_t len = 0; len <= sizeof msg; len++) {
    uint8_t one[BG_SHA256_LEN], bytes[BG_SHA256_LEN];
    bg_sha256(msg, len, one);
    bg_sha256_ctx c;
    bg_sha256_init(&c);
    for (size_t i = 0; i < len; i++)
      bg_sha256_update(&c, msg + i, 1);
    bg_sha256_final(&c, bytes);
    if (memcmp(one, bytes, sizeof one) != 0) {
      fprintf(stderr, "length %zu: byte-wise digest differs\n", len);
      exit(1);
    }
  }
  /* 56 bytes: the first length whose padding needs a second block (value from Python hashlib) */
  ASSERT_EQ_STR(sha_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn", 56),
                "078c0dfc3278fd7759920f5cca94c6d55db2c694510f6e26a8fe5c5b50a4f417");
}

static void test_split_every_offset(void) {
  uint8_t msg[200];
  for (size_t i = 0; i < sizeof msg; i++)
    msg[i] = (uint8_t)(i * 31 + 7);
  uint8_t want[BG_SHA256_LEN];
  bg_sha256(msg, sizeof msg, want);
  for (size_t i = 0; i <= sizeof msg; i++) {
    for (size_t j = i; j <= sizeof msg; j += 13) {
      bg_sha256_ctx c;
      uint8_t got[BG_SHA256_LEN];
      bg_sha256_init(&c);
      bg_sha256_update(&c, msg, i);
      bg_sha256_update(&c, msg + i, j - i);
      bg_sha256_update(&c, NULL, 0);
      bg_sha256_update(&c, msg + j, sizeof msg - j);
      bg_sha256_final(&c, got);
      if (memcmp(want, got, sizeof want) != 0) {
        fprintf(stderr, "split at %zu/%zu: digest differs\n", i, j);
        exit(1);
      }
    }
  }
}

static const char *hmac_hex(const void *k, size_t kl, const void *m, size_t ml) {
  uint8_t d[BG_SHA256_LEN];
  bg_hmac_sha256(k, kl, m, ml, d);
  return hex_of(d, sizeof d);
}

static void test_rfc4231(void) {
  uint8_t key[131], data[50];

  /* 1 */
  memset(key, 0x0b, 20);
  ASSERT_EQ_STR(hmac_hex(key, 20, "Hi There", 8),
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  /* 2: a key shorter than the output */
  const char *m2 = "what do ya want for nothing?";
  ASSERT_EQ_STR(hmac_hex("Jefe", 4, m2, strlen(m2)),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  /* 3: combined length of key and data larger than 64 bytes */
  memset(key, 0xaa, 20);
  memset(data, 0xdd, 50);
  ASSERT_EQ_STR(hmac_hex(key, 20, data, 50),
                "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
  /* 4 */
  for (int i = 0; i < 25; i++)
    key[i] = (uint8_t)(i + 1);
  memset(data, 0xcd, 50);
  ASSERT_EQ_STR(hmac_hex(key, 25, data, 50),
                "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
  /* 5: truncation to 128 bits */
  memset(key, 0x0c, 20);
  const char *t5 = hmac_hex(key, 20, "Test With Truncation", 20);
  ASSERT_EQ_INT(strncmp(t5, "a3b6167473100ee06e0c796c2955552b", 32), 0);
  /* 6: a 131-byte key, hashed first */
  memset(key, 0xaa, 131);
  const char *m6 = "Test Using Larger Than Block-Size Key - Hash Key First";
  ASSERT_EQ_STR(hmac_hex(key, 131, m6, strlen(m6)),
                "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
  /* 7: a 131-byte key and a message longer than a block */
  const char *m7 = "This is a test using a larger than block-size key and a larger than "
                   "block-size data. The key needs to be hashed before being used by the HMAC "
                   "algorithm.";
  ASSERT_EQ_STR(hmac_hex(key, 131, m7, strlen(m7)),
                "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");

  /* a key of exactly one block is used as is, one byte more is hashed: they differ */
  char h64[65], h65[65];
  memcpy(h64, hmac_hex(key, 64, "x", 1), sizeof h64);
  memcpy(h65, hmac_hex(key, 65, "x", 1), sizeof h65);
  ASSERT(strcmp(h64, h65) != 0);
  /* an empty key and message are fine */
  ASSERT_EQ_STR(hmac_hex(NULL, 0, NULL, 0),
                "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}

static void test_hex(void) {
  const uint8_t b[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
  char out[13];
  memset(out, 'Z', sizeof out);
  bg_hex(b, sizeof b, out);
  ASSERT_EQ_STR(out, "00017f80abff");
  bg_hex(b, 0, out);
  ASSERT_EQ_STR(out, "");
}

int main(void) {
  RUN(test_fips_vectors);
  RUN(test_padding_lengths);
  RUN(test_split_every_offset);
  RUN(test_rfc4231);
  RUN(test_hex);
  printf("all passed\n");
  return 0;
}
