-- The statsd backend (plugins/backends/statsd.lua) in a running agent, sending over UDP to the
-- receiver of tests/receivers/statsd_receiver.py, whose parser is its own (written from the
-- StatsD and DogStatsD documentation): every line well formed, datagrams under max_payload,
-- counters as increases that add up to the series' total, negative gauges as 0 then the value
-- in one datagram (plain StatsD), histograms as .count and .sum (and cumulative .bucket lines
-- with upper_bound tags in DogStatsD), tags made safe with UTF-8 kept, the prefix; a host name
-- (localhost) resolved on the loop.
local S = require "support"
local cjson = require "cjson"

local RECEIVER = S.src .. "/tests/receivers/statsd_receiver.py"

local function receiver()
  local out = S.tmpdir() .. "/lines.jsonl"
  local svc, port = S.receiver(("exec python3 %q %q"):format(RECEIVER, out), "statsd receiver")
  local r = { port = port, svc = svc }
  function r.lines()
    return S.jsonl(out)
  end
  function r.stop() svc.stop() end
  return r
end

-- the lines of metric `name`, in arrival order
local function named(r, name)
  local t = {}
  for _, l in ipairs(r.lines()) do
    if l.name == name then t[#t + 1] = l end
  end
  return t
end

local function sum(lines)
  local n = 0
  for _, l in ipairs(lines) do n = n + l.value end
  return n
end

local function all_valid(r, dog)
  local n = 0
  for _, l in ipairs(r.lines()) do
    assert.is_true(l.error == cjson.null, tostring(l.error) .. ": " .. tostring(l.raw))
    assert.is_true(l.rate == cjson.null, "no sample rate: " .. l.raw)
    if not dog then assert.is_true(l.tags == cjson.null, "no tags in plain StatsD: " .. l.raw) end
    n = n + 1
  end
  return n
end

-- every datagram at most max bytes, unless it holds a single line (or a negative gauge's pair)
local function datagrams_fit(r, max)
  local by = {}
  for _, l in ipairs(r.lines()) do
    by[l.datagram] = by[l.datagram] or { size = l.size, lines = {} }
    table.insert(by[l.datagram].lines, l)
  end
  local n = 0
  for _, d in pairs(by) do
    n = n + 1
    local pair = #d.lines == 2 and d.lines[1].name == d.lines[2].name and d.lines[1].value == 0
    assert.is_true(d.size <= max or #d.lines == 1 or pair, ("a datagram of %d bytes, %d lines"):format(d.size, #d.lines))
  end
  return n
end

describe("statsd backend", function()
  local r, agent
  before_each(function() r = receiver() end)
  after_each(function()
    if agent then agent:stop() agent = nil end
    if r then r.stop() r = nil end
  end)

  it("plain StatsD: increases that add up, negative gauges, .count/.sum, datagrams under max_payload", function()
    agent = S.start { config = S.calm_system .. ([[
backend "sd" { plugin = "statsd", port = %d, prefix = "bg.", max_payload = 512, interval = "0.3s" }
]]):format(r.port) }
    -- the first collections: the agent's own series, older than the backend, send gauges only
    assert.truthy(S.wait(function() return #r.lines() > 0 end, 10), "nothing received")
    agent:statsd("probe.requests:3|c\nprobe.depth:-2.5|g\nprobe.latency:0.2|ms\nprobe.latency:700|ms")
    local first = S.wait(function()
      local t = named(r, "bg.probe_requests")
      return #t > 0 and t
    end, 10)
    assert.truthy(first, "probe.requests never arrived")
    -- born after the backend started: its first sight carries all of it
    assert.equals(3, first[1].value)
    assert.equals("c", first[1].type)
    agent:statsd("probe.requests:2|c")
    assert.truthy(S.wait(function() return sum(named(r, "bg.probe_requests")) == 5 end, 10),
      "the increases do not add up to 5")
    -- more collections: zeros, never the total again
    assert.truthy(S.wait(function() return #named(r, "bg.probe_requests") >= 4 end, 10))
    assert.equals(5, sum(named(r, "bg.probe_requests")))

    -- a negative gauge: 0 then the value, next to each other in one datagram
    local lines = r.lines()
    local found = false
    for i, l in ipairs(lines) do
      if l.name == "bg.probe_depth" and l.value == -2.5 then
        local prev = lines[i - 1]
        assert.equals("bg.probe_depth", prev.name)
        assert.equals(0, prev.value)
        assert.equals(prev.datagram, l.datagram)
        assert.equals("g", l.type)
        assert.is_true(l.sign)
        found = true
      end
    end
    assert.is_true(found, "no negative gauge")

    -- the histogram: the observations' count and sum as increases, no buckets without tags
    assert.truthy(S.wait(function() return sum(named(r, "bg.probe_latency_seconds.count")) == 2 end, 10))
    assert.near(0.7002, sum(named(r, "bg.probe_latency_seconds.sum")), 1e-9)
    assert.equals(0, #named(r, "bg.probe_latency.bucket"))
    for _, l in ipairs(named(r, "bg.probe_latency_seconds.count")) do assert.equals("c", l.type) end

    -- the agent's own series are there too, prefixed, and everything is valid and fits
    local n = all_valid(r, false)
    assert.is_true(n > 20)
    for _, l in ipairs(r.lines()) do assert.equals("bg.", l.name:sub(1, 3)) end
    assert.is_true(datagrams_fit(r, 512) > 1)
  end)

  it("DogStatsD: tags with the global ones, made safe, UTF-8 kept; cumulative buckets", function()
    agent = S.start { config = S.calm_system .. ([[
backend "dd" { plugin = "statsd", host = "localhost", port = %d, flavor = "dogstatsd", tags = { env = "test", zone = "a|b" },
  interval = "0.3s", max_payload = 8192 }
]]):format(r.port) }
    assert.truthy(S.wait(function() return #r.lines() > 0 end, 10), "nothing received")
    local body = cjson.encode {
      { name = "probe.requests", type = "counter", value = 3,
        tags = { path = "/a b,c#d|e", u = "h\xc3\xa9llo \xe2\x9c\x93", e = "", env = "mine" } },
      { name = "probe.depth", type = "gauge", value = -2.5 },
      { name = "probe.latency", type = "histogram", value = 0.2, tags = { ep = "/x" } },
      { name = "probe.latency", type = "histogram", value = 7, tags = { ep = "/x" } },
    }
    local st, out = agent:post("/metrics/custom", body, { "Content-Type: application/json" })
    assert(st == 200 or st == 201 or st == 202, ("POST /metrics/custom: %s %s"):format(st, out))
    local c = S.wait(function() return named(r, "probe_requests")[1] end, 10)
    assert.truthy(c, "probe.requests never arrived")
    assert.equals(3, c.value)
    table.sort(c.tags)
    -- the series' env wins; the empty label is left out; ',', '#' and '|' become '_'
    assert.same({ "env:mine", "path:/a b_c_d_e", "u:h\xc3\xa9llo \xe2\x9c\x93", "zone:a_b" }, c.tags)
    local g = named(r, "probe_depth")[1]
    assert.equals(-2.5, g.value) -- DogStatsD has no relative gauges: no 0 first
    assert.same({ "env:test", "zone:a_b" }, g.tags)

    local buckets = S.wait(function()
      local t = named(r, "probe_latency.bucket")
      return #t > 0 and t
    end, 10)
    assert.truthy(buckets)
    -- the first collection that had them: cumulative counts by upper_bound, inf = the count
    local dgram, prev, last = buckets[1].datagram, 0, nil
    for _, l in ipairs(buckets) do
      if l.datagram == dgram then
        local ub
        for _, t in ipairs(l.tags) do ub = ub or t:match("^upper_bound:(.+)$") end
        assert.truthy(ub, "no upper_bound tag: " .. l.raw)
        assert.is_true(l.value >= prev, "cumulative")
        prev = l.value
        if ub ~= "inf" and tonumber(ub) < 0.2 then assert.equals(0, l.value) end
        if ub ~= "inf" and tonumber(ub) >= 7 then assert.equals(2, l.value) end
        last = ub
      end
    end
    assert.equals("inf", last)
    assert.equals(2, prev)
    assert.equals(2, named(r, "probe_latency.count")[1].value)
    assert.near(7.2, named(r, "probe_latency.sum")[1].value, 1e-9)
    all_valid(r, true)
    datagrams_fit(r, 8192)
  end)

  it("a name that does not resolve fails the send, which is retried and shown", function()
    agent = S.start { config = S.calm_system .. [[
settings { backend_backoff_initial = "0.05s", backend_backoff_max = "0.3s" }
backend "nowhere" { plugin = "statsd", host = "no-such-host.invalid", interval = "0.3s" }
]] }
    local b = S.wait(function()
      local _, d = agent:get_json("/health/detailed")
      for _, x in ipairs(d and d.backends or {}) do
        if x.name == "nowhere" and x.retries >= 2 and x.last_error then return x end
      end
    end, 15)
    assert.truthy(b, "the backend never failed")
    assert.truthy(b.last_error:match("^statsd: "), b.last_error)
    assert.equals(0, b.sent)
    assert.is_true(agent:alive())
  end)
end)
