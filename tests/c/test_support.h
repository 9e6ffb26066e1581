/* Tiny assertion helpers shared by the C tests: print both values and where, then fail. */
#ifndef TEST_SUPPORT_H
#define TEST_SUPPORT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ASSERT(c)                                                                                  \
  do {                                                                                             \
    if (!(c)) {                                                                                    \
      fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #c);                    \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

#define ASSERT_EQ_INT(a, b)                                                                        \
  do {                                                                                             \
    long long a_ = (long long)(a), b_ = (long long)(b);                                            \
    if (a_ != b_) {                                                                                \
      fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b, a_,    \
              b_);                                                                                 \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

#define ASSERT_EQ_STR(a, b)                                                                        \
  do {                                                                                             \
    const char *a_ = (a), *b_ = (b);                                                               \
    if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0) {                                         \
      fprintf(stderr, "%s:%d: %s == %s failed:\n  \"%s\"\n  \"%s\"\n", __FILE__, __LINE__, #a, #b, \
              a_ ? a_ : "(null)", b_ ? b_ : "(null)");                                             \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

/* a == b within 1e-9, relative above 1 */
#include <math.h>
#define ASSERT_NEAR(a, b)                                                                          \
  do {                                                                                             \
    double a_ = (a), b_ = (b);                                                                     \
    if (!(fabs(a_ - b_) <= 1e-9 * (fabs(b_) > 1 ? fabs(b_) : 1))) {                                \
      fprintf(stderr, "%s:%d: %s == %s failed: %.17g != %.17g\n", __FILE__, __LINE__, #a, #b, a_,  \
              b_);                                                                                 \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

#define RUN(t)                                                                                     \
  do {                                                                                             \
    fprintf(stderr, "%s\n", #t);                                                                   \
    t();                                                                                           \
  } while (0)

#endif
