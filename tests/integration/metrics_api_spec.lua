-- POST /metrics/custom (the guide's route) and what /metrics then shows.
local S = require "support"

describe("POST /metrics/custom", function()
  local agent
  setup(function() agent = S.start { config = S.calm_system } end)
  teardown(function() if agent then agent:stop() end end)

  local function post(body, query)
    local st, b = agent:post("/metrics/custom" .. (query or ""), body)
    return st, S.json(b)
  end

  local function metrics()
    local _, body = agent:get("/metrics")
    return body
  end

  it("records one metric and an array of them, with tags as labels", function()
    local st, o = post('{"name":"optimization.started","type":"counter","value":5,"tags":{"algorithm":"nsga2"}}')
    assert.are.equal(200, st)
    assert.are.equal(1, o.accepted)
    st = post('[{"name":"optimization.started","type":"counter","value":3,"tags":{"algorithm":"nsga2"}},' ..
      '{"name":"optimization.active","type":"gauge","value":5},' ..
      '{"name":"api.response_time","type":"histogram","value":0.045,"tags":{"endpoint":"/health"}}]')
    assert.are.equal(200, st)
    local m = metrics()
    assert.is_truthy(m:find('optimization_started_total{algorithm="nsga2"} 8', 1, true), m)
    assert.is_truthy(m:find("\noptimization_active 5\n", 1, true))
    assert.is_truthy(m:find('api_response_time_count{endpoint="/health"} 1', 1, true))
    assert.is_truthy(m:find('api_response_time_sum{endpoint="/health"} 0.045', 1, true))
  end)

  it("rejects a batch with bad items, naming each one's index and reason, and records nothing", function()
    local st, o = post('[{"name":"good.one","type":"gauge","value":1},' ..
      '{"name":"9bad","type":"gauge","value":1},' ..
      '{"name":"x","type":"summary","value":1},' ..
      '{"name":"y","type":"counter","value":-1},' ..
      '{"name":"z","type":"gauge","value":"high"},' ..
      '{"name":"t","type":"gauge","value":1,"tags":{"bad label":"v"}}]')
    assert.are.equal(400, st)
    assert.are.equal(400, o.status)
    local idx = {}
    for _, e in ipairs(o.errors) do idx[#idx + 1] = e.index end
    assert.are.same({ 1, 2, 3, 4, 5 }, idx)
    assert.is_truthy(o.errors[1].reason:find("9bad", 1, true))
    assert.is_truthy(o.errors[2].reason:find("counter, gauge or histogram", 1, true))
    assert.is_truthy(o.errors[3].reason:find("cannot decrease", 1, true))
    assert.is_truthy(o.errors[4].reason:find("finite number", 1, true))
    assert.is_truthy(o.errors[5].reason:find("bad label", 1, true))
    assert.is_falsy(metrics():find("good_one", 1, true))
  end)

  it("keeps the good items with ?partial=true", function()
    local st, o = post('[{"name":"kept.value","type":"gauge","value":42},{"name":"","type":"gauge","value":1}]',
      "?partial=true")
    assert.are.equal(200, st)
    assert.are.equal("partial", o.status)
    assert.are.equal(1, o.accepted)
    assert.are.equal(1, o.errors[1].index)
    assert.is_truthy(metrics():find("\nkept_value 42\n", 1, true))
  end)

  it("reports a type clash with an existing metric", function()
    local st, o = post('{"name":"optimization.active","type":"counter","value":1}')
    assert.are.equal(400, st)
    assert.is_truthy(o.errors[1].reason:find("gauge", 1, true), o.errors[1].reason)
  end)

  it("answers 400 to a body that is not JSON", function()
    local st, o = post("{nope")
    assert.are.equal(400, st)
    assert.is_truthy(o.error:find("not valid JSON", 1, true))
  end)

  it("keeps /metrics valid for promtool", function()
    local f = S.tmpname()
    S.write(f, metrics())
    local out, code = S.sh("promtool check metrics < " .. f)
    os.remove(f)
    assert.are.equal(0, code, out)
  end)
end)

describe("GET /metrics formats", function()
  local agent
  setup(function()
    agent = S.start { config = S.calm_system, env = { MONITORING_MAX_SERIES_PER_METRIC = "3" } }
    agent:post("/metrics/custom", '{"name":"api.requests","type":"counter","value":2,"tags":{"endpoint":"/a"}}')
  end)
  teardown(function() if agent then agent:stop() end end)

  it("speaks OpenMetrics when the scraper asks for it", function()
    local st, body, hdr = agent:get("/metrics", { "Accept: application/openmetrics-text; version=1.0.0,text/plain;q=0.5" })
    assert.are.equal(200, st)
    assert.is_truthy(hdr:lower():find("content-type: application/openmetrics-text; version=1.0.0", 1, true), hdr)
    assert.is_truthy(body:find("# TYPE api_requests counter\n", 1, true), body)
    assert.is_truthy(body:find('api_requests_total{endpoint="/a"} 2\n', 1, true))
    assert.is_truthy(body:find('api_requests_created{endpoint="/a"} ', 1, true))
    assert.are.equal("# EOF\n", body:sub(-6))
  end)

  it("answers JSON to Accept: application/json", function()
    local st, body, hdr = agent:get("/metrics", { "Accept: application/json" })
    assert.are.equal(200, st)
    assert.is_truthy(hdr:lower():find("content-type: application/json", 1, true))
    local o = S.json(body)
    assert.is_truthy(o, body)
    local found
    for _, m in ipairs(o.metrics) do
      if m.name == "api_requests" then found = m end
    end
    assert.is_truthy(found)
    assert.are.equal("counter", found.type)
    assert.are.equal(2, found.series[1].value)
  end)

  it("compresses with gzip when accepted", function()
    local out, code = S.sh(("curl -s -D - -o /dev/null -H 'Accept-Encoding: gzip' %s/metrics"):format(agent.url))
    assert.are.equal(0, code)
    assert.is_truthy(out:lower():find("content-encoding: gzip", 1, true), out)
    local plain = S.sh(("curl -s --compressed %s/metrics"):format(agent.url))
    assert.is_truthy(plain:find('api_requests_total{endpoint="/a"} 2', 1, true), plain)
  end)

  it("answers HEAD and /metrics/ like GET, and says it varies by Accept and Accept-Encoding", function()
    local st, body, hdr = agent:get("/metrics/", { "Accept-Encoding: identity" })
    assert.are.equal(200, st)
    assert.is_truthy(hdr:find("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n", 1, true), hdr)
    assert.is_truthy(hdr:find("Vary: Accept, Accept-Encoding\r\n", 1, true), hdr)
    assert.is_truthy(body:find('api_requests_total{endpoint="/a"} 2\n', 1, true))
    for _, enc in ipairs { "identity", "gzip" } do
      local head = S.sh(("curl -s -m 5 -I -H 'Accept-Encoding: %s' %s/metrics"):format(enc, agent.url))
      local get = S.sh(("curl -s -m 5 -D - -o /dev/null -H 'Accept-Encoding: %s' %s/metrics"):format(enc, agent.url))
      -- the same head (the body's length moves only with the agent's own gauges, the
      -- traceparent names each request's own span)
      local function shape(h)
        return (h:gsub("Content%-Length: %d+", "Content-Length: N"):gsub("traceparent: [%x%-]+", "traceparent: T"))
      end
      assert.are.equal(shape(get), shape(head))
      assert.is_truthy(head:find("^HTTP/1.1 200 OK\r\nServer: beagle\r\n"), head)
      assert.are.equal(enc == "gzip", head:find("Content-Encoding: gzip\r\n", 1, true) ~= nil, head)
    end
  end)

  it("serves a gzipped scrape that promtool accepts", function()
    local f = S.tmpname()
    local hdr = S.sh(("curl -s -m 5 -D - -o %s -H 'Accept-Encoding: gzip' %s/metrics"):format(f, agent.url))
    assert.is_truthy(hdr:find("Content-Encoding: gzip\r\n", 1, true), hdr)
    local out, code = S.sh(("gzip -dc < %s | promtool check metrics"):format(f))
    os.remove(f)
    assert.are.equal(0, code, out)
    assert.are.equal("", out)
  end)

  it("refreshes the agent's own gauges before each scrape", function()
    local function uptime()
      local _, body = agent:get("/metrics")
      return tonumber(body:match("\nbeagle_uptime_seconds ([%d%.e+-]+)\n"))
    end
    local a = uptime()
    S.sleep(0.3)
    local b = uptime()
    assert.is_truthy(a and b, "beagle_uptime_seconds is exposed")
    assert.is_true(b >= a + 0.25, ("%s then %s"):format(a, b))
    local _, body = agent:get("/metrics")
    assert.is_truthy(body:find("\nbeagle_http_connections_open [1-9]", 1), body)
  end)

  it("drops series beyond max_series_per_metric, counts them, and says which metric", function()
    local items = {}
    for i = 1, 5 do
      items[i] = ('{"name":"wide.metric","type":"gauge","value":%d,"tags":{"k":"v%d"}}'):format(i, i)
    end
    local st, body = agent:post("/metrics/custom?partial=true", "[" .. table.concat(items, ",") .. "]")
    local o = S.json(body)
    assert.are.equal(200, st)
    assert.are.equal(3, o.accepted)
    assert.are.equal(2, #o.errors)
    assert.is_truthy(o.errors[1].reason:find("series limit reached", 1, true), o.errors[1].reason)
    local _, m = agent:get("/metrics")
    -- the agent's own wide metrics (beagle_check_status has 4 series a check) hit the limit too
    local dropped = tonumber(m:match('beagle_series_dropped_total{reason="max_series_per_metric"} (%d+)'))
    assert.is_true(dropped >= 2, m)
    assert.is_truthy(m:find('wide_metric{k="v3"} 3', 1, true))
    local _, d = agent:get_json("/health/detailed")
    assert.are.equal(3, d.metrics.max_series_per_metric)
    local wide
    for _, x in ipairs(d.metrics.metrics) do if x.name == "wide_metric" then wide = x end end
    assert.is_truthy(wide)
    assert.are.equal(2, wide.dropped)
    assert.are.equal(3, wide.series)
  end)
end)

describe("GET /metrics/performance", function()
  local agent
  setup(function() agent = S.start { config = S.calm_system } end)
  teardown(function() if agent then agent:stop() end end)

  it("gives count, sum, min, max, mean and percentiles over 1, 5 and 15 minutes", function()
    local items = {}
    for i = 1, 100 do
      items[i] = ('{"name":"api.response_time","type":"histogram","value":%g,"tags":{"endpoint":"/x"}}'):format(i / 1000)
    end
    assert.are.equal(200, (agent:post("/metrics/custom", "[" .. table.concat(items, ",") .. "]")))
    local st, o = agent:get_json("/metrics/performance")
    assert.are.equal(200, st)
    local fam
    for _, m in ipairs(o.metrics) do if m.name == "api_response_time" then fam = m end end
    assert.is_truthy(fam)
    local w = fam.series[1].windows
    for _, span in ipairs { "1m", "5m", "15m" } do
      local x = w[span]
      assert.are.equal(100, x.count, span)
      assert.is_true(math.abs(x.sum - 5.05) < 1e-9, span)
      assert.are.equal(0.001, x.min)
      assert.are.equal(0.1, x.max)
      assert.is_true(math.abs(x.mean - 0.0505) < 1e-9)
      assert.is_true(math.abs(x.p50 - 0.050) <= 0.0011, tostring(x.p50))
      assert.is_true(math.abs(x.p99 - 0.099) <= 0.0011, tostring(x.p99))
    end
    -- the same document answers GET /metrics with Accept: application/json
    local _, body = agent:get("/metrics", { "Accept: application/json" })
    assert.is_truthy(body:find('"windows":{"1m":{"count":100', 1, true))
  end)
end)

-- Issue 14 §3: every bad item gets a 400 with its index, error bodies are valid UTF-8, and
-- the answer says exactly what was recorded (a batch is checked whole before any of it is).
describe("POST /metrics/custom refuses clearly and records all or nothing", function()
  local agent
  setup(function()
    agent = S.start { config = S.calm_system, env = { MONITORING_MAX_SERIES_PER_METRIC = "5" } }
  end)
  teardown(function() if agent then agent:stop() end end)

  local function post(body, query)
    local st, b = agent:post("/metrics/custom" .. (query or ""), body)
    return st, S.json(b), b
  end
  local function metrics()
    local _, body = agent:get("/metrics")
    return body
  end

  it("answers 400 with the index to an object without a name", function()
    local st, o = post('{"type":"gauge","value":1}')
    assert.are.equal(400, st)
    assert.are.equal(0, o.errors[1].index)
    assert.is_truthy(o.errors[1].reason:find("name is required", 1, true), o.errors[1].reason)
    st, o = post('[{"name":"fine","type":"gauge","value":1},{"value":2,"type":"gauge"}]')
    assert.are.equal(400, st)
    assert.are.equal(1, o.errors[1].index)
    assert.is_falsy(metrics():find("\nfine ", 1, true))
  end)

  it("takes JSON numbers only: no hex literals, no numbers in strings", function()
    local st, o = post('{"name":"hex.value","type":"gauge","value":0x10}')
    assert.are.equal(400, st)
    assert.is_truthy(o.error:find("not valid JSON", 1, true), o.error)
    assert.are.equal(0, o.errors[1].index)
    st, o = post('[{"name":"hex.a","type":"gauge","value":1},{"name":"x,y","type":"gauge","value":NaN}]')
    assert.are.equal(400, st)
    assert.are.equal(1, o.errors[1].index, o.error)
    st, o = post('{"name":"hex.value","type":"gauge","value":"0x10"}')
    assert.are.equal(400, st)
    assert.is_truthy(o.errors[1].reason:find("finite number", 1, true))
    assert.is_falsy(metrics():find("hex_value", 1, true))
  end)

  it("refuses two tags that become the same label", function()
    local st, o = post('{"name":"merged","type":"gauge","value":1,"tags":{"a.b":"x","a_b":"y"}}')
    assert.are.equal(400, st)
    assert.are.equal(0, o.errors[1].index)
    assert.is_truthy(o.errors[1].reason:find('tags "a.b" and "a_b" both become label "a_b"', 1, true),
      o.errors[1].reason)
    assert.is_falsy(metrics():find("\nmerged", 1, true))
  end)

  it("answers valid UTF-8 about a name or tag that is not", function()
    for _, body in ipairs {
      '{"name":"bad\255name","type":"gauge","value":1}',
      '{"name":"ok.name","type":"gauge","value":1,"tags":{"k":"v\192\175"}}',
      '{"name":"ok.name","type":"gauge","value":1,"tags":{"k\237\160\128":"v"}}',
    } do
      local st, o, raw = post(body)
      assert.are.equal(400, st)
      assert.is_falsy(raw:find("[\128-\255]"), raw) -- these messages are ASCII once escaped
      assert.is_truthy(o, raw)
      assert.is_truthy(o.errors[1].reason:find("not valid UTF-8", 1, true), o.errors[1].reason)
      assert.is_truthy(o.errors[1].reason:find("\\x", 1, true), o.errors[1].reason)
    end
  end)

  it("records nothing of a batch that goes past a series limit, and says so", function()
    local items = {}
    for i = 1, 8 do
      items[i] = ('{"name":"batch.wide","type":"gauge","value":%d,"tags":{"k":"v%d"}}'):format(i, i)
    end
    local st, o = post("[" .. table.concat(items, ",") .. "]")
    assert.are.equal(400, st)
    assert.are.equal(0, o.accepted)
    assert.is_truthy(o.error:find("nothing was recorded", 1, true))
    assert.are.same({ 5, 6, 7 }, { o.errors[1].index, o.errors[2].index, o.errors[3].index })
    assert.is_truthy(o.errors[1].reason:find("series limit reached", 1, true), o.errors[1].reason)
    assert.is_falsy(metrics():find("batch_wide", 1, true))
    -- the same series twice count once; with ?partial=true the ones that fit are recorded
    items[9] = items[1]
    st, o = post("[" .. table.concat(items, ",") .. "]", "?partial=true")
    assert.are.equal(200, st)
    assert.are.equal(6, o.accepted)
    assert.are.equal(3, #o.errors)
    local m = metrics()
    assert.is_truthy(m:find('batch_wide{k="v5"} 5', 1, true), m)
    assert.is_falsy(m:find('batch_wide{k="v6"}', 1, true))
  end)

  it("refuses a batch that gives one metric two types", function()
    local st, o = post('[{"name":"two.types","type":"gauge","value":1},{"name":"two.types","type":"counter","value":1}]')
    assert.are.equal(400, st)
    assert.are.equal(1, o.errors[1].index)
    assert.is_truthy(o.errors[1].reason:find("gauge earlier in this batch", 1, true), o.errors[1].reason)
    assert.is_falsy(metrics():find("two_types", 1, true))
  end)
end)
