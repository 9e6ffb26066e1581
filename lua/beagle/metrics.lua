-- beagle.metrics: counters, gauges and histograms kept in the C registry (core/metrics),
-- reached through the LuaJIT FFI. This file owns the cdef of that API.
--
-- Two ways in:
--   handles   M.counter(name, labels, opts) / M.gauge(...) / M.histogram(name, opts, labels)
--             resolve a series once; h:inc() is then one C call. Bad names raise (a
--             programmer mistake, like a bad argument).
--   by name   M.increment_counter / set_gauge / record_histogram / timer / time keep the
--             guide's MetricsCollector names. They find the handle through a Lua cache (a
--             table lookup per tag, no string building) and return true or nil, err.
--
-- Names are the guide's ("api.response_time"); C maps them to Prometheus names
-- ("api_response_time", counters with "_total"). Timers record seconds into
-- "<name>_seconds" histograms.
local ffi = require("ffi")

local M = {}

-- The handle types are Lua-side names for bg_series pointers of one kind, so that a counter
-- handle cannot be passed to bg_gauge_set: the FFI binds by symbol name, not by type.
ffi.cdef [[
typedef struct bg_registry bg_registry;
typedef struct bg_series bg_series;
struct bg_lua_counter;
struct bg_lua_gauge;
struct bg_lua_histogram;

bg_registry *bg_registry_default(void);
bg_series *bg_series_get(bg_registry *r, int type, const char *name, const char *help,
                         const char *const *kv, int nlabels, const double *buckets,
                         int nbuckets, char *err, size_t errlen);
void bg_counter_add(struct bg_lua_counter *s, double v);
void bg_gauge_set(struct bg_lua_gauge *s, double v);
void bg_gauge_add(struct bg_lua_gauge *s, double v);
void bg_histogram_observe(struct bg_lua_histogram *s, double v);
double bg_series_value(const void *s);
uint64_t bg_series_count(const void *s);
uint64_t bg_now_ns(void);
char *bg_expo_prometheus_string(bg_registry *r, size_t *len);
void bg_expo_free(void *p);
]]

-- Inside the agent the symbols are in the executable; in a plain luajit (specs, benches)
-- they come from the shared library BEAGLE_LIB names.
local C
if pcall(function() return ffi.C.bg_registry_default end) then
  C = ffi.C
else
  local path = os.getenv("BEAGLE_LIB")
  if not path or path == "" then
    error("beagle.metrics: the C core is not linked in and BEAGLE_LIB is not set", 0)
  end
  C = ffi.load(path)
end
M.C = C

local COUNTER, GAUGE, HISTOGRAM = 0, 1, 2
local MAX_LABELS = 16
local ERRLEN = 256

local registry = C.bg_registry_default()
if registry == nil then error("beagle.metrics: out of memory", 0) end

local errbuf = ffi.new("char[?]", ERRLEN)
local kvbuf = ffi.new("const char *[?]", 2 * MAX_LABELS)
local lenbuf = ffi.new("size_t[1]")

local ctypes = {
  [COUNTER] = ffi.typeof("struct bg_lua_counter *"),
  [GAUGE] = ffi.typeof("struct bg_lua_gauge *"),
  [HISTOGRAM] = ffi.typeof("struct bg_lua_histogram *"),
}

local Counter, Gauge, Histogram = {}, {}, {}
Counter.__index, Gauge.__index, Histogram.__index = Counter, Gauge, Histogram

function Counter:inc(v) C.bg_counter_add(self, v or 1) end
function Counter:add(v) C.bg_counter_add(self, v) end
function Counter:value() return C.bg_series_value(self) end
Counter.__tostring = function(self) return "beagle.counter: " .. tostring(C.bg_series_value(self)) end

function Gauge:set(v) C.bg_gauge_set(self, v) end
function Gauge:inc(v) C.bg_gauge_add(self, v or 1) end
function Gauge:dec(v) C.bg_gauge_add(self, -(v or 1)) end
function Gauge:add(v) C.bg_gauge_add(self, v) end
function Gauge:value() return C.bg_series_value(self) end
Gauge.__tostring = function(self) return "beagle.gauge: " .. tostring(C.bg_series_value(self)) end

function Histogram:observe(v) C.bg_histogram_observe(self, v) end
function Histogram:sum() return C.bg_series_value(self) end
function Histogram:value() return C.bg_series_value(self) end
function Histogram:count() return tonumber(C.bg_series_count(self)) end
Histogram.__tostring = function(self)
  return ("beagle.histogram: count %d sum %s"):format(tonumber(C.bg_series_count(self)),
    tostring(C.bg_series_value(self)))
end

-- A metatype can be set once per ctype and state; a second load of this file (tests that
-- clear package.loaded) keeps the first, which reaches the same C functions.
pcall(ffi.metatype, "struct bg_lua_counter", Counter)
pcall(ffi.metatype, "struct bg_lua_gauge", Gauge)
pcall(ffi.metatype, "struct bg_lua_histogram", Histogram)

-- Finds or creates a series. Returns the typed handle, or nil and the reason.
local function series(kind, name, help, labels, buckets)
  if type(name) ~= "string" then
    return nil, ("metric name must be a string, not %s"):format(type(name))
  end
  if help ~= nil and type(help) ~= "string" then
    return nil, ("metric %q: help must be a string"):format(name)
  end
  local n, anchor = 0, nil
  if labels ~= nil then
    if type(labels) ~= "table" then
      return nil, ("metric %q: labels must be a table, not %s"):format(name, type(labels))
    end
    for k, v in pairs(labels) do
      if type(k) ~= "string" then
        return nil, ("metric %q: label names must be strings, not %s"):format(name, type(k))
      end
      local tv = type(v)
      if tv == "number" or tv == "boolean" then
        v = tostring(v)
        anchor = anchor or {}
        anchor[#anchor + 1] = v -- keeps the string alive until the C call copies it
      elseif tv ~= "string" then
        return nil, ("metric %q: label %q must be a string, number or boolean, not %s")
          :format(name, k, tv)
      end
      if n == MAX_LABELS then
        return nil, ("metric %q: more than %d labels"):format(name, MAX_LABELS)
      end
      kvbuf[2 * n], kvbuf[2 * n + 1] = k, v
      n = n + 1
    end
  end
  local bptr, nb = nil, 0
  if buckets ~= nil then
    if type(buckets) ~= "table" then
      return nil, ("metric %q: buckets must be a list of numbers"):format(name)
    end
    nb = #buckets
    bptr = ffi.new("double[?]", nb > 0 and nb or 1)
    for i = 1, nb do
      if type(buckets[i]) ~= "number" then
        return nil, ("metric %q: bucket %d is not a number"):format(name, i)
      end
      bptr[i - 1] = buckets[i]
    end
  end
  local s = C.bg_series_get(registry, kind, name, help, kvbuf, n, bptr, nb, errbuf, ERRLEN)
  local _ = anchor
  if s == nil then return nil, ffi.string(errbuf) end
  return ffi.cast(ctypes[kind], s)
end

local function opt_table(opts, what)
  if opts ~= nil and type(opts) ~= "table" then
    error(("bad argument to '%s' (options must be a table)"):format(what), 3)
  end
  return opts or {}
end

-- Handle constructors: raise on a bad name or labels.
function M.counter(name, labels, opts)
  opts = opt_table(opts, "counter")
  local h, err = series(COUNTER, name, opts.help, labels)
  if not h then error(err, 2) end
  return h
end

function M.gauge(name, labels, opts)
  opts = opt_table(opts, "gauge")
  local h, err = series(GAUGE, name, opts.help, labels)
  if not h then error(err, 2) end
  return h
end

function M.histogram(name, opts, labels)
  opts = opt_table(opts, "histogram")
  local h, err = series(HISTOGRAM, name, opts.help, labels, opts.buckets)
  if not h then error(err, 2) end
  return h
end

-- The by-name cache: caches[kind][name] = { plain = handle for no tags, last = schema,
-- schemas = { [sorted keys joined by "\0"] = schema } }, where a schema holds the sorted tag
-- keys and a tree indexed by their values in that order, whose leaves are handles. A repeat
-- call walks the last schema with one lookup per tag and n + 1 next() calls to be sure the
-- table holds no other key; no string is built. The fast path is unrolled for up to three
-- tags: a loop in here would become its own trace and drag the caller's loop out of the JIT.
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
          if node ~= nil and next(tags, next(tags)) == nil then return node end
        elseif n == 2 then
          node = node[tags[keys[1]]]
          if node ~= nil then
            node = node[tags[keys[2]]]
            if node ~= nil then
              local k = next(tags, next(tags))
              if k ~= nil and next(tags, k) == nil then return node end
            end
          end
        elseif n == 3 then
          node = node[tags[keys[1]]]
          if node ~= nil then
            node = node[tags[keys[2]]]
            if node ~= nil then
              node = node[tags[keys[3]]]
              if node ~= nil then
                local k = next(tags, next(tags))
                k = k ~= nil and next(tags, k)
                if k and next(tags, k) == nil then return node end
              end
            end
          end
        end
      end
    end
  end
  return resolve_slow(kind, name, tags)
end

local function bad_value(name, value)
  return nil, ("metric %s: value must be a number, not %s"):format(tostring(name), type(value))
end

function M.increment_counter(name, value, tags)
  if value == nil then
    value = 1
  elseif type(value) ~= "number" then
    return bad_value(name, value)
  elseif value < 0 or value ~= value then
    return nil, ("metric %s: a counter can't go down (%s)"):format(tostring(name), tostring(value))
  end
  local h, err = resolve(COUNTER, name, tags)
  if h == nil then return nil, err end
  C.bg_counter_add(h, value)
  return true
end

function M.set_gauge(name, value, tags)
  if type(value) ~= "number" then return bad_value(name, value) end
  local h, err = resolve(GAUGE, name, tags)
  if h == nil then return nil, err end
  C.bg_gauge_set(h, value)
  return true
end

function M.record_histogram(name, value, tags)
  if type(value) ~= "number" then return bad_value(name, value) end
  if value ~= value then return nil, ("metric %s: value is NaN"):format(tostring(name)) end
  local h, err = resolve(HISTOGRAM, name, tags)
  if h == nil then return nil, err end
  C.bg_histogram_observe(h, value)
  return true
end

-- Monotonic clock, seconds as a double (for timers and callers that measure themselves).
function M.now()
  return tonumber(C.bg_now_ns()) * 1e-9
end

local Timer = {}
Timer.__index = Timer

-- Records the elapsed time once; later calls return the same number.
function Timer:stop()
  if self.elapsed == nil then
    self.elapsed = tonumber(C.bg_now_ns() - self.t0) * 1e-9
    C.bg_histogram_observe(self.h, self.elapsed)
  end
  return self.elapsed
end

local seconds_names = {} -- name -> name with "_seconds", so a timer builds no string

local function seconds_name(name)
  local s = seconds_names[name]
  if s ~= nil then return s end
  if type(name) ~= "string" then return name end
  s = name:find("[._-]seconds$") and name or name .. "_seconds"
  seconds_names[name] = s
  return s
end

-- Starts a timer recording into histogram "<name>_seconds". Returns it, or nil, err.
function M.timer(name, tags)
  local h, err = resolve(HISTOGRAM, seconds_name(name), tags)
  if h == nil then return nil, err end
  return setmetatable({ h = h, t0 = C.bg_now_ns() }, Timer)
end

local function finish(t, ok, ...)
  t:stop()
  if not ok then error((...), 0) end
  return ...
end

-- Runs fn(...) and records how long it took, also when it raises (the error goes on).
-- Returns fn's results, or nil, err without running fn when the name is bad.
function M.time(name, tags, fn, ...)
  if type(fn) ~= "function" and not (type(fn) == "table" and getmetatable(fn)
      and getmetatable(fn).__call) then
    return nil, "time: fn must be callable"
  end
  local t, err = M.timer(name, tags)
  if not t then return nil, err end
  return finish(t, pcall(fn, ...))
end

-- The Prometheus text exposition (0.0.4) of the process-wide registry.
function M.render_prometheus()
  local p = C.bg_expo_prometheus_string(registry, lenbuf)
  if p == nil then return nil, "out of memory" end
  local s = ffi.string(p, lenbuf[0])
  C.bg_expo_free(p)
  return s
end

M.content_type = "text/plain; version=0.0.4; charset=utf-8"

return M
