-- The datadog backend (plugins/backends/datadog.lua) in a running agent, posting to the intake
-- of tests/receivers/datadog_receiver.py, which checks every request against Datadog's v2
-- series API with a validator of its own: the key, gzip, the body's shape and types, the
-- timestamps. Counters as counts whose increases add up to the total (also across a 503 and
-- its retries), as rates, gauges, histograms as .count/.sum/.bucket with upper_bound, tags
-- with the global ones, the host resource; a 403 is final and counted.
local S = require "support"
local cjson = require "cjson"

local RECEIVER = S.src .. "/tests/receivers/datadog_receiver.py"

local function receiver(key)
  local out = S.tmpdir() .. "/requests.jsonl"
  local svc, port = S.receiver(("exec python3 %q %q %q"):format(RECEIVER, out, key), "datadog receiver")
  local r = { port = port, svc = svc, url = ("http://127.0.0.1:%d/api/v2/series"):format(port) }
  function r.requests()
    return S.jsonl(out)
  end
  -- the series of the requests answered 202, in arrival order
  function r.series(metric)
    local t = {}
    for _, q in ipairs(r.requests()) do
      if q.status == 202 then
        for _, s in ipairs(q.series) do
          if metric == nil or s.metric == metric then t[#t + 1] = s end
        end
      end
    end
    return t
  end
  function r.control(st)
    local code = S.http("POST", ("http://127.0.0.1:%d/_control"):format(port), cjson.encode(st))
    assert(code == 200, "control failed")
  end
  function r.stop() svc.stop() end
  return r
end

local function total(series)
  local n = 0
  for _, s in ipairs(series) do n = n + s.points[1].value end
  return n
end

local function post_series(agent, t)
  local st, out = agent:post("/metrics/custom", cjson.encode(t), { "Content-Type: application/json" })
  assert(st == 200 or st == 201 or st == 202, ("POST /metrics/custom: %s %s"):format(st, out))
end

local function sorted(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  table.sort(c)
  return c
end

describe("datadog backend", function()
  local r, agent
  before_each(function() r = receiver("k-123") end)
  after_each(function()
    if agent then agent:stop() agent = nil end
    if r then r.stop() r = nil end
  end)

  it("counts, gauges and histograms, every request valid, gzipped, with the key", function()
    agent = S.start { env = { DD_KEY = "k-123" }, config = S.calm_system .. ([[
backend "dd" { plugin = "datadog", api_key = env "DD_KEY", url = "%s", host = "web-1", prefix = "bg.",
  tags = { env = "test", zone = "a" }, interval = "0.3s" }
]]):format(r.url) }
    assert.truthy(S.wait(function() return #r.requests() > 0 end, 10), "nothing received")
    post_series(agent, {
      { name = "probe.requests", type = "counter", value = 3,
        tags = { path = "/a b,c\"d", u = "h\xc3\xa9llo \xe2\x9c\x93", e = "", zone = "mine" } },
      { name = "probe.depth", type = "gauge", value = -2.5 },
      { name = "probe.latency", type = "histogram", value = 0.2, tags = { ep = "/x" } },
      { name = "probe.latency", type = "histogram", value = 7, tags = { ep = "/x" } },
    })
    local c = S.wait(function() return r.series("bg.probe_requests")[1] end, 10)
    assert.truthy(c, "probe.requests never arrived")
    assert.equals(1, c.type) -- a count of its increase: all of it, born after the backend
    assert.equals(3, c.points[1].value)
    assert.is_true(math.abs(c.points[1].timestamp - S.now()) < 30)
    assert.is_true(c.interval >= 1)
    -- the series' own zone wins, the empty label is left out; JSON carries the rest as is
    assert.same({ "env:test", "path:/a b,c\"d", "u:h\xc3\xa9llo \xe2\x9c\x93", "zone:mine" }, sorted(c.tags))
    assert.same({ { type = "host", name = "web-1" } }, c.resources)

    post_series(agent, { { name = "probe.requests", type = "counter", value = 2,
      tags = { path = "/a b,c\"d", u = "h\xc3\xa9llo \xe2\x9c\x93", e = "", zone = "mine" } } })
    assert.truthy(S.wait(function() return total(r.series("bg.probe_requests")) == 5 end, 10),
      "the increases do not add up to 5")
    assert.truthy(S.wait(function() return #r.series("bg.probe_requests") >= 4 end, 10))
    assert.equals(5, total(r.series("bg.probe_requests")))
    for _, s in ipairs(r.series("bg.probe_requests")) do
      assert.equals(1, s.type)
      assert.is_true(s.interval >= 1)
    end

    local g = r.series("bg.probe_depth")[1]
    assert.equals(3, g.type)
    assert.equals(-2.5, g.points[1].value)
    assert.is_nil(g.interval)
    assert.same({ "env:test", "zone:a" }, sorted(g.tags))

    -- the histogram: .count and .sum of the new observations, cumulative buckets
    assert.equals(2, total(r.series("bg.probe_latency.count")))
    assert.near(7.2, total(r.series("bg.probe_latency.sum")), 1e-9)
    local first = {}
    for _, s in ipairs(r.series("bg.probe_latency.bucket")) do
      local ub
      for _, t in ipairs(s.tags) do ub = ub or t:match("^upper_bound:(.+)$") end
      assert.truthy(ub, "no upper_bound")
      assert.equals(1, s.type)
      if first[ub] == nil then first[ub] = s.points[1].value end
    end
    assert.equals(2, first.inf)
    local prev = 0
    local bounds = {}
    for ub in pairs(first) do if ub ~= "inf" then bounds[#bounds + 1] = tonumber(ub) end end
    table.sort(bounds)
    assert.is_true(#bounds > 3)
    for _, b in ipairs(bounds) do
      local v = first[tostring(b)] or first[("%.17g"):format(b)]
      if v then
        assert.is_true(v >= prev, "cumulative")
        prev = v
        if b < 0.2 then assert.equals(0, v) end
        if b >= 7 then assert.equals(2, v) end
      end
    end

    -- every request: the key, gzip, valid, and the agent's own series prefixed
    local n = 0
    for _, q in ipairs(r.requests()) do
      assert.is_true(q.key_ok)
      assert.equals("gzip", q.encoding)
      assert.is_true(q.error == cjson.null, tostring(q.error))
      assert.equals(202, q.status)
      n = n + 1
    end
    assert.is_true(n > 3)
    for _, s in ipairs(r.series()) do assert.equals("bg.", s.metric:sub(1, 3)) end
  end)

  it("rates; a 503 retried loses and repeats nothing; a 403 is final and counted", function()
    agent = S.start { env = { DD_KEY = "k-123" }, config = S.calm_system .. ([[
settings { backend_backoff_initial = "0.05s", backend_backoff_max = "0.3s" }
backend "dd" { plugin = "datadog", api_key = env "DD_KEY", url = "%s", counters_as = "rate", gzip = false,
  interval = "1s" }
]]):format(r.url) }
    assert.truthy(S.wait(function() return #r.requests() > 0 end, 10), "nothing received")
    post_series(agent, { { name = "probe.requests", type = "counter", value = 4 } })
    local c = S.wait(function() return r.series("probe_requests")[1] end, 10)
    assert.truthy(c)
    assert.equals(2, c.type)
    assert.is_true(c.interval >= 1)
    assert.equals(cjson.null, r.requests()[1].encoding) -- gzip = false
    -- the receiver refuses for a while: the batches wait and are sent again, each increase once
    r.control { status = 503, retry_after = 0 }
    post_series(agent, { { name = "probe.requests", type = "counter", value = 6 } })
    S.sleep(2.5)
    post_series(agent, { { name = "probe.requests", type = "counter", value = 10 } })
    S.sleep(1.2)
    r.control { status = 202 }
    -- rates: value * the seconds they cover adds up to the increase (20 in all)
    local got = S.wait(function()
      local sum = 0
      for _, s in ipairs(r.series("probe_requests")) do sum = sum + s.points[1].value * s.interval end
      return math.abs(sum - 20) < 2 and sum
    end, 15)
    assert.truthy(got, "the rates do not add up to the increases")
    local refused = 0
    for _, q in ipairs(r.requests()) do if q.status == 503 then refused = refused + 1 end end
    assert.is_true(refused >= 2)

    r.control { status = 403 }
    local _, text
    assert.truthy(S.wait(function()
      _, text = agent:get("/metrics")
      return text:match('beagle_backend_dropped_samples_total{backend="dd",reason="failed"} [1-9]')
    end, 10), "a 403 was not counted as failed")
  end)
end)
