-- beagle_loop_lag_seconds in the running agent: a histogram fed on every loop turn (core/
-- looplag.c; tests/c/test_looplag.c has the stalls) and its windowed maximum.
local S = require "support"

local function series(body, name)
  local v = body:match("\n" .. name:gsub("[%[%]%-%.%+]", "%%%0") .. " ([^\n]+)")
  return tonumber(v)
end

describe("loop lag", function()
  it("is a histogram with millisecond buckets and a max gauge, fed on every turn", function()
    local agent = S.start { config = S.calm_system }
    local st, body = agent:get("/metrics")
    assert.are.equal(200, st)
    assert.is_truthy(body:find("# TYPE beagle_loop_lag_seconds histogram", 1, true), body)
    assert.is_truthy(body:find("# TYPE beagle_loop_lag_max_seconds gauge", 1, true), body)
    for _, le in ipairs { "0.001", "0.01", "0.1", "1" } do
      assert.is_truthy(body:find('beagle_loop_lag_seconds_bucket{le="' .. le .. '"}', 1, true), le)
    end
    local n1 = series(body, "beagle_loop_lag_seconds_count")
    local max = series(body, "beagle_loop_lag_max_seconds")
    assert.is_true(n1 >= 1, tostring(n1))
    assert.is_true(max >= 0 and max < 60, tostring(max))
    -- every request is at least one more turn: the count moves without any timer
    for _ = 1, 3 do agent:get("/health/live") end
    local _, body2 = agent:get("/metrics")
    local n2 = series(body2, "beagle_loop_lag_seconds_count")
    assert.is_true(n2 >= n1 + 3, ("%s -> %s"):format(n1, n2))
    -- the JSON view has the quantiles and the exact maximum since the start, which the
    -- windowed gauge never exceeds
    local _, jbody = agent:get("/metrics", { "Accept: application/json" })
    agent:stop()
    local o = assert(S.json(jbody), jbody)
    local fam = {}
    for _, m in ipairs(o.metrics) do fam[m.name] = m end
    local h = fam.beagle_loop_lag_seconds.series[1]
    local g = fam.beagle_loop_lag_max_seconds.series[1]
    assert.is_number(h.p99)
    assert.is_true(h.count >= n2, tostring(h.count))
    assert.is_true(g.value <= h.max, ("%s > %s"):format(g.value, h.max))
  end)
end)
