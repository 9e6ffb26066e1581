-- Alert rules in a running agent: a rule file fires on a metric, notifies, resolves, survives a
-- bad edit and a kill -9.
local S = require "support"

local rule = [[
route { channels = { "log" }, group_wait = "0s", group_interval = "1s", repeat_interval = "1h" }
alert "queue_backlog" {
  metric = "queue.depth", condition = ">", threshold = 10, duration = "0s", every = "1s",
  severity = "critical", message = "queue at {{ value }}", tags = { team = "ops" },
}
]]

describe("alert rules", function()
  local dir, data, agent, plugins
  local env = { MONITORING_METRICS_COLLECTION_INTERVAL = "0.1" }
  setup(function()
    dir = S.tmpdir()
    data = S.tmpdir()
    plugins = S.tmpdir()
    S.write(dir .. "/queue.lua", rule)
    -- the metric comes from a check that runs at start, so it is back right after a restart
    S.write(plugins .. "/feeder.lua", [=[
return beagle.check { name = "feeder", interval = "1h",
  run = function(opt, ctx) beagle.set_gauge("queue.depth", 50) return ctx.healthy() end }
]=])
  end)
  teardown(function() if agent then agent:stop() end end)

  local function alerts()
    local _, o = agent:get_json("/alerts")
    return o and o.alerts or {}
  end

  local function firing()
    for _, a in ipairs(alerts()) do
      if a.name == "queue_backlog" and a.state == "firing" then return a end
    end
  end

  it("fires when the metric crosses the threshold and notifies", function()
    agent = S.start { config = S.calm_system, env = env, plugins = plugins, args = { "--rules", dir, "--data", data } }
    local a = S.wait(firing, 5)
    assert.is_truthy(a, agent:logtext())
    assert.are.equal("ops", a.labels.team)
    assert.are.equal("critical", a.labels.severity)
    assert.are.equal("queue at 50", a.annotations.message)
    assert.is_string(a.startsAt)
    assert.is_truthy(S.wait(function() return agent:logtext():find('msg="alert notification"', 1, true) end, 3))
  end)

  it("lists the rule with its file, state and last evaluation", function()
    local _, o = agent:get_json("/alerts/rules")
    local r
    for _, x in ipairs(o.rules) do if x.name == "queue_backlog" then r = x end end
    assert.is_truthy(r)
    assert.are.equal(dir .. "/queue.lua", r.file)
    assert.is_string(r.last_evaluation)
  end)

  it("keeps the old rules when the file breaks, and says why", function()
    S.write(dir .. "/queue.lua", rule .. "\nalert \"oops\" { condition = \"bigger\" }\n")
    local err = S.wait(function()
      local _, o = agent:get_json("/alerts/rules")
      for _, x in ipairs(o.rules) do if x.file_error then return x.file_error end end
    end, 3)
    assert.is_truthy(err)
    assert.is_truthy(err:find("bigger", 1, true), err)
    assert.is_truthy(firing())
    S.write(dir .. "/queue.lua", rule)
  end)

  it("keeps a firing alert with its startsAt across kill -9", function()
    local before = firing()
    assert.is_truthy(before)
    agent:signal("KILL")
    S.wait(function() return not agent:alive() end, 3)
    agent.pid = nil
    agent = S.start { config = S.calm_system, env = env, plugins = plugins, args = { "--rules", dir, "--data", data } }
    -- restored from the store, and still firing after the first evaluations
    S.sleep(2.5)
    local after
    for _, a in ipairs(alerts()) do if a.fingerprint == before.fingerprint then after = a end end
    assert.is_truthy(after, agent:logtext())
    assert.are.equal("firing", after.state)
    assert.are.equal(before.startsAt, after.startsAt)
    -- and it was not notified again
    assert.is_falsy(agent:logtext():find('status=firing', 1, true), agent:logtext())
  end)

  it("resolves when the value drops back", function()
    agent:post("/metrics/custom", '{"name":"queue.depth","type":"gauge","value":1}')
    local gone = S.wait(function() return firing() == nil end, 5)
    assert.is_truthy(gone)
  end)
end)

describe("the /alerts API", function()
  local agent, rdir
  setup(function()
    rdir = S.tmpdir()
    S.write(rdir .. "/file.lua", 'alert "from_file" { metric = "x", condition = ">", threshold = 1 }\n')
    agent = S.start { config = S.calm_system, args = { "--rules", rdir },
      env = { MONITORING_METRICS_COLLECTION_INTERVAL = "0.1" } }
  end)
  teardown(function() if agent then agent:stop() end end)

  local function rule_names()
    local _, o = agent:get_json("/alerts/rules")
    local names = {}
    for _, r in ipairs(o.rules) do if r.name then names[r.name] = r end end
    return names
  end

  it("creates a rule from JSON, keeps it, and deletes it", function()
    local st, body = agent:post("/alerts/rules", [[{"name":"api_disk","condition":"greater_than",
      "metric":"system.disk_percent","threshold":95,"duration_minutes":5,"severity":"critical",
      "message":"disk at {{ value }}%"}]])
    assert.are.equal(201, st, body)
    local r = rule_names().api_disk
    assert.is_truthy(r)
    assert.are.equal("critical", r.severity)
    st = S.http("DELETE", agent.url .. "/alerts/rules/api_disk")
    assert.are.equal(200, st)
    assert.is_nil(rule_names().api_disk)
  end)

  it("refuses code, bad fields and names taken by files", function()
    local st, body = agent:post("/alerts/rules", '{"name":"x","expr":"function() end","condition":">","threshold":1}')
    assert.are.equal(400, st)
    assert.is_truthy(body:find("only in rule files", 1, true))
    st, body = agent:post("/alerts/rules", '{"name":"y","metric":"m","condition":"bigger","threshold":1}')
    assert.are.equal(400, st)
    assert.is_truthy(body:find("bigger", 1, true), body)
    st = agent:post("/alerts/rules", '{"name":"from_file","metric":"m","condition":">","threshold":1}')
    assert.are.equal(409, st)
    st = S.http("DELETE", agent.url .. "/alerts/rules/from_file")
    assert.are.equal(409, st)
    st = S.http("DELETE", agent.url .. "/alerts/rules/nope")
    assert.are.equal(404, st)
  end)

  it("tests a rule now and sends a notification marked as a test", function()
    agent:post("/metrics/custom", '{"name":"x","type":"gauge","value":5}')
    S.sleep(0.3) -- sampled into history
    local st, body = agent:post("/alerts/test/from_file", "")
    assert.are.equal(200, st, body)
    local o = S.json(body)
    assert.are.equal("from_file", o.rule)
    assert.are.equal(5, o.samples[1].value)
    assert.are.equal(1, o.notifications)
    assert.is_truthy(S.wait(function() return agent:logtext():find('msg="test notification"', 1, true) end, 2))
    -- a test changes no state: nothing is firing
    local _, a = agent:get_json("/alerts")
    for _, x in ipairs(a.alerts) do assert.are_not.equal("from_file", x.name) end
    assert.are.equal(404, (agent:post("/alerts/test/nope", "")))
  end)

  it("creates, lists and deletes silences", function()
    local st, body = agent:post("/alerts/silences",
      '{"matchers":{"alertname":"from_file"},"ends":"2099-01-01T00:00:00Z","comment":"maintenance"}')
    assert.are.equal(201, st, body)
    local id = S.json(body).id
    local _, o = agent:get_json("/alerts/silences")
    local found
    for _, s in ipairs(o.silences) do if s.id == id then found = s end end
    assert.is_truthy(found)
    assert.are.equal("maintenance", found.comment)
    assert.are.equal(200, (S.http("DELETE", agent.url .. "/alerts/silences/" .. id)))
    assert.are.equal(404, (S.http("DELETE", agent.url .. "/alerts/silences/" .. id)))
  end)

  it("needs the token for writes when api_token is set", function()
    local a2 = S.start { env = { MONITORING_API_TOKEN = "t0k" } }
    local st = a2:post("/alerts/rules", '{"name":"z","metric":"m","condition":">","threshold":1}')
    local st2 = a2:post("/alerts/rules", '{"name":"z","metric":"m","condition":">","threshold":1}',
      { "Authorization: Bearer t0k" })
    local st3 = S.http("GET", a2.url .. "/alerts")
    a2:stop()
    assert.are.equal(401, st)
    assert.are.equal(201, st2)
    assert.are.equal(200, st3)
  end)
end)

describe("a rule file with a companion test", function()
  local agent, rdir
  local function cpu_rule_text(threshold)
    return ('alert "cpu_hot" { metric = "cpu.load", condition = ">", threshold = %d, severity = "warning" }\n')
      :format(threshold)
  end
  local test = [[
return { tests = { {
  input_series = { { series = "cpu.load", values = "95x3" } },
  alert_rule_test = { { eval_time = "2m", alertname = "cpu_hot", exp_alerts = { { exp_labels = { severity = "warning" } } } } },
} } }
]]
  setup(function()
    rdir = S.tmpdir()
    S.write(rdir .. "/cpu.lua", cpu_rule_text(90))
    S.write(rdir .. "/cpu_test.lua", test)
    agent = S.start { config = S.calm_system, args = { "--rules", rdir } }
  end)
  teardown(function() if agent then agent:stop() end end)

  local function cpu_rule()
    local _, o = agent:get_json("/alerts/rules")
    for _, r in ipairs(o.rules) do if r.name == "cpu_hot" then return r end end
  end

  it("loads when its test passes", function()
    local r = cpu_rule()
    assert.is_truthy(r)
    assert.are.equal(90, r.threshold)
    assert.is_nil(r.file_error)
  end)

  it("fails the load of a rule file whose companion test never ends, and keeps serving", function()
    S.write(rdir .. "/spin_test.lua", [[
return { tests = { { input_series = { { series = "x", values = "1x3" } },
  alert_rule_test = { { eval_time = "2m", alertname = "spin", exp_alerts = {} } } } } }
]])
    S.write(rdir .. "/spin.lua", [[
local function spin() while true do end end
alert "spin" { expr = function(q) spin() return 1 end, condition = ">", threshold = 0 }
]])
    local f = S.wait(function()
      local _, d = agent:get_json("/health/detailed")
      for _, x in ipairs(d and d.rules or {}) do
        if x.file:find("spin.lua", 1, true) and x.error then return x end
      end
    end, 10)
    assert.is_truthy(f, agent:logtext())
    assert.is_truthy(f.error:find("timeout", 1, true), f.error)
    assert.are.equal(200, (agent:get("/health/live")))
  end)

  it("keeps the old rules when the new version fails its test, and says so", function()
    S.write(rdir .. "/cpu.lua", cpu_rule_text(99)) -- 95 no longer fires: the test fails
    local r = S.wait(function()
      local x = cpu_rule()
      if x and x.file_error then return x end
    end, 3)
    assert.is_truthy(r, agent:logtext())
    assert.are.equal(90, r.threshold)
    assert.is_truthy(r.file_error:find("companion test failed", 1, true), r.file_error)
    local _, d = agent:get_json("/health/detailed")
    local f
    for _, x in ipairs(d.rules) do if x.file:find("cpu.lua", 1, true) then f = x end end
    assert.is_truthy(f and f.error)
  end)
end)

describe("an anomaly rule", function()
  it("fires on a statistical outlier of a series", function()
    local rdir = S.tmpdir()
    -- evaluated at every sample: a later sample would dilute the outlier into the window
    S.write(rdir .. "/spike.lua", [[
route { channels = { "log" }, group_wait = "0s" }
anomaly "latency_spike" { metric = "svc.latency", method = "zscore", threshold = 3, window = "1m",
  min_samples = 5, every = "50ms" }
]])
    local agent = S.start { config = S.calm_system, args = { "--rules", rdir },
      env = { MONITORING_METRICS_COLLECTION_INTERVAL = "0.05" } }
    agent:post("/metrics/custom", '{"name":"svc.latency","type":"gauge","value":10}')
    S.sleep(1) -- ordinary samples
    local function fired()
      for line in agent:logtext():gmatch("[^\n]+") do
        if line:find('msg="alert notification"', 1, true) and line:find("alerts=latency_spike", 1, true)
          and line:find("status=firing", 1, true) then return line end
      end
    end
    local calm = fired()
    agent:post("/metrics/custom", '{"name":"svc.latency","type":"gauge","value":100}')
    local a = S.wait(fired, 5)
    local log = agent:logtext()
    agent:stop()
    assert.is_nil(calm)
    assert.is_truthy(a, log)
  end)
end)

describe("rules created over the API", function()
  it("survive a restart", function()
    local data = S.tmpdir()
    local a1 = S.start { config = S.calm_system, args = { "--data", data } }
    local st = a1:post("/alerts/rules", '{"name":"kept_rule","metric":"m","condition":">","threshold":5}')
    a1:stop()
    assert.are.equal(201, st)
    local a2 = S.start { config = S.calm_system, args = { "--data", data } }
    local _, o = a2:get_json("/alerts/rules")
    a2:stop()
    local found
    for _, r in ipairs(o.rules) do if r.name == "kept_rule" then found = r end end
    assert.is_truthy(found)
    assert.are.equal(5, found.threshold)
  end)
end)
