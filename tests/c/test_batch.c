/* Tests for core/export/batch: a snapshot is a copy (later writes to the registry do not show,
 * the registry may even go), batches cut it and hold it, the numbers batches are published by,
 * and bytes back to a batch: a round trip, and every truncation and corruption refused. */
#include <stdlib.h>
#include <string.h>

#include "export/batch.h"
#include "test_check.h"

static char err[256];

static bg_registry *filled(void) {
  bg_registry *r = bg_registry_new();
  const char *kv[] = {"route", "/a \"b\"\n", "method", "GET"};
  bg_series *c =
      bg_series_get(r, BG_COUNTER, "api.requests", "requests", kv, 2, NULL, 0, err, sizeof err);
  bg_counter_add(c, 5);
  bg_series *g = bg_series_get(r, BG_GAUGE, "depth", NULL, NULL, 0, NULL, 0, err, sizeof err);
  bg_gauge_set(g, -2.5);
  double b[] = {0.1, 1};
  bg_series *h = bg_series_get(r, BG_HISTOGRAM, "lat", NULL, NULL, 0, b, 2, err, sizeof err);
  bg_histogram_observe(h, 0.05);
  bg_histogram_observe(h, 0.5);
  bg_histogram_observe(h, 7);
  return r;
}

static const bg_sample *find(const bg_batch *b, const char *name) {
  for (size_t i = 0; i < bg_batch_len(b); i++)
    if (strcmp(bg_batch_at(b, i)->name, name) == 0) return bg_batch_at(b, i);
  return NULL;
}

static void check_samples(const bg_batch *b) {
  CHECK_INT(bg_batch_len(b), 3);
  const bg_sample *c = find(b, "api_requests");
  CHECK(c != NULL);
  if (c != NULL) {
    CHECK_INT(c->type, BG_COUNTER);
    CHECK_DBL(c->value, 5);
    CHECK_STR(c->help, "requests");
    CHECK_INT(c->nlabels, 2);
    CHECK_STR(c->kv[0], "method"); /* sorted by key */
    CHECK_STR(c->kv[1], "GET");
    CHECK_STR(c->kv[2], "route");
    CHECK_STR(c->kv[3], "/a \"b\"\n");
  }
  const bg_sample *g = find(b, "depth");
  CHECK(g != NULL && g->type == BG_GAUGE && g->value == -2.5 && g->nlabels == 0);
  const bg_sample *h = find(b, "lat");
  CHECK(h != NULL);
  if (h != NULL) {
    CHECK_INT(h->type, BG_HISTOGRAM);
    CHECK_INT(h->nbuckets, 2);
    CHECK_DBL(h->bounds[0], 0.1);
    CHECK_DBL(h->bounds[1], 1);
    CHECK_INT(h->bucket_counts[0], 1);
    CHECK_INT(h->bucket_counts[1], 1);
    CHECK_INT(h->bucket_counts[2], 1);
    CHECK_INT(h->count, 3);
    CHECK(h->value > 7.5499999 && h->value < 7.5500001);
  }
}

static void test_snapshot_is_a_copy(void) {
  bg_registry *r = filled();
  bg_snapshot *s = bg_snapshot_take(r, 1700000000.25);
  CHECK(s != NULL);
  CHECK_INT(bg_snapshot_size(s), 3);
  CHECK(bg_snapshot_bytes(s) > 0);
  bg_batch *all = bg_batch_new(s, 0, 100); /* clamped */
  bg_batch *tail = bg_batch_new(s, 2, 5);
  bg_batch *none = bg_batch_new(s, 9, 5);
  bg_snapshot_unref(s); /* the batches hold it */
  /* the registry changes, then goes: the snapshot does not move */
  bg_series *c = bg_series_get(r, BG_COUNTER, "api.requests", NULL,
                               (const char *[]){"route", "/a \"b\"\n", "method", "GET"}, 2, NULL, 0,
                               err, sizeof err);
  bg_counter_add(c, 100);
  bg_registry_free(r);
  check_samples(all);
  CHECK_INT(bg_batch_len(tail), 1);
  CHECK_INT(bg_batch_len(none), 0);
  CHECK(bg_batch_at(tail, 1) == NULL);
  CHECK_INT(bg_batch_time_ms(all), 1700000000250LL);
  bg_batch_unref(all);
  bg_batch_unref(none);
  CHECK_INT(bg_batch_len(tail), 1);
  bg_batch_unref(tail);
}

static void test_ids(void) {
  bg_registry *r = filled();
  bg_snapshot *s = bg_snapshot_take(r, 1);
  bg_batch *bs[200];
  uint32_t ids[200];
  for (int i = 0; i < 200; i++) { /* past the table's first size: it grows */
    bs[i] = bg_batch_new(s, 0, 1);
    ids[i] = bg_batch_id(bs[i]);
    CHECK(ids[i] != 0);
    CHECK_INT(bg_batch_id(bs[i]), ids[i]); /* the same number each time */
  }
  for (int i = 0; i < 200; i += 2)
    bg_batch_unref(bs[i]);
  for (int i = 0; i < 200; i++)
    CHECK(bg_batch_find(ids[i]) == (i % 2 ? bs[i] : NULL));
  for (int i = 1; i < 200; i += 2)
    bg_batch_unref(bs[i]);
  for (int i = 0; i < 200; i++)
    CHECK(bg_batch_find(ids[i]) == NULL);
  CHECK(bg_batch_find(0) == NULL);
  bg_snapshot_unref(s);
  bg_registry_free(r);
}

static void test_bytes(void) {
  bg_registry *r = filled();
  bg_snapshot *s = bg_snapshot_take(r, 1700000000.5);
  bg_batch *b = bg_batch_new(s, 0, 3);
  bg_buf out = {0};
  CHECK_INT(bg_batch_encode(b, &out), 0);
  const char *why = "unset";
  bg_batch *back = bg_batch_decode(out.data, out.len, &why);
  CHECK(back != NULL && why == NULL);
  if (back != NULL) {
    check_samples(back);
    CHECK_DBL(bg_batch_time(back), 1700000000.5);
    bg_batch_unref(back);
  }
  /* every truncation is refused, never read past */
  for (size_t n = 0; n < out.len; n++) {
    char *cut = malloc(n ? n : 1);
    memcpy(cut, out.data, n);
    bg_batch *x = bg_batch_decode(cut, n, &why);
    CHECK(x == NULL && why != NULL);
    free(cut);
  }
  /* trailing bytes, a wrong magic, a count past the bytes, a label count out of range */
  char *more = malloc(out.len + 1);
  memcpy(more, out.data, out.len);
  more[out.len] = 0;
  CHECK(bg_batch_decode(more, out.len + 1, &why) == NULL);
  CHECK_STR(why, "trailing bytes");
  more[0] = 'X';
  CHECK(bg_batch_decode(more, out.len, &why) == NULL);
  CHECK_STR(why, "not a batch");
  more[0] = 'B';
  uint32_t huge = 1u << 30;
  memcpy(more + 12, &huge, 4);
  CHECK(bg_batch_decode(more, out.len, &why) == NULL);
  CHECK_STR(why, "a count past its bytes");
  memcpy(more, out.data, out.len);
  more[17] = 99; /* the first sample's label count */
  CHECK(bg_batch_decode(more, out.len, &why) == NULL);
  CHECK_STR(why, "a sample out of range");
  /* flipped bytes anywhere: refused or read, never a crash (ASan watches) */
  for (size_t i = 0; i < out.len; i++) {
    memcpy(more, out.data, out.len);
    more[i] ^= 0xff;
    bg_batch *x = bg_batch_decode(more, out.len, &why);
    bg_batch_unref(x);
  }
  free(more);
  bg_buf_free(&out);
  bg_batch_unref(b);
  bg_snapshot_unref(s);
  bg_registry_free(r);
}

int main(void) {
  test_snapshot_is_a_copy();
  test_ids();
  test_bytes();
  if (failures) {
    fprintf(stderr, "%d failure(s)\n", failures);
    return 1;
  }
  return 0;
}
