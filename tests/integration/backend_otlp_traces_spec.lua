-- The otlp_traces and otlp_logs backends (plugins/backends/otlp_traces.lua, otlp_logs.lua) in a
-- running agent, posting to the receiver of tests/receivers/otlp_receiver.js, which reads every
-- body with OpenTelemetry's own schema (npm @opentelemetry/otlp-transformer 0.57.2's protobuf
-- root, installed at test time outside the tree as backend_otlp_spec.lua does): each body must
-- round-trip through fromObject, verify and toObject unchanged. The spans are made by a check
-- plugin with beagle.span: every attribute type, events, an exception, status, parent links;
-- its beagle.log lines inside a span are log records with that span's ids. Also gzip, the
-- resource from the settings, a collector that is down then back (nothing lost within the
-- buffer), one that is unreachable (the agent answers as before; past buffer_limit the oldest
-- spans are dropped and counted), and spill = true across kill -9.
local S = require "support"

-- "beagle.lua:N:" for line n of a config that follows S.calm_system as if it were two lines long
local function at(n) return ("beagle.lua:%d:"):format(n - 2 + select(2, S.calm_system:gsub("\n", ""))) end
local cjson = require "cjson"

local function receiver(root)
  local r = S.otlp_receiver(root)
  -- every span received with status 200, each with its scope and resource: { span, scope, resource, q }
  function r.spans()
    local t = {}
    for _, q in ipairs(r.requests()) do
      if q.status == 200 and q.path == "/v1/traces" then
        for _, rs in ipairs(q.body.resourceSpans) do
          for _, ss in ipairs(rs.scopeSpans) do
            for _, sp in ipairs(ss.spans) do t[#t + 1] = { span = sp, scope = ss.scope, resource = rs.resource, q = q } end
          end
        end
      end
    end
    return t
  end
  function r.logs()
    local t = {}
    for _, q in ipairs(r.requests()) do
      if q.status == 200 and q.path == "/v1/logs" then
        for _, rl in ipairs(q.body.resourceLogs) do
          for _, sl in ipairs(rl.scopeLogs) do
            for _, lr in ipairs(sl.logRecords) do t[#t + 1] = { rec = lr, scope = sl.scope, resource = rl.resource, q = q } end
          end
        end
      end
    end
    return t
  end
  function r.control(st)
    assert(S.http("POST", r.base .. "/_control", cjson.encode(st)) == 200)
  end
  return r
end

-- { key = value } of an OTLP attribute list, values as AnyValue tables
local function attrs(list)
  local t = {}
  for _, a in ipairs(list or {}) do t[a.key] = a.value end
  return t
end

local function by_name(spans, name)
  for _, x in ipairs(spans) do if x.span.name == name then return x end end
end

-- A check plugin that makes spans with beagle.span: "outer" with every attribute type, an
-- event, a nested "inner" that raises (caught), a log line inside outer; and one "tick" span a
-- run with seq = the run's number (and the instance's tag), to count what arrives.
local PLUGIN = [[
return beagle.check {
  name = "span_maker",
  description = "makes spans for the otlp_traces spec",
  interval = "0.1s",
  options = {
    tag = { "string", description = "set on every tick span" },
    ticks = { "integer", default = 1, description = "tick spans per run" },
    full = { "boolean", default = true, description = "also the outer/inner spans and the log line" },
  },
  run = function(opts, ctx)
    ctx.state.n = ctx.state.n or 0
    for _ = 1, opts.ticks do
      ctx.state.n = ctx.state.n + 1
      beagle.span("tick", { seq = ctx.state.n, tag = opts.tag }, function() end)
    end
    if opts.full and not ctx.state.done then
      ctx.state.done = true
      beagle.span("outer", { s = "text \"q\" \xc3\xa9", i = 42, d = 2.5, b = true, f = false,
        list = { "x", "y" }, nums = { 1, 2, 3 } }, function(span)
        span:add_event("milestone", { step = "one", n = 7 })
        span:set_attribute("late", "set inside")
        beagle.log.info("inside outer", { k = "v" })
        local ok = pcall(beagle.span, "inner", { depth = 2 }, function() error("boom inside") end)
        assert(not ok)
        span:set_status("ok")
      end)
    end
    return ctx.healthy("made spans")
  end,
}
]]

local function plugin_dir()
  local d = S.tmpdir()
  S.sh(("mkdir -p %q/checks"):format(d))
  S.write(d .. "/checks/span_maker.lua", PLUGIN)
  return d
end

-- the seq attributes of the tick spans with tag, received with status 200 (repeats kept)
local function seqs(r, tag)
  local t = {}
  for _, x in ipairs(r.spans()) do
    if x.span.name == "tick" then
      local a = attrs(x.span.attributes)
      if a.tag and a.tag.stringValue == tag then t[#t + 1] = tonumber(a.seq.intValue) end
    end
  end
  table.sort(t)
  return t
end

-- 1..n all there (duplicates allowed: a retry after a lost answer may repeat a batch)
local function whole(list)
  local seen, max = {}, 0
  for _, v in ipairs(list) do
    seen[v] = true
    if v > max then max = v end
  end
  for i = 1, max do if not seen[i] then return false, i end end
  return true, max
end

local function metric(agent, pattern)
  local _, text = agent:get("/metrics")
  return tonumber((text or ""):match(pattern))
end

-- A custom trace backend that reads its batch as tables and tries what a plugin should not be
-- able to do with it; it posts what it saw (JSON) to url.
local HOSTILE = [[
return beagle.backend {
  name = "span_probe", signal = "traces",
  options = { url = { "string", description = "where to post the report" } },
  send = function(batch, ctx)
    local rep = { kept_released = nil }
    if ctx.state.kept then
      local ok, err = pcall(ctx.state.kept.size, ctx.state.kept)
      rep.kept_released = not ok and tostring(err):find("released", 1, true) ~= nil
    end
    ctx.state.kept = batch
    rep.signal, rep.ctx_signal = batch:signal(), ctx.signal
    rep.size = batch:size()
    rep.metatable = tostring(getmetatable(batch))
    rep.foreign = not pcall(batch.size, {})
    rep.zero, rep.frac, rep.past = batch:span(0) == nil, batch:span(1.5) == nil, batch:span(batch:size() + 1) == nil
    local _, ferr = ctx.encode.otlp_traces(batch, { flavor = "zstd" })
    rep.bad_flavor = tostring(ferr)
    rep.as_logs = not pcall(ctx.encode.otlp_logs, batch)
    rep.as_metrics = not pcall(ctx.encode.otlp, batch)
    local body = ctx.encode.otlp_traces(batch, { resource = { ["service.name"] = "probe" } })
    rep.body_ok = type(body) == "string" and body:find('"resourceSpans"', 1, true) ~= nil
      and body:find('"probe"', 1, true) ~= nil
    rep.resource = ctx.resource
    rep.spans = {}
    for sp in batch:spans() do
      if sp.name == "outer" or sp.name == "inner" then rep.spans[#rep.spans + 1] = sp end
    end
    local one = batch:span(1)
    rep.first_is_table = type(one) == "table" and type(one.trace_id) == "string"
    local res, err = ctx.http.post(ctx.options.url, ctx.json.encode(rep), { headers = { ["Content-Type"] = "application/json" } })
    return ctx.response(res, err)
  end,
}
]]

describe("otlp_traces and otlp_logs backends", function()
  local r, agent, root, why
  setup(function() root, why = S.otlp_transformer() end)
  before_each(function() if root then r = receiver(root) end end)
  after_each(function()
    if agent then agent:stop() agent = nil end
    if r then r.stop() r = nil end
  end)

  it("spans and log records that OpenTelemetry's schema reads back, every field", function()
    if not root then pending("skipped: " .. why) return end
    agent = S.start { plugins = plugin_dir(), config = S.calm_system .. ([[
settings { trace_sampling_rate = 1, trace_export_interval = "0.2s", service_name = "shop-agent",
  service_version = "9.9.9", logfire_environment = "staging" }
check "spans" { plugin = "span_maker", tag = "a" }
backend "traces" { plugin = "otlp_traces", url = "%s/v1/traces", resource = { ["service.namespace"] = "shop" } }
backend "logs" { plugin = "otlp_logs", url = "%s/v1/logs" }
backend "metrics" { plugin = "otlp_metrics", url = "%s/v1/metrics", interval = "0.3s" }
backend "traces_b" { plugin = "otlp_traces", url = "%s/v1/traces" }
]]):format(r.base, r.base, r.base, r.base) }
    local outer = S.wait(function() return by_name(r.spans(), "outer") end, 10)
    assert.truthy(outer, "no outer span arrived")
    local inner = S.wait(function() return by_name(r.spans(), "inner") end, 5)
    assert.truthy(inner, "no inner span arrived")

    -- every request read back unchanged through the schema
    for _, q in ipairs(r.requests()) do
      assert.is_true(q.error == cjson.null, tostring(q.error))
      assert.equals("application/json", q.content_type)
    end

    -- both trace backends got every span (one batch shared by the two), each with its resource
    local copies = S.wait(function()
      local t = {}
      for _, x in ipairs(r.spans()) do
        if x.span.name == "outer" then t[#t + 1] = x end
      end
      return #t >= 2 and t
    end, 10)
    assert.truthy(copies, "outer reached one backend only")
    assert.equals(2, #copies)
    assert.equals(copies[1].span.spanId, copies[2].span.spanId)
    local ns = {}
    for _, x in ipairs(copies) do
      local ra = attrs(x.resource.attributes)
      ns[#ns + 1] = ra["service.namespace"] and ra["service.namespace"].stringValue or "none"
    end
    table.sort(ns)
    assert.same({ "none", "shop" }, ns)
    for _, x in ipairs(copies) do
      if attrs(x.resource.attributes)["service.namespace"] then outer = x end
    end

    -- the resource: the settings', the option's over them
    local res = attrs(outer.resource.attributes)
    assert.equals("shop-agent", res["service.name"].stringValue)
    assert.equals("9.9.9", res["service.version"].stringValue)
    assert.equals("staging", res["deployment.environment"].stringValue)
    assert.equals("shop", res["service.namespace"].stringValue)
    assert.truthy(res["host.name"] and #res["host.name"].stringValue > 0)
    -- the plugin's own scope: its name, as a config names it
    assert.equals("span_maker", outer.scope.name)

    local o, i = outer.span, inner.span
    assert.truthy(o.traceId:match("^%x+$") and #o.traceId == 32 and o.traceId == o.traceId:lower())
    assert.truthy(#o.spanId == 16)
    assert.equals(o.traceId, i.traceId)
    assert.equals(o.spanId, i.parentSpanId)
    assert.equals(1, o.kind) -- internal
    assert.equals(1, o.flags) -- sampled
    assert.truthy(o.startTimeUnixNano:match("^%d+$") and o.endTimeUnixNano:match("^%d+$"))
    assert.is_true(tonumber(o.startTimeUnixNano) <= tonumber(o.endTimeUnixNano))
    assert.is_true(math.abs(tonumber(o.startTimeUnixNano) / 1e9 - S.now()) < 60)
    assert.is_true(tonumber(i.startTimeUnixNano) >= tonumber(o.startTimeUnixNano))
    assert.is_true(tonumber(i.endTimeUnixNano) <= tonumber(o.endTimeUnixNano))
    local a = attrs(o.attributes)
    assert.same({ stringValue = "text \"q\" \xc3\xa9" }, a.s)
    assert.same({ intValue = "42" }, a.i)
    assert.same({ doubleValue = 2.5 }, a.d)
    assert.same({ boolValue = true }, a.b)
    assert.same({ boolValue = false }, a.f)
    assert.same({ arrayValue = { values = { { stringValue = "x" }, { stringValue = "y" } } } }, a.list)
    assert.same({ arrayValue = { values = { { intValue = "1" }, { intValue = "2" }, { intValue = "3" } } } }, a.nums)
    assert.same({ stringValue = "set inside" }, a.late)
    assert.equals(1, #o.events)
    assert.equals("milestone", o.events[1].name)
    assert.same({ step = { stringValue = "one" }, n = { intValue = "7" } }, attrs(o.events[1].attributes))
    assert.same({ code = 1 }, o.status)
    -- the error inside inner: status error, an exception event with the Lua traceback
    assert.equals(2, i.status.code)
    assert.truthy(tostring(i.status.message):find("boom inside", 1, true))
    local ex = i.events and i.events[1]
    assert.truthy(ex and ex.name == "exception", "an exception event")
    local ea = attrs(ex.attributes)
    assert.truthy(ea["exception.message"].stringValue:find("boom inside", 1, true))
    assert.truthy(ea["exception.stacktrace"].stringValue:find("traceback", 1, true))
    assert.same({ intValue = "2" }, attrs(i.attributes).depth)

    -- the log line written inside outer: a record with outer's ids
    local rec = S.wait(function()
      for _, x in ipairs(r.logs()) do
        if x.rec.body and x.rec.body.stringValue and x.rec.body.stringValue:find("inside outer", 1, true) then return x end
      end
    end, 10)
    assert.truthy(rec, "the log line never arrived")
    assert.equals(o.traceId, rec.rec.traceId)
    assert.equals(o.spanId, rec.rec.spanId)
    assert.equals(9, rec.rec.severityNumber)
    assert.equals("INFO", rec.rec.severityText)
    assert.truthy(rec.rec.timeUnixNano:match("^%d+$"))
    assert.equals("shop-agent", attrs(rec.resource.attributes)["service.name"].stringValue)
    assert.equals("v", attrs(rec.rec.attributes).k.stringValue)

    -- a metric backend's send is a span, its request a child of it; the trace and log sends
    -- made no spans of their own (neither a send span nor their requests' client spans)
    local send = S.wait(function() return by_name(r.spans(), "backend metrics") end, 10)
    assert.truthy(send, "no span of the metric backend's send")
    local sa = attrs(send.span.attributes)
    assert.equals("otlp_metrics", sa["beagle.backend.plugin"].stringValue)
    assert.is_true(tonumber(sa["beagle.backend.samples"].intValue) > 0)
    assert.equals("beagle", send.scope.name)
    local children = 0
    for _, x in ipairs(r.spans()) do
      assert.is_nil(x.span.name:match("^backend traces") or x.span.name:match("^backend logs"),
        "a trace or log send made a span: " .. x.span.name)
      if x.span.parentSpanId == send.span.spanId then
        children = children + 1
        local u = attrs(x.span.attributes)["url.full"] or attrs(x.span.attributes)["http.url"]
        assert.truthy(u and u.stringValue:find("/v1/metrics", 1, true), "the child is the metrics request")
      end
      local u = attrs(x.span.attributes)["url.full"] or attrs(x.span.attributes)["http.url"]
      if u then assert.is_nil(u.stringValue:find("/v1/traces", 1, true) or u.stringValue:find("/v1/logs", 1, true),
        "an export's request made a span") end
    end
    assert.is_true(children >= 1, "the metric send's request is not its child")
    assert.truthy(S.wait(function() return (metric(agent, 'beagle_backend_samples_total{backend="traces"} (%d+)') or 0) > 2 end, 5))
    assert.truthy((metric(agent, "beagle_trace_spans_sampled_total (%d+)") or 0) > 2)
    assert.truthy(metric(agent, "beagle_trace_spans_buffered (%d+)"))
    local b = agent:backend("traces")
    assert.equals("traces", b.signal)
    assert.equals("ok", b.state)
    assert.is_true(b.sent > 2)
    assert.equals("number", type(b.tracer_buffered))
    assert.equals(0, b.tracer_dropped)
    assert.is_nil(agent:backend("metrics").tracer_buffered)
    assert.equals("logs", agent:backend("logs").signal)
    assert.equals("metrics", agent:backend("metrics").signal)
  end)

  it("a custom trace backend reads spans as tables and reaches nothing else of its batch", function()
    local sink = S.sink()
    local dir = plugin_dir()
    S.sh(("mkdir -p %q/backends"):format(dir))
    S.write(dir .. "/backends/span_probe.lua", HOSTILE)
    agent = S.start { plugins = dir, config = S.calm_system .. ([[
settings { trace_sampling_rate = 1, trace_export_interval = "0.2s", service_name = "probe-agent" }
check "spans" { plugin = "span_maker", tag = "p" }
backend "probe" { plugin = "span_probe", url = "%s/report" }
]]):format(sink.url) }
    local ok, reps = pcall(function()
      return S.wait(function()
        local list, outer, later = {}, nil, nil
        for _, q in ipairs(sink.requests()) do
          local rep = cjson.decode(q.body)
          list[#list + 1] = rep
          for _, sp in ipairs(rep.spans) do if sp.name == "outer" then outer = sp end end
          if #list > 1 then later = rep end
        end
        return outer and later and { list = list, later = later }
      end, 10)
    end)
    sink.stop()
    assert.is_true(ok, tostring(reps))
    assert.truthy(reps, "the probe never reported")
    local first = reps.list[1]
    assert.equals("traces", first.signal)
    assert.equals("traces", first.ctx_signal)
    assert.is_true(first.size > 0)
    assert.equals("false", first.metatable)
    assert.is_true(first.foreign)
    assert.is_true(first.zero and first.frac and first.past)
    assert.truthy(first.bad_flavor:find("flavor", 1, true))
    assert.is_true(first.as_logs)
    assert.is_true(first.as_metrics)
    assert.is_true(first.body_ok)
    assert.is_true(first.first_is_table)
    assert.equals("probe-agent", first.resource["service.name"])
    -- a batch kept past its send is released
    assert.is_true(reps.later.kept_released)
    local outer, inner
    for _, rep in ipairs(reps.list) do
      for _, sp in ipairs(rep.spans) do
        if sp.name == "outer" then outer = sp end
        if sp.name == "inner" then inner = sp end
      end
    end
    assert.equals(32, #outer.trace_id)
    assert.equals("internal", outer.kind)
    assert.equals("ok", outer.status)
    assert.equals(42, outer.attributes.i)
    assert.same({ "x", "y" }, outer.attributes.list)
    assert.equals("milestone", outer.events[1].name)
    assert.equals(7, outer.events[1].attributes.n)
    assert.truthy(outer.start_time_ns:match("^%d+$"))
    assert.is_true(outer.duration >= 0 and math.abs(outer.start_time - S.now()) < 60)
    if inner then
      assert.equals(outer.span_id, inner.parent_span_id)
      assert.equals("error", inner.status)
      assert.equals("exception", inner.events[1].name)
    end
  end)

  it("refuses what a trace or log backend cannot be, with the file and line", function()
    local dir = S.tmpdir()
    S.sh(("mkdir -p %q/backends"):format(dir))
    S.write(dir .. "/backends/odd_signal.lua", [[
return beagle.backend { name = "odd_signal", signal = "spans", send = function() return true end }
]])
    S.write(dir .. "/backends/two_kinds.lua", [[
return beagle.backend { name = "two_kinds", signal = { "metrics", "traces" }, send = function() return true end }
]])
    S.write(dir .. "/backends/no_send.lua", [[
return beagle.backend { name = "no_send", signal = "traces", send_counter = function() return true end }
]])
    local cfg = S.tmpdir() .. "/beagle.lua"
    S.write(cfg, S.calm_system .. [[

backend "t" { plugin = "otlp_traces", interval = "1s" }
backend "l" { plugin = "otlp_logs", batch_size = 10 }
backend "odd" { plugin = "odd_signal" }
backend "two" { plugin = "two_kinds" }
]])
    local out, code = S.sh(("%q check -c %q --plugins %q"):format(S.bin, cfg, dir))
    assert.are_not.equal(0, code)
    assert.truthy(out:find(at(4) .. ' backend "t": interval does not apply to a traces backend', 1, true), out)
    assert.truthy(out:find(at(5) .. ' backend "l": batch_size does not apply to a logs backend', 1, true), out)
    assert.truthy(out:find(at(6) .. ' backend "odd": backend plugin "odd_signal": signal must be', 1, true), out)
    assert.truthy(out:find(at(7) .. ' backend "two": backend plugin "two_kinds": signal must be', 1, true), out)
    -- a trace backend with the guide's per-sample methods but no send: its sends fail, said why
    local agent2 = S.start { plugins = dir, config = S.calm_system .. [[
settings { trace_sampling_rate = 1, trace_export_interval = "0.1s" }
backend "ns" { plugin = "no_send" }
]] }
    local b = S.wait(function()
      local x = agent2:backend("ns")
      return x and x.last_error and x
    end, 10)
    agent2:stop()
    assert.truthy(b, "no failed send")
    assert.truthy(b.last_error:find("a traces backend needs send", 1, true), b.last_error)
  end)

  it("gzip; an outage then recovery loses nothing within the buffer", function()
    if not root then pending("skipped: " .. why) return end
    agent = S.start { plugins = plugin_dir(), config = S.calm_system .. ([[
settings { trace_sampling_rate = 1, trace_export_interval = "0.2s", backend_backoff_initial = "0.05s",
  backend_backoff_max = "0.3s" }
check "spans" { plugin = "span_maker", tag = "g", full = false }
backend "traces" { plugin = "otlp_traces", url = "%s/v1/traces", gzip = true }
]]):format(r.base) }
    assert.truthy(S.wait(function() return #seqs(r, "g") >= 3 end, 10), "no spans")
    local q = r.requests()[1]
    assert.equals("gzip", q.encoding)
    assert.is_true(q.error == cjson.null, tostring(q.error))

    r.control { status = 503 }
    assert.truthy(S.wait(function()
      local n = 0
      for _, x in ipairs(r.requests()) do if x.status == 503 then n = n + 1 end end
      return n >= 3
    end, 10), "fewer than three refused sends")
    local b = agent:backend("traces")
    assert.is_true(b.state == "failing" or b.state == "paused", b.state)
    -- the agent answers as before while its collector is down
    local t0 = S.now()
    assert.equals(200, (agent:get("/health/live")))
    assert.is_true(S.now() - t0 < 1)
    r.control { status = 200 }
    S.sleep(0.5)
    local max = S.wait(function()
      local fine, m = whole(seqs(r, "g"))
      if fine and m >= 10 and agent:backend("traces").buffered == 0 then return m end
    end, 15)
    assert.truthy(max, "a gap after the outage")
    assert.equals(0, metric(agent, 'beagle_backend_dropped_samples_total{backend="traces",reason="dropped"} (%d+)') or 0)
  end)

  it("an unreachable collector: the agent runs on, the oldest spans past buffer_limit dropped and counted", function()
    if not root then pending("skipped: " .. why) return end
    local dead = S.free_port()
    agent = S.start { plugins = plugin_dir(), config = S.calm_system .. ([[
settings { trace_sampling_rate = 1, trace_export_interval = "0.1s", backend_backoff_initial = "0.05s",
  backend_backoff_max = "0.2s" }
check "spans" { plugin = "span_maker", tag = "u", ticks = 20, full = false }
backend "traces" { plugin = "otlp_traces", url = "http://127.0.0.1:%d/v1/traces", buffer_limit = 50, timeout = "1s" }
]]):format(dead) }
    local dropped = S.wait(function()
      local n = metric(agent, 'beagle_backend_dropped_samples_total{backend="traces",reason="dropped"} (%d+)')
      return n and n > 0 and n
    end, 10)
    assert.truthy(dropped, "nothing counted as dropped")
    local b = agent:backend("traces")
    assert.is_true(b.buffered <= 50 + 20, "buffered " .. tostring(b.buffered))
    assert.is_true(b.dropped > 0)
    -- every span taken from the tracer is sent, buffered or dropped
    assert.equals(b.collected, b.sent + b.buffered + b.dropped)
    local t0 = S.now()
    assert.equals(200, (agent:get("/health/live")))
    assert.is_true(S.now() - t0 < 1)
    assert.truthy(agent:logtext():find("backend buffer full", 1, true))
  end)

  it("spill = true: spans buffered for a collector that is down survive kill -9", function()
    if not root then pending("skipped: " .. why) return end
    r.control { status = 503 }
    local data = S.tmpdir()
    local function config(tag)
      return S.calm_system .. ([[
settings { trace_sampling_rate = 1, trace_export_interval = "0.1s", backend_backoff_initial = "0.05s",
  backend_backoff_max = "0.2s" }
check "spans" { plugin = "span_maker", tag = "%s", full = false }
backend "traces" { plugin = "otlp_traces", url = "%s/v1/traces", spill = true }
]]):format(tag, r.base)
    end
    agent = S.start { plugins = plugin_dir(), config = config("k1"), args = { "--data", data } }
    -- the highest tick the collector refused: everything up to it waits in the buffer
    local function refused()
      local m = 0
      for _, q in ipairs(r.requests()) do
        if q.status == 503 and q.body and q.body.resourceSpans then
          for _, rs in ipairs(q.body.resourceSpans) do
            for _, ss in ipairs(rs.scopeSpans) do
              for _, sp in ipairs(ss.spans) do
                local a = attrs(sp.attributes)
                if sp.name == "tick" and a.tag.stringValue == "k1" then m = math.max(m, tonumber(a.seq.intValue)) end
              end
            end
          end
        end
      end
      return m
    end
    assert.truthy(S.wait(function() return refused() >= 5 end, 10), "the collector refused too few")
    local want = refused()
    agent:signal("KILL")
    S.wait(function() return not agent:alive() end, 5)
    agent.pid = nil
    assert.same({}, seqs(r, "k1")) -- nothing of the first agent was taken
    r.control { status = 200 }
    agent = S.start { plugins = plugin_dir(), config = config("k2"), args = { "--data", data } }
    local max = S.wait(function()
      local fine, m = whole(seqs(r, "k1"))
      if fine and m >= want then return m end
    end, 15)
    assert.truthy(max, "the spilled spans of the first agent did not all arrive")
    assert.truthy(agent:logtext():find("queue resumed", 1, true))
  end)
end)
