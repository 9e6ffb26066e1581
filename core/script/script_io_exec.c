/* script_io_exec: exec, a child process the run waits for with its output captured (at most
 * EXEC_MAX_OUTPUT bytes); the process is killed when the run is cancelled. */
#include <lauxlib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "base/bg.h"
#include "script/script_io_int.h"

#define EXEC_MAX_OUTPUT (1u << 20)

/* ---- exec ----------------------------------------------------------------------------- */

typedef struct exec_op {
  bg__op op;
  uv_process_t proc;
  uv_pipe_t out, err;
  bg_buf obuf, ebuf;
  int64_t status;
  int term_signal;
  int exited;
  int open_handles; /* freed when this reaches 0 */
  int eofs;
} exec_op;

static void exec_free_if_done(exec_op *e) {
  if (e->open_handles > 0) return;
  bg_buf_free(&e->obuf);
  bg_buf_free(&e->ebuf);
  free(e);
}

static void exec_handle_closed(uv_handle_t *h) {
  exec_op *e = h->data;
  e->open_handles--;
  exec_free_if_done(e);
}

static void exec_close_all(exec_op *e) {
  uv_handle_t *hs[] = {(uv_handle_t *)&e->proc, (uv_handle_t *)&e->out, (uv_handle_t *)&e->err};
  for (int i = 0; i < 3; i++)
    if (!uv_is_closing(hs[i])) uv_close(hs[i], exec_handle_closed);
}

static void exec_maybe_finish(exec_op *e) {
  if (!e->exited || e->eofs < 2) return;
  bg__run *r = e->op.run;
  if (r != NULL) {
    lua_State *co = r->co;
    lua_createtable(co, 0, 4);
    lua_pushinteger(co, (lua_Integer)e->status);
    lua_setfield(co, -2, "code");
    lua_pushinteger(co, e->term_signal);
    lua_setfield(co, -2, "signal");
    lua_pushlstring(co, e->obuf.data ? e->obuf.data : "", e->obuf.len);
    lua_setfield(co, -2, "stdout");
    lua_pushlstring(co, e->ebuf.data ? e->ebuf.data : "", e->ebuf.len);
    lua_setfield(co, -2, "stderr");
    e->op.run = NULL;
    exec_close_all(e);
    bg__run_resume(r, 1);
    return;
  }
  exec_close_all(e);
}

static void exec_exit_cb(uv_process_t *p, int64_t status, int sig) {
  exec_op *e = p->data;
  e->exited = 1;
  e->status = status;
  e->term_signal = sig;
  exec_maybe_finish(e);
}

static void exec_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  exec_op *e = s->data;
  bg_buf *b = (uv_pipe_t *)s == &e->out ? &e->obuf : &e->ebuf;
  if (n > 0 && b->len < EXEC_MAX_OUTPUT) {
    size_t take = (size_t)n;
    if (b->len + take > EXEC_MAX_OUTPUT) take = EXEC_MAX_OUTPUT - b->len;
    bg_buf_append(b, buf->base, take);
  }
  free(buf->base);
  if (n < 0) {
    uv_read_stop(s);
    e->eofs++;
    exec_maybe_finish(e);
  }
}

static void exec_cancel(bg__op *op) {
  exec_op *e = (exec_op *)op;
  if (!e->exited) uv_process_kill(&e->proc, SIGKILL);
  exec_close_all(e);
}

/* exec(argv, {stdin=?}) -> {code, signal, stdout, stderr} | nil, err. The run's deadline
 * kills the process (SIGKILL). */
static int pl_exec(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  bg__run *r = bg__run_current(L);
  char *argv[64];
  int argc = 0;
  for (int i = 1; argc < 63; i++) {
    lua_rawgeti(L, 1, i);
    if (!lua_isstring(L, -1)) {
      lua_pop(L, 1);
      break;
    }
    argv[argc++] = (char *)lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  argv[argc] = NULL;
  if (argc == 0) return luaL_argerror(L, 1, "command must be a non-empty list of strings");
  exec_op *e = calloc(1, sizeof *e);
  if (e == NULL) return luaL_error(L, "out of memory");
  uv_loop_t *loop = bg__io_runtime(L)->loop;
  uv_pipe_init(loop, &e->out, 0);
  uv_pipe_init(loop, &e->err, 0);
  e->out.data = e->err.data = e->proc.data = e;
  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[1].data.stream = (uv_stream_t *)&e->out;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&e->err;
  uv_process_options_t po;
  memset(&po, 0, sizeof po);
  /* The child gets a bare environment: the agent's holds the channels' keys and tokens. */
  static char *clean_env[] = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                              "LANG=C", NULL};
  po.file = argv[0];
  po.args = argv;
  po.env = clean_env;
  po.exit_cb = exec_exit_cb;
  po.stdio_count = 3;
  po.stdio = stdio;
  int rc = uv_spawn(loop, &e->proc, &po);
  if (rc != 0) {
    /* a failed spawn still leaves the process handle to close */
    e->open_handles = 3;
    e->exited = 1;
    exec_close_all(e);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", argv[0], uv_strerror(rc));
    return 2;
  }
  e->open_handles = 3;
  uv_read_start((uv_stream_t *)&e->out, bg__io_alloc_cb, exec_read_cb);
  uv_read_start((uv_stream_t *)&e->err, bg__io_alloc_cb, exec_read_cb);
  e->op.run = r;
  e->op.cancel = exec_cancel;
  return bg__run_wait(L, &e->op);
}

/* Sets exec in the __bg table on top of L. */
void bg__script_open_io_exec(lua_State *L) {
  static const luaL_Reg fns[] = {{"exec", pl_exec}, {NULL, NULL}};
  bg__io_setfuncs(L, fns);
}
