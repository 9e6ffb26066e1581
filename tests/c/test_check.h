/* Non-fatal checks for the C tests that want every failure of a run, not only the first: each
 * prints both values and where, counts in failures, and the test goes on; main() reports. */
#ifndef TEST_CHECK_H
#define TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int failures;

#define CHECK(c)                                                                                   \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #c);                        \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

#define CHECK_INT(a, b)                                                                            \
  do {                                                                                             \
    long long a_ = (long long)(a), b_ = (long long)(b);                                            \
    if (a_ != b_) {                                                                                \
      fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, a_,    \
              b_);                                                                                 \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

#define CHECK_DBL(a, b)                                                                            \
  do {                                                                                             \
    double a_ = (a), b_ = (b);                                                                     \
    if (!(a_ == b_)) {                                                                             \
      fprintf(stderr, "%s:%d: %s == %s failed: %.17g != %.17g\n", __FILE__, __LINE__, #a, #b, a_,  \
              b_);                                                                                 \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

#define CHECK_STR(a, b)                                                                            \
  do {                                                                                             \
    const char *a_ = (a), *b_ = (b);                                                               \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                                         \
      fprintf(stderr, "%s:%d: %s == %s failed:\n--- got\n%s\n--- want\n%s\n---\n", __FILE__,       \
              __LINE__, #a, #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                           \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

/* err contains needle */
#define CHECK_ERR(err, needle)                                                                     \
  do {                                                                                             \
    if (strstr((err), (needle)) == NULL) {                                                         \
      fprintf(stderr, "%s:%d: error \"%s\" does not mention \"%s\"\n", __FILE__, __LINE__, (err),  \
              (needle));                                                                           \
      failures++;                                                                                  \
    }                                                                                              \
  } while (0)

#endif
