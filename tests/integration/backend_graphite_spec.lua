-- The graphite backend (plugins/backends/graphite.lua) in a running agent, sending to the carbon
-- line receiver of tests/receivers/graphite_receiver.py, whose parser is its own (written from
-- Graphite's documentation): every line well formed, Graphite 1.1 tags with what carbon refuses
-- sanitised, labels folded into the path, histograms as .count, .sum and .bucket, the prefix,
-- seconds; and a receiver that goes away and comes back on the same port (refused connections
-- retried, every collection delivered after).
local S = require "support"
local cjson = require "cjson"

local RECEIVER = S.src .. "/tests/receivers/graphite_receiver.py"

-- receiver(port, out): on port (else a free one), appending to out (else a file of its own)
local function receiver(port, out)
  out = out or S.tmpdir() .. "/lines.jsonl"
  local svc, got = S.receiver(("exec python3 %q %q %s"):format(RECEIVER, out, port or ""), "graphite receiver")
  local r = { port = got, svc = svc, out = out }
  -- in the order they were sent: by connection (each send is one), then by line
  function r.lines()
    local t = S.jsonl(out)
    table.sort(t, function(a, b)
      if a.conn ~= b.conn then return a.conn < b.conn end
      return a.line < b.line
    end)
    return t
  end
  function r.stop() svc.stop() end
  return r
end

local function post_series(agent)
  local body = cjson.encode {
    { name = "probe.requests", type = "counter", value = 3,
      tags = { path = "/a b;c=d", note = "~l1\nl2", u = "h\xc3\xa9llo \xe2\x9c\x93", name = "n1", e = "" } },
    { name = "probe.depth", type = "gauge", value = -2.5, tags = { k = "v.1" } },
    { name = "probe.latency", type = "histogram", value = 0.2, tags = { ep = "/x" } },
    { name = "probe.latency", type = "histogram", value = 7, tags = { ep = "/x" } },
  }
  local st, out = agent:post("/metrics/custom", body, { "Content-Type: application/json" })
  assert(st == 200 or st == 201 or st == 202, ("POST /metrics/custom: %s %s"):format(st, out))
end

local function find(r, pred)
  local found
  for _, l in ipairs(r.lines()) do
    if pred(l) then found = l end
  end
  return found
end

-- Every line the receiver got is one carbon stores as sent.
local function all_valid(r)
  local n = 0
  for _, l in ipairs(r.lines()) do
    assert.is_true(l.error == cjson.null, tostring(l.error) .. ": " .. tostring(l.raw))
    n = n + 1
  end
  return n
end

describe("graphite backend", function()
  local r, agent
  before_each(function() r = receiver() end)
  after_each(function()
    if agent then agent:stop() agent = nil end
    if r then r.stop() r = nil end
  end)

  it("Graphite 1.1 tags: sanitised names and values, .count/.sum/.bucket, prefix, seconds", function()
    agent = S.start { config = S.calm_system .. ([[
backend "carbon" { plugin = "graphite", host = "127.0.0.1", port = %d, prefix = "beagle.web 1",
  labels = { env = "test", zone = "a;b" }, interval = "0.3s" }
]]):format(r.port) }
    post_series(agent)
    local c = S.wait(function()
      return find(r, function(l) return l.name == "beagle.web_1.probe_requests_total" end)
    end, 10)
    assert.truthy(c, "the counter never arrived")
    -- blanks and ; become _, a value may not start with ~, the empty label is left out, and the
    -- label "name" (Graphite's own tag for the path) is renamed
    assert.same({ path = "/a_b_c=d", note = "_l1_l2", u = "h\xc3\xa9llo_\xe2\x9c\x93", exported_name = "n1",
      env = "test", zone = "a_b" }, c.tags)
    assert.equals(3, c.value)
    assert.is_true(math.abs(c.timestamp - S.now()) < 30)

    local g = find(r, function(l) return l.name == "beagle.web_1.probe_depth" end)
    assert.same({ k = "v.1", env = "test", zone = "a_b" }, g.tags)
    assert.equals(-2.5, g.value)

    local at = g.timestamp
    local function hist(suffix, le)
      return find(r, function(l)
        return l.name == "beagle.web_1.probe_latency." .. suffix and l.tags.ep == "/x" and l.timestamp == at
          and l.tags.le == le
      end)
    end
    assert.equals(2, hist("count").value)
    assert.equals(7.2, hist("sum").value)
    local n = 0
    for _, l in ipairs(r.lines()) do
      if l.name == "beagle.web_1.probe_latency.bucket" and l.tags.ep == "/x" and l.timestamp == at then
        n = n + 1
        local le = l.tags.le == "+Inf" and math.huge or tonumber(l.tags.le)
        assert.truthy(le, l.tags.le)
        assert.equals((0.2 <= le and 1 or 0) + (7 <= le and 1 or 0), l.value, "le=" .. l.tags.le)
      end
    end
    assert.is_true(n >= 2)
    assert.equals(2, hist("bucket", "+Inf").value)
    -- the agent's own series go too, and every line carbon got is one it stores as sent
    assert.truthy(find(r, function(l) return l.name:match("^beagle%.web_1%.beagle_") end))
    assert.is_true(all_valid(r) > 10)
    assert.is_true(agent:backend("carbon").sent > 0)
  end)

  it("labels folded into the path: name.key.value..., .bucket.le_<bound>", function()
    agent = S.start { config = S.calm_system .. ([[
backend "carbon" { plugin = "graphite", host = "127.0.0.1", port = %d, tags = false, interval = "0.3s" }
]]):format(r.port) }
    post_series(agent)
    local g = S.wait(function() return find(r, function(l) return l.name == "probe_depth.k.v_1" end) end, 10)
    assert.truthy(g, "the gauge never arrived")
    assert.equals(cjson.null, g.tags)
    assert.equals(-2.5, g.value)
    local c = find(r, function(l) return l.nodes[1] == "probe_requests_total" end)
    -- key, value, key, value... in key order, each node with only [A-Za-z0-9_:-]
    assert.same({ "probe_requests_total", "name", "n1", "note", "_l1_l2", "path", "_a_b_c_d", "u", "h_llo__" },
      c.nodes)
    assert.equals(3, c.value)
    local at = g.timestamp
    local inf = find(r, function(l) return l.name == "probe_latency.ep._x.bucket.le_inf" and l.timestamp == at end)
    assert.equals(2, inf.value)
    assert.equals(2, find(r, function(l) return l.name == "probe_latency.ep._x.count" and l.timestamp == at end).value)
    assert.equals(7.2, find(r, function(l) return l.name == "probe_latency.ep._x.sum" and l.timestamp == at end).value)
    local n = 0
    for _, l in ipairs(r.lines()) do
      local b = l.timestamp == at and l.name:match("^probe_latency%.ep%._x%.bucket%.le_(.+)$")
      if b and b ~= "inf" then
        n = n + 1
        local le = tonumber((b:gsub("_", ".")))
        assert.truthy(le, b)
        assert.equals((0.2 <= le and 1 or 0) + (7 <= le and 1 or 0), l.value, b)
      end
    end
    assert.is_true(n >= 1)
    assert.is_true(all_valid(r) > 10)
  end)

  it("retries while carbon is down and delivers every collection when it is back", function()
    agent = S.start { config = S.calm_system .. ([[
settings { backend_backoff_initial = "0.05s", backend_backoff_max = "0.3s" }
backend "carbon" { plugin = "graphite", host = "127.0.0.1", port = %d, interval = "0.25s", batch_size = 100000 }
]]):format(r.port) }
    post_series(agent)
    local function depth_stamps()
      local ts = {}
      for _, l in ipairs(r.lines()) do
        if l.name == "probe_depth" then ts[#ts + 1] = l.timestamp end
      end
      return ts
    end
    assert.truthy(S.wait(function() return #depth_stamps() >= 1 end, 10))
    local port = r.port
    r.stop()
    local down = S.wait(function()
      local b = agent:backend("carbon")
      return b and b.buffered > 0 and b.retries >= 2 and b
    end, 10)
    assert.truthy(down, "nothing buffered while carbon was down")
    assert.truthy(tostring(down.last_error):match("connect"), tostring(down.last_error))
    S.sleep(1)
    local before = agent:backend("carbon").collected
    local lines_before = #r.lines()
    r = receiver(port, r.out)
    local b = S.wait(function()
      local x = agent:backend("carbon")
      return x and x.sent >= before and x
    end, 15)
    assert.truthy(b, "the buffer never drained")
    assert.equals(0, b.dropped)
    -- the collections made while carbon was down arrive after it is back, oldest first; a
    -- second resolution collapses collections 0.25 s apart, so count lines, not stamps
    assert.is_true(#r.lines() > lines_before)
    local ts = depth_stamps()
    assert.is_true(#ts >= 4, #ts .. " collections")
    for i = 2, #ts do assert.is_true(ts[i] >= ts[i - 1], "out of order at " .. i) end
    assert.is_true(all_valid(r) > 0)
  end)
end)
