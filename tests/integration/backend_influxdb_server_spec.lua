-- The influxdb backend against a real InfluxDB 1.x (Debian's influxdb, influxd started on free
-- ports with its files in a temporary directory): what InfluxDB's own parser stores of labels
-- with spaces, commas, equals signs, quotes, backslashes (before an escaped character too),
-- newlines and UTF-8, read back with InfluxQL, in both metric versions. The receiver of
-- backend_influxdb_spec.lua checks the protocol from the reference; this checks it against the
-- server. Skipped (pending) where influxd is not installed.
local S = require "support"
local cjson = require "cjson"

local function influxd()
  local d = S.tmpdir()
  local port, rpc = S.free_port(), S.free_port()
  S.write(d .. "/influxdb.conf", ([[
reporting-disabled = true
bind-address = "127.0.0.1:%d"
[meta]
  dir = "%s/meta"
[data]
  dir = "%s/data"
  wal-dir = "%s/wal"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:%d"
  log-enabled = false
[monitor]
  store-enabled = false
]]):format(rpc, d, d, d, port))
  local svc = S.service(("exec influxd -config %q"):format(d .. "/influxdb.conf"))
  local url = "http://127.0.0.1:" .. port
  assert(S.wait(function() return (S.http("GET", url .. "/ping")) == 204 end, 20),
    "influxd did not start: " .. svc.output())
  local db = { url = url, svc = svc }
  -- query(q) -> the series of the first statement's result, or {}
  function db.query(q)
    local st, body = S.http("POST", url .. "/query?db=beagle", "q=" .. q:gsub("[^%w]", function(c)
      return ("%%%02X"):format(c:byte())
    end), { "Content-Type: application/x-www-form-urlencoded" })
    assert(st == 200, ("query %s: %s %s"):format(q, st, body))
    local r = cjson.decode(body).results[1]
    assert(r.error == nil, r.error)
    return r.series or {}
  end
  function db.stop() svc.stop() end
  db.query('CREATE DATABASE "beagle"')
  return db
end

-- The rows of a series as { column = value } tables.
local function rows(series)
  local out = {}
  for _, s in ipairs(series) do
    for _, v in ipairs(s.values) do
      local row = {}
      for i, c in ipairs(s.columns) do row[c] = v[i] end
      out[#out + 1] = row
    end
  end
  return out
end

local LABELS = { path = "/a b,c=d", q = 'x"y\\z', bs = "a\\ b\\,c\\=d", note = "l1\nl2", u = "h\xc3\xa9llo \xe2\x9c\x93" }

describe("influxdb backend against InfluxDB 1.x", function()
  local db, agent
  local have = os.execute("command -v influxd >/dev/null 2>&1")
  have = have == true or have == 0
  before_each(function() if have then db = influxd() end end)
  after_each(function()
    if agent then agent:stop() agent = nil end
    if db then db.stop() db = nil end
  end)

  for _, version in ipairs { 1, 2 } do
    it(("stores every label and value as posted (metric version %d)"):format(version), function()
      if not have then pending("influxd is not installed (apt-get install influxdb)") return end
      agent = S.start { config = S.calm_system .. ([[
backend "influx" { plugin = "influxdb", url = "%s", api = "v1", database = "beagle", metric_version = %d,
  precision = "ms", labels = { env = "test" }, interval = "0.3s" }
]]):format(db.url, version) }
      local body = cjson.encode {
        { name = "probe.requests", type = "counter", value = 3, tags = LABELS },
        { name = "probe.latency", type = "histogram", value = 0.2, tags = { ep = "/x" } },
        { name = "probe.latency", type = "histogram", value = 7, tags = { ep = "/x" } },
      }
      local st = agent:post("/metrics/custom", body, { "Content-Type: application/json" })
      assert.is_true(st >= 200 and st < 300)
      local m1 = version == 1
      local counter_q = m1 and 'SELECT * FROM "probe_requests_total"'
        or 'SELECT "probe_requests_total" FROM "prometheus" WHERE "probe_requests_total" > 0 GROUP BY *'
      local got = S.wait(function()
        local r = rows(db.query(counter_q))
        if #r > 0 then return r end
      end, 15)
      assert.truthy(got, "nothing stored")
      -- InfluxDB returns the tags as columns (version 1) or as the series' tags (GROUP BY *)
      local tags
      if m1 then
        tags = got[#got]
        assert.equals(3, tags.counter)
      else
        local series = db.query(counter_q)
        tags = series[#series].tags
        local r = rows(series)
        assert.equals(3, r[#r].probe_requests_total)
      end
      assert.equals("/a b,c=d", tags.path)
      assert.equals('x"y\\z', tags.q)
      assert.equals("a\\ b\\,c\\=d", tags.bs)
      assert.equals("l1\\nl2", tags.note) -- a newline cannot be in a line: written as \n
      assert.equals("h\xc3\xa9llo \xe2\x9c\x93", tags.u)
      assert.equals("test", tags.env)

      if m1 then
        local h = S.wait(function()
          local r = rows(db.query('SELECT * FROM "probe_latency" WHERE "ep" = \'/x\''))
          return #r > 0 and r[#r]
        end, 10)
        assert.equals(2, h.count)
        assert.equals(7.2, h.sum)
        assert.equals(2, h["+Inf"])
        local n = 0
        for k, v in pairs(h) do
          local le = tonumber(k)
          if le then
            n = n + 1
            assert.equals((0.2 <= le and 1 or 0) + (7 <= le and 1 or 0), v, "le=" .. k)
          end
        end
        assert.is_true(n >= 2)
      else
        local r = S.wait(function()
          local x = rows(db.query('SELECT "probe_latency_bucket" FROM "prometheus" WHERE "ep" = \'/x\' GROUP BY "le"'))
          return #x > 0 and db.query('SELECT last("probe_latency_bucket") FROM "prometheus" WHERE "ep" = \'/x\' GROUP BY "le"')
        end, 10)
        assert.truthy(r)
        for _, s in ipairs(r) do
          local le = s.tags.le == "+Inf" and math.huge or tonumber(s.tags.le)
          assert.equals((0.2 <= le and 1 or 0) + (7 <= le and 1 or 0), s.values[1][2], "le=" .. s.tags.le)
        end
        assert.is_true(#r >= 2)
      end
      -- every write was taken whole: nothing refused, nothing dropped
      local _, d = agent:get_json("/health/detailed")
      local b = d.backends[1]
      assert.equals(0, b.dropped)
      assert.is_true(b.sent > 0)
    end)
  end
end)
