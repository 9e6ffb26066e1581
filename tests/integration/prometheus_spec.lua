-- A real Prometheus server scrapes beagle every second and stores what the test wrote
-- through POST /metrics/custom and from a Lua plugin, with the right types.
local S = require "support"
local json = require "cjson"

local function listening_port(pid)
  local out = S.sh("ss -ltnpH")
  for line in out:gmatch("[^\n]+") do
    if line:find("pid=" .. pid .. ",", 1, true) then
      local port = line:match("127%.0%.0%.1:(%d+)")
      if port then return tonumber(port) end
    end
  end
end

describe("a real Prometheus scraping beagle", function()
  local agent, prom_pid, prom_url, dir
  setup(function()
    dir = S.tmpdir()
    S.write(dir .. "/recorder.lua", [[
return beagle.check { name = "recorder", interval = "1h",
  run = function(opt, ctx)
    beagle.increment_counter("lua.events", 7, { source = "plugin" })
    beagle.set_gauge("lua.level", 2.5)
    local h = beagle.histogram("lua.latency", { buckets = { 0.1, 1 } })
    h:observe(0.05) h:observe(0.5) h:observe(5)
    return ctx.healthy("recorded")
  end }
]])
    agent = S.start { plugins = dir, config = S.calm_system }
    assert(agent:wait_check("recorder", function(c) return c.status == "healthy" end, 5))
    local st = agent:post("/metrics/custom",
      '[{"name":"api.requests","type":"counter","value":3,"tags":{"endpoint":"/optimize"}},' ..
      '{"name":"queue.depth","type":"gauge","value":17},' ..
      '{"name":"db.query_time","type":"histogram","value":0.2}]')
    assert(st == 200)
    agent:statsd("statsd.hits:4|c\nstatsd.temperature:21.5|g\nstatsd.latency:120|ms|#route:home\n")
    local pdir = S.tmpdir()
    S.write(pdir .. "/prometheus.yml", ([[
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: beagle
    static_configs:
      - targets: ["127.0.0.1:%d"]
]]):format(agent.port))
    prom_pid = tonumber((S.sh(("cd %q && exec prometheus --config.file=prometheus.yml --storage.tsdb.path=data " ..
      "--web.listen-address=127.0.0.1:0 > prom.log 2>&1 & echo $!"):format(pdir))))
    local port = S.wait(function() return listening_port(prom_pid) end, 20, 0.2)
    assert(port, "prometheus did not start: " .. (S.read(pdir .. "/prom.log") or ""))
    prom_url = "http://127.0.0.1:" .. port
  end)
  teardown(function()
    if prom_pid then S.sh("kill " .. prom_pid) end
    if agent then agent:stop() end
  end)

  local function query(q)
    return S.wait(function()
      local st, body = S.http("GET", prom_url .. "/api/v1/query?query=" .. q:gsub("[^%w_]", function(c)
        return ("%%%02X"):format(c:byte())
      end))
      if st ~= 200 then return nil end
      local o = json.decode(body)
      if o.status == "success" and #o.data.result > 0 then return o.data.result end
    end, 20, 0.25)
  end

  local function value(q)
    local r = query(q)
    return r and tonumber(r[1].value[2])
  end

  it("stores counters, gauges and histograms written over HTTP", function()
    assert.are.equal(3, value('api_requests_total{endpoint="/optimize"}'))
    assert.are.equal(17, value("queue_depth"))
    assert.are.equal(1, value("db_query_time_count"))
    assert.are.equal(0.2, value("db_query_time_sum"))
  end)

  it("stores counters, gauges and timers written over StatsD", function()
    assert.are.equal(4, value("statsd_hits_total"))
    assert.are.equal(21.5, value("statsd_temperature"))
    assert.are.equal(1, value('statsd_latency_seconds_count{route="home"}'))
    assert.are.equal(0.12, value('statsd_latency_seconds_sum{route="home"}'))
  end)

  it("stores what a Lua plugin recorded", function()
    assert.are.equal(7, value('lua_events_total{source="plugin"}'))
    assert.are.equal(2.5, value("lua_level"))
    assert.are.equal(1, value('lua_latency_bucket{le="0.1"}'))
    assert.are.equal(2, value('lua_latency_bucket{le="1"}'))
    assert.are.equal(3, value('lua_latency_bucket{le="+Inf"}'))
    -- rank 1.5 falls in (0.1, 1] holding observations 2..2: linear interpolation gives 0.55
    assert.is_true(math.abs(value("histogram_quantile(0.5, lua_latency_bucket)") - 0.55) < 1e-9)
  end)

  it("records the right type of each family", function()
    local types = S.wait(function()
      local st, body = S.http("GET", prom_url .. "/api/v1/metadata")
      if st ~= 200 then return nil end
      local d = json.decode(body).data
      if d.api_requests and d.lua_latency and d.queue_depth then return d end
    end, 20, 0.25)
    assert.is_truthy(types)
    -- Prometheus asks for OpenMetrics, where a counter family is named without _total
    assert.are.equal("counter", types.api_requests[1].type)
    assert.are.equal("gauge", types.queue_depth[1].type)
    assert.are.equal("histogram", types.lua_latency[1].type)
    assert.are.equal("histogram", types.db_query_time[1].type)
    assert.are.equal("counter", types.lua_events[1].type)
  end)

  it("scrapes with OpenMetrics", function()
    local r = query('scrape_samples_scraped{job="beagle"}')
    assert.is_truthy(r)
    local st, body = S.http("GET", prom_url .. "/api/v1/targets")
    assert.are.equal(200, st)
    assert.is_truthy(body:find('"health":"up"', 1, true), body)
  end)

  it("sees the target up", function()
    assert.are.equal(1, value('up{job="beagle"}'))
  end)
end)
