-- The remote_write backend (plugins/backends/remote_write.lua, core/export/encode_remote_write.c)
-- against a real Prometheus 2.42 started with --web.enable-remote-write-receiver on loopback:
-- what the agent writes is what `GET /api/v1/query` answers (a counter with _total, a gauge, a
-- histogram's cumulative buckets, sum and count; labels with quotes and UTF-8; external labels,
-- and a series' own label winning over one); Prometheus down for a while, then started:
-- everything collected meanwhile arrives; the request's headers and auth, and how the answer is
-- read (5xx retried after Retry-After, 4xx dropped for good), against the HTTP sink.
local S = require "support"

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

-- prometheus(port) -> { url, svc, stop }: Prometheus with the remote write receiver, scraping
-- nothing, its TSDB in a temporary directory; ready when returned.
local function prometheus(port)
  port = port or S.free_port()
  local dir = S.tmpdir()
  S.write(dir .. "/prometheus.yml", "global:\n  scrape_interval: 1h\n")
  local svc = S.service(("exec prometheus --config.file=%q --storage.tsdb.path=%q"
    .. " --web.listen-address=127.0.0.1:%d --web.enable-remote-write-receiver"):format(dir .. "/prometheus.yml",
      dir .. "/data", port))
  local url = "http://127.0.0.1:" .. port
  assert(S.wait(function() return (S.http("GET", url .. "/-/ready")) == 200 end, 30),
    "prometheus did not start: " .. svc.output())
  return { url = url, port = port, svc = svc, stop = svc.stop }
end

-- query(prom, expr) -> the result list of an instant query (may be empty), or nil on an error
local function query(prom, expr)
  local st, body = S.http("GET", prom.url .. "/api/v1/query?query=" .. urlencode(expr))
  local r = S.json(body)
  if st ~= 200 or not r or r.status ~= "success" then return nil end
  return r.data.result
end

-- one(prom, expr) -> the single series of an instant query once Prometheus has it (waits)
local function one(prom, expr)
  return S.wait(function()
    local r = query(prom, expr)
    return r and #r == 1 and r[1]
  end, 15)
end

describe("remote_write backend", function()
  local prom, agent, sink
  after_each(function()
    if agent then agent:stop() agent = nil end
    if prom then prom.stop() prom = nil end
    if sink then sink.stop() sink = nil end
  end)

  it("what Prometheus answers is what was written: names, values, buckets, labels", function()
    prom = prometheus()
    agent = S.start { config = S.calm_system .. ([[
backend "prom" { plugin = "remote_write", url = "%s/api/v1/write", interval = "0.3s",
  external_labels = { cluster = "test-1", zone = "never" } }
]]):format(prom.url) }
    -- a route with quotes, a backslash and UTF-8; a series' own zone beats the external one
    agent:statsd('rw.requests:3|c|#route:/a "b" \\ ü日\nrw.requests:4|c|#route:/x\nrw.depth:-7.25|g|#zone:own\n'
      .. "rw.latency:2|ms\nrw.latency:300|ms\nrw.latency:40000|ms")

    local c = one(prom, 'rw_requests_total{route="/a \\"b\\" \\\\ ü日"}')
    assert.truthy(c, "the counter never reached Prometheus: " .. prom.svc.output():sub(-2000))
    assert.same({ __name__ = "rw_requests_total", route = '/a "b" \\ ü日', cluster = "test-1", zone = "never" },
      c.metric)
    assert.equals("3", c.value[2])
    -- the sample's timestamp is the collection's instant, not Prometheus' receipt
    assert.is_true(math.abs(c.value[1] - S.now()) < 60)
    assert.equals("4", one(prom, 'rw_requests_total{route="/x"}').value[2])

    local g = one(prom, "rw_depth")
    assert.same({ __name__ = "rw_depth", zone = "own", cluster = "test-1" }, g.metric)
    assert.equals("-7.25", g.value[2])

    -- StatsD timers are histograms in seconds: 0.002, 0.3 and 40 against the default buckets
    local inf = one(prom, 'rw_latency_seconds_bucket{le="+Inf"}')
    assert.same({ __name__ = "rw_latency_seconds_bucket", le = "+Inf", cluster = "test-1", zone = "never" }, inf.metric)
    assert.equals("3", inf.value[2])
    assert.equals("3", one(prom, "rw_latency_seconds_count").value[2])
    assert.equals("40.302", one(prom, "rw_latency_seconds_sum").value[2])
    local buckets = S.wait(function()
      local r = query(prom, "rw_latency_seconds_bucket")
      return r and #r >= 3 and r
    end, 15)
    local by_le = {}
    for _, s in ipairs(buckets) do by_le[s.metric.le] = tonumber(s.value[2]) end
    -- cumulative: every bucket holds the ones below it
    for le, n in pairs(by_le) do
      local bound = le == "+Inf" and math.huge or tonumber(le)
      local want = (bound >= 0.002 and 1 or 0) + (bound >= 0.3 and 1 or 0) + (bound >= 40 and 1 or 0)
      assert.equals(want, n, "le=" .. le)
    end
    -- PromQL over them works as on a scrape
    local q = one(prom, "histogram_quantile(0.5, rw_latency_seconds_bucket)")
    assert.is_true(tonumber(q.value[2]) > 0.002 and tonumber(q.value[2]) <= 0.5, q.value[2])

    local b = agent:backend("prom")
    assert.equals("remote_write", b.plugin)
    assert.equals("ok", b.state)
    assert.equals(2000, b.batch_size)
    assert.equals(0, b.dropped)
  end)

  it("Prometheus down for a while, then started: what was collected meanwhile arrives", function()
    local port = S.free_port()
    agent = S.start { config = S.calm_system .. ([[
settings { backend_backoff_initial = "0.05s", backend_backoff_max = "0.5s" }
backend "prom" { plugin = "remote_write", url = "http://127.0.0.1:%d/api/v1/write", interval = "0.25s" }
]]):format(port) }
    agent:statsd("rw.phase:1|g")
    local down = S.wait(function()
      local b = agent:backend("prom")
      return b and b.buffered > 0 and b.retries >= 2 and b
    end, 10)
    assert.truthy(down, "nothing buffered while Prometheus was down")
    assert.is_true(down.state == "failing" or down.state == "paused", down.state)
    S.sleep(1.5)
    local started = S.now()
    prom = prometheus(port)
    local b = S.wait(function()
      local x = agent:backend("prom")
      return x and x.state == "ok" and x.buffered == 0 and x.sent > 0 and x
    end, 20)
    assert.truthy(b, "the buffer never drained after Prometheus started")
    assert.equals(0, b.dropped)
    -- every collection of rw.phase since the agent started is in Prometheus, the ones made
    -- while it was down among them
    local r = S.wait(function()
      local res = query(prom, "rw_phase[10m]")
      return res and #res == 1 and #res[1].values >= 8 and res[1]
    end, 15)
    assert.truthy(r, "the buffered samples are not in Prometheus")
    local before = 0
    for _, v in ipairs(r.values) do
      assert.equals("1", v[2])
      if v[1] < started then before = before + 1 end
    end
    assert.is_true(before >= 6, ("only %d samples from before Prometheus started"):format(before))
    local _, text = agent:get("/metrics")
    assert.truthy(text:match('beagle_backend_send_failures_total{backend="prom"} [1-9]'))
  end)

  it("sends the remote write headers and auth, and reads the answer like Prometheus' client", function()
    sink = S.sink()
    agent = S.start { config = S.calm_system .. ([[
settings { backend_backoff_initial = "0.05s", backend_backoff_max = "0.3s" }
backend "basic" { plugin = "remote_write", url = "%s/basic", interval = "0.3s", username = "ü",
  password = "p:ss", headers = { ["X-Scope-OrgID"] = "ops" } }
backend "bearer" { plugin = "remote_write", url = "%s/bearer", interval = "0.3s", bearer_token = "tok",
  headers = { ["user-agent"] = "mine" } }
]]):format(sink.url, sink.url) }
    local reqs = S.wait(function()
      local by = {}
      for _, r in ipairs(sink.requests()) do by[r.path] = by[r.path] or r end
      return by["/basic"] and by["/bearer"] and by
    end, 10)
    assert.truthy(reqs)
    local h = reqs["/basic"].headers
    local function header(hs, name)
      for k, v in pairs(hs) do
        if k:lower() == name then return v end
      end
    end
    assert.equals("POST", reqs["/basic"].method)
    assert.equals("snappy", header(h, "content-encoding"))
    assert.equals("application/x-protobuf", header(h, "content-type"))
    assert.equals("0.1.0", header(h, "x-prometheus-remote-write-version"))
    assert.truthy(header(h, "user-agent"):match("^beagle/"))
    assert.equals("Basic w7w6cDpzcw==", header(h, "authorization")) -- base64("ü:p:ss")
    assert.equals("ops", header(h, "x-scope-orgid"))
    local hb = reqs["/bearer"].headers
    assert.equals("Bearer tok", header(hb, "authorization"))
    assert.equals("mine", header(hb, "user-agent"))

    -- a 5xx is retried, after Retry-After when given
    sink.control { status = 503, retry_after = "1" }
    local failing = S.wait(function()
      local b = agent:backend("basic")
      return b and b.retries >= 2 and b.buffered > 0 and b
    end, 10)
    assert.truthy(failing)
    assert.truthy(failing.last_error:match("503"))
    assert.equals(0, failing.dropped)
    -- the retries waited the second the receiver asked for, not the 0.3 s backoff
    local times = {}
    for _, r in ipairs(sink.requests()) do
      if r.path == "/basic" and r.status == 503 then times[#times + 1] = r.time end
    end
    assert.is_true(#times >= 2)
    for i = 2, #times do assert.is_true(times[i] - times[i - 1] >= 0.9, times[i] - times[i - 1]) end
    -- any other 4xx: the receiver will never take it, the batch is dropped and counted
    sink.control { status = 400 }
    local dropped = S.wait(function()
      local b = agent:backend("basic")
      return b and b.dropped > 0 and b
    end, 10)
    assert.truthy(dropped, "a 400 was not dropped")
    local _, text = agent:get("/metrics")
    assert.truthy(text:match('beagle_backend_dropped_samples_total{backend="basic",reason="failed"} [1-9]'))
  end)
end)
