/* script: LuaJIT hosting. A bg_script is one lua_State for one plugin, with its own
 * allocator (a memory limit), a count hook (an instruction budget and a wall-clock deadline
 * per run; plugin chunks run with the JIT off so the hook fires, see DESIGN.md), and runs:
 * coroutines that call into the plugin and wait on C operations (HTTP through fetch, TCP,
 * processes, timers) by yielding, to be resumed by the loop. Nothing a plugin does can
 * block the loop or take the process down: errors, timeouts, budget and memory exhaustion
 * end that run only, with the reason.
 *
 * The agent's own lua_State (the "host") reaches scripts through the Lua module
 * "agent.core" (bg_script_open_host); values cross between states by deep copy (nil,
 * booleans, numbers, strings and tables of those). Single-threaded: the loop thread. */
#ifndef BG_SCRIPT_H
#define BG_SCRIPT_H

#include <lua.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "base/bg.h"
#include "net/fetch.h"

struct bg__run;

/* What every script shares: the loop and the HTTP client. Owned by the agent; zero the rest
 * (a designated initializer does). */
typedef struct bg_runtime {
  uv_loop_t *loop;
  bg_fetcher *fetcher;
  const char *lua_dir; /* where lua/ lives (borrowed, lives as long as the runtime) */
  /* Internal to script.c: runs waiting for a turn of the loop (FIFO), and the time plugin code
   * has had in this turn (reset by the prepare handle just before the poll). The handles are
   * closed with the loop's other handles. */
  struct {
    uv_idle_t idle;
    uv_prepare_t prepare;
    int ready;
    uint64_t spent;
    struct bg__run *head, *tail;
  } sched;
} bg_runtime;

typedef struct bg_script bg_script;

/* A run's code yields back to the loop after about BG_SCRIPT_SLICE_NS of computing, and is
 * resumed on a later turn. Plugin code gets at most about BG_SCRIPT_TURN_NS of one turn of the
 * loop, counted over every resume in it (starts, I/O completions, the run queue): past that a
 * resume waits in the queue for the next turn, after the loop has polled for I/O. */
#define BG_SCRIPT_SLICE_NS 1000000ull
#define BG_SCRIPT_TURN_NS 2000000ull

typedef struct bg_script_opts {
  const char *name;    /* for logs and errors; copied */
  size_t memory_limit; /* bytes; 0 means 64 MiB */
  uint64_t budget;     /* VM instructions per run; 0 means no budget */
} bg_script_opts;

/* Creates a plugin state and runs lua/agent/sandbox.lua in it. Returns 0 and *out, or
 * BG_ENOMEM, or BG_EINVAL with the Lua error in err. */
int bg_script_new(bg_runtime *rt, const bg_script_opts *opts, bg_script **out, char *err,
                  size_t errlen);

/* Closes the runtime's own handles (the run queue's), when no script is left and before the
 * loop is closed; rt must stay valid until the loop has run their close callbacks. A no-op
 * when they were never made. (The agent closes every handle of its loop at exit instead.) */
void bg_script_runtime_close(bg_runtime *rt);

/* Bytes the state holds now. */
size_t bg_script_memory(const bg_script *s);

/* Adds script_new(opts) to the table on top of host state L (the agent's "agent.core"
 * module, built in host.c). rt must outlive every script made through it. */
void bg_script_open_host(lua_State *L, bg_runtime *rt);

/* The body of log(level, msg, {k = "v"}) for the host and plugin states: string keys and
 * values only; plugin (may be NULL) is added as a field. Raises on bad arguments. */
int bg_lua_log(lua_State *L, const char *plugin);

/* The body of read_file(path[, max]) -> data | nil, err for the host and plugin states: regular
 * files only, opened non-blocking, at most max bytes (default 1 MiB, at most 64 MiB), the
 * descriptor closed on every path (script_io_sync.c). */
int bg_lua_read_file(lua_State *L);

/* Installs the log hook of script_trace.c: console lines carry trace_id and span_id while a
 * span is current, and every line is recorded for the log exporters (bg_trace_log_record).
 * Idempotent; the agent calls it through the FFI (agent.trace's T.configure). */
BG_EXPORT void bg_trace_log_install(void);

/* Copies the value at index idx of `from` onto the top of `to`. Tables are copied deeply,
 * without metatables, at most 32 levels (a cycle is refused); inside them, functions, userdata
 * and threads, and keys of other types than string, number and boolean, are left out. A lone
 * function or userdata becomes nil. Returns 0, or BG_EINVAL with nothing pushed.
 * (LuaJIT's string.buffer serializer was tried for this: fewer instructions on average, but
 * its strings of near-identical notifications made long chains in the string table.) */
int bg_lua_xcopy(lua_State *from, int idx, lua_State *to, int depth);

#endif
