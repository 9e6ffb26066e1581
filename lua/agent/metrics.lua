-- agent.metrics: counters, gauges and histograms kept in the C registry (core/metrics),
-- reached through the LuaJIT FFI. This file owns the cdef of that API.
--
-- Two ways in:
--   handles   M.counter(name, labels, opts) / M.gauge(...) / M.histogram(name, opts, labels)
--             resolve a series once. c:inc() and g:set() then write the series' value in
--             place (an FFI field write, which the JIT turns into a load, an add and a store);
--             h:observe() is one C call. Bad names raise (a programmer mistake, like a bad
--             argument).
--   by name   M.increment_counter / set_gauge / record_histogram / timer / time keep the
--             guide's MetricsCollector names. They find the handle through a Lua cache (a
--             table lookup per tag, no string building) and return true or nil, err.
--
-- Names are the guide's ("api.response_time"); C maps them to Prometheus names
-- ("api_response_time", counters with "_total"). Timers record seconds into
-- "<name>_seconds" histograms.
--
-- Cardinality limits (max_series, max_series_per_metric) are the C registry's: past them the
-- by-name calls return nil, err (nothing is cached, so a later call may succeed once series
-- were removed) and the handle constructors raise. Out: M.render(format) for Prometheus
-- 0.0.4, OpenMetrics 1.0 or JSON, M.negotiate(accept), M.gzip(body).
local ffi = require("ffi")

local M = {}

-- The handle types are Lua-side names for bg_series pointers of one kind, so that a counter
-- handle cannot be passed to bg_gauge_set: the FFI binds by symbol name, not by type. A
-- counter's and a gauge's series starts with its value (core/metrics.h says so), which is all
-- Lua needs to see of it; the field is `v`, as `value` is the method that reads it.
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
void bg_counter_add(struct bg_lua_counter *s, double v);
void bg_gauge_set(struct bg_lua_gauge *s, double v);
void bg_gauge_add(struct bg_lua_gauge *s, double v);
void bg_histogram_observe(struct bg_lua_histogram *s, double v);
double bg_series_value(const void *s);
uint64_t bg_series_count(const void *s);
uint64_t bg_now_ns(void);
char *bg_expo_prometheus_string(bg_registry *r, size_t *len);
void bg_expo_free(void *p);

bg_series *bg_series_find(bg_registry *r, int type, const char *name, const char *const *kv,
                          int nlabels);
void bg_series_remove(bg_registry *r, bg_series *s);
double bg_histogram_quantile(const void *s, double q);
double bg_histogram_min(const void *s);
double bg_histogram_max(const void *s);
uint32_t bg_series_id(const void *s);
void bg_registry_set_limits(bg_registry *r, size_t max_series, size_t max_per_metric);
uint64_t bg_registry_dropped(const bg_registry *r, int reason);
uint64_t bg_registry_truncated(const bg_registry *r);
uint64_t bg_registry_misuse_count(const bg_registry *r);
typedef struct bg_limit_hit {
  const char *name;
  uint64_t dropped;
  uint64_t series;
  int reason;
} bg_limit_hit;
int bg_registry_limits_hit(bg_registry *r, bg_limit_hit *out, int max);
int bg_expo_negotiate(const char *accept_header);
int bg_expo_accepts_gzip(const char *accept_encoding);
const char *bg_expo_content_type(int format);
char *bg_expo_render_string(bg_registry *r, int format, size_t *len);
char *bg_gzip_string(const char *in, size_t n, int level, size_t *len);
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
local kvbuf = ffi.new("const char *[?]", 2 * MAX_LABELS)
local lenbuf = ffi.new("size_t[1]")

local ctypes = {
  [COUNTER] = ffi.typeof("struct bg_lua_counter *"),
  [GAUGE] = ffi.typeof("struct bg_lua_gauge *"),
  [HISTOGRAM] = ffi.typeof("struct bg_lua_histogram *"),
}

local Counter, Gauge, Histogram = {}, {}, {}
Counter.__index, Gauge.__index, Histogram.__index = Counter, Gauge, Histogram

-- A counter only goes up: a negative or NaN v is handed to C, which ignores it and counts the
-- misuse (and raises, as it did, for what is not a number).
function Counter:inc(v)
  v = v or 1
  if v >= 0 then
    self.v = self.v + v
  else
    C.bg_counter_add(self, v)
  end
end
function Counter:add(v)
  if v >= 0 then
    self.v = self.v + v
  else
    C.bg_counter_add(self, v)
  end
end
function Counter:value() return self.v end
Counter.__tostring = function(self) return "beagle.counter: " .. tostring(self.v) end

function Gauge:set(v) self.v = v end
function Gauge:inc(v) self.v = self.v + (v or 1) end
function Gauge:dec(v) self.v = self.v - (v or 1) end
function Gauge:add(v) self.v = self.v + v end
function Gauge:value() return self.v end
Gauge.__tostring = function(self) return "beagle.gauge: " .. tostring(self.v) end

function Histogram:observe(v) C.bg_histogram_observe(self, v) end
function Histogram:sum() return C.bg_series_value(self) end
function Histogram:value() return C.bg_series_value(self) end
function Histogram:count() return tonumber(C.bg_series_count(self)) end
-- Within 1% of the exact quantile of everything observed; NaN when empty or q is not in [0, 1].
function Histogram:quantile(q) return C.bg_histogram_quantile(self, q) end
function Histogram:min() return C.bg_histogram_min(self) end
function Histogram:max() return C.bg_histogram_max(self) end
Histogram.__tostring = function(self)
  return ("beagle.histogram: count %d sum %s"):format(tonumber(C.bg_series_count(self)),
    tostring(C.bg_series_value(self)))
end

-- A metatype can be set once per ctype and state; a second load of this file (tests that
-- clear package.loaded) keeps the first, which reaches the same C functions.
pcall(ffi.metatype, "struct bg_lua_counter", Counter)
pcall(ffi.metatype, "struct bg_lua_gauge", Gauge)
pcall(ffi.metatype, "struct bg_lua_histogram", Histogram)

-- Finds or creates a series (only finds, when find is set). Returns the typed handle, or nil
-- and the reason.
local function series(kind, name, help, labels, buckets, find)
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
  local s
  if find then
    s = C.bg_series_find(registry, kind, name, kvbuf, n)
    if s == nil then return nil, ("metric %q: no such series"):format(name) end
  else
    s = C.bg_series_get(registry, kind, name, help, kvbuf, n, bptr, nb, errbuf, ERRLEN)
  end
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
  h.v = h.v + value
  return true
end

function M.set_gauge(name, value, tags)
  if type(value) ~= "number" then return bad_value(name, value) end
  local h, err = resolve(GAUGE, name, tags)
  if h == nil then return nil, err end
  h.v = value
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

-- Removes a series (a handle from M.counter/gauge/histogram); the handle must not be used
-- again. The by-name cache is dropped, as it may hold that handle.
function M.remove(h)
  C.bg_series_remove(registry, ffi.cast("bg_series *", h))
  caches[COUNTER], caches[GAUGE], caches[HISTOGRAM] = {}, {}, {}
end

-- The q-quantile (0..1) of a histogram, within 1% relative error:
--   M.quantile(handle, q)  or  M.quantile(name, tags, q)  (tags may be nil; never creates).
-- Returns the number, or nil, err (no such series, no observations, bad q).
function M.quantile(h, a, b)
  local q = b
  if type(h) == "string" then
    local err
    h, err = series(HISTOGRAM, h, nil, a, nil, true)
    if not h then return nil, err end
  else
    q = a
  end
  if type(q) ~= "number" or not (q >= 0 and q <= 1) then
    return nil, ("quantile: q must be a number in [0, 1], not %s"):format(tostring(q))
  end
  local v = C.bg_histogram_quantile(h, q)
  if v ~= v then return nil, "quantile: no observations" end
  return v
end

-- Cardinality limits of the process-wide registry (nil or 0: the default, 100,000 and 2,000).
function M.set_limits(max_series, max_series_per_metric)
  C.bg_registry_set_limits(registry, max_series or 0, max_series_per_metric or 0)
end

local drop_reasons = { [0] = "max_series", [1] = "max_series_per_metric" }

-- What /health/detailed reports: { dropped = { max_series = n, max_series_per_metric = n },
-- truncated = n, metrics = { { name = "api_requests", dropped = n, series = n,
-- reason = "max_series_per_metric" }, ... } }; name is nil for new metrics refused because
-- the total was reached.
function M.limits()
  local n = C.bg_registry_limits_hit(registry, nil, 0)
  local hits = ffi.new("bg_limit_hit[?]", n > 0 and n or 1)
  n = math.min(n, C.bg_registry_limits_hit(registry, hits, n))
  local list = {}
  for i = 0, n - 1 do
    local e = hits[i]
    list[#list + 1] = { name = e.name ~= nil and ffi.string(e.name) or nil,
      dropped = tonumber(e.dropped), series = tonumber(e.series), reason = drop_reasons[e.reason] }
  end
  return {
    dropped = { max_series = tonumber(C.bg_registry_dropped(registry, 0)),
      max_series_per_metric = tonumber(C.bg_registry_dropped(registry, 1)) },
    truncated = tonumber(C.bg_registry_truncated(registry)),
    metrics = list,
  }
end

local formats = { prometheus = 0, openmetrics = 1, json = 2 }
local format_names = { [0] = "prometheus", [1] = "openmetrics", [2] = "json" }

-- The format an Accept header asks for: "prometheus" (the default), "openmetrics" or "json".
function M.negotiate(accept)
  return format_names[C.bg_expo_negotiate(type(accept) == "string" and accept or nil)]
end

-- True when an Accept-Encoding header accepts gzip.
function M.accepts_gzip(accept_encoding)
  return type(accept_encoding) == "string" and C.bg_expo_accepts_gzip(accept_encoding) == 1
end

-- Renders the process-wide registry: format is "prometheus" (default), "openmetrics" or
-- "json". Returns body, content_type, or nil, err.
function M.render(format)
  local f = formats[format or "prometheus"]
  if f == nil then return nil, ("render: unknown format %s"):format(tostring(format)) end
  local p = C.bg_expo_render_string(registry, f, lenbuf)
  if p == nil then return nil, "out of memory" end
  local s = ffi.string(p, lenbuf[0])
  C.bg_expo_free(p)
  return s, ffi.string(C.bg_expo_content_type(f))
end

-- The Prometheus text exposition (0.0.4) of the process-wide registry.
function M.render_prometheus()
  local s, err = M.render("prometheus")
  if not s then return nil, err end
  return s
end

-- gzip (RFC 1952) of a string; level 1-9 (default 6). Returns the bytes, or nil, err.
function M.gzip(body, level)
  if type(body) ~= "string" then return nil, "gzip: body must be a string" end
  local p = C.bg_gzip_string(body, #body, level or 0, lenbuf)
  if p == nil then return nil, "gzip: out of memory" end
  local s = ffi.string(p, lenbuf[0])
  C.bg_expo_free(p)
  return s
end

M.content_type = "text/plain; version=0.0.4; charset=utf-8"

return M
