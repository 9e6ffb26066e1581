/* Internal to script.c, script_host.c, script_plugin.c and script_io*.c: runs, operations and
 * the plugin-side bindings. */
#ifndef BG_SCRIPT_INT_H
#define BG_SCRIPT_INT_H

#include "script/lpool.h"
#include "script/script.h"
#include "trace/trace.h"

typedef struct bg__run bg__run;
typedef struct bg__op bg__op;

/* A pending C operation of one run. cancel() must detach and release it; after that the
 * op's completion must not touch the run. */
struct bg__op {
  bg__run *run;
  void (*cancel)(bg__op *op);
};

struct bg__run {
  bg_script *s;
  int id;
  lua_State *co; /* the run's coroutine (anchored by co_ref in the plugin registry) */
  int co_ref;
  int cb_ref; /* host callback, in the host registry */
  lua_State *host;
  uint64_t deadline; /* bg_now_ns() value; 0: none */
  uint64_t budget;   /* instructions; 0: none */
  int started;
  uint64_t ticks;     /* hook calls (each BG__HOOK_EVERY instructions) */
  const char *killed; /* reason once the run must end: "timeout", "memory limit", ... */
  bg__op *op;         /* what it waits on, or NULL */
  uv_timer_t *timer;  /* deadline while waiting */
  bg__run *next;
  /* slicing (script.c): when the current slice began; > 0 while plugin code runs inside a
   * coroutine whose resumer cannot yield (then the hook must not yield either); the run
   * queue link, and whether the run is in it */
  uint64_t slice_start;
  int nest_block;
  bg__run *qnext;
  int queued;
  int resume_n; /* values on co's stack to resume it with, while queued */
  /* per-run memory (limit 0: none): how much the state may grow while the run lasts, from
   * mem_base, what it held after a full collection at the run's start. Runs of one state at
   * the same time share that growth (bg__run_growth). mem_over: past the limit, for the hook
   * to collect and look again. */
  size_t mem_limit, mem_base;
  int mem_over;
  /* the tracer's current context while the run is not executing: made current for each of
   * its slices and taken back after (run_resume_now), so the current span follows the run
   * across its waits and no other code sees it. Starts as opts.traceparent, else none. */
  bg_span_ctx tctx;
};

struct bg_script {
  bg_runtime *rt;
  lua_State *L;
  char *name;
  size_t used, limit;
  bg_lpool pool;    /* the state's blocks (script_alloc) */
  int enforce;      /* the memory limit applies only while plugin code runs */
  bg__run *runs;    /* active runs */
  bg__run *current; /* the run whose code is executing, for the hook and allocator */
  int next_id;
  int closing;         /* no new runs; freed when the last run ends */
  int busy;            /* > 0 while C frames of this script are on the stack */
  uv_idle_t *reaper;   /* frees the state outside any callback of its own */
  uint64_t gc_step_ns; /* when run_finish last stepped the collector */
  char *trusted;       /* "@<lua_dir>/": the chunk name prefix of the agent's own code */
  size_t trusted_len;
  const void *raw_pcall, *raw_xpcall; /* the base library's, which a yield may cross */
  int hook_yielded; /* set when the hook yielded a plugin coroutine; the sandbox reads it */
};

#define BG__HOOK_EVERY 1000

/* Resume run r's coroutine with the n values on top of r->co. */
void bg__run_resume(bg__run *r, int n);
/* Called by an op when it starts waiting: yields the calling coroutine. */
int bg__run_wait(lua_State *L, bg__op *op);
/* The run executing in L, or NULL (raises when called outside a run). */
bg__run *bg__run_current(lua_State *L);
/* Whether plugin code running in L (the run's coroutine or one nested in it) may yield now:
 * from stack level `from` down, no C frame but pcall/xpcall, at level 0 no code of the agent's
 * own, and no resumer above that cannot yield. */
int bg__run_yieldable(bg__run *r, lua_State *L, int from);
/* Ends run r (unlinks and frees it), then calls its host callback with (ok, value): the top of
 * r->co when ok, else msg. */
void bg__run_finish(bg__run *r, int ok, const char *msg);
/* The timer of a run: its first tick starts the run, a later one is the deadline passing. */
void bg__run_timer_cb(uv_timer_t *t);
/* Frees a closing state from an idle callback once its last run has ended. */
void bg__script_maybe_reap(bg_script *s);
/* Frees a closing state now: only when no run is left and no call of it is on the stack. */
void bg__script_free(bg_script *s);
/* The error message at idx of L, for an error object that is not a string too. */
static inline const char *bg__error_text(lua_State *L, int idx) {
  const char *m = lua_tostring(L, idx);
  return m != NULL ? m : "error object is not a string";
}
/* Tells agent.trace in state L (when loaded) whether the tracer's current context is one
 * that is not sampled (the Lua field its beagle.span reads instead of the FFI), and which run
 * is executing (co_ref, the run's coroutine; LUA_NOREF in an s:call): what owns the spans it
 * begins without an object. Called where the context changes hands, at the start of a run's
 * slice and of an s:call. */
void bg__trace_mirror(lua_State *L, int co_ref);
/* Registers the __bg functions that wait for nothing (script_plugin.c) into the table on top
 * of L. */
void bg__script_open_plugin(lua_State *L);
/* Registers the I/O functions (sleep, http, tcp, exec) into the table on top of L. */
void bg__script_open_io(lua_State *L);

/* Bytes the state grew by since run r started (0 when it shrank). */
static inline size_t bg__run_growth(const bg__run *r) {
  return r->s->used > r->mem_base ? r->s->used - r->mem_base : 0;
}

#endif
