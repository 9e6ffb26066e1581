-- agent.metrics: counters, gauges and histograms kept in the C registry (core/metrics/metrics),
-- reached through the LuaJIT FFI. This file owns the cdef of that API. Trusted: the agent uses
-- all of it; plugins get M.plugin_api(), a table of the parts they may use, built here.
--
-- Two ways in:
--   handles   M.counter(name, labels, opts) / M.gauge(...) / M.histogram(name, opts, labels)
--             resolve a series once and return a handle: a plain Lua table holding its
--             methods. c:inc() and g:set() write the series' value in place (an FFI field
--             write, which the JIT turns into a load, an add and a store); h:observe() is one
--             C call. Bad names raise (a programmer mistake, like a bad argument).
--   by name   M.increment_counter / set_gauge / record_histogram / timer / time keep the
--             guide's MetricsCollector names. They find the series through a Lua cache (a
--             table lookup per tag, no string building) and return true or nil, err.
--
-- A handle holds no pointer: the series pointer behind it is kept here, in a weak-keyed table
-- per kind that only this file reaches, so a handle can't be indexed past its series, lowered,
-- passed as another kind or turned into an address, and a method given anything but a live
-- handle of its kind raises before any C call. Measured (bench/metrics_ffi.lua, callgrind) a
-- plugin's c:inc() costs a third of what a cdata handle (pointer or reference) costs, as the
-- interpreter finds a table's method without the FFI's __index; compiled code costs the same.
--
-- Names are the guide's ("api.response_time"); C maps them to Prometheus names
-- ("api_response_time", counters with "_total"). Timers record seconds into
-- "<name>_seconds" histograms.
--
-- Cardinality limits (max_series, max_series_per_metric) are the C registry's: past them the
-- by-name calls return nil, err (nothing is cached, so a later call may succeed once series
-- were removed) and the handle constructors raise. The agent's beagle_* series are outside
-- the limits (bg_series_get_own); a state that called plugin_api() (a plugin's) makes none. Out: M.render(format) for Prometheus
-- 0.0.4, OpenMetrics 1.0 or JSON, M.negotiate(accept), M.gzip(body).
local ffi = require("ffi")

local M = {}

-- The bg_lua_* types are Lua-side names for bg_series pointers of one kind, so that a counter's
-- cannot be passed to bg_gauge_set: the FFI binds by symbol name, not by type. A counter's and
-- a gauge's series starts with its value (core/metrics/metrics.h says so), which is all Lua
-- needs to see of it. Only this file holds such pointers; what it hands out are handles (below).
ffi.cdef [[
typedef struct bg_registry bg_registry;
typedef struct bg_series bg_series;
struct bg_lua_counter { double v; };
struct bg_lua_gauge { double v; };
struct bg_lua_histogram;

bg_registry *bg_registry_default(void);
bg_series *bg_series_get(bg_registry *r, int type, const char *name, const char *help,
                         const char *const *kv, int nlabels, const double *buckets,
                         int nbuckets, char *err, size_t errlen);
bg_series *bg_series_get_own(bg_registry *r, int type, const char *name, const char *help,
                             const char *const *kv, int nlabels, const double *buckets,
                             int nbuckets, char *err, size_t errlen);
void bg_counter_add(struct bg_lua_counter *s, double v);
void bg_gauge_set(struct bg_lua_gauge *s, double v);
void bg_gauge_add(struct bg_lua_gauge *s, double v);
void bg_histogram_observe(struct bg_lua_histogram *s, double v);
double bg_series_value(const void *s);
uint64_t bg_series_count(const void *s);
uint64_t bg_now_ns(void);

bg_series *bg_series_find(bg_registry *r, int type, const char *name, const char *const *kv,
                          int nlabels);
typedef struct bg_series_probe_t { int exists; size_t family_room, total_room; } bg_series_probe_t;
int bg_series_probe(bg_registry *r, int type, const char *name, const char *const *kv,
                    int nlabels, bg_series_probe_t *out, char *err, size_t errlen);
void bg_series_remove(bg_registry *r, bg_series *s);
double bg_histogram_quantile(const void *s, double q);
double bg_histogram_min(const void *s);
double bg_histogram_max(const void *s);
uint32_t bg_series_id(const void *s);
void bg_registry_set_limits(bg_registry *r, size_t max_series, size_t max_per_metric);
uint64_t bg_registry_misuse_count(const bg_registry *r);
]]

-- Inside the agent the symbols are in the executable; in a plain luajit (specs, benches)
-- they come from the shared library BEAGLE_LIB names.
local C
if pcall(function() return ffi.C.bg_registry_default end) then
  C = ffi.C
else
  local path = os.getenv("BEAGLE_LIB")
  if not path or path == "" then
    error("agent.metrics: the C core is not linked in and BEAGLE_LIB is not set", 0)
  end
  C = ffi.load(path)
end
M.C = C

local COUNTER, GAUGE, HISTOGRAM = 0, 1, 2
local MAX_LABELS = 16
local ERRLEN = 256

local registry = C.bg_registry_default()
M.registry = registry
if registry == nil then error("agent.metrics: out of memory", 0) end

local errbuf = ffi.new("char[?]", ERRLEN)
local own_ok = true -- beagle_* series made here are the agent's own, until plugin_api()
local kvbuf = ffi.new("const char *[?]", 2 * MAX_LABELS)

-- Raw series pointers, one type per kind. Only this file (and trusted code it hands one to
-- through M.pointer) holds them: indexed, they reach any memory.
local ctypes = {
  [COUNTER] = ffi.typeof("struct bg_lua_counter *"),
  [GAUGE] = ffi.typeof("struct bg_lua_gauge *"),
  [HISTOGRAM] = ffi.typeof("struct bg_lua_histogram *"),
}
local KIND = { [COUNTER] = "counter", [GAUGE] = "gauge", [HISTOGRAM] = "histogram" }
local MAX_BUCKETS = 64 -- BG_METRICS_MAX_BUCKETS

-- handle -> its series pointer, per kind. Weak keys: a handle nobody holds goes away.
local weak_k = { __mode = "k" }
local ptrs = {
  [COUNTER] = setmetatable({}, weak_k),
  [GAUGE] = setmetatable({}, weak_k),
  [HISTOGRAM] = setmetatable({}, weak_k),
}
local counters, gauges, hists = ptrs[COUNTER], ptrs[GAUGE], ptrs[HISTOGRAM]
local removed = setmetatable({}, weak_k) -- handle -> kind, once M.remove took its series

-- What a value given as a handle is, for messages: its type, or which handle it is. Never
-- tostring(v): that would run a plugin's __tostring.
local function what(v)
  if removed[v] then return ("a removed %s handle"):format(KIND[removed[v]]) end
  for kind, map in pairs(ptrs) do
    if map[v] ~= nil then return ("a %s handle"):format(KIND[kind]) end
  end
  return type(v)
end

-- The series pointer of self when the handle table had none: self itself when it is a raw
-- pointer of the kind (trusted code: specs over their own registry). Anything else raises.
local function self_ptr(kind, self, method)
  if ffi.istype(ctypes[kind], self) then return self end
  error(("bad self to '%s' (a %s handle expected, got %s)"):format(method, KIND[kind],
    what(self)), 3)
end

-- v when it is a number, else default when v is nil and there is one; raises otherwise.
local function num(v, method, default)
  if type(v) == "number" then return v end
  if v == nil and default ~= nil then return default end
  error(("bad argument #1 to '%s' (number expected, got %s)"):format(method, type(v)), 3)
end

-- Methods. Each finds its pointer first, checks its argument, and only then writes or calls C.
-- A counter only goes up: a negative or NaN v is handed to C, which ignores it and counts the
-- misuse.
local function counter_inc(self, v)
  local p = counters[self] or self_ptr(COUNTER, self, "inc")
  v = num(v, "inc", 1)
  if v >= 0 then p.v = p.v + v else C.bg_counter_add(p, v) end
end
local function counter_add(self, v)
  local p = counters[self] or self_ptr(COUNTER, self, "add")
  v = num(v, "add")
  if v >= 0 then p.v = p.v + v else C.bg_counter_add(p, v) end
end
local function counter_value(self)
  return (counters[self] or self_ptr(COUNTER, self, "value")).v
end

local function gauge_set(self, v)
  local p = gauges[self] or self_ptr(GAUGE, self, "set")
  p.v = num(v, "set")
end
local function gauge_inc(self, v)
  local p = gauges[self] or self_ptr(GAUGE, self, "inc")
  p.v = p.v + num(v, "inc", 1)
end
local function gauge_dec(self, v)
  local p = gauges[self] or self_ptr(GAUGE, self, "dec")
  p.v = p.v - num(v, "dec", 1)
end
local function gauge_add(self, v)
  local p = gauges[self] or self_ptr(GAUGE, self, "add")
  p.v = p.v + num(v, "add")
end
local function gauge_value(self)
  return (gauges[self] or self_ptr(GAUGE, self, "value")).v
end

local function hist_observe(self, v)
  local p = hists[self] or self_ptr(HISTOGRAM, self, "observe")
  C.bg_histogram_observe(p, num(v, "observe"))
end
local function hist_sum(self)
  return C.bg_series_value(hists[self] or self_ptr(HISTOGRAM, self, "sum"))
end
local function hist_count(self)
  return tonumber(C.bg_series_count(hists[self] or self_ptr(HISTOGRAM, self, "count")))
end
-- Within 1% of the exact quantile of everything observed; NaN when empty or q is not in [0, 1].
local function hist_quantile(self, q)
  local p = hists[self] or self_ptr(HISTOGRAM, self, "quantile")
  return C.bg_histogram_quantile(p, num(q, "quantile"))
end
local function hist_min(self)
  return C.bg_histogram_min(hists[self] or self_ptr(HISTOGRAM, self, "min"))
end
local function hist_max(self)
  return C.bg_histogram_max(hists[self] or self_ptr(HISTOGRAM, self, "max"))
end

local methods = {
  [COUNTER] = { inc = counter_inc, add = counter_add, value = counter_value },
  [GAUGE] = { set = gauge_set, inc = gauge_inc, dec = gauge_dec, add = gauge_add,
    value = gauge_value },
  [HISTOGRAM] = { observe = hist_observe, sum = hist_sum, value = hist_sum, count = hist_count,
    quantile = hist_quantile, min = hist_min, max = hist_max },
}

local tostrings = {
  [COUNTER] = function(p) return "beagle.counter: " .. tostring(p.v) end,
  [GAUGE] = function(p) return "beagle.gauge: " .. tostring(p.v) end,
  [HISTOGRAM] = function(p)
    return ("beagle.histogram: count %d sum %s"):format(tonumber(C.bg_series_count(p)),
      tostring(C.bg_series_value(p)))
  end,
}

-- A handle's metatable: protected (getmetatable gives false), no address in its string, and
-- reading or writing a field it lacks raises, as it did on the FFI struct handles.
local handle_mts = {}
for kind, name in pairs(KIND) do
  local map = ptrs[kind]
  handle_mts[kind] = {
    __metatable = false,
    __index = function(_, k)
      error(("beagle.%s has no field %s"):format(name,
        type(k) == "string" and ("%q"):format(k) or type(k)), 2)
    end,
    __newindex = function()
      error(("beagle.%s handles are read-only"):format(name), 2)
    end,
    __tostring = function(h)
      local p = map[h]
      if p == nil then return ("beagle.%s (removed)"):format(name) end
      return tostrings[kind](p)
    end,
  }
  -- Raw pointers get the same methods, for trusted code that makes them (query specs).
  -- A metatype is set once per ctype and state: a second load of this file keeps the first.
  pcall(ffi.metatype, "struct bg_lua_" .. name,
    { __index = methods[kind], __tostring = tostrings[kind] })
end

-- A new handle for series pointer p: its methods as fields, so that the interpreter finds them
-- without a metamethod (plugin code runs interpreted).
local function new_handle(kind, p)
  local h = {}
  for k, f in pairs(methods[kind]) do h[k] = f end
  ptrs[kind][h] = p
  return setmetatable(h, handle_mts[kind])
end

-- Finds or creates a series (only finds, when find is set). Returns its raw pointer, or nil
-- and the reason. Labels are copied and checked before any of them goes into kvbuf, so that no
-- allocation (and no collection) happens between filling kvbuf and the C call.
local function series(kind, name, help, labels, buckets, find)
  if type(name) ~= "string" then
    return nil, ("metric name must be a string, not %s"):format(type(name))
  end
  if help ~= nil and type(help) ~= "string" then
    return nil, ("metric %q: help must be a string"):format(name)
  end
  local n, kv = 0, nil
  if labels ~= nil then
    if type(labels) ~= "table" then
      return nil, ("metric %q: labels must be a table, not %s"):format(name, type(labels))
    end
    kv = {}
    for k, v in pairs(labels) do
      if type(k) ~= "string" then
        return nil, ("metric %q: label names must be strings, not %s"):format(name, type(k))
      end
      local tv = type(v)
      if tv == "number" or tv == "boolean" then
        v = tostring(v)
      elseif tv ~= "string" then
        return nil, ("metric %q: label %q must be a string, number or boolean, not %s")
          :format(name, k, tv)
      end
      if n == MAX_LABELS then
        return nil, ("metric %q: more than %d labels"):format(name, MAX_LABELS)
      end
      kv[2 * n + 1], kv[2 * n + 2] = k, v
      n = n + 1
    end
  end
  local bptr, nb = nil, 0
  if buckets ~= nil then
    if type(buckets) ~= "table" then
      return nil, ("metric %q: buckets must be a list of numbers"):format(name)
    end
    nb = #buckets
    if nb > MAX_BUCKETS then
      return nil, ("metric %q: more than %d buckets"):format(name, MAX_BUCKETS)
    end
    bptr = ffi.new("double[?]", nb > 0 and nb or 1)
    for i = 1, nb do
      local b = buckets[i]
      if type(b) ~= "number" then
        return nil, ("metric %q: bucket %d is not a number"):format(name, i)
      end
      bptr[i - 1] = b
    end
  end
  local own = own_ok and name:sub(1, 7) == "beagle_"
  for i = 1, 2 * n do kvbuf[i - 1] = kv[i] end
  local s
  if find then
    s = C.bg_series_find(registry, kind, name, kvbuf, n)
    if s == nil then return nil, ("metric %q: no such series"):format(name) end
  elseif own then
    s = C.bg_series_get_own(registry, kind, name, help, kvbuf, n, bptr, nb, errbuf, ERRLEN)
  else
    s = C.bg_series_get(registry, kind, name, help, kvbuf, n, bptr, nb, errbuf, ERRLEN)
  end
  if s == nil then return nil, ffi.string(errbuf) end
  return ffi.cast(ctypes[kind], s)
end

local function opt_table(opts, what_)
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument to '%s' (options must be a table)"):format(what_), 3)
  end
  return opts or {}
end

-- Handle constructors with their own cache (series id -> handle, weak values: the same series
-- gives the same handle while it is held). Raise on a bad name or labels. The agent has one
-- set, each plugin_api() another: no handle is shared between trusted code and a plugin, which
-- may change its handles' fields.
local function constructors()
  local cache = {}
  for kind in pairs(KIND) do cache[kind] = setmetatable({}, { __mode = "v" }) end
  local function handle(kind, name, help, labels, buckets)
    local p, err = series(kind, name, help, labels, buckets)
    if not p then error(err, 3) end
    local id = C.bg_series_id(p) -- never reused, so a removed series' handle never comes back
    local h = cache[kind][id]
    if h == nil then
      h = new_handle(kind, p)
      cache[kind][id] = h
    end
    return h
  end
  local function counter(name, labels, opts)
    opts = opt_table(opts, "counter")
    return handle(COUNTER, name, opts.help, labels)
  end
  local function gauge(name, labels, opts)
    opts = opt_table(opts, "gauge")
    return handle(GAUGE, name, opts.help, labels)
  end
  local function histogram(name, opts, labels)
    opts = opt_table(opts, "histogram")
    return handle(HISTOGRAM, name, opts.help, labels, opts.buckets)
  end
  return counter, gauge, histogram
end

M.counter, M.gauge, M.histogram = constructors()

-- The raw series pointer behind a handle, and its kind (nil for anything else). Trusted code
-- only: a raw pointer indexes all memory and reaches C unchecked.
local function pointer(h)
  for kind, map in pairs(ptrs) do
    local p = map[h]
    if p ~= nil then return p, kind end
  end
  for kind, ct in pairs(ctypes) do
    if ffi.istype(ct, h) then return h, kind end
  end
  return nil
end
M.pointer = pointer

-- The by-name cache: caches[kind][name] = { plain = handle for no tags, last = schema,
-- schemas = { [sorted keys joined by "\0"] = schema } }, where a schema holds the sorted tag
-- keys and a tree indexed by their values in that order, whose leaves are handles. A repeat
-- call walks the last schema with one lookup per tag and counts the table's keys to be sure
-- it holds no other; no string is built. The fast path is unrolled for up to three tags: a
-- loop in here would become its own trace and drag the caller's loop out of the JIT.
--
-- The count is OpenResty LuaJIT's table.nkeys, which the JIT compiles to one call (4 ns).
-- Without it (another LuaJIT) the count walks next(), ~30 ns for two tags. Debian 12's own
-- LuaJIT (2.1.0~beta3+git20220320) must not run this: it miscompiles next() and pairs()
-- loops (upstream 5e3c45c4, "x64: Fix RETHI/RETLO swap after call", cuts the pointer next()
-- returns to 32 bits), which crashed the agent; scripts/deps.sh installs luajit2 instead.
local function count_next(t)
  local c, k = 0, next(t)
  while k ~= nil do
    c = c + 1
    k = next(t, k)
  end
  return c
end
local ok_nkeys, nkeys = pcall(require, "table.nkeys")
if not ok_nkeys then nkeys = count_next end
M._count_next = count_next -- for the spec
M.has_nkeys = ok_nkeys

local caches = { [COUNTER] = {}, [GAUGE] = {}, [HISTOGRAM] = {} }

local function sorted_keys(tags)
  local keys, n = {}, 0
  for k, v in pairs(tags) do
    if type(k) ~= "string" or v ~= v then return nil end -- let C say why / NaN isn't a key
    n = n + 1
    keys[n] = k
  end
  table.sort(keys)
  return keys, n
end

local function resolve_slow(kind, name, tags)
  local cache = caches[kind]
  local e = cache[name]
  local keys, n
  if type(tags) == "table" then keys, n = sorted_keys(tags) end
  local sig = keys and n > 0 and table.concat(keys, "\0")
  if e ~= nil and sig then -- another tag set of a known name: no C call needed
    local sc = e.schemas[sig]
    if sc ~= nil then
      local node = sc.tree
      for i = 1, n do
        node = node[tags[keys[i]]]
        if node == nil then break end
      end
      if node ~= nil then
        e.last = sc
        return node
      end
    end
  end
  local h, err = series(kind, name, nil, tags)
  if not h then return nil, err end
  if e == nil then
    e = { schemas = {} }
    cache[name] = e
  end
  if tags == nil then
    e.plain = h
    return h
  end
  if not sig then return h end -- empty table, or not cacheable
  local sc = e.schemas[sig]
  if sc == nil then
    sc = { keys = keys, n = n, tree = {} }
    e.schemas[sig] = sc
  end
  e.last = sc
  local node = sc.tree
  for i = 1, n - 1 do
    local v = tags[keys[i]]
    local nxt = node[v]
    if nxt == nil then
      nxt = {}
      node[v] = nxt
    end
    node = nxt
  end
  node[tags[keys[n]]] = h
  return h
end

local function resolve(kind, name, tags)
  local e = caches[kind][name]
  if e ~= nil then
    if tags == nil then
      local h = e.plain
      if h ~= nil then return h end
    elseif type(tags) == "table" then
      local sc = e.last
      if sc ~= nil then
        local keys, node, n = sc.keys, sc.tree, sc.n
        -- node[nil] reads nil, so a missing tag falls through to the slow path.
        if n == 1 then
          node = node[tags[keys[1]]]
        elseif n == 2 then
          node = node[tags[keys[1]]]
          if node ~= nil then node = node[tags[keys[2]]] end
        elseif n == 3 then
          node = node[tags[keys[1]]]
          if node ~= nil then node = node[tags[keys[2]]] end
          if node ~= nil then node = node[tags[keys[3]]] end
        else
          node = nil
        end
        if node ~= nil and nkeys(tags) == n then return node end
      end
    end
  end
  return resolve_slow(kind, name, tags)
end

-- A name for messages: never tostring() of a table, which would run its __tostring.
local function label(name)
  return type(name) == "string" and name or type(name)
end

local function bad_value(name, value)
  return nil, ("metric %s: value must be a number, not %s"):format(label(name), type(value))
end

local function increment_counter(name, value, tags)
  if value == nil then
    value = 1
  elseif type(value) ~= "number" then
    return bad_value(name, value)
  elseif value < 0 or value ~= value then
    return nil, ("metric %s: a counter can't go down (%s)"):format(label(name), tostring(value))
  end
  local p, err = resolve(COUNTER, name, tags)
  if p == nil then return nil, err end
  p.v = p.v + value
  return true
end
M.increment_counter = increment_counter

local function set_gauge(name, value, tags)
  if type(value) ~= "number" then return bad_value(name, value) end
  local p, err = resolve(GAUGE, name, tags)
  if p == nil then return nil, err end
  p.v = value
  return true
end
M.set_gauge = set_gauge

local function record_histogram(name, value, tags)
  if type(value) ~= "number" then return bad_value(name, value) end
  if value ~= value then return nil, ("metric %s: value is NaN"):format(label(name)) end
  local p, err = resolve(HISTOGRAM, name, tags)
  if p == nil then return nil, err end
  C.bg_histogram_observe(p, value)
  return true
end
M.record_histogram = record_histogram

-- Monotonic clock, seconds as a double (for timers and callers that measure themselves).
local function now()
  return tonumber(C.bg_now_ns()) * 1e-9
end
M.now = now

-- series id -> histogram pointer, for this state's timers. A timer holds the id, its start
-- and, once stopped, its elapsed seconds, all plain numbers: a plugin that changes them can
-- only record into a series it could name anyway. (A weak map from timer to state costs ten
-- times as much: its churn of short-lived keys.)
local timer_series = {}

-- Records the elapsed time once; later calls return the same number.
local function timer_stop(self)
  local t0 = type(self) == "table" and rawget(self, "t0")
  if type(t0) ~= "number" then
    error(("bad self to 'stop' (a timer expected, got %s)"):format(what(self)), 2)
  end
  local e = rawget(self, "elapsed")
  if type(e) == "number" then return e end
  e = (tonumber(C.bg_now_ns()) - t0) * 1e-9
  rawset(self, "elapsed", e)
  local p = timer_series[rawget(self, "id")]
  if p ~= nil then C.bg_histogram_observe(p, e) end
  return e
end

local timer_mt = { __metatable = false, __tostring = function() return "beagle.timer" end }

local seconds_names = {} -- name -> name with "_seconds", so a timer builds no string

local function seconds_name(name)
  local s = seconds_names[name]
  if s ~= nil then return s end
  if type(name) ~= "string" then return name end
  s = name:find("[._-]seconds$") and name or name .. "_seconds"
  seconds_names[name] = s
  return s
end

-- Starts a timer recording into histogram "<name>_seconds"; t:stop() records and returns the
-- seconds. Returns it, or nil, err.
local function timer(name, tags)
  local p, err = resolve(HISTOGRAM, seconds_name(name), tags)
  if p == nil then return nil, err end
  local id = C.bg_series_id(p)
  if timer_series[id] == nil then timer_series[id] = p end
  return setmetatable({ stop = timer_stop, id = id, t0 = tonumber(C.bg_now_ns()) }, timer_mt)
end
M.timer = timer

local function finish(t, ok, ...)
  timer_stop(t)
  if not ok then error((...), 0) end
  return ...
end

local function callable(fn)
  if type(fn) == "function" then return true end
  if type(fn) ~= "table" then return false end
  local mt = getmetatable(fn)
  return type(mt) == "table" and rawget(mt, "__call") ~= nil
end

-- Runs fn(...) and records how long it took, also when it raises (the error goes on).
-- Returns fn's results, or nil, err without running fn when the name is bad.
local function time(name, tags, fn, ...)
  if not callable(fn) then return nil, "time: fn must be callable" end
  local t, err = timer(name, tags)
  if not t then return nil, err end
  return finish(t, pcall(fn, ...))
end
M.time = time

-- Removes the series of a handle (or raw pointer) from the registry. Every handle of it in this
-- state dies (its methods raise; its timers record nothing more) and the by-name cache, which
-- may hold it, is dropped. Raises for anything that is not a handle. Another lua_State's
-- handles of the series are not reached (C frees it): only remove series no plugin uses.
function M.remove(h)
  local p, kind = pointer(h)
  if p == nil then
    error(("bad argument #1 to 'remove' (a metric handle expected, got %s)"):format(what(h)), 2)
  end
  -- the id before the series is freed (ASan: bg_series_id after bg_series_remove read freed memory)
  if kind == HISTOGRAM then timer_series[C.bg_series_id(p)] = nil end
  C.bg_series_remove(registry, ffi.cast("bg_series *", p))
  local map = ptrs[kind]
  for k, q in pairs(map) do
    if q == p then
      map[k] = nil
      removed[k] = kind
    end
  end
  caches[COUNTER], caches[GAUGE], caches[HISTOGRAM] = {}, {}, {}
end

-- The q-quantile (0..1) of a histogram, within 1% relative error:
--   M.quantile(handle, q)  or  M.quantile(name, tags, q)  (tags may be nil; never creates).
-- Returns the number, or nil, err (no such series, not a histogram, no observations, bad q).
local function quantile(h, a, b)
  local q, p = b, hists[h]
  if type(h) == "string" then
    local err
    p, err = series(HISTOGRAM, h, nil, a, nil, true)
    if not p then return nil, err end
  else
    q = a
    if p == nil then
      if not ffi.istype(ctypes[HISTOGRAM], h) then
        return nil, ("quantile: a histogram handle or a metric name expected, got %s")
          :format(what(h))
      end
      p = h
    end
  end
  if type(q) ~= "number" or not (q >= 0 and q <= 1) then
    return nil, ("quantile: q must be a number in [0, 1], not %s")
      :format(type(q) == "number" and tostring(q) or type(q))
  end
  local v = C.bg_histogram_quantile(p, q)
  if v ~= v then return nil, "quantile: no observations" end
  return v
end
M.quantile = quantile

-- What a plugin may use, in a new table each call: handle constructors (with their own cache,
-- so no handle is shared with the agent or another call's), the by-name calls, timers and the
-- clock. Nothing reachable from it is ffi, a clib, the registry or a raw pointer, and every
-- function in it checks its arguments before any C call (tests/lua/metrics_plugin_api_spec.lua
-- walks it). No remove, limits, render or set_limits: those are the agent's.
function M.plugin_api()
  own_ok = false
  local counter, gauge, histogram = constructors()
  return {
    counter = counter, gauge = gauge, histogram = histogram,
    increment_counter = increment_counter, set_gauge = set_gauge,
    record_histogram = record_histogram, timer = timer, time = time, quantile = quantile,
    now = now,
  }
end

-- Cardinality limits of the process-wide registry (nil or 0: the default, 100,000 and 2,000).
function M.set_limits(max_series, max_series_per_metric)
  C.bg_registry_set_limits(registry, max_series or 0, max_series_per_metric or 0)
end

-- Out: M.limits, M.negotiate, M.accepts_gzip, M.render, M.render_prometheus, M.gzip and
-- M.content_type read the registry out (lua/agent/metrics_expo.lua), installed on first use: a
-- plugin state loads this module for plugin_api() alone, and the cdefs and code cost it memory.
local EXPO = { limits = true, negotiate = true, accepts_gzip = true, render = true, render_prometheus = true,
  gzip = true, content_type = true }
setmetatable(M, { __index = function(t, k)
  if not EXPO[k] then return nil end
  setmetatable(t, nil)
  require("agent.metrics_expo").install(M, C, registry)
  return rawget(t, k)
end })

return M
