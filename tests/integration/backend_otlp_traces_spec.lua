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
local cjson = require "cjson"

local RECEIVER = S.src .. "/tests/receivers/otlp_receiver.js"
local NPM_DIR = os.getenv("BEAGLE_OTLP_NPM_DIR") or "/tmp/beagle-npm-otlp-transformer"
local ROOT = NPM_DIR .. "/node_modules/@opentelemetry/otlp-transformer/build/src/generated/root.js"

local function transformer()
  if S.read(ROOT) then return ROOT end
  local out, code = S.sh(("command -v node >/dev/null && command -v npm >/dev/null && mkdir -p %q && "
    .. "timeout 300 npm install --prefix %q --no-audit --no-fund --silent "
    .. "@opentelemetry/otlp-transformer@0.57.2 @opentelemetry/api@1.9.0 2>&1"):format(NPM_DIR, NPM_DIR))
  if S.read(ROOT) then return ROOT end
  return nil, ("npm could not install @opentelemetry/otlp-transformer (exit %s): %s"):format(tostring(code), out)
end

local function receiver(root)
  local out = S.tmpdir() .. "/requests.jsonl"
  local svc, port = S.receiver(("exec node %q %q %q"):format(RECEIVER, out, root), "otlp receiver")
  local r = { port = port, svc = svc, base = ("http://127.0.0.1:%d"):format(port) }
  function r.requests() return S.jsonl(out) end
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
  function r.stop() svc.stop() end
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

describe("otlp_traces and otlp_logs backends", function()
  local r, agent, root, why
  setup(function() root, why = transformer() end)
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
]]):format(r.base, r.base) }
    local outer = S.wait(function() return by_name(r.spans(), "outer") end, 10)
    assert.truthy(outer, "no outer span arrived")
    local inner = S.wait(function() return by_name(r.spans(), "inner") end, 5)
    assert.truthy(inner, "no inner span arrived")

    -- every request read back unchanged through the schema
    for _, q in ipairs(r.requests()) do
      assert.is_true(q.error == cjson.null, tostring(q.error))
      assert.equals("application/json", q.content_type)
    end

    -- the resource: the settings', the option's over them
    local res = attrs(outer.resource.attributes)
    assert.equals("shop-agent", res["service.name"].stringValue)
    assert.equals("9.9.9", res["service.version"].stringValue)
    assert.equals("staging", res["deployment.environment"].stringValue)
    assert.equals("shop", res["service.namespace"].stringValue)
    assert.truthy(res["host.name"] and #res["host.name"].stringValue > 0)
    -- the plugin's own scope (its name; the file name as it was while agent.trace named the
    -- scope after the file)
    assert.truthy(outer.scope.name:match("^span_maker"), outer.scope.name)

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

    -- the sends made no spans of their own (no span of the exporter's requests), and what was
    -- sent is counted; the tracer's counters are series
    for _, x in ipairs(r.spans()) do
      assert.is_nil(x.span.name:match("^POST"), "an export made a span: " .. x.span.name)
    end
    assert.truthy(S.wait(function() return (metric(agent, 'beagle_backend_samples_total{backend="traces"} (%d+)') or 0) > 2 end, 5))
    assert.truthy((metric(agent, "beagle_trace_spans_sampled_total (%d+)") or 0) > 2)
    assert.truthy(metric(agent, "beagle_trace_spans_buffered (%d+)"))
    local b = agent:backend("traces")
    assert.equals("traces", b.signal)
    assert.equals("ok", b.state)
    assert.is_true(b.sent > 2)
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
