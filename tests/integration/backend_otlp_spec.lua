-- The otlp_metrics backend (plugins/backends/otlp_metrics.lua) in a running agent, posting to
-- the receiver of tests/receivers/otlp_receiver.js, which reads every body with OpenTelemetry's
-- own schema: the protobufjs root generated from the OTLP protos that npm
-- @opentelemetry/otlp-transformer ships (0.57.2, the last version that ships it), installed at
-- test time into a cache outside the tree (BEAGLE_OTLP_NPM_DIR, default
-- /tmp/beagle-npm-otlp-transformer). The body must round-trip through fromObject, verify and
-- toObject unchanged (int64 as strings, enums as numbers, no unknown field); then every field
-- of the sums, gauges and histograms is checked here. Also gzip, a partial success (logged, not
-- retried), a 503 retried after Retry-After, and a 400 that is final and counted.
local S = require "support"
local cjson = require "cjson"

local function receiver(root)
  local r = S.otlp_receiver(root)
  r.url = r.base .. "/v1/metrics"
  -- every (metric, its request) received with status 200 of that name, in arrival order
  function r.metrics(name)
    local t = {}
    for _, q in ipairs(r.requests()) do
      if q.status == 200 then
        for _, m in ipairs(q.body.resourceMetrics[1].scopeMetrics[1].metrics) do
          if m.name == name then t[#t + 1] = { m = m, q = q } end
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

local function attrs(list)
  local t = {}
  for _, a in ipairs(list or {}) do
    assert.same({ "key", "value" }, (function()
      local ks = {}
      for k in pairs(a) do ks[#ks + 1] = k end
      table.sort(ks)
      return ks
    end)())
    t[a.key] = a.value.stringValue
  end
  return t
end

local function post_series(agent, t)
  local st, out = agent:post("/metrics/custom", cjson.encode(t), { "Content-Type: application/json" })
  assert(st == 200 or st == 201 or st == 202, ("POST /metrics/custom: %s %s"):format(st, out))
end

local function ns_now() return S.now() * 1e9 end

describe("otlp_metrics backend", function()
  local r, agent, root, why
  setup(function() root, why = S.otlp_transformer() end)
  before_each(function() if root then r = receiver(root) end end)
  after_each(function()
    if agent then agent:stop() agent = nil end
    if r then r.stop() r = nil end
  end)

  it("sums, gauges and histograms that OpenTelemetry's schema reads back, every field", function()
    if not root then pending("skipped: " .. why) return end
    agent = S.start { config = S.calm_system .. ([[
backend "otel" { plugin = "otlp_metrics", url = "%s", prefix = "bg.", labels = { env = "test", zone = "a" },
  resource = { ["service.name"] = "api", ["host.name"] = "web-1" }, interval = "0.3s" }
]]):format(r.url) }
    post_series(agent, {
      { name = "probe.requests", type = "counter", value = 3,
        tags = { path = "/a b,c\"d\\e", u = "h\xc3\xa9llo \xe2\x9c\x93", zone = "mine" } },
      { name = "probe.depth", type = "gauge", value = -2.5 },
      { name = "probe.latency", type = "histogram", value = 0.2, tags = { ep = "/x" } },
      { name = "probe.latency", type = "histogram", value = 7, tags = { ep = "/x" } },
    })
    local c = S.wait(function() return r.metrics("bg.probe_requests")[1] end, 10)
    assert.truthy(c, "probe.requests never arrived")
    -- the request around it
    local q = c.q
    assert.equals("application/json", q.content_type)
    assert.equals(cjson.null, q.encoding)
    assert.equals(1, #q.body.resourceMetrics)
    local rm = q.body.resourceMetrics[1]
    assert.same({ ["service.name"] = "api", ["host.name"] = "web-1" }, attrs(rm.resource.attributes))
    assert.equals(1, #rm.scopeMetrics)
    local version = S.sh(("%q --version"):format(S.bin)):match("beagle (%S+)")
    assert.same({ name = "beagle", version = version }, rm.scopeMetrics[1].scope)

    -- the counter: a cumulative monotonic sum since the series' creation
    local m = c.m
    assert.is_nil(m.gauge)
    assert.is_nil(m.histogram)
    assert.equals(2, m.sum.aggregationTemporality)
    assert.equals(true, m.sum.isMonotonic)
    assert.equals(1, #m.sum.dataPoints)
    local p = m.sum.dataPoints[1]
    assert.same({ env = "test", path = "/a b,c\"d\\e", u = "h\xc3\xa9llo \xe2\x9c\x93", zone = "mine" },
      attrs(p.attributes))
    assert.equals(3, p.asDouble)
    assert.truthy(p.startTimeUnixNano:match("^%d+$") and p.timeUnixNano:match("^%d+$"))
    assert.is_true(tonumber(p.startTimeUnixNano) <= tonumber(p.timeUnixNano))
    assert.is_true(math.abs(tonumber(p.timeUnixNano) - ns_now()) < 30e9)
    local ks = {}
    for k in pairs(p) do ks[#ks + 1] = k end
    table.sort(ks)
    assert.same({ "asDouble", "attributes", "startTimeUnixNano", "timeUnixNano" }, ks)
    -- cumulative: the total, not the increase, and the same start time
    post_series(agent, { { name = "probe.requests", type = "counter", value = 2,
      tags = { path = "/a b,c\"d\\e", u = "h\xc3\xa9llo \xe2\x9c\x93", zone = "mine" } } })
    local later = S.wait(function()
      for _, x in ipairs(r.metrics("bg.probe_requests")) do
        if x.m.sum.dataPoints[1].asDouble == 5 then return x.m.sum.dataPoints[1] end
      end
    end, 10)
    assert.truthy(later, "never 5")
    assert.equals(p.startTimeUnixNano, later.startTimeUnixNano)

    -- the gauge: no start time
    local g = r.metrics("bg.probe_depth")[1].m
    assert.is_nil(g.sum)
    assert.equals(1, #g.gauge.dataPoints)
    local gp = g.gauge.dataPoints[1]
    assert.same({ env = "test", zone = "a" }, attrs(gp.attributes))
    assert.equals(-2.5, gp.asDouble)
    assert.is_nil(gp.startTimeUnixNano)

    -- the histogram: counts as strings, per bucket, the last the +Inf bucket
    local h = r.metrics("bg.probe_latency")[1].m
    assert.equals(2, h.histogram.aggregationTemporality)
    local hp = h.histogram.dataPoints[1]
    assert.same({ env = "test", ep = "/x", zone = "a" }, attrs(hp.attributes))
    assert.equals("2", hp.count)
    assert.near(7.2, hp.sum, 1e-9)
    assert.equals(#hp.explicitBounds + 1, #hp.bucketCounts)
    local total, prev = 0, -math.huge
    for i, n in ipairs(hp.bucketCounts) do
      assert.equals("string", type(n))
      local lo, hi = hp.explicitBounds[i - 1] or -math.huge, hp.explicitBounds[i] or math.huge
      assert.is_true(hi > prev)
      prev = hi
      local want = ((0.2 > lo and 0.2 <= hi) and 1 or 0) + ((7 > lo and 7 <= hi) and 1 or 0)
      assert.equals(want, tonumber(n))
      total = total + tonumber(n)
    end
    assert.equals(2, total)
    assert.truthy(hp.startTimeUnixNano:match("^%d+$"))

    -- every request read back unchanged through the schema; the agent's own series came too
    assert.truthy(S.wait(function() return #r.requests() >= 3 end, 10))
    local n = 0
    for _, x in ipairs(r.requests()) do
      assert.is_true(x.error == cjson.null, tostring(x.error))
      assert.equals(200, x.status)
      n = n + 1
    end
    assert.is_true(n >= 3)
    local own = 0
    for _, x in ipairs(r.requests()[1].body.resourceMetrics[1].scopeMetrics[1].metrics) do
      if x.name:match("^bg%.beagle_") then own = own + 1 end
    end
    assert.is_true(own > 3, "the agent's own series")
  end)

  it("gzip; partial success logged, not retried; 503 retried after Retry-After; 400 final", function()
    if not root then pending("skipped: " .. why) return end
    agent = S.start { config = S.calm_system .. ([[
settings { backend_backoff_initial = "0.05s", backend_backoff_max = "0.3s" }
backend "otel" { plugin = "otlp_metrics", url = "%s", gzip = true, interval = "0.3s", batch_size = 5000 }
]]):format(r.url) }
    assert.truthy(S.wait(function() return #r.requests() > 0 end, 10), "nothing received")
    local q = r.requests()[1]
    assert.equals("gzip", q.encoding)
    assert.is_true(q.error == cjson.null, tostring(q.error))
    -- the default resource
    assert.same({ ["service.name"] = "beagle" }, attrs(q.body.resourceMetrics[1].resource.attributes))

    r.control { rejected = 3, message = "too old" }
    assert.truthy(S.wait(function() return agent:logtext():find("otlp receiver rejected data points", 1, true) end, 10),
      "a partial success was not logged")
    assert.truthy(agent:logtext():find("too old", 1, true))
    r.control { rejected = 0 }

    r.control { status = 503, retry_after = 1 }
    -- Retry-After: 1 holds the retries a second apart, not the 0.05 s backoff
    local refused = S.wait(function()
      local t = {}
      for _, x in ipairs(r.requests()) do if x.status == 503 then t[#t + 1] = x.time end end
      return #t >= 3 and t
    end, 15)
    assert.truthy(refused, "fewer than three 503s")
    for i = 2, #refused do
      assert.is_true(refused[i] - refused[i - 1] >= 0.9, ("retried after %.2f s"):format(refused[i] - refused[i - 1]))
    end
    r.control { status = 200, retry_after = cjson.null }
    local before = #r.requests()
    assert.truthy(S.wait(function()
      local list = r.requests() -- once: two fetches may differ in length
      return #list > before and list[#list].status == 200
    end, 10), "not delivered after the 503s")

    r.control { status = 400 }
    assert.truthy(S.wait(function()
      local _, text = agent:get("/metrics")
      return text:match('beagle_backend_dropped_samples_total{backend="otel",reason="failed"} [1-9]')
    end, 10), "a 400 was not counted as failed")
  end)
end)
