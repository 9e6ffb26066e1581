/* test_crypto: MD5 (RFC 1321's suite), PBKDF2-HMAC-SHA256 (the RFC 6070 inputs, SHA-256
 * results), random bytes and base64 (RFC 4648's vectors, and what decode refuses). */
#include "base/crypto.h"
#include "base/sha256.h"
#include "test_support.h"

static void hexof(const uint8_t *d, size_t n, char *out) {
  bg_hex(d, n, out);
}

static void md5_is(const char *msg, const char *want) {
  uint8_t d[BG_MD5_LEN];
  char hex[2 * BG_MD5_LEN + 1];
  ASSERT_EQ_INT(bg_md5(msg, strlen(msg), d), 0);
  hexof(d, sizeof d, hex);
  ASSERT_EQ_STR(hex, want);
}

static void test_md5(void) {
  ASSERT_EQ_INT(bg_crypto_load(), 0);
  md5_is("", "d41d8cd98f00b204e9800998ecf8427e");
  md5_is("a", "0cc175b9c0f1b6a831c399e269772661");
  md5_is("abc", "900150983cd24fb0d6963f7d28e17f72");
  md5_is("message digest", "f96b697d7cb7938d525a2f31aaf161d0");
  md5_is("12345678901234567890123456789012345678901234567890123456789012345678901234567890",
         "57edf4a22be3c955ac49da2e2107b67a");
}

static void pbkdf2_is(const char *pw, size_t pwlen, const char *salt, size_t saltlen, unsigned iter,
                      size_t len, const char *want) {
  uint8_t out[64];
  char hex[129];
  ASSERT_EQ_INT(bg_pbkdf2_sha256(pw, pwlen, salt, saltlen, iter, out, len), 0);
  hexof(out, len, hex);
  ASSERT_EQ_STR(hex, want);
}

static void test_pbkdf2(void) {
  pbkdf2_is("password", 8, "salt", 4, 1, 32,
            "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b");
  pbkdf2_is("password", 8, "salt", 4, 2, 32,
            "ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43");
  pbkdf2_is("password", 8, "salt", 4, 4096, 32,
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a");
  pbkdf2_is("passwordPASSWORDpassword", 24, "saltSALTsaltSALTsaltSALTsaltSALTsalt", 36, 4096, 40,
            "348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1c635518c7dac47e9");
  pbkdf2_is("pass\0word", 9, "sa\0lt", 5, 4096, 16, "89b69d0516f829893c696226650a8687");
  /* empty password and salt are allowed (SCRAM never sends them, but nothing breaks) */
  uint8_t out[32];
  ASSERT_EQ_INT(bg_pbkdf2_sha256("", 0, "", 0, 1, out, 32), 0);
  /* out of range */
  ASSERT_EQ_INT(bg_pbkdf2_sha256("p", 1, "s", 1, 0, out, 32), BG_EINVAL);
  ASSERT_EQ_INT(bg_pbkdf2_sha256("p", 1, "s", 1, BG_PBKDF2_MAX_ITER + 1, out, 32), BG_EINVAL);
  ASSERT_EQ_INT(bg_pbkdf2_sha256("p", 1, "s", 1, 1, out, 0), BG_EINVAL);
  ASSERT_EQ_INT(bg_pbkdf2_sha256("p", 1, "s", 1, 1, out, BG_PBKDF2_MAX_LEN + 1), BG_EINVAL);
}

static void test_random(void) {
  uint8_t a[1024], b[1024];
  memset(a, 0, sizeof a);
  memset(b, 0, sizeof b);
  ASSERT_EQ_INT(bg_random_bytes(a, sizeof a), 0);
  ASSERT_EQ_INT(bg_random_bytes(b, sizeof b), 0);
  ASSERT(memcmp(a, b, sizeof a) != 0);
  ASSERT_EQ_INT(bg_random_bytes(a, 0), 0);
}

static void b64_is(const char *in, const char *want) {
  char out[64];
  size_t n = strlen(in);
  ASSERT_EQ_INT(bg_base64_encoded_len(n), strlen(want));
  bg_base64_encode(in, n, out);
  out[bg_base64_encoded_len(n)] = '\0';
  ASSERT_EQ_STR(out, want);
  uint8_t back[64];
  size_t len = 99;
  ASSERT_EQ_INT(bg_base64_decode(want, strlen(want), back, &len), 0);
  ASSERT_EQ_INT(len, n);
  ASSERT(memcmp(back, in, n) == 0);
}

static void b64_bad(const char *in, size_t at) {
  uint8_t out[64];
  size_t len = 99;
  ASSERT_EQ_INT(bg_base64_decode(in, strlen(in), out, &len), BG_EINVAL);
  ASSERT_EQ_INT(len, at);
}

static void test_base64(void) {
  b64_is("", "");
  b64_is("f", "Zg==");
  b64_is("fo", "Zm8=");
  b64_is("foo", "Zm9v");
  b64_is("foob", "Zm9vYg==");
  b64_is("fooba", "Zm9vYmE=");
  b64_is("foobar", "Zm9vYmFy");
  /* all 256 byte values survive the round trip, and "+/" are the alphabet's last two */
  uint8_t all[256], back[300];
  char enc[400];
  for (int i = 0; i < 256; i++)
    all[i] = (uint8_t)i;
  bg_base64_encode(all, sizeof all, enc);
  size_t elen = bg_base64_encoded_len(sizeof all), len;
  ASSERT(memchr(enc, '+', elen) != NULL && memchr(enc, '/', elen) != NULL);
  ASSERT_EQ_INT(bg_base64_decode(enc, elen, back, &len), 0);
  ASSERT_EQ_INT(len, 256);
  ASSERT(memcmp(all, back, 256) == 0);
  /* padding may be left out */
  uint8_t out[8];
  ASSERT_EQ_INT(bg_base64_decode("Zm8", 3, out, &len), 0);
  ASSERT_EQ_INT(len, 2);
  ASSERT(memcmp(out, "fo", 2) == 0);
  /* refused: other bytes, whitespace, '=' inside, padding that does not complete a group, a
   * lone sextet, bits left over */
  b64_bad("Zm9v!", 4);
  b64_bad("Zm9 v", 3);
  b64_bad("Zm=v", 2);
  b64_bad("Zm8==", 3);
  b64_bad("Zg=", 2);
  b64_bad("Z", 1);
  b64_bad("Zh==", 2); /* 'h' leaves bits set that no byte holds */
  b64_bad("-_", 0);   /* the URL alphabet is another one */
}

int main(void) {
  RUN(test_md5);
  RUN(test_pbkdf2);
  RUN(test_random);
  RUN(test_base64);
  puts("test_crypto: ok");
  return 0;
}
