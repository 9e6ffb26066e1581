-- How a check instance runs: retries wait health_check_retry_delay (capped to fit the
-- interval) instead of running back to back, and the budget, memory and timeout set on the
-- instance are the ones its runs get; bad values stop the start naming the check and value.
local S = require "support"

-- Log times (seconds) of the lines with msg="attempt" for check `name`, in order.
local function attempt_times(log, name)
  local out = {}
  for line in log:gmatch("[^\n]+") do
    if line:find("msg=attempt", 1, true) and (line .. " "):find(" check=" .. name .. " ", 1, true) then
      local h, m, sec = line:match("^time=%d+%-%d+%-%d+T(%d+):(%d+):([%d%.]+)Z")
      out[#out + 1] = tonumber(h) * 3600 + tonumber(m) * 60 + tonumber(sec)
    end
  end
  return out
end

local function run_cli(args, env)
  local prefix = ""
  for k, v in pairs(env or {}) do prefix = prefix .. ("%s=%q "):format(k, v) end
  return S.sh(("cd %q && %s%q %s"):format(S.tmpdir(), prefix, S.bin, args))
end

-- The test plugins' own automatic instances (all their options have defaults) stay off: an
-- endless "spin" of the default budget and timeout would hold the loop for 10 s.
local quiet = S.calm_system .. [[
check "spin" { enabled = false }
check "sleeper" { enabled = false }
check "hog" { enabled = false }
]]

describe("check runs", function()
  local dir
  setup(function()
    dir = S.tmpdir()
    -- fails every time, and says when it ran
    S.write(dir .. "/flaky.lua", [[
return beagle.check { name = "flaky", interval = "1h",
  run = function(opt, ctx)
    beagle.log.info("attempt", { check = ctx.name })
    return ctx.unhealthy("down")
  end }
]])
    S.write(dir .. "/spin.lua", [[
return beagle.check { name = "spin", run = function(opt, ctx) while true do end end }
]])
    S.write(dir .. "/sleeper.lua", [[
return beagle.check { name = "sleeper", run = function(opt, ctx) ctx.sleep(10) return ctx.healthy() end }
]])
    -- grows its state by about 8 MiB, then is healthy
    S.write(dir .. "/hog.lua", [[
return beagle.check { name = "hog",
  run = function(opt, ctx)
    local t = {}
    for i = 1, 80 do t[i] = ("x"):rep(100 * 1024) .. i end
    return ctx.healthy(("%d blocks"):format(#t))
  end }
]])
  end)

  it("retries a failed attempt after health_check_retry_delay, not back to back", function()
    local agent = S.start { plugins = dir, env = { MONITORING_HEALTH_CHECK_RETRY_DELAY = "400ms" },
      config = quiet .. [[
check "flaky" { retries = 2 }
check "squeezed" { plugin = "flaky", retries = 3, interval = "1s" }
]] }
    local r = S.wait(function()
      local c = agent:check("flaky")
      return c and c.attempts == 3 and c
    end, 6)
    local squeezed = agent:check("squeezed")
    local log = agent:logtext()
    agent:stop()
    assert.is_truthy(r, log)
    assert.are.equal("unhealthy", r.status)
    local t = attempt_times(log, "flaky")
    assert.is_true(#t >= 3, log)
    for i = 2, 3 do
      local gap = t[i] - t[i - 1]
      assert.is_true(gap >= 0.38, ("attempt %d came %.3f s after the one before"):format(i, gap))
    end
    assert.are.equal(0.4, r.retry_delay)
    -- 4 attempts in a 1 s interval: the delay is cut to 1 s / 4
    assert.is_true(math.abs(squeezed.retry_delay - 0.25) < 1e-9, tostring(squeezed.retry_delay))
    local ts = attempt_times(log, "squeezed")
    assert.is_true(#ts >= 4, log)
    for i = 2, 4 do assert.is_true(ts[i] - ts[i - 1] >= 0.23, ("%d: %.3f"):format(i, ts[i] - ts[i - 1])) end
  end)

  it("gives a retry that waits up at shutdown, reporting the last failure", function()
    local agent = S.start { plugins = dir, env = { MONITORING_HEALTH_CHECK_RETRY_DELAY = "30s" },
      config = quiet .. 'check "flaky" { retries = 1, interval = "1h" }\n' }
    S.wait(function() return #attempt_times(agent:logtext(), "flaky") >= 1 end, 4)
    local t0 = S.now()
    assert.is_true(agent:stop(5))
    assert.is_true(S.now() - t0 < 3)
    assert.are.equal(1, #attempt_times(agent:logtext(), "flaky"))
  end)

  it("reports a run ended for its budget or its interval at once, without retries", function()
    local agent = S.start { plugins = dir, config = quiet .. [[
check "flaky" { enabled = false }
check "spin_1s" { plugin = "spin", interval = "1s", timeout = "10s", retries = 3, budget = 1000000000000 }
check "spin_budget3" { plugin = "spin", interval = "1h", budget = 100000, retries = 3 }
]] }
    local t0 = S.now()
    local got = S.wait(function()
      local a, b = agent:check("spin_1s"), agent:check("spin_budget3")
      if a and a.runs and a.runs > 0 and b and b.runs and b.runs > 0 then return { a, b } end
    end, 8)
    local took = S.now() - t0
    local log = agent:logtext()
    agent:stop()
    assert.is_truthy(got, log)
    -- the timeout is cut to the interval, and a retry could not start inside it any more
    assert.are.equal(1, got[1].timeout)
    assert.are.equal("timeout", got[1].message)
    assert.are.equal(1, got[1].attempts)
    assert.is_true(took < 4, tostring(took))
    -- the same code would exceed the same budget again
    assert.are.equal("instruction budget exceeded", got[2].message)
    assert.are.equal(1, got[2].attempts)
  end)

  it("honours the budget, timeout and memory set on the instance", function()
    local agent = S.start { plugins = dir,
      env = { MONITORING_PLUGIN_INSTRUCTION_BUDGET = "1000000000000" },
      config = quiet .. [[
check "flaky" { enabled = false }
check "spin_budget" { plugin = "spin", budget = 100000, timeout = "10s", retries = 0, interval = "1h" }
check "spin_timeout" { plugin = "spin", timeout = "300ms", retries = 0, interval = "1h" }
check "sleep_timeout" { plugin = "sleeper", timeout = "300ms", retries = 0, interval = "1h" }
check "hog_small" { plugin = "hog", memory = "1MB", retries = 0, interval = "1h" }
check "hog_big" { plugin = "hog", memory = "32MB", retries = 0, interval = "1h" }
]] }
    local names = { "spin_budget", "spin_timeout", "sleep_timeout", "hog_small", "hog_big" }
    local got = S.wait(function()
      local all = {}
      for _, n in ipairs(names) do
        local c = agent:check(n)
        if not (c and c.runs and c.runs > 0) then return nil end
        all[n] = c
      end
      return all
    end, 8)
    local log = agent:logtext()
    agent:stop()
    assert.is_truthy(got, log)
    local b = got.spin_budget
    assert.are.equal(100000, b.budget)
    assert.are.equal("unhealthy", b.status)
    assert.are.equal("instruction budget exceeded", b.message)
    assert.is_true(b.response_time < 2, tostring(b.response_time))
    for _, n in ipairs { "spin_timeout", "sleep_timeout" } do
      local c = got[n]
      assert.are.equal("timeout", c.message, n)
      assert.is_true(c.response_time >= 0.25 and c.response_time < 2, n .. " " .. c.response_time)
      assert.are.equal(1e12, c.budget)
    end
    assert.are.equal(1024 * 1024, got.hog_small.memory)
    assert.are.equal("memory limit", got.hog_small.message)
    assert.are.equal("healthy", got.hog_big.status, got.hog_big.message)
    assert.are.equal(32 * 1024 * 1024, got.hog_big.memory)
  end)

  it("refuses bad limits, naming the check and the value", function()
    local cases = {
      { 'budget = -5', 'check "x": budget = -5: must be a whole number of VM instructions' },
      { 'budget = 12.5', 'check "x": budget = 12.5: must be a whole number' },
      { 'budget = "lots"', 'check "x": budget = "lots": must be a whole number' },
      { 'memory = "16XB"', 'check "x": memory = "16XB": "16XB" is not a size' },
      { 'memory = "1GB"', 'check "x": memory = "1GB": more than the plugin state may hold' },
      { 'memory = 0', 'check "x": memory = 0: must be at least 1 byte' },
      { 'timeout = 0', 'check "x": timeout = 0: must be more than 0' },
      { 'timeout = "soon"', 'check "x": timeout = "soon": "soon" is not a duration' },
      { 'retries = 1.5', 'check "x": retries = 1.5: must be a whole number >= 0' },
    }
    for _, c in ipairs(cases) do
      local cdir = S.tmpdir()
      S.write(cdir .. "/beagle.lua", S.calm_system .. ('check "x" { plugin = "flaky", %s }\n'):format(c[1]))
      local out, code = run_cli(("check -c %q --plugins %q x"):format(cdir .. "/beagle.lua", dir))
      assert.are_not.equal(0, code, c[1])
      local line = select(2, S.calm_system:gsub("\n", "")) + 1
      assert.is_truthy(out:find(("beagle.lua:%d: "):format(line) .. c[2], 1, true), c[1] .. "\n" .. out)
    end
    -- and good ones pass the plugin's own validation (memory is the agent's key, not an option)
    local cdir = S.tmpdir()
    S.write(cdir .. "/beagle.lua", S.calm_system ..
      'check "x" { plugin = "hog", memory = "16MB", budget = 5000000, timeout = "2s" }\n')
    local out, code = run_cli(("check -c %q --plugins %q x"):format(cdir .. "/beagle.lua", dir))
    assert.are.equal(0, code, out)
    assert.is_truthy(out:find("x: healthy", 1, true), out)
  end)
end)
