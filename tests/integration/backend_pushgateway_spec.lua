-- The pushgateway backend (plugins/backends/pushgateway.lua) in a running agent, pushing to a
-- real Pushgateway (Debian's prometheus-pushgateway) started on a free port: the group's
-- grouping key from job, instance and grouping labels (a "/" and an empty value through the
-- @base64 form, a space percent-encoded), every series with its labels (quotes, backslashes,
-- newlines, UTF-8), help and type as the Pushgateway shows them in GET /api/v1/metrics and
-- GET /metrics, PUT replacing the whole group, and the whole registry in one push.
local S = require "support"
local cjson = require "cjson"

-- Debian's build persists to /var/lib/prometheus/pushgateway.data by default: this one keeps
-- nothing, so that no run sees another's groups
local function pushgateway()
  local port = S.free_port()
  local svc = S.service(("exec prometheus-pushgateway --web.listen-address=127.0.0.1:%d --persistence.file="):format(port))
  local url = "http://127.0.0.1:" .. port
  assert(S.wait(function() return (S.http("GET", url .. "/-/ready")) == 200 end, 15),
    "pushgateway did not start: " .. svc.output())
  local pg = { url = url, svc = svc }
  function pg.groups()
    local st, body = S.http("GET", url .. "/api/v1/metrics")
    assert(st == 200, "GET /api/v1/metrics: " .. tostring(st))
    return cjson.decode(body).data
  end
  function pg.stop() svc.stop() end
  return pg
end

-- The group whose grouping labels are exactly want.
local function group(pg, want)
  for _, g in ipairs(pg.groups()) do
    local same = true
    for k, v in pairs(want) do same = same and g.labels[k] == v end
    for k in pairs(g.labels) do same = same and want[k] ~= nil end
    if same then return g end
  end
end

-- The metric of family f in group g whose labels include want.
local function metric(g, f, want)
  for _, m in ipairs(g[f] and g[f].metrics or {}) do
    local ok = true
    for k, v in pairs(want) do ok = ok and m.labels[k] == v end
    if ok then return m end
  end
end

local LABELS = { path = "/a b,c=d", q = 'x"y\\z', note = "l1\nl2", u = "h\xc3\xa9llo \xe2\x9c\x93" }
local function post_series(agent)
  local body = cjson.encode {
    { name = "probe.requests", type = "counter", value = 3, tags = LABELS },
    { name = "probe.depth", type = "gauge", value = -2.5, tags = { k = "v=1" } },
    { name = "probe.latency", type = "histogram", value = 0.2, tags = { ep = "/x" } },
    { name = "probe.latency", type = "histogram", value = 7, tags = { ep = "/x" } },
  }
  local st, out = agent:post("/metrics/custom", body, { "Content-Type: application/json" })
  assert(st == 200 or st == 201 or st == 202, ("POST /metrics/custom: %s %s"):format(st, out))
end

describe("pushgateway backend", function()
  local pg, agent
  before_each(function() pg = pushgateway() end)
  after_each(function()
    if agent then agent:stop() agent = nil end
    if pg then pg.stop() pg = nil end
  end)

  it("PUTs the registry as one group: grouping key, labels, help, types, histograms", function()
    -- a metric of the group pushed by someone else first: the agent's PUT replaces the group
    local st = S.http("PUT", pg.url .. "/metrics/job@base64/YmVhZ2xlL3Rlc3Q/instance/web%201/dc@base64/=",
      "# TYPE stale gauge\nstale 1\n")
    assert.equals(200, st)
    assert.truthy(group(pg, { job = "beagle/test", instance = "web 1", dc = "" }).stale)
    agent = S.start { config = S.calm_system .. ([[
backend "pg" { plugin = "pushgateway", url = "%s/", job = "beagle/test", instance = "web 1",
  grouping = { dc = "" }, labels = { env = "test", path = "not this" }, interval = "0.3s" }
]]):format(pg.url) }
    post_series(agent)
    local grouping = { job = "beagle/test", instance = "web 1", dc = "" }
    local g = S.wait(function()
      local x = group(pg, grouping)
      return x and x.probe_requests_total and x.probe_latency and x
    end, 10)
    assert.truthy(g, "the group never had the agent's series: " .. cjson.encode(pg.groups()))
    assert.is_nil(g.stale, "PUT did not replace the group")
    assert.is_true(g.last_push_successful)

    local fam = g.probe_requests_total
    assert.equals("COUNTER", fam.type)
    assert.equals("Metric recorded by beagle.", fam.help)
    local c = fam.metrics[1]
    assert.equals(1, #fam.metrics)
    -- every label as posted, the extra ones added (a series' own winning), the grouping labels set
    assert.same({ path = "/a b,c=d", q = 'x"y\\z', note = "l1\nl2", u = "h\xc3\xa9llo \xe2\x9c\x93", env = "test",
      job = "beagle/test", instance = "web 1", dc = "" }, c.labels)
    assert.equals("3", c.value)

    local d = metric(g, "probe_depth", { k = "v=1" })
    assert.equals("GAUGE", g.probe_depth.type)
    assert.equals("-2.5", d.value)
    assert.equals("not this", d.labels.path)

    assert.equals("HISTOGRAM", g.probe_latency.type)
    local h = metric(g, "probe_latency", { ep = "/x" })
    assert.equals("2", h.count)
    assert.equals("7.2", h.sum)
    local n = 0
    for le, count in pairs(h.buckets) do
      n = n + 1
      local b = tonumber(le)
      assert.truthy(b, le)
      assert.equals(tostring((0.2 <= b and 1 or 0) + (7 <= b and 1 or 0)), count, "le=" .. le)
    end
    assert.is_true(n >= 2)
    -- the agent's own series are in the same group, with their help
    local own = g.beagle_backend_samples_total or S.wait(function()
      local x = group(pg, grouping)
      return x and x.beagle_backend_samples_total
    end, 5)
    assert.truthy(own, "the agent's own series are not in the group")
    assert.equals("COUNTER", own.type)

    -- what a Prometheus scraping the Pushgateway reads
    local _, text = S.http("GET", pg.url .. "/metrics")
    assert.truthy(text:find('probe_depth{dc="",env="test",instance="web 1",job="beagle/test",k="v=1",path="not this"} -2.5',
      1, true), text:match("[^\n]*probe_depth[^\n]*"))
    assert.truthy(text:find('probe_latency_bucket{dc="",env="test",ep="/x",instance="web 1",job="beagle/test",'
      .. 'path="not this",le="+Inf"} 2', 1, true), text:match("[^\n]*probe_latency_bucket[^\n]*Inf[^\n]*"))

    -- the whole registry in one push: a collection is one batch
    local b = agent:backend("pg")
    assert.equals(0, b.batch_size)
    assert.is_true(b.sent > 0)
    assert.equals(0, b.dropped)
  end)

  it("the request: POST when asked, the grouping key's path, basic auth, 0.0.4 without timestamps", function()
    local sink = S.sink()
    agent = S.start { env = { PG_PASSWORD = "pw" }, config = S.calm_system .. ([[
backend "pg" { plugin = "pushgateway", url = "%s", method = "POST", job = "a/b", instance = "i 1",
  grouping = { z = "", a = "x y" }, username = "u", password = env "PG_PASSWORD", interval = "0.3s" }
]]):format(sink.url) }
    post_series(agent)
    local req = S.wait(function()
      for _, q in ipairs(sink.requests()) do
        if q.body:find("probe_depth", 1, true) then return q end
      end
    end, 10)
    sink.stop()
    assert.truthy(req, "nothing pushed")
    assert.equals("POST", req.method)
    assert.equals("/metrics/job@base64/YS9i/instance/i%201/a/x%20y/z@base64/=", req.path)
    assert.equals("Basic dTpwdw==", req.headers.authorization)
    assert.equals("text/plain; version=0.0.4; charset=utf-8", req.headers["content-type"])
    -- every sample line is `name{labels} value`: no timestamp after the value
    for line in req.body:gmatch("[^\n]+") do
      if not line:match("^#") then
        local value = line:match("} (%S+)$") or line:match("^[%w_:]+ (%S+)$")
        assert.truthy(value and tonumber(value) or value == "NaN" or value == "+Inf" or value == "-Inf", line)
      end
    end
    assert.truthy(req.body:find('probe_requests_total{note="l1\\nl2",path="/a b,c=d",q="x\\"y\\\\z",u="h\xc3\xa9llo \xe2\x9c\x93"} 3\n',
      1, true), req.body)
  end)

  it("a prefix; a push refused with 400 is dropped and counted, a 503 retried", function()
    local sink = S.sink()
    sink.control { status = 503, retry_after = "0" }
    agent = S.start { config = S.calm_system .. ([[
settings { backend_backoff_initial = "0.05s", backend_backoff_max = "0.3s" }
backend "good" { plugin = "pushgateway", url = "%s", job = "good", prefix = "ok_", interval = "0.3s" }
backend "bad" { plugin = "pushgateway", url = "%s", interval = "0.3s" }
]]):format(pg.url, sink.url) }
    post_series(agent)
    local g = S.wait(function()
      local x = group(pg, { job = "good", instance = "" }) or group(pg, { job = "good" })
      return x and x.ok_probe_depth and x
    end, 10)
    assert.truthy(g, "nothing pushed")
    assert.equals("-2.5", metric(g, "ok_probe_depth", { k = "v=1" }).value)
    assert.equals("COUNTER", g.ok_probe_requests_total.type)
    assert.truthy(S.wait(function()
      local x = agent:backend("bad")
      return x and x.retries >= 2 and x.dropped == 0 and x.buffered > 0
    end, 10), "a 503 was not retried")
    sink.control { status = 400, retry_after = cjson.null }
    local b = S.wait(function()
      local x = agent:backend("bad")
      return x and x.dropped > 0 and x
    end, 10)
    sink.stop()
    assert.truthy(b, "a push refused with 400 was not dropped")
    assert.truthy(tostring(b.last_error):match("400"), tostring(b.last_error))
    assert.equals(0, agent:backend("good").dropped)
  end)
end)
