/* The I/O a plugin can wait on. Each call starts a C operation, yields the run's coroutine and
 * is resumed from the loop with the result. Every operation can be cancelled (the run timed out
 * or was cancelled) and then releases its handles on its own. This file has what the others
 * share (script_io_int.h), sleep, and the __bg table; one file per kind of wait beside it:
 * script_io_fetch.c (HTTP, mail), script_io_tcp.c, script_io_exec.c, script_io_dns.c,
 * script_io_fs.c (stat, statvfs, list_dir, read_pidfile), script_io_crypto.c, and
 * script_io_sync.c for the synchronous helpers (files, hashing, JSON). */
#include <lauxlib.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/bg.h"
#include "script/script_io_int.h"

bg_runtime *bg__io_runtime(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  return *(bg_runtime **)ud; /* bg_script's first field */
}

size_t bg__io_mem_left(lua_State *L, const bg__run *r) {
  void *ud;
  lua_getallocf(L, &ud);
  const bg_script *s = ud;
  if (!s->enforce) return SIZE_MAX;
  size_t left = s->used < s->limit ? s->limit - s->used : 0;
  if (r != NULL && r->mem_limit) {
    size_t grown = bg__run_growth(r);
    size_t rl = grown < r->mem_limit ? r->mem_limit - grown : 0;
    if (rl < left) left = rl;
  }
  return left;
}

void bg__io_push_error(lua_State *co, int err, const char *msg) {
  lua_pushnil(co);
  if (msg != NULL && msg[0])
    lua_pushstring(co, msg);
  else
    lua_pushstring(co, bg_strerror(err));
}

void bg__io_free_handle_cb(uv_handle_t *h) {
  free(h);
}
void bg__io_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)h;
  buf->base = malloc(suggested);
  buf->len = buf->base ? suggested : 0;
}

void bg__io_setfuncs(lua_State *L, const luaL_Reg *fns) {
  for (const luaL_Reg *f = fns; f->name; f++) {
    lua_pushcfunction(L, f->func);
    lua_setfield(L, -2, f->name);
  }
}

/* ---- sleep ---------------------------------------------------------------------------- */

typedef struct sleep_op {
  bg__op op;
  uv_timer_t timer;
} sleep_op;

static void sleep_close_cb(uv_handle_t *h) {
  free(h->data);
}

static void sleep_cancel(bg__op *op) {
  sleep_op *so = (sleep_op *)op;
  uv_close((uv_handle_t *)&so->timer, sleep_close_cb);
}

static void sleep_cb(uv_timer_t *t) {
  sleep_op *so = t->data;
  bg__run *r = so->op.run;
  uv_close((uv_handle_t *)t, sleep_close_cb);
  if (r == NULL) return;
  lua_pushboolean(r->co, 1);
  bg__run_resume(r, 1);
}

static int pl_sleep(lua_State *L) {
  double secs = luaL_checknumber(L, 1);
  bg__run *r = bg__run_current(L);
  sleep_op *so = calloc(1, sizeof *so);
  if (so == NULL) return luaL_error(L, "out of memory");
  so->op.run = r;
  so->op.cancel = sleep_cancel;
  uv_loop_t *loop = bg__io_runtime(L)->loop;
  uv_timer_init(loop, &so->timer);
  so->timer.data = so;
  /* from now, not from the start of this loop turn (a slice or a busy turn may be long ago):
   * a sleep of s seconds lasts at least s; beyond the run's deadline it ends with the run */
  uv_update_time(loop);
  if (!(secs > 0)) secs = 0;
  if (secs > 1e9) secs = 1e9;
  uv_timer_start(&so->timer, sleep_cb, (uint64_t)(secs * 1000), 0);
  return bg__run_wait(L, &so->op);
}

void bg__script_open_io(lua_State *L) {
  static const luaL_Reg fns[] = {{"sleep", pl_sleep}, {NULL, NULL}};
  bg__io_setfuncs(L, fns);
  bg__script_open_io_fetch(L);
  bg__script_open_io_tcp(L);
  bg__script_open_io_udp(L);
  bg__script_open_io_exec(L);
  bg__script_open_io_sync(L);
  bg__script_open_io_encode(L);
  bg__script_open_io_dns(L);
  bg__script_open_io_fs(L); /* its statvfs, which waits, replaces script_io_sync's */
  bg__script_open_io_crypto(L);
}
