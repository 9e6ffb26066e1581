-- beagle.query over a history and a registry of the spec's own, made through the FFI, with
-- synthetic time: every sample carries an explicit timestamp, nothing sleeps.
local ffi = require("ffi")
local metrics = require("agent.metrics")
local query = require("agent.query")

local C = metrics.C
pcall(ffi.cdef, [[
bg_registry *bg_registry_new(void);
void bg_registry_free(bg_registry *r);
void bg_series_remove(bg_registry *r, bg_series *s);
]])

local T0 = 1700000000000 - 1700000000000 % 60000 -- a minute boundary, in ms
local COUNTER, GAUGE, HISTOGRAM = 0, 1, 2
local errbuf = ffi.new("char[256]")

local function series(reg, kind, name, labels)
  local kv, n, keep = ffi.new("const char *[32]"), 0, {}
  local keys = {}
  for k in pairs(labels or {}) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    keep[#keep + 1] = labels[k]
    kv[2 * n], kv[2 * n + 1] = k, labels[k]
    n = n + 1
  end
  local s = C.bg_series_get(reg, kind, name, nil, kv, n, nil, 0, errbuf, 256)
  assert(#keep == n) -- the label strings had to live until the call copied them
  assert(s ~= nil, ffi.string(errbuf))
  local ctype = ({ [COUNTER] = "struct bg_lua_counter *", [GAUGE] = "struct bg_lua_gauge *",
    [HISTOGRAM] = "struct bg_lua_histogram *" })[kind]
  return ffi.cast(ctype, s), s
end

local function near(want, got)
  assert.is_number(got)
  assert.is_true(math.abs(want - got) <= 1e-9 * math.max(1, math.abs(want)),
    ("want %.17g, got %.17g"):format(want, got))
end

describe("agent.query", function()
  local reg, q

  before_each(function()
    reg = C.bg_registry_new()
    q = assert(query.open { raw = "1h" })
  end)

  after_each(function()
    q.close()
    C.bg_registry_free(reg)
  end)

  it("rate and increase of a counter with a reset follow Prometheus", function()
    local c, raw = series(reg, COUNTER, "jobs.done")
    -- 100, 110, 120, 130 then the series is recreated (a restart): 5, 15, 25
    local values = { 100, 110, 120, 130 }
    for i, v in ipairs(values) do
      c:add(v - (values[i - 1] or 0))
      assert.is_true(q.sample(reg, T0 + 15000 * i))
    end
    C.bg_series_remove(reg, raw)
    c = series(reg, COUNTER, "jobs.done")
    for i, v in ipairs { 5, 15, 25 } do
      c:add(v - (i > 1 and (v - 10) or 0))
      assert.is_true(q.sample(reg, T0 + 15000 * (4 + i)))
    end
    -- 30 before the reset, 5 + 20 after: 55 over 90 s of samples; the first sample is one
    -- interval from the range's start, so it extrapolates 15 s back (not to zero: that is
    -- further), and the last sample is at the end.
    near(55 * 105 / 90, q.increase("jobs.done", "105s"))
    near(55 / 90, q.rate("jobs.done", "105s"))
    near(55 / 90, q.rate("jobs_done_total", 105))
    near(55 / 90, q.rate("jobs_done", "105s"))
    -- one sample in range: no value, so the list form, empty
    assert.same({}, q.rate("jobs.done", "15s"))
  end)

  it("last_columns gives what last_all gives, with label tables kept per series", function()
    for i, host in ipairs { "a", "b", "c" } do
      assert.is_true(q.append(('load{dc="x",host="%s"}'):format(host), T0 + 15000, i))
      assert.is_true(q.append(('load{dc="x",host="%s"}'):format(host), T0 + 30000, 10 * i))
    end
    assert.is_true(q.append('load{dc="x",host="old"}', T0 - 600000, 5)) -- outside the 5m lookback
    local qs = query.new(q.history, { shared_labels = true })
    local n, vals, labs = qs.last_columns("load")
    assert.equals(3, n)
    local got, want = {}, {}
    for i = 1, n do got[labs[i].host] = vals[i - 1] end
    for _, x in ipairs(q.last_all("load")) do want[x.labels.host] = x.value end
    assert.same(want, got)
    assert.same({ a = 10, b = 20, c = 30 }, got)
    assert.equals("x", labs[1].dc)
    local first = labs[1]
    local n2, _, labs2 = qs.last_columns("load", { host = "~[ab]" })
    assert.equals(2, n2)
    assert.is_nil(labs2[3]) -- the buffer is cut to the new length
    assert.equals(first, labs2[1]) -- the same table for the same series
    assert.equals(0, (qs.last_columns("no.such.metric")))
    assert.has_error(function() qs.last_columns(42) end)
    -- without shared_labels there is no columns form
    assert.is_nil(q.last_columns)
    -- more series than the buffers hold at first: they grow, and every series is there
    for i = 1, 1000 do assert.is_true(q.append(('many{i="%d"}'):format(i), T0 + 30000, i)) end
    local nm, vm, lm = qs.last_columns("many")
    assert.equals(1000, nm)
    local sum = 0
    for i = 1, nm do
      assert.equals(tonumber(lm[i].i), vm[i - 1])
      sum = sum + vm[i - 1]
    end
    assert.equals(500500, sum)
  end)

  it("avg, max, min, sum, count and last over time of a gauge", function()
    local g = series(reg, GAUGE, "queue.depth")
    for i, v in ipairs { 4, 8, 15, 16, 23, 42 } do
      g:set(v)
      q.sample(reg, T0 + 15000 * i)
    end
    near((4 + 8 + 15 + 16 + 23 + 42) / 6, q.avg_over_time("queue.depth", "5m"))
    near(42, q.max_over_time("queue.depth", "5m"))
    near(4, q.min_over_time("queue.depth", "5m"))
    near(108, q.sum_over_time("queue.depth", "5m"))
    near(6, q.count_over_time("queue.depth", "5m"))
    near(42, q.last("queue.depth"))
    -- the last 30 s hold 23 and 42
    near(23, q.min_over_time("queue.depth", "30s"))
  end)

  it("quantile_over_time is exact on small data", function()
    local g = series(reg, GAUGE, "latency.p")
    for i = 1, 10 do
      g:set(i)
      q.sample(reg, T0 + 15000 * i)
    end
    near(5.5, q.quantile_over_time(0.5, "latency.p", "10m"))
    near(9.1, q.quantile_over_time(0.9, "latency.p", "10m"))
    near(1, q.quantile_over_time(0, "latency.p", "10m"))
    near(10, q.quantile_over_time(1, "latency.p", "10m"))
    assert.equal(math.huge, q.quantile_over_time(2, "latency.p", "10m"))
    assert.has_error(function() q.quantile_over_time("x", "latency.p", "10m") end)
  end)

  it("absent says whether any matching series has a recent sample", function()
    local g = series(reg, GAUGE, "disk.free", { mount = "/" })
    g:set(1)
    q.sample(reg, T0)
    assert.is_false(q.absent("disk.free"))
    assert.is_false(q.absent("disk.free", { mount = "/" }))
    assert.is_true(q.absent("disk.free", { mount = "/home" }))
    assert.is_true(q.absent("no.such.metric"))
    q.at(T0 + 600000) -- ten minutes later nothing is recent
    assert.is_true(q.absent("disk.free"))
    assert.is_false(q.absent("disk.free", "15m"))
    q.at(nil)
  end)

  it("matchers with equality, regex and negation; one series gives a number, more a list",
    function()
      local hs = {
        series(reg, COUNTER, "http.requests", { code = "200", route = "/a" }),
        series(reg, COUNTER, "http.requests", { code = "500", route = "/a" }),
        (series(reg, COUNTER, "http.requests", { code = "503", route = "/b" })),
      }
      for i = 1, 3 do
        for k, h in ipairs(hs) do h:add(k) end
        q.sample(reg, T0 + 15000 * i)
      end
      local all = q.last("http.requests")
      assert.equal(3, #all)
      assert.same({ code = "200", route = "/a" }, all[1].labels)
      assert.equal(3, all[1].value)
      near(9, all[3].value)
      local errs = q.last("http.requests", { code = "~5.." })
      assert.equal(2, #errs)
      assert.equal("500", errs[1].labels.code)
      near(6, q.last("http.requests", { code = "~5..", route = "/a" }))
      near(3, q.last("http.requests", { code = "!~5.." }))
      near(9, q.last("http.requests", { route = "!/a" }))
      assert.same({}, q.last("http.requests", { code = "~5" })) -- anchored
      -- the _all form is always a list
      local one = q.last_all("http.requests", { code = "200" })
      assert.equal(1, #one)
      assert.equal(3, one[1].value)
      assert.equal(3, #q.rate_all("http.requests", "1m"))
      assert.has_error(function() q.last("http.requests", { code = "~(" }) end)
      assert.has_error(function() q.rate("http.requests", "soon") end)
      assert.has_error(function() q.rate(42, "5m") end)
    end)

  it("histograms are two series, _count and _sum, so averages and rates work", function()
    local h = series(reg, HISTOGRAM, "api.latency")
    for i = 1, 5 do
      h:observe(0.1)
      h:observe(0.3)
      q.sample(reg, T0 + 15000 * i)
    end
    local inc_sum = q.increase("api.latency_sum", "75s")
    local inc_count = q.increase("api.latency_count", "75s")
    near(0.2, inc_sum / inc_count)
    near(10, q.last("api_latency_count"))
  end)

  it("ranges longer than the raw window read the minute rollups", function()
    q.close()
    q = assert(query.open { raw = "1m" })
    local g = series(reg, GAUGE, "temp")
    for i = 0, 39 do -- ten minutes, four samples a minute
      g:set(i)
      q.sample(reg, T0 + 15000 * i)
    end
    q.at(T0 + 600000 - 1)
    near(40, q.count_over_time("temp", "10m"))
    near(39, q.max_over_time("temp", "10m"))
    near(0, q.min_over_time("temp", "10m"))
    near(19.5, q.avg_over_time("temp", "10m"))
    near(4, q.count_over_time("temp", "1m"))
  end)

  it("rollups survive a close and reopen of the store", function()
    q.close()
    local dir = os.tmpname()
    os.remove(dir)
    q = assert(query.open { raw = "1m", data_dir = dir })
    for i = 0, 7 do assert.is_true(q.append("saved{k=\"v\"}", T0 + 15000 * i, i)) end
    q.close()
    q = assert(query.open { raw = "1m", data_dir = dir })
    q.at(T0 + 120000)
    near(8, q.count_over_time("saved", "1h", { k = "v" }))
    near(28, q.sum_over_time("saved", "1h"))
    q.close()
    q = assert(query.open {})
    os.execute("rm -rf " .. dir)
  end)
end)

describe("beagle.query anomaly scores", function()
  it("scores the newest sample against the window (zscore, mad, ewma, stddev)", function()
    local q = assert(query.open { raw = "1h" })
    local t0 = 1700000000000
    -- 40 samples alternating 9 and 11 (mean 10, stddev 1), then 20
    for i = 0, 39 do q.append("cpu", t0 + i * 15000, i % 2 == 0 and 9 or 11) end
    q.append("cpu", t0 + 40 * 15000, 20)
    q.at(t0 + 40 * 15000)
    assert.is_true(math.abs(q.zscore("cpu", "1h") - 10) < 1e-9)
    -- median 10, |x - 10| = 1 for all: MAD 1 -> (20 - 10) / 1.4826
    assert.is_true(math.abs(q.madscore("cpu", "1h") - 10 / 1.4826) < 1e-9)
    assert.is_true(q.ewmascore("cpu", "1h") > 5)
    local m = 420 / 41
    local sd = math.sqrt((20 * (9 - m) ^ 2 + 20 * (11 - m) ^ 2 + (20 - m) ^ 2) / 41)
    assert.is_true(math.abs(q.stddev_over_time("cpu", "1h") - sd) < 1e-9)
    -- too few earlier samples: no score
    assert.are.same({}, q.zscore("cpu", "30s", nil, 30))
    q.close()
  end)
end)
