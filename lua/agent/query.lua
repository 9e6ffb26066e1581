-- agent.query: the one query API over series history (core/metrics/history) that rules, analytics
-- and the dashboard read. This file owns the cdef of that API.
--
--   local q = require("agent.query")          -- the agent's history (bg_history_default)
--   q.rate("api.requests", "5m", { route = "/a", code = "~5.." })
--
-- Functions, after PromQL: rate, increase, avg_over_time, max_over_time, min_over_time,
-- sum_over_time, count_over_time, stddev_over_time, last (last_over_time),
-- quantile_over_time(qtl, name, range, matchers) and absent(name, range, matchers) -> boolean.
-- Anomaly scores of the newest sample against the earlier ones in the range:
-- zscore, madscore, ewmascore (name, range, matchers, min_samples = 30).
--   name      the guide's dotted name or the exposition name; counters with or without
--             "_total"; a histogram is two series, "<name>_count" and "<name>_sum".
--   range     a duration ("5m", "1h30m") or seconds; last and absent default to "5m" and
--             take matchers in its place too.
--   matchers  { label = "value" }; "~re" matches a POSIX extended regex against the whole
--             value, "!value" and "!~re" negate, "=~x" is the literal "~x"; a label a series
--             lacks reads "".
-- Each returns a number when exactly one series yields a value, otherwise (none or several) a
-- list of { labels = {...}, value = n } sorted by labels. The <fn>_all variants (rate_all,
-- last_all, ...) always return the list. Bad arguments raise; a query over nothing is an
-- empty list, never an error.
--
-- Time: the end of every range is the history's latest sample time (bg_history_now), so rules
-- see the same instant whatever moment they run; q.at(ms) pins it for tests and replays.
local ffi = require("ffi")
local util = require("agent.util")
local metrics = require("agent.metrics")

local C = metrics.C

pcall(ffi.cdef, [[
typedef struct bg_history bg_history;
typedef struct bg_history_opts {
  int64_t raw_ms;
  int retention_days;
  uint32_t chunk_samples;
  int64_t chunk_span_ms;
  const char *data_dir;
} bg_history_opts;
typedef struct bg_hq_item {
  const char *name;
  const char *const *kv;
  int nlabels;
  uint32_t id;
  double value;
} bg_hq_item;
typedef struct bg_hq_result {
  int n;
  bg_hq_item *items;
} bg_hq_result;
int bg_history_open(bg_history **out, const bg_history_opts *opts, char *err, size_t errlen);
void bg_history_close(bg_history *h);
int bg_history_sample(bg_history *h, bg_registry *r, int64_t now_ms);
int bg_history_append(bg_history *h, const char *key, int64_t ts_ms, double v);
int bg_history_flush(bg_history *h);
int64_t bg_history_now(const bg_history *h);
bg_history *bg_history_default(void);
int bg_history_query(bg_history *h, int fn, double arg, const char *name,
                     const char *const *m, int nm, int64_t end_ms, int64_t range_ms,
                     bg_hq_result **out, char *err, size_t errlen);
void bg_hq_result_free(bg_hq_result *r);
int bg_history_query_ids(bg_history *h, int fn, double arg, const char *name,
                         const char *const *m, int nm, int64_t end_ms, int64_t range_ms,
                         uint32_t *ids, double *vals, const void **refs, int cap,
                         char *err, size_t errlen);
int bg_history_series_labels(const void *ref, const char **kv, int max);
]])

local FN = {
  rate = 0, increase = 1, avg_over_time = 2, min_over_time = 3, max_over_time = 4,
  sum_over_time = 5, count_over_time = 6, quantile_over_time = 7, last = 8,
  stddev_over_time = 9,
}
-- anomaly scores of the newest sample against the earlier ones in the range:
-- q.zscore(name, range, matchers, min_samples), q.madscore(...), q.ewmascore(...)
local SCORES = { zscore = 10, madscore = 11, ewmascore = 12 }
local MAX_MATCHERS = 16
local ERRLEN = 256
local DEFAULT_LOOKBACK = 300 -- seconds, Prometheus' staleness window

local errbuf = ffi.new("char[?]", ERRLEN)
local outbuf = ffi.new("bg_hq_result *[1]")
local mbuf = ffi.new("const char *[?]", 2 * MAX_MATCHERS)

local function range_ms(range, fname)
  local s, err = util.parse_duration(range)
  if not s or s <= 0 then
    error(("bad argument 'range' to '%s' (%s)"):format(fname, err or "must be positive"), 3)
  end
  return math.floor(s * 1000 + 0.5)
end

-- Fills mbuf from a matcher table; returns the count and a table keeping the strings alive.
local function matchers(m, fname)
  if m == nil then return 0, nil end
  if type(m) ~= "table" then
    error(("bad argument 'matchers' to '%s' (table expected, got %s)"):format(fname, type(m)), 3)
  end
  -- the strings of m live as long as m; only converted values need keeping alive here
  local n, anchor = 0, nil
  for k, v in pairs(m) do
    if type(k) ~= "string" then
      error(("bad argument 'matchers' to '%s' (label names must be strings)"):format(fname), 3)
    end
    if type(v) == "number" or type(v) == "boolean" then
      v = tostring(v)
      anchor = anchor or {}
      anchor[#anchor + 1] = v
    end
    if type(v) ~= "string" then
      error(("bad argument 'matchers' to '%s' (label %q: string expected)"):format(fname, k), 3)
    end
    if n == MAX_MATCHERS then
      error(("bad argument 'matchers' to '%s' (more than %d)"):format(fname, MAX_MATCHERS), 3)
    end
    mbuf[2 * n], mbuf[2 * n + 1] = k, v
    n = n + 1
  end
  return n, anchor
end

local function labels_of(it)
  local labels = {}
  for j = 0, it.nlabels - 1 do
    labels[ffi.string(it.kv[2 * j])] = ffi.string(it.kv[2 * j + 1])
  end
  return labels
end

-- cache: nil (fresh label tables), or a table series id -> labels, shared between calls
local function to_list(res, cache)
  local out = {}
  for i = 0, res.n - 1 do
    local it = res.items[i]
    local labels
    if cache then
      labels = cache[it.id]
      if not labels then
        labels = labels_of(it)
        cache[it.id] = labels
        cache.n = cache.n + 1
      end
    else
      labels = labels_of(it)
    end
    out[i + 1] = { labels = labels, value = it.value }
  end
  return out
end

local SHARED_MAX = 1000000 -- cached label tables before the cache starts over

local M = {}

-- A query object over history h: a bg_history cdata, a function returning one, or nil for the
-- agent's. opts.shared_labels: every result gives the same series the same labels table, kept
-- between calls (no allocation per series and stable identities for the alert engine's
-- fingerprint cache); the caller must not modify them. For the agent's own rule evaluation,
-- never for user code.
function M.new(h, opts)
  local q = {}
  local pinned
  local cache = opts and opts.shared_labels and { n = 0 } or nil

  local function handle()
    local hh = h
    if type(h) == "function" then hh = h() end
    if hh == nil then hh = C.bg_history_default() end
    if hh == nil then error("agent.query: no history (the agent has not started one)", 3) end
    return hh
  end

  -- Evaluates one function; returns the list form.
  local function run(fname, fn, arg, name, range, m)
    if type(name) ~= "string" then
      error(("bad argument 'name' to '%s' (string expected, got %s)"):format(fname, type(name)), 3)
    end
    local hh = handle()
    local ms = range_ms(range, fname)
    local nm, anchor = matchers(m, fname)
    local now = pinned or C.bg_history_now(hh)
    local rc = C.bg_history_query(hh, fn, arg, name, mbuf, nm, now, ms, outbuf, errbuf, ERRLEN)
    local _ = anchor
    if rc ~= 0 then error(("%s: %s"):format(fname, ffi.string(errbuf)), 3) end
    local res = outbuf[0]
    if cache and cache.n > SHARED_MAX then cache = { n = 0 } end
    local ok, list = pcall(to_list, res, cache)
    C.bg_hq_result_free(res)
    if not ok then error(list, 0) end
    return list
  end

  local function shape(list)
    if #list == 1 then return list[1].value end
    return list
  end

  -- With shared_labels: q.last_columns(name, m) -> n, vals, labels. vals is a 0-based double
  -- array, labels a 1-based list of the shared label tables; both are buffers of this query
  -- object, overwritten by its next call. No allocation once the labels are cached.
  if cache then
    local cap = 256
    local ids, vals, refs = ffi.new("uint32_t[?]", cap), ffi.new("double[?]", cap), ffi.new("const void *[?]", cap)
    local labs = {}
    local kvbuf = ffi.new("const char *[?]", 2 * MAX_MATCHERS)
    function q.last_columns(name, m)
      if type(name) ~= "string" then
        error(("bad argument 'name' to 'last' (string expected, got %s)"):format(type(name)), 2)
      end
      local hh = handle()
      local nm, anchor = matchers(m, "last")
      local now = pinned or C.bg_history_now(hh)
      local n = C.bg_history_query_ids(hh, FN.last, 0, name, mbuf, nm, now, DEFAULT_LOOKBACK * 1000, ids,
        vals, refs, cap, errbuf, ERRLEN)
      if n > cap then -- more series than room: grow, and ask again
        cap = n * 2
        ids, vals, refs = ffi.new("uint32_t[?]", cap), ffi.new("double[?]", cap), ffi.new("const void *[?]", cap)
        n = C.bg_history_query_ids(hh, FN.last, 0, name, mbuf, nm, now, DEFAULT_LOOKBACK * 1000, ids, vals,
          refs, cap, errbuf, ERRLEN)
        assert(n <= cap, "history grew during a query")
      end
      local _ = anchor
      if n < 0 then error(("last: %s"):format(ffi.string(errbuf)), 2) end
      if cache.n > SHARED_MAX then cache = { n = 0 } end
      for i = 0, n - 1 do
        local id = ids[i]
        local l = cache[id]
        if not l then
          l = {}
          local k = C.bg_history_series_labels(refs[i], kvbuf, MAX_MATCHERS)
          for j = 0, k - 1 do l[ffi.string(kvbuf[2 * j])] = ffi.string(kvbuf[2 * j + 1]) end
          cache[id] = l
          cache.n = cache.n + 1
        end
        labs[i + 1] = l
      end
      for i = n + 1, #labs do labs[i] = nil end
      return n, vals, labs
    end
  end

  for fname, fn in pairs(FN) do
    if fname == "quantile_over_time" then
      q[fname .. "_all"] = function(qtl, name, range, m)
        if type(qtl) ~= "number" then
          error("bad argument #1 to 'quantile_over_time' (number expected)", 2)
        end
        return run(fname, fn, qtl, name, range, m)
      end
      q[fname] = function(...) return shape(q[fname .. "_all"](...)) end
    elseif fname == "last" then
      -- last(name, [range], [matchers]): a table in second place is the matchers.
      q.last_all = function(name, range, m)
        if type(range) == "table" then range, m = nil, range end
        return run(fname, fn, 0, name, range or DEFAULT_LOOKBACK, m)
      end
      q.last = function(...) return shape(q.last_all(...)) end
    else
      q[fname .. "_all"] = function(name, range, m) return run(fname, fn, 0, name, range, m) end
      q[fname] = function(...) return shape(q[fname .. "_all"](...)) end
    end
  end

  for fname, fn in pairs(SCORES) do
    q[fname .. "_all"] = function(name, range, m, min_samples)
      return run(fname, fn, min_samples or 30, name, range, m)
    end
    q[fname] = function(...) return shape(q[fname .. "_all"](...)) end
  end

  -- True when no series of name matching m has a sample in the range (default 5m).
  function q.absent(name, range, m)
    if type(range) == "table" then range, m = nil, range end
    return #run("absent", FN.count_over_time, 0, name, range or DEFAULT_LOOKBACK, m) == 0
  end

  -- Pins the end of every range to ms (wall-clock milliseconds); nil goes back to the latest
  -- sample time.
  function q.at(ms) pinned = ms end

  -- The end the next query uses, in milliseconds.
  function q.now() return tonumber(pinned or C.bg_history_now(handle())) end

  return q
end

-- Opens a history of its own (tests, tools): opts.raw (duration, default 1h),
-- opts.retention_days, opts.data_dir. Returns a query object with sample(registry, ms),
-- append(key, ms, value), flush() and close() added, or nil, err.
function M.open(opts)
  opts = opts or {}
  local o = ffi.new("bg_history_opts")
  if opts.raw then o.raw_ms = range_ms(opts.raw, "open") end
  o.retention_days = opts.retention_days or 0
  o.chunk_samples = opts.chunk_samples or 0
  local dir = opts.data_dir
  o.data_dir = dir
  local hp = ffi.new("bg_history *[1]")
  local rc = C.bg_history_open(hp, o, errbuf, ERRLEN)
  if rc ~= 0 then return nil, ffi.string(errbuf) end
  local h = hp[0]
  local q = M.new(function()
    if h == nil then error("agent.query: history is closed", 4) end
    return h
  end)
  function q.sample(registry, ms) return C.bg_history_sample(h, registry, ms) == 0 end
  function q.append(key, ms, v) return C.bg_history_append(h, key, ms, v) == 0 end
  function q.flush() return C.bg_history_flush(h) == 0 end
  function q.close()
    if h ~= nil then C.bg_history_close(h) end
    h = nil
  end
  q.history = h
  return q
end

-- The module itself answers over the agent's history.
local default = M.new(nil)
for k, f in pairs(default) do M[k] = f end

return M
