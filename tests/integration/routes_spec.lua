-- The HTTP routes of a running agent: /health and its sub-routes, /metrics, reload, errors.
local S = require "support"

describe("routes", function()
  local agent
  setup(function() agent = S.start { config = S.calm_system } end)
  teardown(function() if agent then agent:stop() end end)

  it("serves /health with each check's name, status, response_time, message and timestamp", function()
    local o = S.wait(function()
      local st, o = agent:get_json("/health")
      if st == 200 and o and #o.checks > 0 and o.checks[1].timestamp then return o end
    end, 5)
    assert.is_truthy(o)
    assert.are.equal("healthy", o.status)
    local c = o.checks[1]
    assert.are.equal("system", c.name)
    assert.are.equal("healthy", c.status)
    assert.is_number(c.response_time)
    assert.is_string(c.message)
    assert.is_truthy(c.timestamp:match("^%d%d%d%d%-%d%d%-%d%dT"))
  end)

  it("answers /health/live and /health/ready", function()
    local st, o = agent:get_json("/health/live")
    assert.are.equal(200, st)
    assert.are.equal("alive", o.status)
    st, o = agent:get_json("/health/ready")
    assert.are.equal(200, st)
    assert.are.equal("ready", o.status)
  end)

  it("serves /health/{name} with details, and 404 for an unknown check", function()
    local st, o = agent:get_json("/health/system")
    assert.are.equal(200, st)
    assert.are.equal("system", o.name)
    for _, k in ipairs { "cpu_percent", "memory_percent", "disk_percent" } do
      assert.is_number(o.details[k], k)
    end
    st, o = agent:get_json("/health/nope")
    assert.are.equal(404, st)
    assert.are.equal(404, o.status)
    assert.is_truthy(o.error:find("nope"))
  end)

  it("lists plugins in /health/detailed", function()
    local st, o = agent:get_json("/health/detailed")
    assert.are.equal(200, st)
    local names = {}
    for _, p in ipairs(o.plugins) do names[p.name] = p.state end
    assert.are.same({ http = "loaded", system = "loaded", tcp = "loaded", command = "loaded", dns = "loaded",
      file = "loaded", mysql = "loaded", postgres = "loaded", process = "loaded", redis = "loaded",
      surrealdb = "loaded", tls_cert = "loaded", alertmanager = "loaded", email = "loaded",
      log = "loaded", pagerduty = "loaded", slack = "loaded", webhook = "loaded", datadog = "loaded",
      graphite = "loaded", influxdb = "loaded", otlp_metrics = "loaded", pushgateway = "loaded",
      remote_write = "loaded", statsd = "loaded", otlp_traces = "loaded", otlp_logs = "loaded",
      logfire = "loaded" }, names)
    assert.is_number(o.uptime_seconds)
  end)

  it("returns JSON 404 and 405 errors", function()
    local st, body = agent:get("/no/such/route")
    assert.are.equal(404, st)
    assert.are.equal(404, S.json(body).status)
    local hdr
    st, body, hdr = S.http("DELETE", agent.url .. "/metrics")
    assert.are.equal(405, st)
    assert.are.equal(405, S.json(body).status)
    assert.is_truthy(hdr:find("Allow: GET"))
  end)

  it("returns JSON 400 for a malformed request and 413 for a body over the limit", function()
    local out = S.sh(("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d; printf \"GARBAGE\\r\\n\\r\\n\" >&3; timeout 2 cat <&3'")
      :format(agent.port))
    assert.is_truthy(out:find("HTTP/1.1 400", 1, true), out)
    assert.is_truthy(out:find('"status":400', 1, true), out)
    local st, body = S.http("POST", agent.url .. "/-/reload", ("x"):rep(2 * 1024 * 1024))
    assert.are.equal(413, st)
    assert.are.equal(413, S.json(body).status)
  end)

  it("exposes /metrics that promtool accepts, with the agent's own series", function()
    local st, body, hdr = agent:get("/metrics")
    assert.are.equal(200, st)
    assert.is_truthy(hdr:find("text/plain; version=0.0.4", 1, true))
    for _, name in ipairs { "beagle_check_duration_seconds_count", "beagle_check_runs_total",
      "beagle_loop_lag_seconds", "beagle_plugin_lua_memory_bytes", "beagle_resident_memory_bytes" } do
      assert.is_truthy(body:find(name, 1, true), name)
    end
    local f = S.tmpname()
    S.write(f, body)
    local out, code = S.sh("promtool check metrics < " .. f)
    os.remove(f)
    assert.are.equal(0, code, out)
    assert.are.equal("", out)
  end)

  it("reloads on POST /-/reload from loopback", function()
    local st, body = agent:post("/-/reload", "")
    assert.are.equal(200, st)
    assert.are.equal("ok", S.json(body).status)
  end)

  it("shuts down on SIGTERM", function()
    assert.is_true(agent:stop(6))
    assert.is_truthy(agent:logtext():find('msg=stopped', 1, true))
    agent = nil
  end)
end)
