-- The spans the agent makes by itself, read back through the otlp_traces backend by the OTLP
-- receiver (tests/otel/spans.lua): each check attempt ("check <name>"), each rule evaluation
-- round ("rules <file>") and each notification delivery attempt ("notify <channel>"), with their
-- attributes and status, and the plugin's own spans and ctx.http requests nested under them (the
-- run gets the span's traceparent). Alerts carry the trace id of the round that fired them, in
-- /alerts and in what the channel is sent; /health/detailed shows a check's last trace id.
local S = require "support"
local O = require "otel.spans"
local cjson = require "cjson"

-- a check that makes a span of its own, calls the sink inside it, and logs
local PROBE = [=[
return beagle.check { name = "probe", options = { url = { "string" } },
  run = function(opt, ctx)
    return beagle.span("probe.fetch", { ["probe.step"] = 1 }, function(span)
      local res = ctx.http.get(opt.url)
      beagle.log.info("probe fetched", { status = tostring(res and res.status) })
      span:set_attribute("probe.status", res and res.status or 0)
      return ctx.healthy("fine")
    end)
  end }
]=]

local FAILING = [=[
return beagle.check { name = "failing",
  run = function(opt, ctx) return ctx.unhealthy("broken on purpose at http://u:s3cret@db.local/") end }
]=]

local RULES = [[
route { channels = { "hook" }, group_wait = "0s", group_interval = "1s", repeat_interval = "1h" }
alert "trace_backlog" { metric = "trace.depth", condition = ">", threshold = 10, duration = "0s", every = "1s",
  severity = "critical", message = "depth {{ value }}" }
]]

-- a rule with code: it runs in the file's state, under the round's span
local CODED = [[
route { channels = { "log" } }
alert "coded_rule" { expr = function(q) return beagle.span("rule.inner", function() return 0 end) end,
  condition = ">", threshold = 1, every = "1s" }
]]

describe("automatic spans", function()
  local root, why, r, agent, sink
  setup(function() root, why = O.transformer() end)
  after_each(function()
    if agent then agent:stop() agent = nil end
    if r then r.stop() r = nil end
    if sink then sink.stop() sink = nil end
  end)

  it("a check attempt is a span, the parent of the plugin's spans and requests", function()
    if not root then pending("skipped: " .. why) return end
    r = O.receiver(root)
    sink = S.sink()
    local plugins = S.tmpdir()
    S.write(plugins .. "/probe.lua", PROBE)
    S.write(plugins .. "/failing.lua", FAILING)
    agent = S.start { plugins = plugins, env = { MONITORING_HEALTH_CHECK_RETRY_DELAY = "100ms" },
      config = S.calm_system .. O.config(r, 1) .. ([[
check "probe" { plugin = "probe", url = "%s/probed", interval = "1s" }
check "failing" { plugin = "failing", interval = "1s", retries = 1 }
]]):format(sink.url) }
    local check = r.find(function(s) return s.name == "check probe" end)
    assert.truthy(check, "no span of the check")
    assert.equals(1, check.kind) -- INTERNAL
    assert.equals("beagle", check.scope.name)
    assert.equals("probe", check.attrs["beagle.check.name"])
    assert.equals("probe", check.attrs["beagle.check.plugin"])
    assert.equals("healthy", check.attrs["beagle.check.status"])
    assert.equals(1, check.attrs["beagle.check.attempt"])
    assert.is_number(check.attrs["beagle.check.duration"])
    assert.is_true(check.status == nil or (check.status.code or 0) ~= 2)
    -- the plugin's span is its child, and the request a child of that
    local inner = r.find(function(s) return s.name == "probe.fetch" and s.traceId == check.traceId end)
    assert.truthy(inner, "the plugin's span is not in the check's trace")
    assert.equals(check.spanId, inner.parentSpanId)
    assert.truthy(inner.scope.name:match("^probe"), inner.scope.name) -- the plugin names its spans
    assert.equals(1, inner.attrs["probe.step"])
    assert.equals(200, inner.attrs["probe.status"])
    local client = r.find(function(s) return s.kind == 3 and s.parentSpanId == inner.spanId end)
    assert.truthy(client, "no CLIENT span of ctx.http.get under the plugin's span")
    -- the sink saw the request with that client span's traceparent
    local seen
    for _, q in ipairs(sink.requests()) do
      local tp = q.headers.traceparent
      if q.path == "/probed" and tp and tp:find(client.spanId, 1, true) then seen = tp end
    end
    assert.truthy(seen, "the request did not carry the client span's traceparent")
    assert.equals(check.traceId, (O.split(seen)))
    -- the plugin's log line inside carries the ids of its span
    assert.truthy(S.wait(function()
      return agent:logtext():find("trace_id=" .. check.traceId, 1, true)
    end, 5), "the plugin's log line has no trace id")

    -- an unhealthy attempt: status error, one span per attempt
    local bad = r.find(function(s) return s.name == "check failing" and s.attrs["beagle.check.attempt"] == 2 end)
    assert.truthy(bad, "no span of the retry")
    assert.equals(2, bad.status and bad.status.code)
    assert.equals("unhealthy", bad.attrs["beagle.check.status"])
    assert.truthy(tostring(bad.status.message):find("broken on purpose", 1, true))
    -- nothing leaves with a URL's credentials in it
    assert.falsy(tostring(bad.status.message):find("s3cret", 1, true), bad.status.message)
    assert.falsy(tostring(bad.attrs["beagle.check.message"]):find("s3cret", 1, true))
    assert.truthy(tostring(bad.attrs["beagle.check.message"]):find("broken on purpose", 1, true))
    local first = r.find(function(s) return s.name == "check failing" and s.attrs["beagle.check.attempt"] == 1 end)
    assert.truthy(first)
    assert.is_not.equal(first.traceId, bad.traceId) -- each attempt is a root of its own

    -- /health/detailed names the trace of a check's last attempt
    local _, d = agent:get_json("/health/detailed")
    local last
    for _, c in ipairs(d.checks) do if c.name == "probe" then last = c.trace_id end end
    assert.truthy(last and #last == 32, "no trace_id in /health/detailed")
    assert.truthy(S.wait(function()
      for _, s in ipairs(r.spans()) do if s.traceId == last and s.name == "check probe" then return true end end
    end, 5), "the trace id of /health/detailed is no exported check span's")
    assert.same({}, r.errors())
  end)

  it("a rule round and a delivery are spans; the alert carries the round's trace id", function()
    if not root then pending("skipped: " .. why) return end
    r = O.receiver(root)
    sink = S.sink()
    local rules, plugins = S.tmpdir(), S.tmpdir()
    S.write(rules .. "/backlog.lua", RULES)
    S.write(rules .. "/coded.lua", CODED)
    S.write(plugins .. "/feeder.lua", [=[
return beagle.check { name = "feeder", interval = "1h",
  run = function(opt, ctx) beagle.set_gauge("trace.depth", 50) return ctx.healthy() end }
]=])
    agent = S.start { plugins = plugins, args = { "--rules", rules },
      env = { MONITORING_METRICS_COLLECTION_INTERVAL = "0.1" },
      config = S.calm_system .. O.config(r, 1) .. ([[
channel "hook" { plugin = "webhook", url = "%s/hook" }
]]):format(sink.url) }
    local alert = S.wait(function()
      local _, o = agent:get_json("/alerts")
      for _, a in ipairs(o and o.alerts or {}) do
        if a.name == "trace_backlog" and a.state == "firing" then return a end
      end
    end, 10)
    assert.truthy(alert, "never fired: " .. agent:logtext():sub(-2000))
    assert.truthy(alert.traceId and #alert.traceId == 32, "no traceId in /alerts: " .. cjson.encode(alert))
    -- the round that fired it
    local round = r.find(function(s) return s.traceId == alert.traceId end)
    assert.truthy(round, "the alert's trace was not exported")
    assert.equals("rules backlog.lua", round.name)
    assert.is_nil(round.parentSpanId ~= nil and round.parentSpanId ~= "" and round.parentSpanId or nil)
    assert.equals("backlog.lua", round.attrs["beagle.rules.file"])
    assert.equals(1, round.attrs["beagle.rules.count"])
    assert.same({ "trace_backlog" }, round.attrs["beagle.rules.names"])
    assert.equals(1, round.attrs["beagle.rules.firing"])
    -- later rounds are spans too, with the alert still firing
    assert.truthy(r.find(function(s)
      return s.name == "rules backlog.lua" and s.traceId ~= alert.traceId and s.attrs["beagle.rules.firing"] == 1
    end), "no later round")

    -- the delivery: a span naming the alert and its trace, the webhook's request under it
    local notify = r.find(function(s) return s.name == "notify hook" end)
    assert.truthy(notify, "no delivery span")
    assert.equals("hook", notify.attrs["beagle.channel.name"])
    assert.equals("webhook", notify.attrs["beagle.channel.plugin"])
    assert.equals("firing", notify.attrs["beagle.notification.status"])
    assert.equals("sent", notify.attrs["beagle.notification.result"])
    assert.same({ "trace_backlog" }, notify.attrs["beagle.notification.alerts"])
    assert.same({ alert.traceId }, notify.attrs["beagle.alert.trace_ids"])
    local post = r.find(function(s) return s.kind == 3 and s.parentSpanId == notify.spanId end)
    assert.truthy(post, "no CLIENT span of the webhook's request under the delivery")
    local q = S.wait(function()
      for _, x in ipairs(sink.requests()) do if x.path == "/hook" then return x end end
    end, 5)
    assert.truthy(q, "the webhook was not called")
    assert.equals(notify.traceId, (O.split(q.headers.traceparent)))
    -- what the channel was sent names the trace of the round that fired the alert
    local body = cjson.decode(q.body)
    local a = body.alerts and body.alerts[1] or body
    assert.equals(alert.traceId, a.trace_id, q.body)
    -- the coded rule's round: the file's run, and the span its code makes, are under it
    local coded = r.find(function(s) return s.name == "rules coded.lua" end)
    assert.truthy(coded, "no round of the coded rule")
    assert.same({ "coded_rule" }, coded.attrs["beagle.rules.names"])
    assert.equals(0, coded.attrs["beagle.rules.firing"])
    assert.equals(0, coded.attrs["beagle.rules.failed"])
    local inner = r.find(function(s) return s.name == "rule.inner" and s.parentSpanId == coded.spanId end)
    assert.truthy(inner, "the rule's own span is not under its round")
    assert.equals(coded.traceId, inner.traceId)
    assert.same({}, r.errors())
  end)
end)
