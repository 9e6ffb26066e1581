-- Metric backends in a running agent (lua/agent/backends.lua): the registry's samples every
-- collection interval, in batches, to a receiver on loopback (the HTTP sink of
-- tests/http_sink.py) through the example json_lines backend; what a backend buffers while its
-- target is down and delivers after, what it drops past its buffer (counted), how it shows in
-- /health/detailed and /metrics; the guide's MetricBackend shape; config errors; reload; and
-- plugins that misbehave in send.
local S = require "support"

-- "beagle.lua:N:" for line n of a config that follows S.calm_system as if it were two lines long
local function at(n) return ("beagle.lua:%d:"):format(n - 2 + select(2, S.calm_system:gsub("\n", ""))) end
local cjson = require "cjson"

-- The samples the sink received, in arrival order: { name, type, labels, value, timestamp, ... }
local function received(sink)
  local out = {}
  for _, r in ipairs(sink.requests()) do
    if r.status == 200 and r.path == "/ingest" then
      for line in r.body:gmatch("[^\n]+") do out[#out + 1] = cjson.decode(line) end
    end
  end
  return out
end

-- The timestamps at which the sink received series `name`, in arrival order.
local function stamps(sink, name)
  local ts = {}
  for _, s in ipairs(received(sink)) do
    if s.name == name then ts[#ts + 1] = s.timestamp end
  end
  return ts
end

local function plugin_dir(files)
  local d = S.tmpdir()
  S.sh(("mkdir -p %q/backends"):format(d))
  S.sh(("cp %q %q/backends/"):format(S.src .. "/examples/plugins/backends/json_lines.lua", d))
  for name, src in pairs(files or {}) do S.write(d .. "/backends/" .. name .. ".lua", src) end
  return d
end

describe("metric backends", function()
  local sink, agent
  before_each(function() sink = S.sink() end)
  after_each(function()
    if agent then agent:stop() agent = nil end
    if sink then sink.stop() sink = nil end
  end)

  it("the example json_lines backend: every series each interval, labels, cumulative buckets", function()
    agent = S.start { plugins = plugin_dir(), config = S.calm_system .. ([[
backend "lines" { plugin = "json_lines", url = "%s/ingest", labels = { env = "test", job = "x" }, interval = "0.3s",
  batch_size = 20 }
]]):format(sink.url) }
    agent:statsd("probe.requests:3|c|#route:/a b\nprobe.depth:7|g\nprobe.latency:0.2|ms\nprobe.latency:700|ms")
    local got = S.wait(function()
      local by = {}
      for _, s in ipairs(received(sink)) do by[s.name] = s end
      if by.probe_requests and by.probe_depth and by.probe_latency_seconds then return by end
    end, 10)
    assert.truthy(got, "the statsd series never reached the backend")
    local c = got.probe_requests
    assert.equals("counter", c.type)
    assert.equals(3, c.value)
    assert.same({ route = "/a b", env = "test", job = "x" }, c.labels)
    assert.equals("gauge", got.probe_depth.type)
    assert.equals(7, got.probe_depth.value)
    local h = got.probe_latency_seconds -- StatsD timers are histograms in seconds
    assert.equals("histogram", h.type)
    assert.equals(2, h.count)
    assert.near(0.7002, h.sum, 1e-9)
    assert.equals("+Inf", h.buckets[#h.buckets].le)
    assert.equals(2, h.buckets[#h.buckets].count)
    local prev = 0
    for _, b in ipairs(h.buckets) do
      assert.is_true(b.count >= prev, "buckets are cumulative")
      prev = b.count
      if b.le ~= "+Inf" and b.le < 0.0002 then assert.equals(0, b.count) end
      if b.le ~= "+Inf" and b.le >= 0.7 then assert.equals(2, b.count) end
    end
    -- the timestamp is the collection's instant (epoch seconds), and no batch is over 20 samples
    assert.is_true(math.abs(c.timestamp - S.now()) < 30)
    for _, r in ipairs(sink.requests()) do
      local n = select(2, r.body:gsub("\n", ""))
      assert.is_true(n <= 20, "a batch of " .. n)
    end
    -- the backend's state and its own series
    local b = agent:backend("lines")
    assert.equals("json_lines", b.plugin)
    assert.equals("ok", b.state)
    assert.equals(20, b.batch_size)
    assert.is_true(b.sent > 0)
    assert.truthy(b.last_success_at)
    local _, text = agent:get("/metrics")
    assert.truthy(text:match('beagle_backend_samples_total{backend="lines"} %d+'))
    assert.truthy(text:match('beagle_backend_sends_total{backend="lines",result="sent"} %d+'))
  end)

  it("buffers while the target is down and delivers everything, in order, when it is back", function()
    agent = S.start { plugins = plugin_dir(), config = S.calm_system .. ([[
settings { backend_backoff_initial = "0.05s", backend_backoff_max = "0.3s" }
backend "lines" { plugin = "json_lines", url = "%s/ingest", interval = "0.25s", batch_size = 500 }
]]):format(sink.url) }
    agent:statsd("probe.up:1|g")
    assert.truthy(S.wait(function() return #stamps(sink, "probe_up") >= 2 end, 10))
    sink.control { status = 503 }
    local down = S.wait(function()
      local b = agent:backend("lines")
      return b and b.buffered > 0 and b.retries >= 3 and b
    end, 10)
    assert.truthy(down, "nothing buffered while the target answered 503")
    assert.is_true(down.state == "failing" or down.state == "paused", down.state)
    assert.truthy(down.last_error:match("503"))
    S.sleep(1.5)
    sink.control { status = 200 }
    local before = agent:backend("lines").collected
    local b = S.wait(function()
      local x = agent:backend("lines")
      return x and x.sent >= before and x.state == "ok" and x
    end, 10)
    assert.truthy(b, "the buffer never drained after the target came back")
    assert.equals(0, b.dropped)
    -- every collection reached the target once, oldest first, with no gap of the outage
    local ts = stamps(sink, "probe_up")
    assert.is_true(#ts >= 8, #ts .. " samples")
    for i = 2, #ts do
      assert.is_true(ts[i] > ts[i - 1], "out of order or repeated at " .. i)
      assert.is_true(ts[i] - ts[i - 1] < 0.6, ("a gap of %.3fs at %d"):format(ts[i] - ts[i - 1], i))
    end
  end)

  it("drops the oldest past its buffer limit and counts every dropped sample", function()
    agent = S.start { plugins = plugin_dir(), config = S.calm_system .. ([[
settings { backend_backoff_initial = "0.05s", backend_backoff_max = "0.2s" }
backend "lines" { plugin = "json_lines", url = "%s/ingest", interval = "0.2s", batch_size = 1000, buffer_limit = 1000 }
]]):format(sink.url) }
    agent:statsd("probe.up:1|g")
    assert.truthy(S.wait(function() return #stamps(sink, "probe_up") >= 1 end, 10))
    sink.control { status = 500 }
    local b = S.wait(function()
      local x = agent:backend("lines")
      return x and x.dropped > 0 and x
    end, 20)
    assert.truthy(b, "nothing was dropped")
    assert.is_true(b.buffered <= 1000, "buffered " .. b.buffered)
    sink.control { status = 200 }
    local before = agent:backend("lines").collected
    b = S.wait(function()
      local x = agent:backend("lines")
      return x and x.sent + x.dropped >= before and x
    end, 10)
    assert.truthy(b, "what was buffered at the recovery never left")
    -- nothing lost silently: what was collected was sent, counted as dropped, or still waits
    assert.equals(b.collected, b.sent + b.dropped + b.buffered)
    local _, text = agent:get("/metrics")
    local n = tonumber(text:match('beagle_backend_dropped_samples_total{backend="lines",reason="dropped"} (%d+)'))
    assert.truthy(n, text:match("beagle_backend[^\n]*") or "no backend series")
    assert.is_true(n >= b.dropped - 1000 and n <= b.dropped, n .. " vs " .. b.dropped)
  end)

  it("with spill = true, what was buffered survives kill -9 and goes out after the restart", function()
    local data = S.tmpdir() .. "/data"
    local plugins = plugin_dir()
    local config = S.calm_system .. ([[
settings { backend_backoff_initial = "0.05s", backend_backoff_max = "0.3s" }
backend "lines" { plugin = "json_lines", url = "%s/ingest", interval = "0.2s", batch_size = 1000, spill = true }
]]):format(sink.url)
    sink.control { status = 503 }
    agent = S.start { plugins = plugins, config = config, args = { "--data", data } }
    agent:statsd("probe.mark:1|g")
    local before = S.wait(function()
      local b = agent:backend("lines")
      return b and b.buffered >= 300 and b
    end, 15)
    assert.truthy(before, "nothing buffered")
    local killed_at = S.now()
    agent:signal("KILL")
    assert.truthy(S.wait(function() return not agent:alive() end, 5))
    agent = nil
    sink.control { status = 200 }
    agent = S.start { plugins = plugins, config = config, args = { "--data", data } }
    -- the marks collected before the kill arrive, oldest first (the new agent has no probe_mark)
    local old = S.wait(function()
      local ts = stamps(sink, "probe_mark")
      return #ts >= 3 and ts
    end, 15)
    assert.truthy(old, "the spilled batches never went out")
    for i, t in ipairs(old) do
      assert.is_true(t < killed_at, "a mark from after the kill")
      if i > 1 then assert.is_true(t > old[i - 1], "out of order") end
    end
    local b = agent:backend("lines")
    assert.is_true(b.collected >= before.buffered, b.collected .. " < " .. before.buffered)
    assert.equals(0, b.dropped)
  end)

  it("calls the guide's send_counter, send_gauge and send_histogram per sample", function()
    local guide = ([[
return beagle.backend {
  name = "guide_shape",
  options = { url = "string" },
  send_counter = function(name, value, tags, ctx) return ctx.state.add("counter", name, value, tags) end,
  send_gauge = function(name, value, tags, ctx) return ctx.state.add("gauge", name, value, tags) end,
  send_histogram = function(name, h, tags, ctx) return ctx.state.add("histogram", name, h.count, tags) end,
  init = function(opts, ctx)
    ctx.state.add = function(kind, name, value, tags)
      if not name:match("^probe") then return true end
      local res, err = ctx.http.post(opts.url, ctx.json.encode({ name = name, type = kind, value = value,
        labels = tags, timestamp = 0 }) .. "\n")
      return ctx.response(res, err)
    end
  end,
}
]])
    agent = S.start { plugins = plugin_dir { guide_shape = guide }, config = S.calm_system .. ([[
backend "guide" { plugin = "guide_shape", url = "%s/ingest", interval = "0.3s" }
]]):format(sink.url) }
    agent:statsd("probe.hits:2|c|#k:v\nprobe.level:4|g\nprobe.time:5|ms")
    local got = S.wait(function()
      local by = {}
      for _, s in ipairs(received(sink)) do by[s.name] = s end
      if by.probe_hits and by.probe_level and by.probe_time_seconds then return by end
    end, 10)
    assert.truthy(got)
    assert.same({ "counter", 2, { k = "v" } }, { got.probe_hits.type, got.probe_hits.value, got.probe_hits.labels })
    assert.same({ "gauge", 4 }, { got.probe_level.type, got.probe_level.value })
    assert.same({ "histogram", 1 }, { got.probe_time_seconds.type, got.probe_time_seconds.value })
  end)

  it("counts the samples a format cannot carry", function()
    local enc = [[
return beagle.backend { name = "influx_only", options = {},
  send = function(batch, ctx)
    local body, skipped = ctx.encode.influx(batch)
    if not body then return nil, skipped end
    return true
  end }
]]
    local nan = [[
return beagle.check { name = "nan_maker", interval = "0.2s",
  run = function(opt, ctx) beagle.set_gauge("probe.nan", 0 / 0) return ctx.healthy() end }
]]
    local dir = plugin_dir { influx_only = enc }
    S.write(dir .. "/nan_maker.lua", nan)
    agent = S.start { plugins = dir, config = S.calm_system .. [[
check "nan" { plugin = "nan_maker" }
backend "inf" { plugin = "influx_only", interval = "0.3s" }
]] }
    local b = S.wait(function()
      local x = agent:backend("inf")
      return x and x.skipped > 0 and x
    end, 10)
    assert.truthy(b, "no skipped sample counted")
    local _, text = agent:get("/metrics")
    local n = tonumber(text:match('beagle_backend_skipped_samples_total{backend="inf"} (%d+)'))
    assert.truthy(n and n >= 1, text:match("beagle_backend_skipped[^\n]*"))
  end)

  it("refuses a backend it cannot build, with the file and line", function()
    local cfg = S.tmpdir() .. "/beagle.lua"
    S.write(cfg, S.calm_system .. [[

backend "nope" { plugin = "no_such_plugin", url = "x" }
backend "bad" { plugin = "json_lines", url = 5 }
backend "noplug" { url = "x" }
backend "big" { plugin = "json_lines", url = "x", batch_size = -1 }
]])
    local out, code = S.sh(("%q check -c %q --plugins %q"):format(S.bin, cfg, plugin_dir()))
    assert.are_not.equal(0, code)
    assert.truthy(out:find(at(4) .. ' backend "nope": backend plugin "no_such_plugin" is not loaded', 1, true), out)
    assert.truthy(out:find(at(5) .. ' backend "bad": option "url" = 5: must be a string', 1, true), out)
    assert.truthy(out:find(at(6) .. ' backend "noplug": plugin is required', 1, true), out)
    assert.truthy(out:find(at(7) .. ' backend "big": batch_size must be a whole number >= 0', 1, true), out)
  end)

  it("starts, changes and stops backends on reload", function()
    agent = S.start { plugins = plugin_dir(), config = S.calm_system }
    assert.same({}, (select(2, agent:get_json("/health/detailed"))).backends)
    S.write(agent.config, S.calm_system .. ([[
backend "lines" { plugin = "json_lines", url = "%s/ingest", interval = "0.2s" }
]]):format(sink.url))
    local st = agent:post("/-/reload", "")
    assert.equals(200, st)
    assert.truthy(S.wait(function() return #received(sink) > 0 end, 10), "the reloaded backend sent nothing")
    -- a bad change is refused whole, and the running backend keeps sending
    S.write(agent.config, S.calm_system .. [[
backend "lines" { plugin = "json_lines", url = 7 }
]])
    local code, body = agent:post("/-/reload", "")
    assert.equals(422, code)
    assert.truthy(body:find('backend \\"lines\\"') or body:find('backend "lines"', 1, true), body)
    local n = #sink.requests()
    assert.truthy(S.wait(function() return #sink.requests() > n end, 5))
    -- removed: it stops
    S.write(agent.config, S.calm_system)
    assert.equals(200, (agent:post("/-/reload", "")))
    S.sleep(0.3)
    n = #sink.requests()
    S.sleep(0.8)
    assert.equals(n, #sink.requests())
    assert.same({}, (select(2, agent:get_json("/health/detailed"))).backends)
  end)

  it("a send that loops, raises, keeps its batch or pokes it is that send's failure only", function()
    local evil = [[
return beagle.backend {
  name = "evil", options = { mode = "string", url = "string" },
  send = function(batch, ctx)
    local m = ctx.options.mode
    if m == "loop" then while true do end end
    if m == "raise" then error({ "a table" }) end
    if m == "keep" then
      if ctx.state.kept then
        local ok, err = pcall(ctx.state.kept.size, ctx.state.kept)
        ctx.http.post(ctx.options.url, ctx.json.encode({ name = "kept", type = "x", labels = {}, timestamp = 0,
          value = ok and 1 or 0, err = tostring(err) }) .. "\n")
      end
      ctx.state.kept = batch
      return true
    end
    if m == "poke" then
      local r = { getmetatable(batch), batch:sample(0), batch:sample(1e12), batch:sample(-1),
        pcall(ctx.encode.no_such_format, batch), pcall(setmetatable, batch, {}) }
      -- C methods and encoders given anything but a live batch raise, never read memory
      local refused = 0
      for _, f in ipairs { function() return batch.size({}) end, function() return batch.sample(ctx, 1) end,
        function() return ctx.encode.graphite({}, {}) end, function() return ctx.encode.graphite("batch") end,
        function() return batch.samples(42) end } do
        if not pcall(f) then refused = refused + 1 end
      end
      local bad_opts = { ctx.encode.graphite(batch, { labels = { [1] = 2 } }) }
      ctx.http.post(ctx.options.url, ctx.json.encode({ name = "poke", type = "x", labels = {}, timestamp = 0,
        value = 0, mt = tostring(r[1]), s0 = r[2] == nil, big = r[3] == nil, refused = refused,
        bad_opts = tostring(bad_opts[2]) }) .. "\n")
      return true
    end
  end,
}
]]
    agent = S.start { plugins = plugin_dir { evil = evil }, config = S.calm_system .. ([[
backend "loop" { plugin = "evil", mode = "loop", url = "%s/ingest", interval = "0.3s", timeout = "0.5s" }
backend "raise" { plugin = "evil", mode = "raise", url = "%s/ingest", interval = "0.3s" }
backend "keep" { plugin = "evil", mode = "keep", url = "%s/ingest", interval = "0.3s" }
backend "poke" { plugin = "evil", mode = "poke", url = "%s/ingest", interval = "0.3s" }
]]):format(sink.url, sink.url, sink.url, sink.url) }
    local got = S.wait(function()
      local by = {}
      for _, s in ipairs(received(sink)) do by[s.name] = s end
      if by.kept and by.poke then return by end
    end, 10)
    assert.truthy(got)
    assert.equals(0, got.kept.value)
    assert.truthy(got.kept.err:match("released"), got.kept.err)
    assert.equals("false", got.poke.mt)
    assert.is_true(got.poke.s0 and got.poke.big)
    assert.equals(5, got.poke.refused)
    assert.truthy(got.poke.bad_opts:match("must map names to strings"), got.poke.bad_opts)
    local loop = S.wait(function()
      local b = agent:backend("loop")
      return b and b.retries >= 2 and b
    end, 10)
    assert.truthy(loop, "the looping send was never ended")
    assert.truthy(loop.last_error:match("timeout") or loop.last_error:match("budget"), loop.last_error)
    local raise = agent:backend("raise")
    assert.truthy(raise.last_error:match("error object is not a string"), raise.last_error)
    -- the agent answers all along
    assert.equals(200, (agent:get("/health/live")))
  end)
end)
