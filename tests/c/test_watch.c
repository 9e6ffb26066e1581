/* watch: a burst of changes to one directory is reported once, after the debounce, with
 * each changed name once; stopping frees everything. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <uv.h>

#include "base/watch.h"
#include "test_support.h"

static char dir[256];
static int calls;
static char seen[8][64];
static size_t nseen;
static uint64_t fired_at;

static void on_change(void *ud, const char *const *names, size_t n) {
  (void)ud;
  calls++;
  fired_at = uv_hrtime();
  for (size_t i = 0; i < n && nseen < 8; i++)
    snprintf(seen[nseen++], 64, "%s", names[i]);
}

static void write_file(const char *name, const char *text) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "w");
  ASSERT(f != NULL);
  fputs(text, f);
  fclose(f);
}

static uint64_t burst_at;

static void burst(uv_timer_t *t) {
  (void)t;
  burst_at = uv_hrtime();
  for (int i = 0; i < 5; i++)
    write_file("a.lua", "x");
  write_file("b.lua", "y");
}

static void stop_loop(uv_timer_t *t) {
  uv_stop(t->loop);
}

static int has(const char *name) {
  for (size_t i = 0; i < nseen; i++)
    if (strcmp(seen[i], name) == 0) return 1;
  return 0;
}

static void test_debounced_burst(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  bg_watch *w = NULL;
  ASSERT_EQ_INT(bg_watch_start(&loop, dir, 50, on_change, NULL, &w), 0);
  uv_timer_t t1, t2;
  uv_timer_init(&loop, &t1);
  uv_timer_init(&loop, &t2);
  uv_timer_start(&t1, burst, 20, 0);
  uv_timer_start(&t2, stop_loop, 400, 0);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ_INT(calls, 1);
  ASSERT(has("a.lua"));
  ASSERT(has("b.lua"));
  ASSERT_EQ_INT(nseen, 2);
  /* reported after the quiet period, well within the 1 s the agent promises */
  double ms = (double)(fired_at - burst_at) / 1e6;
  ASSERT(ms >= 45 && ms < 300);
  bg_watch_stop(w);
  uv_close((uv_handle_t *)&t1, NULL);
  uv_close((uv_handle_t *)&t2, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}

static void test_missing_dir(void) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  bg_watch *w = NULL;
  ASSERT_EQ_INT(bg_watch_start(&loop, "/nonexistent/dir", 50, on_change, NULL, &w), UV_ENOENT);
  uv_run(&loop, UV_RUN_DEFAULT);
  ASSERT_EQ_INT(uv_loop_close(&loop), 0);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/beagle-watch.XXXXXX");
  ASSERT(mkdtemp(dir) != NULL);
  RUN(test_debounced_burst);
  RUN(test_missing_dir);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  ASSERT_EQ_INT(system(cmd), 0);
  return 0;
}
