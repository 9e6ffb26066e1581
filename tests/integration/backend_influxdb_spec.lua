-- The influxdb backend (plugins/backends/influxdb.lua) in a running agent, writing to the
-- InfluxDB endpoint of tests/receivers/influx_receiver.py, whose line protocol parser is its
-- own (written from the reference): the v2 and 1.x APIs with their URLs, auth and precision,
-- both metric versions, gzip, escaping of labels with spaces, commas, equals signs, quotes,
-- backslashes, newlines and UTF-8, every field of the series posted, and what happens when the
-- receiver refuses a write for a while (429/503: retried, nothing lost) or for good (400: dropped).
local S = require "support"
local cjson = require "cjson"

local RECEIVER = S.src .. "/tests/receivers/influx_receiver.py"

local function receiver()
  local svc, port = S.receiver(("exec python3 %q"):format(RECEIVER), "influx receiver")
  local r = { url = "http://127.0.0.1:" .. port, svc = svc }
  function r.requests()
    local st, body = S.http("GET", r.url .. "/_requests")
    assert(st == 200, "receiver: " .. tostring(st))
    return cjson.decode(body)
  end
  function r.control(t)
    assert(S.http("POST", r.url .. "/_control", cjson.encode(t), { "Content-Type: application/json" }) == 200)
  end
  function r.stop() svc.stop() end
  return r
end

-- Series with every kind of label value line protocol has to escape.
local LABELS = { path = "/a b,c=d", q = 'x"y\\z', note = "l1\nl2\tt", u = "h\xc3\xa9llo \xe2\x9c\x93", e = "" }
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

-- Every point of the accepted requests, each with its request.
local function points(r)
  local out = {}
  for _, req in ipairs(r.requests()) do
    if req.status == 204 then
      for _, p in ipairs(req.points) do
        p.request = req
        out[#out + 1] = p
      end
    end
  end
  return out
end

-- The last point with that measurement whose tags include want (and a field named field).
local function find(r, measurement, want, field)
  local found
  for _, p in ipairs(points(r)) do
    local ok = p.measurement == measurement and (field == nil or p.fields[field] ~= nil)
    for k, v in pairs(want or {}) do ok = ok and p.tags[k] == v end
    if ok then found = p end
  end
  return found
end

-- No request was refused as unparsable, and every point's tags are in key order.
local function all_parsed(r)
  local n = 0
  for _, req in ipairs(r.requests()) do
    assert.is_true(req.error == cjson.null, tostring(req.error) .. "\n" .. tostring(req.body))
    for _, p in ipairs(req.points or {}) do
      n = n + 1
      for i = 2, #p.tag_order do assert.is_true(p.tag_order[i - 1] < p.tag_order[i], "tags out of order") end
    end
  end
  return n
end

describe("influxdb backend", function()
  local r, agent
  before_each(function() r = receiver() end)
  after_each(function()
    if agent then agent:stop() agent = nil end
    if r then r.stop() r = nil end
  end)

  it("v2: /api/v2/write with org, bucket and token; metric version 1, every field, every escape", function()
    agent = S.start { env = { INFLUX_TOKEN = "s3cr3t tok" }, config = S.calm_system .. ([[
backend "influx" { plugin = "influxdb", url = "%s/", org = "my org", bucket = "b/1", token = env "INFLUX_TOKEN",
  labels = { env = "test", zone = "a b", path = "not this" }, interval = "0.3s" }
]]):format(r.url) }
    post_series(agent)
    local c = S.wait(function() return find(r, "probe_requests_total", { path = "/a b,c=d" }) end, 10)
    assert.truthy(c, "the counter never arrived")
    local req = c.request
    assert.equals("/api/v2/write", req.path)
    assert.same({ org = "my org", bucket = "b/1", precision = "ns" }, req.query)
    assert.equals("Token s3cr3t tok", req.headers.authorization)
    assert.equals("text/plain; charset=utf-8", req.headers["content-type"])
    assert.is_nil(req.headers["content-encoding"])
    -- the labels as they were posted: an empty one left out (InfluxDB's rule), tab and newline
    -- written as \t and \n (a line cannot hold them), the extra labels added, a series' own winning
    assert.same({ path = "/a b,c=d", q = 'x"y\\z', note = "l1\\nl2\\tt", u = "h\xc3\xa9llo \xe2\x9c\x93",
      env = "test", zone = "a b" }, c.tags)
    assert.same({ counter = { "float", 3 } }, c.fields)
    -- nanoseconds: the collection's instant, in whole milliseconds
    assert.is_true(math.abs(c.timestamp / 1e9 - S.now()) < 30)
    -- (the receiver's JSON integer is a double here: 2^53 is below 1.8e18, so it is off by up to
    -- 256 ns, and the test is that the millisecond count is whole, not the last digits)
    local ms = c.timestamp / 1e6
    assert.is_true(math.abs(ms - math.floor(ms + 0.5)) < 0.001, ("%.0f ns"):format(c.timestamp))

    local g = find(r, "probe_depth", { k = "v=1" })
    assert.same({ gauge = { "float", -2.5 } }, g.fields)
    assert.same({ k = "v=1", env = "test", zone = "a b", path = "not this" }, g.tags)

    local h = find(r, "probe_latency", { ep = "/x" }, "count")
    assert.truthy(h, "the histogram never arrived")
    assert.same({ "float", 2 }, h.fields.count)
    assert.same({ "float", 7.2 }, h.fields.sum)
    local buckets = 0
    for key, f in pairs(h.fields) do
      if key ~= "count" and key ~= "sum" then
        buckets = buckets + 1
        local le = key == "+Inf" and math.huge or tonumber(key)
        assert.truthy(le, "a field that is not a bucket bound: " .. key)
        local want = (0.2 <= le and 1 or 0) + (7 <= le and 1 or 0)
        assert.same({ "float", want }, f, "bucket " .. key)
      end
    end
    assert.is_true(buckets >= 2)
    assert.same({ "float", 2 }, h.fields["+Inf"])

    -- the agent's own series go too, every point of a request has the collection's timestamp,
    -- and no write was refused as unparsable
    assert.truthy(find(r, "beagle_backend_samples_total", { backend = "influx" }, "counter")
      or S.wait(function() return find(r, "beagle_backend_samples_total", { backend = "influx" }) end, 5))
    for _, q in ipairs(r.requests()) do
      for _, p in ipairs(q.points) do assert.equals(q.points[1].timestamp, p.timestamp) end
    end
    assert.is_true(all_parsed(r) > 10)
    local b = agent:backend("influx")
    assert.equals("influxdb", b.plugin)
    assert.is_true(b.sent > 0)
    -- the token is a secret: never in the health report or the log
    local _, _, raw = agent:get_json("/health/detailed")
    assert.falsy(raw:find("s3cr3t", 1, true))
    assert.falsy(agent:logtext():find("s3cr3t", 1, true))
  end)

  it("1.x: /write with db, rp and basic auth; metric version 2, seconds, gzip and a prefix", function()
    agent = S.start { env = { INFLUX_PASSWORD = "p:w" }, config = S.calm_system .. ([[
backend "influx1" { plugin = "influxdb", url = "%s", api = "v1", database = "db 1", retention_policy = "rp",
  username = "u", password = env "INFLUX_PASSWORD", metric_version = 2, precision = "s", gzip = true,
  prefix = "bg_", interval = "0.3s" }
]]):format(r.url) }
    post_series(agent)
    local c = S.wait(function() return find(r, "prometheus", { path = "/a b,c=d" }, "bg_probe_requests_total") end, 10)
    assert.truthy(c, "the counter never arrived")
    local req = c.request
    assert.equals("/write", req.path)
    assert.same({ db = "db 1", rp = "rp", precision = "s" }, req.query)
    assert.equals("Basic dTpwOnc=", req.headers.authorization) -- base64("u:p:w")
    assert.equals("gzip", req.headers["content-encoding"])
    assert.same({ bg_probe_requests_total = { "float", 3 } }, c.fields)
    assert.is_true(math.abs(c.timestamp - S.now()) < 30, "seconds: " .. c.timestamp)

    local h = find(r, "prometheus", { ep = "/x" }, "bg_probe_latency_count")
    assert.same({ bg_probe_latency_count = { "float", 2 }, bg_probe_latency_sum = { "float", 7.2 } }, h.fields)
    -- a line per bucket, its bound as the tag le
    local les = {}
    for _, p in ipairs(points(r)) do
      if p.tags.ep == "/x" and p.fields.bg_probe_latency_bucket and p.timestamp == h.timestamp then
        local le = p.tags.le == "+Inf" and math.huge or tonumber(p.tags.le)
        assert.truthy(le, p.tags.le)
        les[#les + 1] = le
        local want = (0.2 <= le and 1 or 0) + (7 <= le and 1 or 0)
        assert.same({ "float", want }, p.fields.bg_probe_latency_bucket, "le=" .. p.tags.le)
      end
    end
    table.sort(les)
    assert.is_true(#les >= 2)
    assert.equals(math.huge, les[#les])
    assert.is_true(all_parsed(r) > 10)
  end)

  it("retries 429 and 503 with Retry-After and delivers what waited; drops a batch refused with 400", function()
    agent = S.start { config = S.calm_system .. ([[
settings { backend_backoff_initial = "0.05s", backend_backoff_max = "0.3s" }
backend "influx" { plugin = "influxdb", url = "%s", bucket = "b", interval = "0.25s", batch_size = 100000 }
]]):format(r.url) }
    post_series(agent)
    assert.truthy(S.wait(function() return find(r, "probe_depth") end, 10))
    r.control { status = 503, retry_after = 1 }
    local down = S.wait(function()
      local b = agent:backend("influx")
      return b and b.buffered > 0 and b.retries >= 1 and b
    end, 10)
    assert.truthy(down, "nothing buffered while InfluxDB answered 503")
    assert.truthy(down.last_error:match("503"), down.last_error)
    r.control { status = 429, retry_after = 0 }
    S.sleep(1)
    r.control { status = 204 }
    local before = agent:backend("influx").collected
    local b = S.wait(function()
      local x = agent:backend("influx")
      return x and x.sent >= before and x
    end, 15)
    assert.truthy(b, "the buffer never drained")
    assert.equals(0, b.dropped)
    -- one write per collection, each collection's gauge once, none missing across the outage
    local ts = {}
    for _, p in ipairs(points(r)) do
      if p.measurement == "probe_depth" then ts[#ts + 1] = p.timestamp end
    end
    assert.is_true(#ts >= 6, #ts .. " collections")
    for i = 2, #ts do
      assert.is_true(ts[i] > ts[i - 1], "out of order or repeated at " .. i)
      assert.is_true((ts[i] - ts[i - 1]) / 1e9 < 0.6, "a gap at " .. i)
    end

    -- 400 is for good: the batch is dropped and counted as failed, not retried
    r.control { status = 400 }
    local failed = S.wait(function()
      local x = agent:backend("influx")
      return x and x.dropped > 0 and x
    end, 10)
    assert.truthy(failed, "a batch refused with 400 was not dropped")
    local _, text = agent:get("/metrics")
    assert.truthy(text:match('beagle_backend_dropped_samples_total{backend="influx",reason="failed"} %d+'))
  end)

  it("a v2 instance without a bucket fails its sends for good, saying why", function()
    agent = S.start { config = S.calm_system .. ([[
backend "influx" { plugin = "influxdb", url = "%s", interval = "0.3s" }
]]):format(r.url) }
    local b = S.wait(function()
      local x = agent:backend("influx")
      return x and x.dropped > 0 and x
    end, 10)
    assert.truthy(b)
    assert.truthy(tostring(b.last_error):match("bucket"), tostring(b.last_error))
    assert.equals(0, #r.requests())
  end)
end)
