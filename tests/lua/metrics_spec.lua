-- beagle.metrics end to end: Lua API -> FFI -> C registry -> Prometheus text -> promtool.
-- Every test uses its own metric names: the process-wide registry is shared. The guide's
-- test names ("test.counter", ...) are renamed because promtool lints a type in a name.
local metrics = require("agent.metrics")

local function render()
  local text = assert(metrics.render_prometheus())
  return text
end

local function promtool(text)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  local p = assert(io.popen("promtool check metrics < " .. path .. " 2>&1; echo \"rc=$?\""))
  local out = p:read("*a")
  p:close()
  os.remove(path)
  return out
end

describe("agent.metrics by name (the guide's MetricsCollector)", function()
  it("increments a counter: 5 then 3 is 8", function()
    assert.is_true(metrics.increment_counter("guide.increments", 5.0))
    assert.equal(5, metrics.counter("guide.increments"):value())
    assert.is_true(metrics.increment_counter("guide.increments", 3.0))
    assert.equal(8, metrics.counter("guide.increments"):value())
  end)

  it("increments by 1 by default", function()
    metrics.increment_counter("test.default_inc")
    metrics.increment_counter("test.default_inc")
    assert.equal(2, metrics.counter("test.default_inc"):value())
  end)

  it("sets a gauge: 42 then 24 is 24", function()
    assert.is_true(metrics.set_gauge("guide.level", 42.0))
    assert.equal(42, metrics.gauge("guide.level"):value())
    assert.is_true(metrics.set_gauge("guide.level", 24.0))
    assert.equal(24, metrics.gauge("guide.level"):value())
  end)

  it("records a histogram: five values sum 15 count 5", function()
    for _, v in ipairs({ 1.0, 2.0, 3.0, 4.0, 5.0 }) do
      assert.is_true(metrics.record_histogram("guide.values", v))
    end
    local h = metrics.histogram("guide.values")
    assert.equal(5, h:count())
    assert.equal(15, h:sum())
  end)

  it("keys series by tags, whatever order or table they come in", function()
    local tags = { endpoint = "/optimize", method = "POST" }
    metrics.increment_counter("tags.requests", 1, tags)
    metrics.increment_counter("tags.requests", 1, tags) -- same table
    metrics.increment_counter("tags.requests", 1, { method = "POST", endpoint = "/optimize" })
    metrics.increment_counter("tags.requests", 1, { endpoint = "/health", method = "GET" })
    metrics.increment_counter("tags.requests", 1, { endpoint = "/optimize" }) -- subset
    metrics.increment_counter("tags.requests", 1, { endpoint = "/optimize", method = "POST", x = "1" })
    metrics.increment_counter("tags.requests", 1) -- no tags
    metrics.increment_counter("tags.requests", 1, {}) -- empty tags: the same series
    assert.equal(3, metrics.counter("tags.requests", { method = "POST", endpoint = "/optimize" }):value())
    assert.equal(1, metrics.counter("tags.requests", { endpoint = "/health", method = "GET" }):value())
    assert.equal(1, metrics.counter("tags.requests", { endpoint = "/optimize" }):value())
    assert.equal(1, metrics.counter("tags.requests", { endpoint = "/optimize", method = "POST", x = "1" }):value())
    assert.equal(2, metrics.counter("tags.requests"):value())
  end)

  it("never confuses tag sets in its cache, also from compiled loops", function()
    local name = "cache.requests"
    local t = { a = "1", b = "2" }
    for _ = 1, 200 do
      metrics.increment_counter(name, 1, t) -- two tags, warm
      metrics.increment_counter(name, 1, { a = "1", b = "2", c = "3" }) -- same two plus one
      metrics.increment_counter(name, 1, { a = "1" }) -- a subset
      metrics.increment_counter(name, 1, { a = "1", c = "2" }) -- same count, other key
      metrics.increment_counter(name, 1, { b = "2", a = "1" }) -- same set, other order
    end
    t.b = "changed" -- the same table, mutated
    metrics.increment_counter(name, 1, t)
    t.c = "added"
    metrics.increment_counter(name, 1, t)
    assert.equal(400, metrics.counter(name, { a = "1", b = "2" }):value())
    assert.equal(200, metrics.counter(name, { a = "1", b = "2", c = "3" }):value())
    assert.equal(200, metrics.counter(name, { a = "1" }):value())
    assert.equal(200, metrics.counter(name, { a = "1", c = "2" }):value())
    assert.equal(1, metrics.counter(name, { a = "1", b = "changed" }):value())
    assert.equal(1, metrics.counter(name, { a = "1", b = "changed", c = "added" }):value())
    for i = 1, 4 do -- one and three tags take their own unrolled paths
      local tags = {}
      for j = 1, i do tags["k" .. j] = "v" end
      for _ = 1, 100 do metrics.set_gauge("cache.level", i, tags) end
      tags["k" .. (i + 1)] = "extra"
      metrics.set_gauge("cache.level", -i, tags)
      tags["k" .. (i + 1)] = nil
      assert.equal(i, metrics.gauge("cache.level", tags):value())
    end
  end)

  it("counts tag keys with OpenResty LuaJIT's table.nkeys, or next() elsewhere", function()
    -- The agent and these specs need luajit2 (scripts/deps.sh): Debian 12's luajit miscompiles
    -- next() (see metrics.lua); this fails if the specs ever run on it again.
    assert.is_true(metrics.has_nkeys, "table.nkeys missing: not OpenResty's LuaJIT")
    local t = { a = 1, b = 2, c = 3 }
    t.b = nil
    for _, case in ipairs { { {}, 0 }, { { a = 1 }, 1 }, { t, 2 }, { { 1, 2, x = 3 }, 3 } } do
      assert.equal(case[2], metrics._count_next(case[1]))
      assert.equal(case[2], require("table.nkeys")(case[1]))
    end
  end)

  it("turns number and boolean tag values into strings", function()
    metrics.increment_counter("tags.status", 1, { code = 200, ok = true })
    metrics.increment_counter("tags.status", 1, { code = "200", ok = "true" })
    assert.equal(2, metrics.counter("tags.status", { code = "200", ok = "true" }):value())
  end)

  it("returns nil, err for bad names, tags and values, and never raises", function()
    local ok, err = metrics.increment_counter("9abc")
    assert.is_nil(ok)
    assert.equal('metric name "9abc" must start with a letter or underscore', err)
    ok, err = metrics.set_gauge("", 1)
    assert.is_nil(ok)
    assert.equal("metric name is empty", err)
    ok, err = metrics.record_histogram("a b", 1)
    assert.is_nil(ok)
    assert.matches("invalid character ' '", err, 1, true)
    ok, err = metrics.increment_counter(nil)
    assert.is_nil(ok)
    assert.matches("must be a string", err)
    ok, err = metrics.increment_counter("bad.tags", 1, { ["bad-key"] = "v" })
    assert.is_nil(ok)
    assert.matches('label name "bad-key" has invalid character', err, 1, true)
    ok, err = metrics.increment_counter("bad.tags", 1, { __reserved = "v" })
    assert.is_nil(ok)
    assert.matches("reserved", err)
    ok, err = metrics.increment_counter("bad.tags", 1, { k = {} })
    assert.is_nil(ok)
    assert.matches("must be a string, number or boolean", err)
    ok, err = metrics.increment_counter("bad.tags", 1, 42)
    assert.is_nil(ok)
    assert.matches("labels must be a table", err)
    ok, err = metrics.increment_counter("bad.value", "5")
    assert.is_nil(ok)
    assert.matches("value must be a number", err)
    ok, err = metrics.increment_counter("bad.value", -1)
    assert.is_nil(ok)
    assert.matches("can't go down", err)
    ok, err = metrics.set_gauge("bad.value")
    assert.is_nil(ok)
    assert.matches("value must be a number", err)
    ok, err = metrics.record_histogram("bad.value", 0 / 0)
    assert.is_nil(ok)
    assert.is_string(err)
  end)

  it("refuses a name already used by another type", function()
    assert.is_true(metrics.increment_counter("mixed.thing"))
    local ok, err = metrics.set_gauge("mixed.thing", 1)
    assert.is_nil(ok)
    assert.equal('metric "mixed.thing" is a counter, not a gauge', err)
  end)

  it("times a block into <name>_seconds", function()
    local t = assert(metrics.timer("database.query_time", { table = "optimizations" }))
    local elapsed = t:stop()
    assert.is_number(elapsed)
    assert.is_true(elapsed >= 0 and elapsed < 1)
    assert.equal(elapsed, t:stop()) -- a second stop records nothing more
    local h = metrics.histogram("database.query_time_seconds", nil, { table = "optimizations" })
    assert.equal(1, h:count())
    assert.equal(elapsed, h:sum())

    assert.equal(42, metrics.time("database.query_time", { table = "optimizations" },
      function(a, b) return a + b end, 40, 2))
    assert.equal(2, h:count())
    assert.has_error(function()
      metrics.time("database.query_time", { table = "optimizations" }, function() error("boom", 0) end)
    end, "boom")
    assert.equal(3, h:count())

    local t2 = assert(metrics.timer("job.run_seconds"))
    t2:stop()
    assert.equal(1, metrics.histogram("job.run_seconds"):count())

    local bad, err = metrics.timer("9x")
    assert.is_nil(bad)
    assert.matches("must start with a letter", err)
    local called = false
    bad, err = metrics.time("9x", nil, function() called = true end)
    assert.is_nil(bad)
    assert.matches("must start with a letter", err)
    assert.is_false(called)
  end)
end)

describe("agent.metrics handles", function()
  it("counts, sets and observes with one call", function()
    local c = metrics.counter("handle.requests", { route = "/a" })
    c:inc()
    c:inc(2)
    c:add(0.5)
    c:add(-10) -- ignored: counters only go up
    assert.equal(3.5, c:value())
    assert.equal(c, metrics.counter("handle.requests", { route = "/a" }))

    local g = metrics.gauge("handle.active")
    g:set(10)
    g:inc()
    g:dec(3)
    g:add(0.25)
    assert.equal(8.25, g:value())

    local h = metrics.histogram("handle.size_bytes", { buckets = { 10, 100, 1000 }, help = "Sizes." })
    h:observe(5)
    h:observe(50)
    h:observe(5000)
    assert.equal(3, h:count())
    assert.equal(5055, h:sum())
    local text = render()
    assert.matches('handle_size_bytes_bucket{le="10"} 1\n', text, 1, true)
    assert.matches('handle_size_bytes_bucket{le="100"} 2\n', text, 1, true)
    assert.matches('handle_size_bytes_bucket{le="1000"} 2\n', text, 1, true)
    assert.matches('handle_size_bytes_bucket{le="+Inf"} 3\n', text, 1, true)
    assert.matches("# HELP handle_size_bytes Sizes.\n", text, 1, true)
  end)

  it("adds in place from compiled loops, and leaves misuse to C to ignore and count", function()
    local C = metrics.C
    local c = metrics.counter("handle.loop_adds")
    local g = metrics.gauge("handle.loop_sets")
    local raw = metrics.pointer(c) -- the series pointer behind the handle (trusted code only)
    local misuse = tonumber(C.bg_registry_misuse_count(metrics.registry))
    for i = 1, 1000 do -- long enough to be compiled
      c:inc()
      if i % 100 == 0 then c:add(-1) end
      if i % 250 == 0 then c:inc(0 / 0) end
      if i % 2 == 0 then C.bg_counter_add(raw, 1) end -- C adds to the same value in between
      g:set(i)
      g:dec(0.5)
    end
    assert.equal(1500, c:value())
    assert.equal(1500, tonumber(C.bg_series_value(raw)))
    assert.equal(999.5, g:value())
    assert.equal(misuse + 14, tonumber(C.bg_registry_misuse_count(metrics.registry)))
    for _ = 1, 1000 do metrics.increment_counter("handle.loop_adds", 2) end
    assert.equal(3500, c:value())
    local text = render()
    assert.matches("\nhandle_loop_adds_total 3500\n", text, 1, true)
    assert.matches("\nhandle_loop_sets 999.5\n", text, 1, true)
    assert.has_error(function() c:inc("x") end)
    assert.has_error(function() g:set("x") end)
    assert.has_error(function() return c.count end) -- only its methods are visible
    assert.equal(3500, c:value())
  end)

  it("raises on bad names, labels and buckets (programmer mistakes)", function()
    assert.has_error(function() metrics.counter("9abc") end,
      'metric name "9abc" must start with a letter or underscore')
    assert.has_error(function() metrics.gauge("ok.name", { ["a.b"] = "x" }) end)
    assert.has_error(function() metrics.histogram("h.bad", { buckets = { 3, 2, 1 } }) end)
    assert.has_error(function() metrics.histogram("h.bad2", { buckets = { 1, "x" } }) end)
    assert.has_error(function() metrics.counter("handle.opts", nil, "not a table") end)
    local too_many = {}
    for i = 1, 17 do too_many["l" .. i] = "v" end
    assert.has_error(function() metrics.counter("handle.many", too_many) end)
  end)

  it("won't let a counter handle be used as a gauge", function()
    local c = metrics.counter("handle.kind")
    assert.has_error(function() return c.set end) -- no such method
    assert.has_error(function() metrics.C.bg_gauge_set(c, 1) end)
  end)
end)

describe("agent.metrics exposition", function()
  it("renders the guide's names the Prometheus way", function()
    metrics.increment_counter("optimization.started", 1, { algorithm = "nsga2" })
    metrics.increment_counter("api.requests", 1, { endpoint = "/optimize", method = "POST" })
    metrics.set_gauge("system.cpu_percent", 67.5)
    metrics.record_histogram("optimization.duration", 142.3, { problem_type = "portfolio" })
    metrics.record_histogram("api.response_time", 0.045, { endpoint = "/health" })
    metrics.increment_counter("escape.check", 1, { path = 'a\\b "c"\nd' })
    local text = render()
    assert.matches('\n# TYPE optimization_started_total counter\n' ..
      'optimization_started_total{algorithm="nsga2"} 1\n', text, 1, true)
    assert.matches('api_requests_total{endpoint="/optimize",method="POST"} 1\n', text, 1, true)
    assert.matches("\nsystem_cpu_percent 67.5\n", text, 1, true)
    assert.matches('optimization_duration_sum{problem_type="portfolio"} 142.3\n', text, 1, true)
    assert.matches('api_response_time_bucket{endpoint="/health",le="0.05"} 1\n', text, 1, true)
    assert.matches('escape_check_total{path="a\\\\b \\"c\\"\\nd"} 1\n', text, 1, true)
    assert.equal(metrics.content_type, "text/plain; version=0.0.4; charset=utf-8")
  end)

  it("passes promtool check metrics without a warning", function()
    local out = promtool(render())
    assert.equal("rc=0\n", out)
  end)
end)

describe("agent.metrics cardinality limits", function()
  after_each(function() metrics.set_limits() end)

  it("refuses series past max_series_per_metric with nil, err, and never caches the failure", function()
    metrics.set_limits(nil, 3)
    for i = 1, 3 do
      assert.is_true(metrics.increment_counter("limit.requests", 1, { id = tostring(i) }))
    end
    local ok, err = metrics.increment_counter("limit.requests", 1, { id = "4" })
    assert.is_nil(ok)
    assert.equal('series limit reached for metric "limit.requests" (3 series)', err)
    ok, err = metrics.increment_counter("limit.requests", 1, { id = "4" })
    assert.is_nil(ok)
    assert.is_string(err)
    -- Existing series keep working, by name and by handle.
    assert.is_true(metrics.increment_counter("limit.requests", 1, { id = "1" }))
    local h1 = metrics.counter("limit.requests", { id = "1" })
    assert.equal(2, h1:value())
    -- A handle constructor raises, as for any programmer mistake.
    assert.has_error(function() metrics.counter("limit.requests", { id = "5" }) end,
      'series limit reached for metric "limit.requests" (3 series)')
    -- Once a series is removed, the same call succeeds.
    metrics.remove(metrics.counter("limit.requests", { id = "3" }))
    assert.is_true(metrics.increment_counter("limit.requests", 1, { id = "4" }))
    assert.equal(1, metrics.counter("limit.requests", { id = "4" }):value())
    assert.equal(3, metrics.increment_counter("limit.requests", 1, { id = "1" }) and h1:value())

    local l = metrics.limits()
    assert.is_true(l.dropped.max_series_per_metric >= 3)
    local found
    for _, e in ipairs(l.metrics) do
      if e.name == "limit_requests" then found = e end
    end
    assert.same({ name = "limit_requests", dropped = 3, series = 3,
      reason = "max_series_per_metric" }, found)
    local text = metrics.render()
    assert.matches('beagle_series_dropped_total{reason="max_series_per_metric"} ' ..
      l.dropped.max_series_per_metric .. "\n", text, 1, true)
  end)

  it("keeps the agent's beagle_* series outside the limits, and probes without creating", function()
    metrics.set_limits(1, 1)
    assert.is_nil((metrics.set_gauge("limit.user_level", 1)))
    -- the agent's own: past both limits, by name and by handle
    assert.is_true(metrics.set_gauge("beagle_spec_own", 1, { k = "a" }))
    assert.is_true(metrics.set_gauge("beagle_spec_own", 2, { k = "b" }))
    assert.equal(0, metrics.counter("beagle_spec_own_handle"):value())
    -- the probe says what a get would meet, and creates nothing
    local probe = function(...) return require("agent.api_metrics").probe(metrics, ...) end
    local state, fam_room, total_room = probe("gauge", "limit.user_level2", { k = "v" })
    assert.same({ "new", 1, 0 }, { state, fam_room, total_room })
    assert.equal("exists", (probe("counter", "guide.increments")))
    local ok, err = probe("counter", "beagle_spec_own", {})
    assert.is_nil(ok)
    assert.equal('metric "beagle_spec_own" is a gauge, not a counter', err)
    assert.is_nil(probe("gauge", "9bad"))
    metrics.set_limits()
    assert.equal("new", (probe("gauge", "limit.user_level2", { k = "v" })))
    assert.is_falsy(metrics.render():find("limit_user_level2", 1, true))
  end)

  it("refuses new series past max_series, for every metric", function()
    metrics.set_limits(1)
    local ok, err = metrics.set_gauge("limit.refused_level", 1)
    assert.is_nil(ok)
    assert.equal("total series limit reached (1)", err)
    ok, err = metrics.record_histogram("limit.refused_wait", 1, { a = "b" })
    assert.is_nil(ok)
    assert.equal("total series limit reached (1)", err)
    assert.is_true(metrics.increment_counter("guide.increments", 1)) -- exists: still works
    metrics.set_limits()
    assert.is_true(metrics.set_gauge("limit.refused_level", 1))
    local l = metrics.limits()
    assert.is_true(l.dropped.max_series >= 2)
    assert.is_nil(l.metrics[#l.metrics].name) -- new metrics refused by the total
  end)

  it("cuts label values longer than 256 bytes at a UTF-8 boundary and counts them", function()
    local before = metrics.limits().truncated
    local long = ("x"):rep(255) .. "é" .. ("y"):rep(100) -- é straddles byte 256
    assert.is_true(metrics.increment_counter("limit.long_label", 1, { path = long }))
    assert.equal(1, metrics.counter("limit.long_label", { path = ("x"):rep(255) }):value())
    assert.equal(before + 1, metrics.limits().truncated)
    metrics.increment_counter("limit.long_label", 1, { path = long, other = long })
    assert.equal(before + 3, metrics.limits().truncated)
    local text = metrics.render()
    assert.matches('limit_long_label_total{path="' .. ("x"):rep(255) .. '"} 1\n', text, 1, true)
    assert.matches("\nbeagle_label_values_truncated_total %d+\n", text)
  end)
end)

describe("agent.metrics quantiles", function()
  it("answers p50/p99 within 1% from the sketch every histogram carries", function()
    local h = metrics.histogram("quant.latency_seconds")
    assert.is_true(h:quantile(0.5) ~= h:quantile(0.5)) -- NaN when empty
    local ok, err = metrics.quantile(h, 0.5)
    assert.is_nil(ok)
    assert.equal("quantile: no observations", err)
    for i = 1, 10000 do h:observe(i / 1000) end
    assert.is_true(math.abs(h:quantile(0.5) - 5) <= 0.05)
    assert.is_true(math.abs(metrics.quantile(h, 0.99) - 9.9) <= 0.099)
    assert.equal(0.001, h:min())
    assert.equal(10, h:max())
    for i = 1, 100 do metrics.record_histogram("quant.by_name", i, { op = "read" }) end
    assert.is_true(math.abs(metrics.quantile("quant.by_name", { op = "read" }, 0.9) - 90) <= 0.9)
    ok, err = metrics.quantile("quant.by_name", { op = "write" }, 0.9)
    assert.is_nil(ok)
    assert.matches("no such series", err)
    ok, err = metrics.quantile("quant.by_name", { op = "read" }, 2)
    assert.is_nil(ok)
    assert.matches("q must be a number in %[0, 1%]", err)
  end)
end)

describe("agent.metrics formats", function()
  local cjson = require("cjson")

  it("negotiates the format from Accept", function()
    assert.equal("prometheus", metrics.negotiate(nil))
    assert.equal("prometheus", metrics.negotiate("*/*"))
    assert.equal("openmetrics", metrics.negotiate(
      "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"))
    assert.equal("json", metrics.negotiate("application/json"))
    assert.is_true(metrics.accepts_gzip("gzip, deflate"))
    assert.is_false(metrics.accepts_gzip("identity"))
    assert.is_false(metrics.accepts_gzip(nil))
  end)

  it("renders OpenMetrics with _created, # UNIT and # EOF", function()
    metrics.increment_counter("fmt.jobs", 2, { kind = "a" })
    metrics.record_histogram("fmt.wait_seconds", 0.2)
    local body, ctype = metrics.render("openmetrics")
    assert.equal("application/openmetrics-text; version=1.0.0; charset=utf-8", ctype)
    assert.matches('\n# TYPE fmt_jobs counter\n# HELP fmt_jobs [^\n]+\nfmt_jobs_total{kind="a"} 2\n' ..
      'fmt_jobs_created{kind="a"} %d+%.%d%d%d\n', body)
    assert.matches("\n# TYPE fmt_wait_seconds histogram\n# UNIT fmt_wait_seconds seconds\n", body, 1, true)
    assert.matches("\nfmt_wait_seconds_count 1\nfmt_wait_seconds_sum 0.2\nfmt_wait_seconds_created ", body, 1, true)
    assert.equal("# EOF\n", body:sub(-6))
    local _, n = body:gsub("# EOF", "")
    assert.equal(1, n)
    local prom, pct = metrics.render()
    assert.equal(metrics.content_type, pct)
    assert.is_nil(prom:find("_created", 1, true))
    assert.is_nil(metrics.render("xml"))
  end)

  it("renders JSON that parses, with histogram statistics", function()
    for i = 1, 100 do metrics.record_histogram("fmt.json_seconds", i / 100, { q = 'a"b' }) end
    metrics.set_gauge("fmt.json_level", 3, { k = "v" })
    local body, ctype = metrics.render("json")
    assert.equal("application/json", ctype)
    local doc = cjson.decode(body)
    local by = {}
    for _, m in ipairs(doc.metrics) do by[m.name] = m end
    local g = by.fmt_json_level
    assert.equal("gauge", g.type)
    assert.same({ labels = { k = "v" }, value = 3 }, g.series[1])
    local h = by.fmt_json_seconds
    assert.equal("histogram", h.type)
    local s = h.series[1]
    assert.same({ q = 'a"b' }, s.labels)
    assert.equal(100, s.count)
    assert.is_true(math.abs(s.sum - 50.5) < 1e-9)
    assert.equal(0.01, s.min)
    assert.equal(1, s.max)
    assert.is_true(math.abs(s.mean - 0.505) < 1e-9)
    for key, want in pairs({ p50 = 0.5, p90 = 0.9, p95 = 0.95, p99 = 0.99 }) do
      assert.is_true(math.abs(s[key] - want) <= 0.01 * want, key)
    end
    assert.same({ "+Inf", 100 }, s.buckets[#s.buckets])
    assert.same({ 0.5, 50 }, s.buckets[7])
    assert.equal("counter", by.guide_increments.type)
  end)

  it("still passes promtool with the limits' and truncation counters in it", function()
    local text = metrics.render()
    assert.matches("beagle_series_dropped_total", text, 1, true)
    assert.equal("rc=0\n", promtool(text))
  end)

  it("gzips a body that gunzip restores", function()
    local body = metrics.render()
    local z = assert(metrics.gzip(body))
    assert.equal("\31\139", z:sub(1, 2))
    assert.is_true(#z < #body)
    local path = os.tmpname()
    local f = assert(io.open(path, "wb"))
    f:write(z)
    f:close()
    local p = assert(io.popen("gzip -dc < " .. path))
    local back = p:read("*a")
    p:close()
    os.remove(path)
    assert.equal(body, back)
    assert.is_nil(metrics.gzip(42))
  end)
end)
