-- History in a running agent: sampled every collection interval, queried from plugins through
-- beagle.query, and rollups kept across a restart.
local S = require "support"

local recall = [[
local q = require "beagle.query"
return beagle.check { name = "recall", interval = "300ms", retries = 0,
  run = function(opt, ctx)
    local long = q.max_over_time("persist.me", "2h")     -- past history_raw: the rollups
    local short = q.last("persist.me", "1m")              -- raw samples
    local rate = q.rate("persist.hits", "1m")
    return ctx.healthy("recalled", { long = type(long) == "number" and long or -1,
      short = type(short) == "number" and short or -1, rate = type(rate) == "number" and rate or -1 })
  end }
]]

describe("history", function()
  local dir, data
  setup(function()
    dir = S.tmpdir()
    S.write(dir .. "/recall.lua", recall)
    data = S.tmpdir()
  end)

  local env = { MONITORING_METRICS_COLLECTION_INTERVAL = "0.2", MONITORING_HISTORY_RAW = "60" }

  it("samples series and answers queries from plugins", function()
    local agent = S.start { plugins = dir, config = S.calm_system, env = env, args = { "--data", data } }
    agent:post("/metrics/custom", '{"name":"persist.me","type":"gauge","value":42}')
    for _ = 1, 5 do
      agent:post("/metrics/custom", '{"name":"persist.hits","type":"counter","value":10}')
      S.sleep(0.25)
    end
    local o = agent:wait_check("recall", function(c) return c.details and c.details.short == 42 end, 5)
    local log = agent:logtext()
    assert.is_true(agent:stop())
    assert.is_truthy(o, log)
    assert.is_true(o.details.rate > 0, tostring(o.details.rate))
  end)

  it("keeps rollups across a restart", function()
    local agent = S.start { plugins = dir, config = S.calm_system, env = env, args = { "--data", data } }
    local o = agent:wait_check("recall", function(c) return c.details and c.details.long == 42 end, 5)
    local log = agent:logtext()
    agent:stop()
    assert.is_truthy(o, log)
    -- the raw window did not survive: only rollups did
    assert.are.equal(-1, o.details.short)
    local f = io.open(data .. "/history.db")
    assert.is_truthy(f)
    if f then f:close() end
  end)
end)
