-- The agent's own beagle_* series survive a flood of user series (issue 14 §3): the series
-- limits are for what users send, and a full registry must not hide the agent's memory,
-- plugin_up, loop lag or StatsD counters, nor let a user take over their names.
local S = require "support"

describe("the agent's own series under a flood of user series", function()
  local agent
  setup(function()
    agent = S.start { config = S.calm_system, env = { MONITORING_MAX_SERIES = "50" } }
  end)
  teardown(function() if agent then agent:stop() end end)

  local function metrics()
    local _, body = agent:get("/metrics")
    return body
  end

  it("keeps every beagle_* series once StatsD names filled the registry", function()
    -- flood first, before the first scrape creates the gauges read on demand
    local lines = {}
    for i = 1, 400 do lines[i] = ("flood.name%d:1|c"):format(i) end
    agent:statsd_tcp(table.concat(lines, "\n") .. "\n")
    assert.is_truthy(S.wait(function()
      return metrics():find('beagle_series_dropped_total{reason="max_series"} [1-9]')
    end, 10), metrics())
    local m = metrics()
    for _, want in ipairs {
      "\nbeagle_resident_memory_bytes ", "\nbeagle_uptime_seconds ", "\nbeagle_http_connections_open ",
      'beagle_plugin_up{plugin="system"} 1', "\nbeagle_statsd_lines_total ",
      "\nbeagle_loop_lag_seconds_count ", "\nbeagle_loop_lag_max_seconds ",
    } do
      assert.is_truthy(m:find(want, 1, true), want .. " is missing from\n" .. m)
    end
    -- the flood is the one that was cut: user series stop at the limit
    local user = 0
    for _ in m:gmatch("\nflood_name%d+_total ") do user = user + 1 end
    assert.is_true(user <= 50, tostring(user))
  end)

  it("refuses beagle_* names from StatsD and POST /metrics/custom", function()
    local function bad() return tonumber(metrics():match("\nbeagle_statsd_bad_lines_total (%d+)\n")) end
    local before = bad()
    agent:statsd_tcp("beagle_resident_memory_bytes:1|c\nbeagle.uptime_seconds:5|g\n")
    local st, body = agent:post("/metrics/custom", '{"name":"beagle.plugin_up","type":"gauge","value":0}')
    assert.are.equal(400, st)
    local o = S.json(body)
    assert.is_truthy(o.errors[1].reason:find("reserved", 1, true), body)
    assert.is_truthy(S.wait(function() return bad() == before + 2 end, 10), metrics())
    local m = metrics()
    assert.is_falsy(m:find("beagle_resident_memory_bytes_total", 1, true))
    assert.is_truthy(m:find("# TYPE beagle_resident_memory_bytes gauge", 1, true), m)
  end)
end)
