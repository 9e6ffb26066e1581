-- Start-up order, readiness, write auth, graceful shutdown, JSON logs.
local S = require "support"

describe("lifecycle", function()
  it("is not ready until the first round of checks is done, then ready", function()
    local dir = S.tmpdir()
    S.write(dir .. "/slowpoke.lua", [[
return beagle.check { name = "slowpoke", interval = "1h",
  run = function(opt, ctx) ctx.sleep(1) return ctx.healthy("late") end }
]])
    local agent = S.start { plugins = dir, config = S.calm_system }
    local st, o = agent:get_json("/health/ready")
    assert.are.equal(503, st)
    assert.are.equal("not ready", o.status)
    assert.are.equal(200, (agent:get("/health/live")))
    local ready = S.wait(function() return (agent:get("/health/ready")) == 200 end, 4)
    agent:stop()
    assert.is_truthy(ready)
  end)

  it("is not ready while a critical check is unhealthy", function()
    local agent = S.start { config = S.calm_system .. [[
check "db" { plugin = "tcp", port = 1, critical = true, retries = 0 }
check "extra" { plugin = "tcp", port = 2, retries = 0 }
]] }
    local o = S.wait(function()
      local st, b = agent:get_json("/health/ready")
      if st == 503 and b.reason == "critical checks unhealthy" then return b end
    end, 4)
    agent:stop()
    assert.is_truthy(o)
    assert.are.same({ "db" }, o.checks)
  end)

  it("requires the bearer token for writes when api_token is set", function()
    local agent = S.start { env = { MONITORING_API_TOKEN = "s3cret" } }
    local st, body = agent:post("/-/reload", "")
    assert.are.equal(401, st)
    assert.are.equal(401, S.json(body).status)
    st = agent:post("/-/reload", "", { "Authorization: Bearer wrong" })
    assert.are.equal(401, st)
    st = agent:post("/-/reload", "", { "Authorization: Bearer s3cret" })
    assert.are.equal(200, st)
    agent:stop()
  end)

  it("lets a check in flight finish on SIGTERM, then exits", function()
    local dir = S.tmpdir()
    S.write(dir .. "/busy.lua", [[
return beagle.check { name = "busy", interval = "1h", timeout = "20s",
  run = function(opt, ctx) ctx.sleep(1) beagle.log.info("busy finished") return ctx.healthy() end }
]])
    local agent = S.start { plugins = dir, config = S.calm_system }
    S.sleep(0.2)
    local t0 = S.now()
    agent:signal("TERM")
    local gone = S.wait(function() return not agent:alive() end, 8)
    local took = S.now() - t0
    local log = agent:logtext()
    agent.pid = nil
    assert.is_truthy(gone)
    assert.is_truthy(log:find("busy finished", 1, true), log)
    assert.is_true(took >= 0.5 and took < 5, tostring(took))
  end)

  it("cancels checks still running after the grace period", function()
    local dir = S.tmpdir()
    S.write(dir .. "/stuck.lua", [[
return beagle.check { name = "stuck", interval = "1h", timeout = "60s",
  run = function(opt, ctx) ctx.sleep(50) return ctx.healthy() end }
]])
    local agent = S.start { plugins = dir, env = { MONITORING_SHUTDOWN_GRACE = "0.5" } }
    S.sleep(0.2)
    local t0 = S.now()
    agent:signal("TERM")
    local gone = S.wait(function() return not agent:alive() end, 8)
    local took = S.now() - t0
    local log = agent:logtext()
    agent.pid = nil
    assert.is_truthy(gone)
    assert.is_true(took < 3, tostring(took))
    assert.is_truthy(log:find("cancelling checks still running", 1, true), log)
  end)

  it("writes JSON log lines on request", function()
    local agent = S.start { args = { "--log-format", "json" } }
    agent:stop()
    local n = 0
    for line in agent:logtext():gmatch("[^\n]+") do
      local o = S.json(line)
      assert.is_truthy(o, line)
      assert.is_string(o.time)
      assert.is_string(o.level)
      assert.is_string(o.msg)
      n = n + 1
    end
    assert.is_true(n >= 3)
  end)
end)
