/* Tests for core/export/delta: first sight (old and new series), differences, resets, a retry
 * of the same batch, batches out of order, histograms bucket by bucket, forgetting. Samples are
 * made by hand: a registry's counters never go down. */
#include <stdlib.h>

#include "export/delta.h"
#include "test_check.h"

static bg_sample counter(uint32_t id, double created, double v) {
  return (bg_sample){
      .name = "c", .help = "", .type = BG_COUNTER, .value = v, .created = created, .id = id};
}

static void test_counter(void) {
  bg_delta *d = bg_delta_new(1000);
  bg_delta_val v;
  bg_sample old = counter(1, 900, 50), born = counter(2, 1005, 4);
  /* first sight: the old series has nothing to say, the new one all it counted */
  CHECK_INT(bg_delta_diff(d, &old, 1010, &v), 0);
  CHECK_INT(bg_delta_diff(d, &born, 1010, &v), 1);
  CHECK_DBL(v.value, 4);
  CHECK_DBL(v.elapsed, 5);
  /* the same batch again (a retry): the same answer */
  CHECK_INT(bg_delta_diff(d, &born, 1010, &v), 1);
  CHECK_DBL(v.value, 4);
  CHECK_INT(bg_delta_diff(d, &old, 1010, &v), 0);
  /* the next collection */
  old.value = 57.5;
  born.value = 4;
  CHECK_INT(bg_delta_diff(d, &old, 1025, &v), 1);
  CHECK_DBL(v.value, 7.5);
  CHECK_DBL(v.elapsed, 15);
  CHECK_INT(bg_delta_diff(d, &born, 1025, &v), 1);
  CHECK_DBL(v.value, 0);
  CHECK_INT(bg_delta_diff(d, &old, 1025, &v), 1); /* retried */
  CHECK_DBL(v.value, 7.5);
  /* a reset: the new value, counted from zero */
  old.value = 2;
  CHECK_INT(bg_delta_diff(d, &old, 1040, &v), 1);
  CHECK_DBL(v.value, 2);
  /* an older batch after a newer one: nothing */
  old.value = 1;
  CHECK_INT(bg_delta_diff(d, &old, 1030, &v), 0);
  old.value = 5;
  CHECK_INT(bg_delta_diff(d, &old, 1055, &v), 1);
  CHECK_DBL(v.value, 3);
  /* gauges have no difference */
  bg_sample g = {.name = "g", .type = BG_GAUGE, .value = 1, .id = 9};
  CHECK_INT(bg_delta_diff(d, &g, 1055, &v), BG_EINVAL);
  CHECK_INT(bg_delta_size(d), 2);
  bg_delta_free(d);
  bg_delta_free(NULL);
}

static void test_histogram(void) {
  bg_delta *d = bg_delta_new(0);
  const double bounds[] = {0.1, 1};
  uint64_t b1[] = {1, 2, 0}, b2[] = {3, 2, 1}, b3[] = {1, 0, 0};
  bg_sample h = {.name = "h",
                 .help = "",
                 .type = BG_HISTOGRAM,
                 .nbuckets = 2,
                 .bounds = bounds,
                 .bucket_counts = b1,
                 .value = 1.5,
                 .count = 3,
                 .created = 10,
                 .id = 7};
  bg_delta_val v;
  CHECK_INT(bg_delta_diff(d, &h, 20, &v), 1); /* created after the start: all of it */
  CHECK_INT(v.count, 3);
  CHECK_DBL(v.value, 1.5);
  CHECK_INT(v.buckets[0], 1);
  CHECK_INT(v.buckets[1], 2);
  CHECK_INT(v.buckets[2], 0);
  CHECK_DBL(v.elapsed, 10);
  h.bucket_counts = b2, h.count = 6, h.value = 9.75;
  CHECK_INT(bg_delta_diff(d, &h, 35, &v), 1);
  CHECK_INT(v.count, 3);
  CHECK_DBL(v.value, 8.25);
  CHECK_INT(v.buckets[0], 2);
  CHECK_INT(v.buckets[1], 0);
  CHECK_INT(v.buckets[2], 1);
  /* a bucket went down: a reset, whatever the count did */
  h.bucket_counts = b3, h.count = 6, h.value = 0.01;
  CHECK_INT(bg_delta_diff(d, &h, 50, &v), 1);
  CHECK_INT(v.count, 6);
  CHECK_DBL(v.value, 0.01);
  CHECK_INT(v.buckets[0], 1);
  CHECK_INT(v.buckets[2], 0);
  bg_delta_free(d);
}

/* A batch kept on disk from before a restart numbers its series like the new process does: the
 * same id with another creation time is another series, seen for the first time. */
static void test_same_id_other_series(void) {
  bg_delta *d = bg_delta_new(1000);
  bg_delta_val v;
  bg_sample before = counter(3, 500, 100), before2 = counter(3, 500, 120);
  CHECK_INT(bg_delta_diff(d, &before, 1001, &v), 0);
  CHECK_INT(bg_delta_diff(d, &before2, 1002, &v), 1);
  CHECK_DBL(v.value, 20);
  bg_sample old = counter(3, 990, 7); /* created before the delta: nothing at first sight */
  CHECK_INT(bg_delta_diff(d, &old, 1010, &v), 0);
  old.value = 9;
  CHECK_INT(bg_delta_diff(d, &old, 1020, &v), 1);
  CHECK_DBL(v.value, 2);
  bg_sample born = counter(3, 1015, 5); /* created since: all of it */
  CHECK_INT(bg_delta_diff(d, &born, 1030, &v), 1);
  CHECK_DBL(v.value, 5);
  CHECK_DBL(v.elapsed, 15);
  /* and a histogram with the id of a counter */
  const double bounds[] = {1};
  uint64_t b1[] = {2, 1};
  bg_sample h = {.name = "h",
                 .help = "",
                 .type = BG_HISTOGRAM,
                 .nbuckets = 1,
                 .bounds = bounds,
                 .bucket_counts = b1,
                 .value = 4,
                 .count = 3,
                 .created = 1031,
                 .id = 3};
  CHECK_INT(bg_delta_diff(d, &h, 1040, &v), 1);
  CHECK_INT(v.count, 3);
  CHECK_INT(v.buckets[0], 2);
  CHECK_INT(v.buckets[1], 1);
  CHECK_INT(bg_delta_size(d), 1);
  bg_delta_free(d);
}

static void test_forget(void) {
  bg_delta *d = bg_delta_new(0);
  bg_delta_val v;
  bg_sample keep = counter(1, 1, 1), gone = counter(2, 1, 1);
  bg_delta_diff(d, &keep, 100, &v);
  bg_delta_diff(d, &gone, 100, &v);
  CHECK_INT(bg_delta_size(d), 2);
  /* many series, to make the table grow and shrink again */
  for (uint32_t id = 100; id < 1100; id++) {
    bg_sample c = counter(id, 1, id);
    bg_delta_diff(d, &c, 101, &v);
  }
  CHECK_INT(bg_delta_size(d), 1002);
  for (int i = 2; i < 2 * BG_DELTA_FORGET + 2; i++) {
    keep.value = i;
    CHECK_INT(bg_delta_diff(d, &keep, 100 + i, &v), 1);
    CHECK_DBL(v.value, 1);
  }
  CHECK_INT(bg_delta_size(d), 1); /* the others were forgotten */
  /* still the right difference after the table shrank */
  keep.value += 4;
  CHECK_INT(bg_delta_diff(d, &keep, 500, &v), 1);
  CHECK_DBL(v.value, 4);
  bg_delta_free(d);
}

int main(void) {
  test_counter();
  test_histogram();
  test_same_id_other_series();
  test_forget();
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  return failures != 0;
}
