-- agent.trace: spans and the tracer of core/trace (trace.h), reached through the LuaJIT FFI.
-- This file owns the cdef of trace.h. Trusted: the agent uses all of it; plugins get
-- T.plugin_api(), built here, whose span objects hold no pointer (as agent.metrics' handles).
--
-- The agent's side (used by the router, health, rules, delivery and backends):
--   T.C                 the FFI namespace with trace.h's cdef; T.tracer = bg_tracer_default()
--   T.start(name, kind, parent, scope[, tracestate]) -> span
--                       begins a span that is NOT left current in the agent's state (the agent
--                       interleaves many things: the previous current context is put back).
--                       kind: "internal" (default) | "server" | "client". parent: nil (a new
--                       root, sampled by trace_sampling_rate), a traceparent string (a remote
--                       parent; an invalid one is ignored: a new root), or a span of T.start.
--                       tracestate: the caller's header value, kept when parent is a string.
--                       scope: who made it ("beagle" when nil). The span is a raw bg_span
--                       pointer: end it exactly once with T.finish.
--   T.set(span, key, value)          string, number (integral: int, else double), boolean,
--                                    or an array of one of those types
--   T.event(span, name, attrs)       an event with attributes (no arrays)
--   T.exception(span, err, traceback) an "exception" event (type, message, stacktrace)
--   T.finish(span, status, message)  status nil | "ok" | "error"; the span is gone after
--   T.traceparent(span) -> "00-<trace>-<span>-<flags>"
--   T.tracestate(span) -> the tracestate header value or nil
--   T.trace_id(span) -> 32 hex or nil, T.span_id(span) -> 16 hex or nil (span nil: the current
--                       context's)
--   T.recording(span) -> whether attributes are kept (sampled, and an exporter is configured)
--   T.sampled(span) -> whether the span is sampled (its flags say so)
--   T.configure(settings[, cfg]) trace_sampling_rate, trace_buffer_size, log_buffer_size (a
--                       reload's cfg.settings over settings); installs the log hook (lines
--                       carry trace_id and span_id; recorded for the log exporters)
--
-- The plugins' side (T.plugin_api(): what lua/beagle/init.lua's beagle.span & co. are):
--   span(name, attrs, fn) / trace_operation(name, attrs[, fn]) / trace_optimization(id[, fn])
--   / instrument(name, fn). See the comment above plugin_api below.
local ffi = require("ffi")
local bit = require("bit")

local T = {}

ffi.cdef [[
typedef struct bg_tracestate bg_tracestate;
typedef struct bg_span_ctx {
  uint8_t trace_id[16];
  uint8_t span_id[8];
  uint8_t flags;
  uint8_t remote;
  bg_tracestate *state;
} bg_span_ctx;
typedef struct bg_span { uint32_t recording; } bg_span;
typedef struct bg_tracer bg_tracer;
typedef struct bg_span_batch bg_span_batch;
typedef struct bg_log_batch bg_log_batch;

void bg_span_ctx_copy(bg_span_ctx *dst, const bg_span_ctx *src);
void bg_span_ctx_clear(bg_span_ctx *c);
int bg_traceparent_parse(const char *s, size_t len, bg_span_ctx *out);
void bg_traceparent_format(const bg_span_ctx *c, char buf[55]);
int bg_tracestate_parse(bg_span_ctx *c, const char *s, size_t len);
int bg_tracestate_set(bg_span_ctx *c, const char *key, size_t klen, const char *val, size_t vlen);
const char *bg_tracestate_str(const bg_tracestate *ts, size_t *len);
void bg_trace_hex(const uint8_t *id, size_t n, char *buf);

bg_tracer *bg_tracer_default(void);
void bg_tracer_set_ratio(bg_tracer *t, double ratio);
void bg_tracer_set_recording(bg_tracer *t, int spans, int logs);
void bg_tracer_set_capacity(bg_tracer *t, size_t spans, size_t logs);
void bg_tracer_set_limits(bg_tracer *t, uint32_t max_attrs, uint32_t max_events,
                          uint32_t max_value_len);
void bg_tracer_set_ready_cb(bg_tracer *t, size_t batch, void (*cb)(void *ud), void *ud);

const bg_span_ctx *bg_trace_current(const bg_tracer *t);
void bg_trace_swap(bg_tracer *t, const bg_span_ctx *c, bg_span_ctx *prev);
void bg_trace_restore(bg_tracer *t, bg_span_ctx *c);
void bg_trace_new_trace_id(bg_tracer *t, uint8_t out[16]);
void bg_trace_new_span_id(bg_tracer *t, uint8_t out[8]);

bg_span *bg_span_begin(bg_tracer *t, const bg_span_ctx *parent, const char *name,
                       size_t name_len, int kind, const char *scope, size_t scope_len);
const bg_span_ctx *bg_span_context(const bg_span *s);
void bg_span_set_str(bg_span *s, const char *k, size_t klen, const char *v, size_t vlen);
void bg_span_set_int(bg_span *s, const char *k, size_t klen, int64_t v);
void bg_span_set_double(bg_span *s, const char *k, size_t klen, double v);
void bg_span_set_bool(bg_span *s, const char *k, size_t klen, int v);
void bg_span_set_array(bg_span *s, const char *k, size_t klen, int type, size_t n,
                       const char *const *vs, const size_t *vlens, const int64_t *vi,
                       const double *vd);
void bg_span_add_event(bg_span *s, const char *name, size_t name_len, uint64_t time_ns);
void bg_span_event_set_str(bg_span *s, const char *k, size_t klen, const char *v, size_t vlen);
void bg_span_event_set_int(bg_span *s, const char *k, size_t klen, int64_t v);
void bg_span_event_set_double(bg_span *s, const char *k, size_t klen, double v);
void bg_span_event_set_bool(bg_span *s, const char *k, size_t klen, int v);
void bg_span_record_exception(bg_span *s, const char *type, size_t tlen, const char *msg,
                              size_t mlen, const char *stack, size_t slen);
void bg_span_set_status(bg_span *s, int code, const char *msg, size_t mlen);
void bg_span_set_kind(bg_span *s, int kind);
void bg_span_set_name(bg_span *s, const char *name, size_t name_len);
void bg_span_end(bg_tracer *t, bg_span *s, uint64_t end_ns);

void bg_trace_log_record(bg_tracer *t, int level, const char *msg, size_t msg_len,
                         const char *const *kv, const size_t *kvlen, size_t nkv,
                         const char *scope, size_t scope_len);


/* core/script/script_trace.c: console log lines carry the current span's ids, and log lines
 * are recorded for export (bg_trace_log_record) */
void bg_trace_log_install(void);

/* a Lua-side view of bg_span_ctx: the ids as 32-bit words, so that testing a context for
 * "none" reads numbers, not boxed 64-bit cdata */
struct bg_lua_ctx { uint32_t t[4]; uint32_t s[2]; uint8_t flags; uint8_t remote; };
]]

-- What the exporters and specs read (finished spans and log records, the tracer's counters):
-- declared on first call, so that a plugin state that only makes spans does not pay for them
-- (the declarations of this file cost a state ~55 KB together).
local export_declared = false
function T.cdef_export()
  if export_declared then return end
  export_declared = true
  ffi.cdef [[
typedef struct bg_tracer_stats {
  uint64_t started, sampled;
  uint64_t spans_dropped;
  uint64_t logs_recorded, logs_dropped;
  size_t spans_buffered, logs_buffered;
} bg_tracer_stats;
void bg_tracer_stats_get(const bg_tracer *t, bg_tracer_stats *out);
typedef struct bg_attr {
  const char *key;
  uint32_t klen;
  uint8_t type;
  uint32_t n;
  union {
    const char *s;
    int64_t i;
    double d;
    int b;
    const struct bg_attr *a;
  } v;
} bg_attr;
typedef struct bg_span_event_view {
  const char *name;
  uint32_t name_len;
  uint64_t time_ns;
  const bg_attr *attrs;
  uint32_t nattrs, dropped_attrs;
} bg_span_event_view;
typedef struct bg_span_view {
  bg_span_ctx ctx;
  uint8_t parent_span_id[8];
  int kind, status;
  const char *name, *status_msg, *scope;
  uint32_t name_len, status_len, scope_len;
  uint64_t start_ns, end_ns;
  const bg_attr *attrs;
  uint32_t nattrs, dropped_attrs;
  const bg_span_event_view *events;
  uint32_t nevents, dropped_events;
} bg_span_view;
typedef struct bg_log_view {
  uint64_t time_ns;
  int severity;
  const char *body, *scope;
  uint32_t body_len, scope_len;
  const bg_attr *attrs;
  uint32_t nattrs;
  uint8_t trace_id[16], span_id[8];
  uint8_t flags;
} bg_log_view;

bg_span_batch *bg_trace_take_spans(bg_tracer *t, size_t max);
bg_log_batch *bg_trace_take_logs(bg_tracer *t, size_t max);
size_t bg_span_batch_len(const bg_span_batch *b);
void bg_span_batch_view(const bg_span_batch *b, size_t i, bg_span_view *out);
void bg_span_batch_ref(bg_span_batch *b);
void bg_span_batch_unref(bg_span_batch *b);
uint32_t bg_span_batch_id(bg_span_batch *b);
bg_span_batch *bg_span_batch_find(uint32_t id);
size_t bg_log_batch_len(const bg_log_batch *b);
void bg_log_batch_view(const bg_log_batch *b, size_t i, bg_log_view *out);
void bg_log_batch_ref(bg_log_batch *b);
void bg_log_batch_unref(bg_log_batch *b);
uint32_t bg_log_batch_id(bg_log_batch *b);
bg_log_batch *bg_log_batch_find(uint32_t id);
]]
end

-- Inside the agent the symbols are in the executable; in a plain luajit (specs, benches)
-- they come from the shared library BEAGLE_LIB names.
local C
if pcall(function() return ffi.C.bg_tracer_default end) then
  C = ffi.C
else
  local path = os.getenv("BEAGLE_LIB")
  if not path or path == "" then
    error("agent.trace: the C core is not linked in and BEAGLE_LIB is not set", 0)
  end
  C = ffi.load(path)
end
T.C = C

local tracer = C.bg_tracer_default()
if tracer == nil then error("agent.trace: out of memory", 0) end
T.tracer = tracer

local KIND = { internal = 1, server = 2, client = 3 }
local STATUS = { unset = 0, ok = 1, error = 2 }
T.KIND, T.STATUS = KIND, STATUS
local ATTR_STRING, ATTR_BOOL, ATTR_INT, ATTR_DOUBLE = 1, 2, 3, 4

local band = bit.band
local floor, huge = math.floor, math.huge
local type, pairs, ipairs, tostring, error, rawget = type, pairs, ipairs, tostring, error, rawget
local ffi_string, ffi_new, ffi_cast = ffi.string, ffi.new, ffi.cast

local hexbuf = ffi_new("char[64]")
local ctx_ptr_t = ffi.typeof("const struct bg_lua_ctx *")

local function hex_of(id, n)
  C.bg_trace_hex(id, n, hexbuf)
  return ffi_string(hexbuf, 2 * n)
end

-- Whether a context has ids at all (trace id not all zero).
local function ctx_valid(c)
  local w = ffi_cast(ctx_ptr_t, c)
  return w.t[0] ~= 0 or w.t[1] ~= 0 or w.t[2] ~= 0 or w.t[3] ~= 0
end

-- ---- attributes ---------------------------------------------------------------------------

-- A number as OTLP wants it: an int when integral and within int64, else a double.
local TWO63 = 2 ^ 63
local function is_int(v)
  return v == floor(v) and v > -TWO63 and v < TWO63 and v ~= huge and v ~= -huge
end

-- What is wrong with v as an attribute value (nil when it is fine): a string, number, boolean,
-- or a list of one of those types.
local function check_value(v)
  local t = type(v)
  if t == "string" or t == "number" or t == "boolean" then return nil end
  if t ~= "table" then return ("a string, number, boolean or array expected, got %s"):format(t) end
  -- a plain table only: a metatable's __index would run the plugin's code between these checks
  -- and the C call that copies the items (it could end the span, or answer one item twice
  -- with strings of different lengths); without one, every read here and in set_array is raw
  if debug.getmetatable(v) ~= nil then return "an array must be a plain table (it has a metatable)" end
  local n, kind = #v, nil
  for i = 1, n do
    local ti = type(v[i])
    if ti ~= "string" and ti ~= "number" and ti ~= "boolean" then
      return ("array items must be strings, numbers or booleans (item %d is a %s)"):format(i, ti)
    end
    if kind == nil then kind = ti
    elseif kind ~= ti then
      return ("array items must all be of one type (item 1 is a %s, item %d a %s)"):format(kind, i, ti)
    end
  end
  for key in pairs(v) do
    if type(key) ~= "number" or key < 1 or key > n or key % 1 ~= 0 then
      return "an array must be a list (keys 1..n only)"
    end
  end
  return nil
end

-- Sets an array attribute, checked by check_value.
local function set_array(p, k, arr)
  local n = #arr
  local kind = type(arr[1])
  if n == 0 or kind == "string" then
    local vs, vl = ffi_new("const char *[?]", n + 1), ffi_new("size_t[?]", n + 1)
    for i = 1, n do vs[i - 1] = arr[i]; vl[i - 1] = #arr[i] end
    -- the strings are anchored by arr for the call
    C.bg_span_set_array(p, k, #k, ATTR_STRING, n, vs, vl, nil, nil)
  elseif kind == "boolean" then
    local vi = ffi_new("int64_t[?]", n)
    for i = 1, n do vi[i - 1] = arr[i] and 1 or 0 end
    C.bg_span_set_array(p, k, #k, ATTR_BOOL, n, nil, nil, vi, nil)
  else
    local ints = true
    for i = 1, n do if not is_int(arr[i]) then ints = false break end end
    if ints then
      local vi = ffi_new("int64_t[?]", n)
      for i = 1, n do vi[i - 1] = arr[i] end
      C.bg_span_set_array(p, k, #k, ATTR_INT, n, nil, nil, vi, nil)
    else
      local vd = ffi_new("double[?]", n)
      for i = 1, n do vd[i - 1] = arr[i] end
      C.bg_span_set_array(p, k, #k, ATTR_DOUBLE, n, nil, nil, nil, vd)
    end
  end
end

-- Sets one attribute of a recording span; v was checked (check_value).
local function set_attr(p, k, v)
  local t = type(v)
  if t == "string" then
    C.bg_span_set_str(p, k, #k, v, #v)
  elseif t == "number" then
    if is_int(v) then C.bg_span_set_int(p, k, #k, v) else C.bg_span_set_double(p, k, #k, v) end
  elseif t == "boolean" then
    C.bg_span_set_bool(p, k, #k, v and 1 or 0)
  else
    set_array(p, k, v)
  end
end

local function set_event_attr(p, k, v)
  local t = type(v)
  if t == "string" then
    C.bg_span_event_set_str(p, k, #k, v, #v)
  elseif t == "number" then
    if is_int(v) then C.bg_span_event_set_int(p, k, #k, v) else C.bg_span_event_set_double(p, k, #k, v) end
  elseif t == "boolean" then
    C.bg_span_event_set_bool(p, k, #k, v and 1 or 0)
  else
    return ("event attribute %q: a string, number or boolean expected, got %s"):format(k, t)
  end
  return nil
end

-- Checks an attribute table before a span exists (so that a bad one raises without a span
-- left open): string keys, values of the kinds set_attr takes.
local function check_kv(k, v, where)
  if type(k) ~= "string" then return ("%s: attribute names must be strings"):format(where) end
  local err = check_value(v)
  if err then return ("%s: attribute %q: %s"):format(where, k, err) end
  return nil
end

local function check_rest(attrs, k, where)
  local v
  k, v = next(attrs, k)
  while k ~= nil do
    local err = check_kv(k, v, where)
    if err then return err end
    k, v = next(attrs, k)
  end
  return nil
end

-- The first four attributes are walked without a loop: a function with a loop cannot be where
-- a compiled trace starts, and beagle.span, called from a plugin's interpreted chunk, is
-- compiled from its entry or not at all (the JIT gave up on it and blacklisted it otherwise).
local function check_attrs(attrs, where)
  if attrs == nil then return nil end
  if type(attrs) ~= "table" then
    return ("%s: attributes must be a table, got %s"):format(where, type(attrs))
  end
  local k, v = next(attrs)
  if k == nil then return nil end
  local err = check_kv(k, v, where)
  if err then return err end
  k, v = next(attrs, k)
  if k == nil then return nil end
  err = check_kv(k, v, where)
  if err then return err end
  k, v = next(attrs, k)
  if k == nil then return nil end
  err = check_kv(k, v, where)
  if err then return err end
  k, v = next(attrs, k)
  if k == nil then return nil end
  err = check_kv(k, v, where)
  if err then return err end
  return check_rest(attrs, k, where)
end

-- check_attrs for beagle.span & co., which then set what it checked: the first two pairs come
-- back (err, k1, v1, k2, v2, more) so that they are not walked again to be set (each next() of
-- a compiled walk is two calls into the VM, ~60 instructions; a span's two attributes walked
-- twice cost more than setting them). more: the table has a third pair (set by set_attrs_from).
local function check_first(attrs, where)
  if attrs == nil then return nil end
  if type(attrs) ~= "table" then
    return ("%s: attributes must be a table, got %s"):format(where, type(attrs))
  end
  local k1, v1 = next(attrs)
  if k1 == nil then return nil end
  local err = check_kv(k1, v1, where)
  if err then return err end
  local k2, v2 = next(attrs, k1)
  if k2 == nil then return nil, k1, v1 end
  err = check_kv(k2, v2, where)
  if err then return err end
  local k3, v3 = next(attrs, k2)
  if k3 == nil then return nil, k1, v1, k2, v2, false end
  err = check_kv(k3, v3, where)
  if err then return err end
  k3, v3 = next(attrs, k3)
  if k3 ~= nil then
    err = check_kv(k3, v3, where)
    if err then return err end
    err = check_rest(attrs, k3, where)
    if err then return err end
  end
  return nil, k1, v1, k2, v2, true
end

-- The text of an error value without running anybody's __tostring.
local function errtext(e)
  local t = type(e)
  if t == "string" then return e end
  if t == "number" or t == "boolean" or t == "nil" then return tostring(e) end
  if t == "table" then
    local m = rawget(e, "message") or rawget(e, "msg")
    if type(m) == "string" then return m end
  end
  return "error object is a " .. t .. " value"
end
T.errtext = errtext

-- exception.type of a Lua error: a table's string `type` field when it has one, else "error"
-- (Lua has no exception classes; a string error is the common case).
local function errtype(e)
  if type(e) == "table" then
    local t = rawget(e, "type")
    if type(t) == "string" then return t end
  end
  return "error"
end

local function record_exception(p, err, tb)
  local msg, ty = errtext(err), errtype(err)
  C.bg_span_record_exception(p, ty, #ty, msg, #msg, tb, tb and #tb or 0)
end

-- ---- the agent's side ---------------------------------------------------------------------

local saved = ffi_new("bg_span_ctx")
local parent_ctx = ffi_new("bg_span_ctx")
local root_ctx = ffi_new("bg_span_ctx") -- all zero: a new root

function T.start(name, kind, parent, scope, tracestate)
  name = tostring(name)
  local k = KIND[kind or "internal"] or error(("agent.trace.start: unknown kind %q"):format(tostring(kind)), 2)
  local pc = root_ctx
  if type(parent) == "string" then
    if C.bg_traceparent_parse(parent, #parent, parent_ctx) == 0 then
      if type(tracestate) == "string" and tracestate ~= "" then
        C.bg_tracestate_parse(parent_ctx, tracestate, #tracestate)
      end
      pc = parent_ctx
    end
  elseif parent ~= nil then
    pc = C.bg_span_context(parent)
  end
  scope = scope or "beagle"
  C.bg_span_ctx_copy(saved, C.bg_trace_current(tracer))
  local s = C.bg_span_begin(tracer, pc, name, #name, k, scope, #scope)
  C.bg_trace_restore(tracer, saved)
  if pc == parent_ctx then C.bg_span_ctx_clear(parent_ctx) end
  return s
end

function T.set(s, key, value)
  local err = check_value(value)
  if err then error(("agent.trace.set: attribute %q: %s"):format(tostring(key), err), 2) end
  if s.recording ~= 0 then set_attr(s, tostring(key), value) end
end

function T.event(s, name, attrs)
  if s.recording == 0 then return end
  name = tostring(name)
  C.bg_span_add_event(s, name, #name, 0)
  if attrs then
    for k, v in pairs(attrs) do
      if type(k) == "string" then set_event_attr(s, k, v) end
    end
  end
end

function T.exception(s, err, traceback)
  if s.recording == 0 then return end
  record_exception(s, err, type(traceback) == "string" and traceback or nil)
end

function T.finish(s, status, message)
  if status ~= nil then
    local code = STATUS[status] or error(("agent.trace.finish: unknown status %q"):format(tostring(status)), 2)
    if s.recording ~= 0 then
      -- a description goes with an error status only (OpenTelemetry)
      message = code == 2 and message ~= nil and tostring(message) or nil
      C.bg_span_set_status(s, code, message, message and #message or 0)
    end
  end
  C.bg_span_end(tracer, s, 0)
end

local tpbuf = ffi_new("char[56]")
local function traceparent_of(c)
  C.bg_traceparent_format(c, tpbuf)
  return ffi_string(tpbuf, 55)
end

function T.traceparent(s)
  local c = s and C.bg_span_context(s) or C.bg_trace_current(tracer)
  if not ctx_valid(c) then return nil end
  return traceparent_of(c)
end

function T.tracestate(s)
  local c = s and C.bg_span_context(s) or C.bg_trace_current(tracer)
  if c.state == nil then return nil end
  local n = ffi_new("size_t[1]")
  local p = C.bg_tracestate_str(c.state, n)
  if p == nil or n[0] == 0 then return nil end
  return ffi_string(p, n[0])
end

function T.trace_id(s)
  local c = s and C.bg_span_context(s) or C.bg_trace_current(tracer)
  if not ctx_valid(c) then return nil end
  return hex_of(c.trace_id, 16)
end

function T.span_id(s)
  local c = s and C.bg_span_context(s) or C.bg_trace_current(tracer)
  if not ctx_valid(c) then return nil end
  return hex_of(c.span_id, 8)
end

function T.recording(s) return s.recording ~= 0 end

function T.sampled(s)
  return band(C.bg_span_context(s).flags, 1) ~= 0
end

-- The current context as a traceparent string, or nil when there is none (for a run started
-- from where the agent is).
function T.current_traceparent()
  local c = C.bg_trace_current(tracer)
  if not ctx_valid(c) then return nil end
  return traceparent_of(c)
end

-- The settings that reach the tracer; a reload's config (cfg.settings: name -> { value })
-- overrides them unless a MONITORING_* variable set them.
local TRACE_SETTINGS = { "trace_sampling_rate", "trace_buffer_size", "log_buffer_size",
  "trace_max_attributes", "trace_max_events", "trace_max_value_length" }

local log_hook_installed = false
function T.configure(settings, cfg)
  T.cdef_export() -- the agent's state (this is its call): the exporters read through T.C
  local s = {}
  for _, k in ipairs(TRACE_SETTINGS) do
    s[k] = settings and settings[k]
    local c = cfg and cfg.settings and cfg.settings[k]
    if c ~= nil and not os.getenv("MONITORING_" .. k:upper()) then
      if type(c) == "table" then c = c.value end
      s[k] = c
    end
  end
  if type(s.trace_sampling_rate) == "number" then C.bg_tracer_set_ratio(tracer, s.trace_sampling_rate) end
  if s.trace_buffer_size ~= nil or s.log_buffer_size ~= nil then
    C.bg_tracer_set_capacity(tracer, s.trace_buffer_size or 2048, s.log_buffer_size or 2048)
  end
  if s.trace_max_attributes ~= nil or s.trace_max_events ~= nil or s.trace_max_value_length ~= nil then
    C.bg_tracer_set_limits(tracer, s.trace_max_attributes or 128, s.trace_max_events or 128,
      s.trace_max_value_length or 4096)
  end
  if not log_hook_installed then
    C.bg_trace_log_install()
    log_hook_installed = true
  end
end

-- ---- the plugins' side --------------------------------------------------------------------
-- What lua/beagle/init.lua hands plugins as beagle.span, beagle.trace_operation,
-- beagle.trace_optimization and beagle.instrument. A span object is a table with methods
-- (set_attribute, add_event, record_exception, set_status, trace_id, span_id, traceparent,
-- is_recording, finish) and a closed metatable. It holds a slot number in [1], and is valid
-- only while `reg` (an array no plugin reaches) maps that slot to that very object: a plugin
-- that rawsets [1] gets "not a span", one that keeps the object past its end gets "span has
-- ended" (a slot reused maps to the new object), and no method reaches C before that check;
-- the bg_span's address is in `addr` (same slot), out of plugins' reach. No cdata is kept per
-- span (boxing one, and ffi.gc, cost more than the span's C calls), and slots, unlike the
-- addresses they stand for, are small integers: array stores, not hash insertions (a hash
-- keyed by the addresses of the records C cycles through was rehashed over and over).
--
-- Cost. Inside a context that is not sampled (the common case: trace_sampling_rate is 1 %),
-- beagle.span hands fn one shared no-op span without any C call or allocation: a field read
-- (MIRROR.u below) and fn's call. A sampled span is bg_span_begin, its attributes, fn under
-- xpcall, bg_span_end, one table and two hash entries. A span nobody ends (its run cancelled
-- while it waited, so fn never returned; a trace_operation span dropped) is ended once the
-- collector has taken its object, with status error "span not ended": `addr` remembers every
-- address until its end and a sweep every 256 spans (and at the state's close) ends the ones
-- whose object is gone.
--
-- Errors: fn's error ends the span with status error and an "exception" event (type, message,
-- the Lua traceback where it was raised), then is raised again as it was.

local SPAN_MT = { __metatable = false }
local METHODS = {}
SPAN_MT.__index = METHODS
local NOOP = setmetatable({}, SPAN_MT)
local reg = setmetatable({}, { __mode = "v" }) -- slot -> its span object (or owner), while open
local addr = {} -- slot -> its bg_span's address, while open (strong: finds the spans whose object is gone)
local free_slots, nfree, top = {}, 0, 0 -- slots whose span ended; top: the most ever open at once
local uintptr_t, span_ptr_t = ffi.typeof("uintptr_t"), ffi.typeof("bg_span *")

-- the tracer's current context: the pointer is into the tracer, the same for its life
local cur = ffi_cast(ctx_ptr_t, C.bg_trace_current(tracer))

-- Whether a current context exists and is not sampled (no context at all: a new root is
-- sampled by the ratio, in C).
local function unsampled_now()
  return band(cur.flags, 1) == 0 and (cur.t[0] ~= 0 or cur.t[1] ~= 0 or cur.t[2] ~= 0 or cur.t[3] ~= 0)
end

-- The same answer as a plain Lua field, because a plugin's chunk is interpreted and an FFI
-- read from the interpreter costs what the rest of beagle.span costs (~100 ns of 140). Kept
-- true to the tracer: core/script (script.c, trace_mirror) sets it at the start of each slice
-- of a run and of each s:call (where the context changes hands), and this file after every
-- span it begins or ends (nothing else changes the current context inside a slice: ctx.http's
-- client span is not left current). In plain luajit (specs, benches) T.sync() after changing
-- the context by hand. Where the answer is known it is set without the FFI reads (which also
-- kept a tiny hot function whose branch, taken by turns, sent each span through the
-- interpreter when its trace was the first one compiled): a span begun here was begun while
-- u was false, and one that records is sampled, so u stays false; when beagle.span's span ends
-- after fn, what is current is what was at its begin or a sampled descendant (every context
-- made current inside fn descends from the span), so u is false. false is also the safe side:
-- it only sends the next span to C, which decides by the real context (and begin syncs again).
local MIRROR = { u = false, co = false }
debug.getregistry()["bg.trace"] = MIRROR
local function sync() MIRROR.u = unsampled_now() end
T.sync = sync
sync() -- loaded inside a run (a plugin's first beagle.span): the run's context is current
T._unsampled = function() return MIRROR.u end

-- Ends the open spans whose object the collector has taken (all of them when `all`).
local function sweep(all)
  local ended = false
  for i = 1, top do
    local a = addr[i]
    if a and (all or reg[i] == nil) then
      addr[i] = nil
      reg[i] = nil
      nfree = nfree + 1
      free_slots[nfree] = i
      local p = ffi_cast(span_ptr_t, a)
      if p.recording ~= 0 then
        local m = "span not ended"
        C.bg_span_set_status(p, 2, m, #m)
      end
      C.bg_span_end(tracer, p, 0)
      ended = true
    end
  end
  if ended then sync() end
end
T._sweep = sweep
-- the state's close (lua_close runs every finalizer): no span outlives its state
local closer = newproxy(true)
getmetatable(closer).__gc = function() sweep(true) end
T._closer = closer
local begun = 0

-- The live pointer of a span object, NOOP's nil, or a raise naming the method.
local function ptr(self, method)
  if type(self) == "table" then
    local i = rawget(self, 1)
    if i and reg[i] == self then return ffi_cast(span_ptr_t, addr[i]), i end
    if self == NOOP then return nil end
    if i == false and debug.getmetatable(self) == SPAN_MT then
      error(("span:%s: the span has ended"):format(method), 3)
    end
  end
  error(("bad self to 'span:%s' (a span expected, got %s; call it as span:%s(...))")
    :format(method, type(self), method), 3)
end

function METHODS.set_attribute(self, k, v)
  if self == NOOP then -- the common case first: arguments checked, nothing kept
    local tv = type(v)
    if type(k) == "string" and (tv == "string" or tv == "number" or tv == "boolean") then return self end
  end
  local p = ptr(self, "set_attribute")
  if type(k) ~= "string" then
    error(("bad argument #1 to 'span:set_attribute' (string expected, got %s)"):format(type(k)), 2)
  end
  local err = check_value(v)
  if err then error(("bad argument #2 to 'span:set_attribute' (%s)"):format(err), 2) end
  if p and p.recording ~= 0 then set_attr(p, k, v) end
  return self
end

function METHODS.set_attributes(self, attrs)
  local p = ptr(self, "set_attributes")
  local err = check_attrs(attrs, "span:set_attributes")
  if err then error(err, 2) end
  if p and p.recording ~= 0 then
    for k, v in pairs(attrs) do set_attr(p, k, v) end
  end
  return self
end

function METHODS.add_event(self, name, attrs)
  local p = ptr(self, "add_event")
  if type(name) ~= "string" then
    error(("bad argument #1 to 'span:add_event' (string expected, got %s)"):format(type(name)), 2)
  end
  if attrs ~= nil and type(attrs) ~= "table" then
    error(("bad argument #2 to 'span:add_event' (table expected, got %s)"):format(type(attrs)), 2)
  end
  if attrs then
    for k, v in pairs(attrs) do
      local t = type(v)
      if type(k) ~= "string" or (t ~= "string" and t ~= "number" and t ~= "boolean") then
        error("span:add_event: attributes must be string names of strings, numbers or booleans", 2)
      end
    end
  end
  if p and p.recording ~= 0 then
    C.bg_span_add_event(p, name, #name, 0)
    if attrs then for k, v in pairs(attrs) do set_event_attr(p, k, v) end end
  end
  return self
end

local traceback = debug.traceback

function METHODS.record_exception(self, err, attrs)
  local p = ptr(self, "record_exception")
  if attrs ~= nil and type(attrs) ~= "table" then
    error(("bad argument #2 to 'span:record_exception' (table expected, got %s)"):format(type(attrs)), 2)
  end
  if p and p.recording ~= 0 then
    local ok, tb = pcall(traceback, "", 2)
    record_exception(p, err, ok and tb:gsub("^\n", "") or nil)
    if attrs then
      for k, v in pairs(attrs) do if type(k) == "string" then set_event_attr(p, k, v) end end
    end
  end
  return self
end

function METHODS.set_status(self, status, message)
  local p = ptr(self, "set_status")
  local code = STATUS[status]
  if code == nil then
    error(("bad argument #1 to 'span:set_status' (\"ok\", \"error\" or \"unset\" expected, got %s)")
      :format(type(status) == "string" and ("%q"):format(status) or type(status)), 2)
  end
  if message ~= nil and type(message) ~= "string" then
    error(("bad argument #2 to 'span:set_status' (string expected, got %s)"):format(type(message)), 2)
  end
  if p and p.recording ~= 0 then
    if code == 2 and message then C.bg_span_set_status(p, code, message, #message)
    else C.bg_span_set_status(p, code, nil, 0) end
  end
  return self
end

-- ids: a live span's own; the no-op span's are the current context's (what ctx.http sends)
local function ids_ctx(self, method)
  local p = ptr(self, method)
  if p then return C.bg_span_context(p) end
  return C.bg_trace_current(tracer)
end

function METHODS.trace_id(self)
  local c = ids_ctx(self, "trace_id")
  if not ctx_valid(c) then return nil end
  return hex_of(c.trace_id, 16)
end

function METHODS.span_id(self)
  local c = ids_ctx(self, "span_id")
  if not ctx_valid(c) then return nil end
  return hex_of(c.span_id, 8)
end

function METHODS.traceparent(self)
  local c = ids_ctx(self, "traceparent")
  if not ctx_valid(c) then return nil end
  return traceparent_of(c)
end

function METHODS.is_recording(self)
  local p = ptr(self, "is_recording")
  return p ~= nil and p.recording ~= 0
end

local function end_span(self, i, p)
  reg[i] = nil
  addr[i] = nil
  nfree = nfree + 1
  free_slots[nfree] = i
  if type(self) == "table" then self[1] = false end
  C.bg_span_end(tracer, p, 0)
  sync()
end

function METHODS.finish(self)
  local p, i = ptr(self, "finish")
  if p then end_span(self, i, p) end
end
METHODS["end"] = METHODS.finish

local scope_name = "plugin"
-- the plugin's name, as a config names it (its file without ".lua"), as its log records' scope
function T.set_scope(name) scope_name = (tostring(name):gsub("%.lua$", "")) end

-- Sets attrs' pairs after k (checked) on a recording span; as check_attrs, the first two
-- without a loop.
local function set_attrs_from(p, attrs, k)
  local v
  k, v = next(attrs, k)
  if k == nil then return end
  set_attr(p, k, v)
  k, v = next(attrs, k)
  if k == nil then return end
  set_attr(p, k, v)
  k, v = next(attrs, k)
  while k ~= nil do
    set_attr(p, k, v)
    k, v = next(attrs, k)
  end
end

local MAIN = {} -- the owner of bare spans begun outside a run (they end before it returns)

-- bare: for an fn that takes no argument (no object could reach it), the span has no object:
-- `reg` maps its slot to the run's coroutine (script.c puts it in MIRROR.co), which the
-- collector takes once the run is gone without ending it. Saves the object (a table and its
-- collection: two thirds of what Lua adds to a sampled span).
-- Begins a span (current from now on) and its object (none when bare); attrs as check_first
-- gave them.
local MAX_OPEN = 10000 -- spans of one state open at once (each a record in C, ~1.4 KB)

local function begin(name, bare, attrs, k1, v1, k2, v2, more)
  if nfree == 0 and top >= MAX_OPEN then
    -- held, never ended: past the bound, the ones whose object is gone are swept first; what
    -- is still held is the plugin's mistake, and a clear error rather than C memory without
    -- end (and a sweep over ever more slots every 256 spans)
    sweep(false)
    if nfree == 0 then
      error(("too many spans open at once (%d): end them with span:finish()"):format(MAX_OPEN), 3)
    end
  end
  local sc = scope_name
  local p = C.bg_span_begin(tracer, nil, name, #name, 1, sc, #sc)
  if p.recording == 0 then sync() end -- recording: sampled, u stays false
  local i
  if nfree > 0 then
    i = free_slots[nfree]
    nfree = nfree - 1
  else
    top = top + 1
    i = top
  end
  local obj
  if bare then obj = MIRROR.co or MAIN else obj = setmetatable({ i }, SPAN_MT) end
  reg[i] = obj
  addr[i] = tonumber(ffi_cast(uintptr_t, p))
  if k1 ~= nil and p.recording ~= 0 then
    set_attr(p, k1, v1)
    if k2 ~= nil then
      set_attr(p, k2, v2)
      if more then set_attrs_from(p, attrs, k2) end
    end
  end
  begun = begun + 1
  if begun >= 256 then
    begun = 0
    sweep(false)
  end
  return obj, i, p
end

-- the traceback where fn raised, taken by the handler (synchronously: no run can come between
-- the handler and the xpcall's return)
local last_tb
local function handler(e)
  local ok, tb = pcall(traceback, errtext(e), 2)
  last_tb = ok and tb or nil
  return e
end

-- The end of beagle.span's span after fn returned. A function of its own, so that it is a
-- compiled trace when close runs in the interpreter (from a plugin's chunk, where an FFI call
-- interpreted costs ~300 instructions), and without a branch: a side trace of it could not
-- return through close's `...` (NYI in LuaJIT) and would send each span through the
-- interpreter (as sync's did).
local function end_ok(i, p)
  reg[i] = nil
  addr[i] = nil
  nfree = nfree + 1
  free_slots[nfree] = i
  C.bg_span_end(tracer, p, 0)
  MIRROR.u = false -- see MIRROR
end

local function close(obj, i, p, ok, ...)
  if ok then
    if reg[i] == obj then
      if obj ~= MAIN and type(obj) == "table" then obj[1] = false end
      end_ok(i, p)
    end
    return ...
  end
  local e = ...
  if reg[i] == obj then
    if p.recording ~= 0 then
      record_exception(p, e, last_tb)
      local m = errtext(e)
      C.bg_span_set_status(p, 2, m, #m)
    end
    end_span(obj, i, p)
  end
  last_tb = nil
  error(e, 0)
end

local function check_name(name, fname, level)
  if type(name) ~= "string" then
    error(("bad argument #1 to '%s' (string expected, got %s)"):format(fname, type(name)), level or 3)
  end
end

local ok_name, ok_attrs, ok_fn = {}, {}, {} -- see span: none of them passes at first

-- Whether fn can take the span: it declares a parameter, or takes varargs (C functions do).
local takes = setmetatable({}, { __mode = "k" })
local function takes_span(fn)
  local t = takes[fn]
  if t == nil then
    local info = debug.getinfo(fn, "u")
    t = info.nparams > 0 or info.isvararg == true
    takes[fn] = t
  end
  return t
end
local function span_slow(name, attrs, fn)
  if fn == nil and type(attrs) == "function" then attrs, fn = nil, attrs end
  check_name(name, "beagle.span", 4) -- from span_slow, from span
  if type(fn) ~= "function" then
    error(("bad argument #3 to 'beagle.span' (function expected, got %s)"):format(type(fn)), 3)
  end
  if attrs ~= nil and type(attrs) ~= "table" then
    error(("bad argument #2 to 'beagle.span' (table expected, got %s)"):format(type(attrs)), 3)
  end
  if MIRROR.u then
    ok_name, ok_attrs, ok_fn = name, attrs, fn
    return fn(NOOP)
  end
  local err, k1, v1, k2, v2, more = check_first(attrs, "beagle.span")
  if err then error(err, 3) end
  if not takes_span(fn) then
    local owner, a, p = begin(name, true, attrs, k1, v1, k2, v2, more)
    return close(owner, a, p, xpcall(fn, handler))
  end
  local obj, a, p = begin(name, false, attrs, k1, v1, k2, v2, more)
  return close(obj, a, p, xpcall(fn, handler, obj))
end

-- The no-op case first and in as few bytecodes as can be: plugin code calls this from the
-- interpreter, where each type() check costs what the rest of the call costs (~90 machine
-- instructions). So the arguments of the last no-op call that passed the checks are kept, and
-- the same name and function again (a loop's) pass by identity, the attributes too or by one
-- type() when they are a fresh table.
local function span(name, attrs, fn)
  if MIRROR.u and fn == ok_fn and name == ok_name and (attrs == ok_attrs or type(attrs) == "table") then
    return fn(NOOP)
  end
  return span_slow(name, attrs, fn)
end

-- trace_operation(name, attrs, fn): as span; without fn, a started span that is current until
-- span:finish() (or the end of the run).
local function trace_operation(name, attrs, fn)
  if fn == nil and type(attrs) == "function" then attrs, fn = nil, attrs end
  check_name(name, "beagle.trace_operation")
  if fn ~= nil and type(fn) ~= "function" then
    error(("bad argument #3 to 'beagle.trace_operation' (function expected, got %s)"):format(type(fn)), 2)
  end
  local err, k1, v1, k2, v2, more = check_first(attrs, "beagle.trace_operation")
  if err then error(err, 2) end
  if MIRROR.u then
    if fn then return fn(NOOP) end
    return NOOP
  end
  local obj, a, p = begin(name, false, attrs, k1, v1, k2, v2, more)
  if fn == nil then return obj end
  return close(obj, a, p, xpcall(fn, handler, obj))
end

local function trace_optimization(id, fn)
  if type(id) ~= "string" and type(id) ~= "number" then
    error(("bad argument #1 to 'beagle.trace_optimization' (string expected, got %s)"):format(type(id)), 2)
  end
  return trace_operation("optimization_run", { optimization_id = tostring(id) }, fn)
end

local function call_traced(obj, a, p, ...)
  return close(obj, a, p, xpcall(...))
end

local function instrument(name, fn)
  check_name(name, "beagle.instrument")
  if fn == nil then
    return function(f) return instrument(name, f) end
  end
  if type(fn) ~= "function" then
    error(("bad argument #2 to 'beagle.instrument' (function expected, got %s)"):format(type(fn)), 2)
  end
  return function(...)
    if MIRROR.u then return fn(...) end
    local owner, a, p = begin(name, true) -- fn never sees the span: no object
    return call_traced(owner, a, p, fn, handler, ...)
  end
end

-- The functions plugins get (each call a new table, so no plugin shares one with another or
-- with trusted code; the functions themselves hold nothing a plugin could use).
function T.plugin_api()
  return { span = span, trace_operation = trace_operation, trace_optimization = trace_optimization,
    instrument = instrument }
end
T.NOOP = NOOP
T.MAX_OPEN = MAX_OPEN
-- for the spec: how many spans are open now
T._open_count = function()
  local n = 0
  for i = 1, top do if addr[i] then n = n + 1 end end
  return n
end

return T
