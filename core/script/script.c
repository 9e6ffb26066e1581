#include "script/script.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bg.h"
#include "base/log.h"
#include "script/script_int.h"

#define XCOPY_MAX_DEPTH 32
#define XCOPY_STACKED 512 /* pairs held on the stack before their table is made */

/* ---- allocator: the memory limit ------------------------------------------------------ */

/* Blocks come from the state's pool once started, else malloc (lpool.h); `used` is what Lua
 * asked for, the limit's measure. */
static void *script_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  bg_script *s = ud;
  bg__run *r = s->enforce ? s->current : NULL;
  if (nsize == 0) {
    if (ptr != NULL) s->used -= osize;
    return bg_lpool_alloc(&s->pool, ptr, osize, 0);
  }
  size_t old = ptr != NULL ? osize : 0;
  if (nsize > old && s->enforce) {
    size_t grow = nsize - old;
    int over_run = 0;
    if (r != NULL && r->mem_limit) {
      /* Past the run's limit the hook collects and looks again (the growth may be garbage
       * not swept yet); past twice the limit (one huge string) the allocation fails now. */
      size_t after = bg__run_growth(r) + grow;
      if (after > r->mem_limit) r->mem_over = 1;
      over_run = after / 2 > r->mem_limit;
    }
    if (s->used + grow > s->limit || over_run) {
      if (r != NULL && r->killed == NULL) r->killed = "memory limit";
      return NULL;
    }
  }
  void *p = bg_lpool_alloc(&s->pool, ptr, osize, nsize);
  if (p == NULL) return NULL;
  s->used = s->used - old + nsize;
  return p;
}

size_t bg_script_memory(const bg_script *s) {
  return s->used;
}

/* ---- hook: budget, deadline and slices ------------------------------------------------------ */

int bg__run_yieldable(bg__run *r, lua_State *L, int from) {
  if (r->nest_block > 0) return 0;
  bg_script *s = r->s;
  lua_Debug ar;
  for (int lvl = from; lua_getstack(L, lvl, &ar); lvl++) {
    if (!lua_getinfo(L, "Sf", &ar)) return 0;
    const void *f = lua_topointer(L, -1);
    lua_pop(L, 1);
    if (ar.what[0] == 'C') {
      /* LuaJIT resumes across its own pcall/xpcall, not across a C function that called back
       * into Lua (table.sort's comparator, gsub's replacement): that one must return first */
      if (f != s->raw_pcall && f != s->raw_xpcall) return 0;
    } else if (lvl == 0 && strncmp(ar.source, s->trusted, s->trusted_len) == 0) {
      /* the agent's own code (the sandbox, the public library) may hold shared scratch state
       * mid-operation; it yields when it is back in plugin code */
      return 0;
    }
  }
  return 1;
}

static void script_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  void *ud;
  lua_getallocf(L, &ud);
  bg_script *s = ud;
  bg__run *r = s->current;
  if (r == NULL) return;
  r->ticks++;
  if (r->killed == NULL && r->mem_over) {
    /* grown past the run's memory: what is left after a full collection is what counts */
    r->mem_over = 0;
    lua_gc(L, LUA_GCCOLLECT, 0);
    if (bg__run_growth(r) > r->mem_limit) r->killed = "memory limit";
  }
  if (r->killed == NULL) {
    if (r->budget && r->ticks * BG__HOOK_EVERY > r->budget) {
      r->killed = "instruction budget exceeded";
    } else if (r->co != NULL || (r->ticks & 7) == 0) {
      uint64_t now = bg_now_ns();
      if (r->deadline && now > r->deadline) {
        r->killed = "timeout";
      } else if (r->co != NULL && now - r->slice_start >= BG_SCRIPT_SLICE_NS &&
                 bg__run_yieldable(r, L, 0)) {
        /* the slice is over: back to the loop, resumed on a later turn (bg__run_resume);
         * when L is a coroutine of the plugin's own, the sandbox passes the yield up */
        s->hook_yielded = 1;
        lua_yield(L, 0);
        return;
      }
    }
  }
  /* Once killed, every hook raises again, so a pcall in plugin code cannot keep it alive. */
  if (r->killed != NULL) {
    lua_pushstring(L, r->killed);
    lua_error(L);
  }
}

/* ---- deep copy between states ----------------------------------------------------------- */

/* A string, number or boolean at idx of from, pushed on to; 0, or 1 for any other type. */
static inline int xcopy_scalar(lua_State *from, int idx, int type, lua_State *to) {
  switch (type) {
  case LUA_TSTRING: {
    size_t n;
    const char *p = lua_tolstring(from, idx, &n);
    lua_pushlstring(to, p, n);
    return 0;
  }
  case LUA_TNUMBER:
    lua_pushnumber(to, lua_tonumber(from, idx));
    return 0;
  case LUA_TBOOLEAN:
    lua_pushboolean(to, lua_toboolean(from, idx));
    return 0;
  default:
    return 1;
  }
}

/* The n key/value pairs on to's stack from index base up go into a new table (sized narr,
 * nrec), which takes their place at base. */
static void stacked_to_table(lua_State *to, int base, int n, int narr, int nrec) {
  lua_createtable(to, narr, nrec);
  lua_insert(to, base);
  for (int i = 0; i < n; i++)
    lua_rawset(to, base);
}

int bg_lua_xcopy(lua_State *from, int idx, lua_State *to, int depth) {
  if (idx < 0 && idx > LUA_REGISTRYINDEX) idx = lua_gettop(from) + idx + 1;
  int type = lua_type(from, idx);
  if (type != LUA_TTABLE) {
    if (xcopy_scalar(from, idx, type, to) != 0) lua_pushnil(to); /* nil and what can't cross */
    return 0;
  }
  if (depth >= XCOPY_MAX_DEPTH) return BG_EINVAL;
  if (!lua_checkstack(from, 4)) return BG_ENOMEM;
  /* One pass: the pairs go on to's stack, then into a table made at their exact size (a
   * table grown a key at a time rehashes at every power of two; counting first took a
   * second lua_next walk, and notifications cross here once per delivery attempt). A big
   * table gets its table at XCOPY_STACKED pairs, and the rest are set one by one. */
  int base = lua_gettop(to) + 1, n = 0, made = 0;
  lua_pushnil(from);
  while (lua_next(from, idx) != 0) {
    /* keys and values inline; only a table value recurses (a call per scalar was a third of
     * a notification's copy) */
    int top = lua_gettop(from);
    int kt = lua_type(from, top - 1), vt = lua_type(from, top);
    if ((kt == LUA_TSTRING || kt == LUA_TNUMBER || kt == LUA_TBOOLEAN) &&
        (vt == LUA_TSTRING || vt == LUA_TNUMBER || vt == LUA_TBOOLEAN || vt == LUA_TTABLE)) {
      if ((n & 7) == 0 && !lua_checkstack(to, 20)) {
        lua_pop(from, 2);
        lua_settop(to, base - 1);
        return BG_ENOMEM;
      }
      xcopy_scalar(from, top - 1, kt, to);
      int rc = vt == LUA_TTABLE ? bg_lua_xcopy(from, top, to, depth + 1)
                                : xcopy_scalar(from, top, vt, to);
      if (rc != 0) {
        lua_pop(from, 2);
        lua_settop(to, base - 1); /* the pairs copied so far, and the table if made */
        return rc;
      }
      n++;
      if (made) {
        lua_rawset(to, base);
      } else if (n == XCOPY_STACKED) {
        stacked_to_table(to, base, n, (int)lua_objlen(from, idx), n);
        made = 1;
      }
    }
    /* functions, userdata and threads are left out: they cannot cross states */
    lua_pop(from, 1);
  }
  if (!made) {
    int narr = (int)lua_objlen(from, idx);
    if (narr > n) narr = n;
    stacked_to_table(to, base, n, narr, n - narr);
  }
  return 0;
}

/* ---- runs --------------------------------------------------------------------------------- */

static void timer_free_cb(uv_handle_t *h) {
  free(h);
}

static void script_reap_cb(uv_handle_t *h) {
  free(h);
}

void bg__script_free(bg_script *s) {
  s->enforce = 0;
  lua_close(s->L);
  bg_lpool_destroy(&s->pool);
  free(s->trusted);
  free(s->name);
  free(s);
}

static void reaper_idle_cb(uv_idle_t *h) {
  bg_script *s = h->data;
  if (s->busy > 0 || s->runs != NULL) return;
  uv_idle_stop(h);
  uv_close((uv_handle_t *)h, script_reap_cb);
  bg__script_free(s);
}

void bg__script_maybe_reap(bg_script *s) {
  if (!s->closing || s->runs != NULL || s->reaper != NULL) return;
  s->reaper = malloc(sizeof *s->reaper);
  if (s->reaper == NULL) return; /* leaks one state rather than freeing under our feet */
  uv_idle_init(s->rt->loop, s->reaper);
  s->reaper->data = s;
  uv_idle_start(s->reaper, reaper_idle_cb);
}

/* Unlinks and frees r, then calls the host callback with (ok, value) where the value is the
 * top of r->co when ok, or msg. */
static void sched_remove(bg__run *r);

void bg__run_finish(bg__run *r, int ok, const char *msg) {
  bg_script *s = r->s;
  lua_State *H = r->host;
  if (r->queued) sched_remove(r);
  bg__run **pp = &s->runs;
  while (*pp != NULL && *pp != r)
    pp = &(*pp)->next;
  if (*pp == r) *pp = r->next;
  if (r->timer != NULL) {
    uv_timer_stop(r->timer);
    uv_close((uv_handle_t *)r->timer, timer_free_cb);
  }
  if (r->op != NULL) {
    bg__op *op = r->op;
    r->op = NULL;
    op->run = NULL;
    op->cancel(op);
  }
  int top = lua_gettop(H);
  lua_rawgeti(H, LUA_REGISTRYINDEX, r->cb_ref);
  luaL_unref(H, LUA_REGISTRYINDEX, r->cb_ref);
  int nargs = 2;
  if (ok) {
    lua_pushboolean(H, 1);
    if (lua_gettop(r->co) == 0)
      lua_pushnil(H);
    else if (bg_lua_xcopy(r->co, lua_gettop(r->co), H, 0) != 0) {
      lua_pop(H, 1);
      lua_pushboolean(H, 0);
      lua_pushstring(H, "result cannot be copied out of the plugin (too deep or cyclic)");
    }
  } else {
    lua_pushboolean(H, 0);
    lua_pushstring(H, msg);
  }
  s->enforce = 0;
  luaL_unref(s->L, LUA_REGISTRYINDEX, r->co_ref);
  bg_span_ctx_clear(&r->tctx);
  free(r);
  s->busy++;
  if (lua_isfunction(H, top + 1)) {
    if (lua_pcall(H, nargs, 0, 0) != 0) {
      bg_log(BG_LOG_ERROR, "host callback failed", "plugin", s->name, "error",
             bg__error_text(H, -1), NULL);
    }
  }
  lua_settop(H, top);
  s->busy--;
  /* Runs leave garbage behind (a failed run often a lot): one basic GC step keeps the
   * collector ahead of it, which keeps an idle agent's checks small (without it the idle heap
   * grew by ~80 KB). At most one step per 100 ms after runs that went well: a step after every
   * delivery of a burst was 4% of a notification's instructions (16k of 425k, callgrind). */
  uint64_t now = bg_now_ns();
  if (!ok || now - s->gc_step_ns >= 100000000ull) {
    s->gc_step_ns = now;
    lua_gc(s->L, LUA_GCSTEP, 0);
  }
  bg__script_maybe_reap(s);
}

static int io_marker;
static int slice_marker;

/* ---- the run queue: runs whose slice ended wait here for a turn of the loop --------------- */

static void run_resume_now(bg__run *r, int n);

/* Resumes r now and counts the time against the turn's share. */
static void resume_counted(bg_runtime *rt, bg__run *r, int n) {
  uint64_t t0 = bg_now_ns();
  run_resume_now(r, n);
  rt->sched.spent += bg_now_ns() - t0;
}

static void sched_idle_cb(uv_idle_t *h) {
  bg_runtime *rt = h->data;
  /* round robin, a slice each, while the turn's share lasts; the rest wait for the next turn,
   * after the loop has polled for I/O */
  while (rt->sched.head != NULL && rt->sched.spent < BG_SCRIPT_TURN_NS) {
    bg__run *r = rt->sched.head;
    rt->sched.head = r->qnext;
    if (rt->sched.head == NULL) rt->sched.tail = NULL;
    r->qnext = NULL;
    r->queued = 0;
    int n = r->resume_n;
    r->resume_n = 0;
    resume_counted(rt, r, n);
  }
  if (rt->sched.head == NULL) uv_idle_stop(h);
}

/* Just before the loop polls: a new turn starts after it. */
static void sched_prepare_cb(uv_prepare_t *h) {
  ((bg_runtime *)h->data)->sched.spent = 0;
}

static void sched_init(bg_runtime *rt) {
  if (rt->sched.ready) return;
  uv_idle_init(rt->loop, &rt->sched.idle);
  rt->sched.idle.data = rt;
  uv_prepare_init(rt->loop, &rt->sched.prepare);
  rt->sched.prepare.data = rt;
  uv_prepare_start(&rt->sched.prepare, sched_prepare_cb);
  uv_unref((uv_handle_t *)&rt->sched.prepare); /* it keeps no loop alive */
  rt->sched.ready = 1;
}

void bg_script_runtime_close(bg_runtime *rt) {
  if (!rt->sched.ready) return;
  uv_close((uv_handle_t *)&rt->sched.idle, NULL);
  uv_close((uv_handle_t *)&rt->sched.prepare, NULL);
  rt->sched.ready = 0;
}

/* Queues r to be resumed with the n values on top of its coroutine. */
static void sched_push(bg__run *r, int n) {
  bg_runtime *rt = r->s->rt;
  sched_init(rt);
  r->qnext = NULL;
  r->queued = 1;
  r->resume_n = n;
  if (rt->sched.tail != NULL)
    rt->sched.tail->qnext = r;
  else
    rt->sched.head = r;
  rt->sched.tail = r;
  uv_idle_start(&rt->sched.idle, sched_idle_cb);
}

static void sched_remove(bg__run *r) {
  bg_runtime *rt = r->s->rt;
  bg__run *prev = NULL;
  for (bg__run *q = rt->sched.head; q != NULL; prev = q, q = q->qnext) {
    if (q != r) continue;
    if (prev != NULL)
      prev->qnext = r->qnext;
    else
      rt->sched.head = r->qnext;
    if (rt->sched.tail == r) rt->sched.tail = prev;
    break;
  }
  r->qnext = NULL;
  r->queued = 0;
}

void bg__run_resume(bg__run *r, int n) {
  bg_runtime *rt = r->s->rt;
  sched_init(rt);
  /* plugin code has had its share of this turn: the run waits for the next (a timer's run
   * starts and I/O completions of many runs can land in one turn) */
  r->op = NULL;
  if (rt->sched.spent >= BG_SCRIPT_TURN_NS) {
    sched_push(r, n);
    return;
  }
  resume_counted(rt, r, n);
}

void bg__trace_mirror(lua_State *L, int co_ref) {
  lua_getfield(L, LUA_REGISTRYINDEX, "bg.trace");
  if (lua_istable(L, -1)) {
    const bg_span_ctx *c = bg_trace_current(bg_tracer_default());
    lua_pushboolean(L, bg_span_ctx_valid(c) && !bg_span_ctx_sampled(c));
    lua_setfield(L, -2, "u");
    if (co_ref != LUA_NOREF && co_ref != LUA_REFNIL)
      lua_rawgeti(L, LUA_REGISTRYINDEX, co_ref);
    else
      lua_pushboolean(L, 0);
    lua_setfield(L, -2, "co");
  }
  lua_pop(L, 1);
}

static void run_resume_now(bg__run *r, int n) {
  bg_script *s = r->s;
  lua_State *co = r->co;
  r->op = NULL;
  /* the run's context is current for its slice; whatever was current goes back after */
  bg_tracer *tr = bg_tracer_default();
  bg_span_ctx outer;
  bg_trace_swap(tr, NULL, &outer);
  bg_trace_restore(tr, &r->tctx);
  bg__trace_mirror(s->L, r->co_ref);
  bg__run *prev = s->current;
  s->current = r;
  s->enforce = 1;
  s->busy++;
  s->hook_yielded = 0;
  r->slice_start = bg_now_ns();
  int rc = lua_resume(co, n);
  bg_trace_swap(tr, NULL, &r->tctx);
  bg_trace_restore(tr, &outer);
  s->busy--;
  s->enforce = 0;
  s->current = prev;
  if (rc == LUA_YIELD) {
    if (r->op != NULL && lua_touserdata(co, -1) == &io_marker) {
      lua_settop(co, 0);
      return; /* waiting; the op resumes us */
    }
    if (s->hook_yielded || (lua_gettop(co) == 1 && lua_touserdata(co, -1) == &slice_marker)) {
      /* the slice ended (in the run's coroutine, or passed up from a nested one) */
      s->hook_yielded = 0;
      lua_settop(co, 0);
      sched_push(r, 0);
      return;
    }
    bg__run_finish(r, 0, "plugin yielded outside an I/O call");
  } else if (rc == 0) {
    bg__run_finish(r, 1, NULL);
  } else if (r->killed != NULL) {
    bg__run_finish(r, 0, r->killed);
  } else if (rc == LUA_ERRMEM) {
    bg__run_finish(r, 0, "memory limit");
  } else {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", bg__error_text(co, -1));
    bg__run_finish(r, 0, msg);
  }
}

int bg__run_wait(lua_State *L, bg__op *op) {
  bg__run *r = op->run;
  r->op = op;
  lua_pushlightuserdata(L, &io_marker);
  return lua_yield(L, 1);
}

bg__run *bg__run_current(lua_State *L) {
  void *ud;
  lua_getallocf(L, &ud);
  bg_script *s = ud;
  if (s->current == NULL || s->current->co == NULL)
    luaL_error(L, "I/O is only possible inside a run");
  /* A nested coroutine of the plugin may call I/O too: the sandbox passes its yields up. */
  return s->current;
}

void bg__run_timer_cb(uv_timer_t *t) {
  bg__run *r = t->data;
  if (!r->started) {
    /* first tick: start the run (always from the loop, never inside s:run itself) */
    r->started = 1;
    int nargs = lua_gettop(r->co) - 1;
    uint64_t now = bg_now_ns();
    if (r->deadline && now >= r->deadline) {
      bg__run_finish(r, 0, "timeout");
      return;
    }
    if (r->deadline) uv_timer_start(t, bg__run_timer_cb, (r->deadline - now) / 1000000 + 1, 0);
    if (r->mem_limit) {
      /* garbage of earlier runs, swept while this one runs, must not count as room for it */
      lua_gc(r->s->L, LUA_GCCOLLECT, 0);
      r->mem_base = r->s->used;
    }
    bg__run_resume(r, nargs);
    return;
  }
  /* the deadline passed while the run waited */
  r->killed = "timeout";
  bg__run_finish(r, 0, "timeout");
}

int bg_script_new(bg_runtime *rt, const bg_script_opts *opts, bg_script **out, char *err,
                  size_t errlen) {
  bg_script *s = calloc(1, sizeof *s);
  if (s == NULL) return BG_ENOMEM;
  s->rt = rt;
  s->name = strdup(opts->name ? opts->name : "?");
  s->limit = opts->memory_limit ? opts->memory_limit : 64u << 20;
  if (s->name == NULL) goto nomem;
  s->L = lua_newstate(script_alloc, s);
  if (s->L == NULL) goto nomem;
  lua_State *L = s->L;
  luaL_openlibs(L);
  lua_sethook(L, script_hook, LUA_MASKCOUNT, BG__HOOK_EVERY);
  size_t dl = strlen(rt->lua_dir);
  s->trusted = malloc(dl + 3);
  if (s->trusted == NULL) {
    lua_close(L);
    goto nomem;
  }
  snprintf(s->trusted, dl + 3, "@%s/", rt->lua_dir);
  s->trusted_len = dl + 2;
  lua_getglobal(L, "pcall");
  s->raw_pcall = lua_topointer(L, -1);
  lua_getglobal(L, "xpcall");
  s->raw_xpcall = lua_topointer(L, -1);
  lua_pop(L, 2);

  lua_newtable(L);
  bg__script_open_plugin(L);
  bg__script_open_io(L);
  lua_pushlightuserdata(L, &io_marker);
  lua_setfield(L, -2, "IO");
  lua_pushlightuserdata(L, &slice_marker);
  lua_setfield(L, -2, "SLICE");
  lua_pushstring(L, s->name);
  lua_setfield(L, -2, "name");
  lua_pushstring(L, rt->lua_dir);
  lua_setfield(L, -2, "lua_dir");
  lua_setglobal(L, "__bg");

  char path[4096];
  snprintf(path, sizeof path, "%s/agent/sandbox.lua", rt->lua_dir);
  if (luaL_dofile(L, path) != 0) {
    if (errlen) snprintf(err, errlen, "%s", bg__error_text(L, -1));
    lua_close(L);
    bg_lpool_destroy(&s->pool);
    free(s->trusted);
    free(s->name);
    free(s);
    return BG_EINVAL;
  }
  lua_settop(L, 0);
  *out = s;
  return 0;
nomem:
  bg_lpool_destroy(&s->pool);
  free(s->trusted);
  free(s->name);
  free(s);
  return BG_ENOMEM;
}
