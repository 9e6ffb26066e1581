-- Plugin runs are sliced (issue 13 §2): code that computes without end yields back to the loop
-- every millisecond or so and resumes on a later turn, so the agent keeps answering and the
-- other checks keep their schedule while it runs, until its deadline ends it. Here the budget
-- is out of the way (10^12 instructions) and the deadlines are long, so only slicing can keep
-- the loop free: without it each of these runs would hold the loop for its whole timeout.
local S = require "support"

local function check(name, body, extra)
  return ([[
return beagle.check { name = %q, retries = 0, %s
  run = function(opt, ctx) %s end }
]]):format(name, extra or "", body)
end

describe("sliced plugin runs", function()
  local agent, dir, rules
  setup(function()
    dir, rules = S.tmpdir(), S.tmpdir()
    S.write(dir .. "/ticker.lua", check("ticker", "return ctx.healthy('tick')", 'interval = "100ms",'))
    local long = 'interval = "1h", timeout = "15s",'
    S.write(dir .. "/endless.lua", check("endless", "while true do end", long))
    S.write(dir .. "/nested.lua", check("nested",
      "coroutine.wrap(function() local co = coroutine.wrap(function() while true do end end) co() end)()", long))
    S.write(dir .. "/caught.lua", check("caught",
      "while true do pcall(function() for i = 1, 1e6 do end end) end", long))
    S.write(dir .. "/finite.lua", check("finite",
      "local x = 0 for i = 1, 3e7 do x = x + i end return ctx.healthy(tostring(x))", long))
    -- a rule file whose top level, helper and expr are plugin code too
    S.write(rules .. "/spin.lua", [[
local function spin() while true do end end
alert "spins" { expr = function(q) spin() return 1 end, condition = ">", threshold = 0, every = "1s" }
]])
    agent = S.start { plugins = dir, args = { "--rules", rules }, config = S.calm_system .. [[
alert_evaluation_interval = "1s"
]], env = { MONITORING_PLUGIN_INSTRUCTION_BUDGET = "1000000000000" } }
  end)
  teardown(function() if agent then agent:stop() end end)

  it("keeps the loop answering and the other checks on schedule while runs compute", function()
    -- the four long runs start at once and compute for up to 15 s each (the finite one less)
    assert.is_truthy(agent:wait_check("ticker", function(c) return c.runs and c.runs > 0 end, 5))
    S.sleep(0.5)
    local e0 = agent:check("endless")
    assert.is_true(not e0.runs or e0.runs == 0, "endless finished before the window: " .. tostring(e0.message))
    local first = agent:check("ticker").runs
    local answered = 0
    for _ = 1, 10 do
      local t0 = S.now()
      local st = agent:get("/health/live")
      if st == 200 and S.now() - t0 < 1 then answered = answered + 1 end
      S.sleep(0.1)
    end
    local later = agent:check("ticker").runs
    assert.are.equal(10, answered)
    assert.is_true(later >= first + 5, ("ticker ran %d then %d"):format(first, later))
    -- the endless ones were still running meanwhile (no result yet)
    local e = agent:check("endless")
    assert.is_true(not e.runs or e.runs == 0, "endless finished early: " .. tostring(e.message))
  end)

  it("finishes a long finite run and ends the endless ones at their deadline", function()
    local f = agent:wait_check("finite", function(c) return c.runs and c.runs > 0 end, 30)
    assert.are.equal("healthy", f.status, f.message)
    assert.are.equal(tostring(3e7 * (3e7 + 1) / 2), f.message)
    for _, name in ipairs { "endless", "nested", "caught" } do
      local o = agent:wait_check(name, function(c) return c.runs and c.runs > 0 end, 30)
      assert.are.equal("unhealthy", o.status)
      assert.are.equal("timeout", o.message, name)
    end
  end)

  it("slices a rule file's helper functions like a check", function()
    local ok = S.wait(function()
      local _, rs = agent:get_json("/alerts/rules")
      for _, r in ipairs(rs and (rs.rules or rs) or {}) do
        if r.name == "spins" and r.error then return r end
      end
    end, 20)
    assert.is_truthy(ok, "the looping rule never reported an error")
    assert.is_truthy(ok.error:find("timeout", 1, true), ok.error)
    assert.are.equal(200, (agent:get("/health/live")))
  end)
end)
