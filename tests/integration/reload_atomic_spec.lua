-- A reload is all or nothing (issue 14 §1): a config file or rule file that does not load keeps
-- the whole previous configuration running, and POST /-/reload answers 422 with every error's
-- file, line and message (SIGHUP logs the same). Plugin files stay a per-file matter.
local S = require "support"

-- a check whose message shows its option, so that which options it runs with is visible
local PLUGIN = [[
return beagle.check {
  name = "counter",
  interval = "100ms",
  options = { count = { "integer", default = 1 } },
  run = function(opt, ctx) return ctx.healthy("count " .. opt.count) end,
}
]]

local function config(checks)
  return S.calm_system .. checks
end

local RULE_A = 'alert "rule_a" { metric = "m.a", condition = ">", threshold = %d }\n'

describe("reload", function()
  local agent, plugins, rules
  -- the watchers wait a minute: only the reloads the tests ask for happen
  local env = { MONITORING_RELOAD_DEBOUNCE = "60" }
  setup(function()
    plugins = S.tmpdir()
    rules = S.tmpdir()
    S.write(plugins .. "/counter.lua", PLUGIN)
    S.write(rules .. "/a.lua", RULE_A:format(1))
    agent = S.start { plugins = plugins, env = env, args = { "--rules", rules },
      config = config('check "c1" { plugin = "counter", count = 1 }\n') }
    assert.is_truthy(agent:wait_check("c1", function(c) return c.message == "count 1" end, 10), agent:logtext())
  end)
  teardown(function() if agent then agent:stop() end end)

  local function reload()
    local st, body = agent:post("/-/reload", "")
    return st, S.json(body) or {}, body
  end

  local function rule(name)
    local _, o = agent:get_json("/alerts/rules")
    for _, r in ipairs(o and o.rules or {}) do if r.name == name then return r end end
  end

  it("refuses a check option that does not validate, keeps the check running, names file and line", function()
    S.write(agent.config, config('check "c1" { plugin = "counter", count = 1 }\n'
      .. 'check "c2" {\n  plugin = "counter",\n  count = "notanumber" }\n'))
    local st, o, body = reload()
    assert.are.equal(422, st, body)
    assert.are.equal(1, #o.errors, body)
    local e = o.errors[1]
    assert.are.equal(agent.config, e.file)
    -- the declaration's line: after S.calm_system and c1
    local _, calm_lines = S.calm_system:gsub("\n", "")
    assert.are.equal(calm_lines + 2, e.line)
    assert.is_truthy(e.message:find("notanumber", 1, true), e.message)
    assert.is_truthy(e.message:find("count", 1, true), e.message)
    -- the previous config runs on: c1 healthy, c2 never declared
    S.sleep(0.3)
    local c1 = agent:check("c1")
    assert.are.equal("healthy", c1.status)
    assert.are.equal("count 1", c1.message)
    assert.are.equal(404, (agent:get("/health/c2")))
  end)

  it("applies none of a config whose other parts are good", function()
    -- c1's new option is fine, c2's is not: c1 must keep running with count 1 (no half-applied
    -- options in the plugin's state either, which a run after the reload would show)
    S.write(agent.config, config('check "c1" { plugin = "counter", count = 2 }\n'
      .. 'check "c2" { plugin = "counter", count = "x" }\n'))
    local st, _, body = reload()
    assert.are.equal(422, st, body)
    local runs = agent:check("c1").runs
    assert.is_truthy(S.wait(function() return agent:check("c1").runs >= runs + 3 end, 10))
    assert.are.equal("count 1", agent:check("c1").message)
  end)

  it("refuses a syntax error with its file, line and the parser's message", function()
    S.write(agent.config, config('check "c1" { plugin = "counter", count = 2 \n'))
    local st, o, body = reload()
    assert.are.equal(422, st, body)
    assert.are.equal(agent.config, o.errors[1].file, body)
    assert.is_number(o.errors[1].line, body)
    assert.is_truthy(o.errors[1].message:find("expected", 1, true), body)
    assert.are.equal("count 1", agent:check("c1").message)
  end)

  it("logs the same on SIGHUP", function()
    agent:signal("HUP")
    local line = S.wait(function()
      for l in agent:logtext():gmatch("[^\n]+") do
        if l:find("reload refused", 1, true) and l:find("trigger", 1, true) == nil
          and l:find(agent.config, 1, true) and l:find("line=", 1, true) then return l end
      end
    end, 5)
    assert.is_truthy(line, agent:logtext())
  end)

  it("applies a config that is good everywhere", function()
    S.write(agent.config, config('check "c1" { plugin = "counter", count = 3 }\n'))
    local st, o, body = reload()
    assert.are.equal(200, st, body)
    assert.are.equal("ok", o.status)
    assert.is_truthy(agent:wait_check("c1", function(c) return c.message == "count 3" end, 5))
  end)

  it("refuses a rule file that fails, with the other rule files' changes", function()
    S.write(rules .. "/a.lua", RULE_A:format(2)) -- good
    S.write(rules .. "/b.lua", 'alert "rule_b" {\n  metric = "m.b", condition = "bigger", threshold = 1 }\n')
    local st, o, body = reload()
    assert.are.equal(422, st, body)
    local e = o.errors[1]
    assert.are.equal(rules .. "/b.lua", e.file, body)
    assert.is_number(e.line, body)
    assert.is_truthy(e.message:find("bigger", 1, true), body)
    -- rule_a keeps its old threshold: a.lua's good change waits for the whole set
    assert.are.equal(1, rule("rule_a").threshold)
    assert.is_nil(rule("rule_b"))
  end)

  it("refuses an alert name declared in two files, in the reload and in /alerts/rules", function()
    S.write(rules .. "/b.lua", RULE_A:format(5))
    local st, o, body = reload()
    assert.are.equal(422, st, body)
    local found
    for _, e in ipairs(o.errors) do
      if e.message:find('"rule_a" is also declared in', 1, true) then found = e end
    end
    assert.is_truthy(found, body)
    assert.are.equal(1, found.line)
    local _, r = agent:get_json("/alerts/rules")
    local shown
    for _, x in ipairs(r.rules) do
      if x.file_error and x.file_error:find("also declared", 1, true) then shown = x end
    end
    assert.is_truthy(shown, agent:logtext())
    assert.are.equal(1, rule("rule_a").threshold)
  end)

  it("applies the rule files together once they all load", function()
    os.remove(rules .. "/b.lua")
    local st, _, body = reload()
    assert.are.equal(200, st, body)
    assert.are.equal(2, rule("rule_a").threshold)
  end)

  it("keeps a plugin file's failure its own: the reload applies, the failure is listed", function()
    S.write(plugins .. "/broken.lua", "return beagle.check { name = 'broken', run = function( end }")
    S.write(agent.config, config('check "c1" { plugin = "counter", count = 4 }\n'))
    local st, o, body = reload()
    assert.are.equal(200, st, body)
    assert.are.equal("partial", o.status)
    assert.are.equal(plugins .. "/broken.lua", o.plugin_errors[1].file, body)
    assert.are.equal(1, o.plugin_errors[1].line, body)
    assert.is_truthy(agent:wait_check("c1", function(c) return c.message == "count 4" end, 5))
  end)
end)

describe("start-up", function()
  it("refuses rule files that declare one alert name twice, naming both", function()
    local rules, data = S.tmpdir(), S.tmpdir()
    S.write(rules .. "/a.lua", RULE_A:format(1))
    S.write(rules .. "/b.lua", "-- the same name again\n" .. RULE_A:format(2))
    local out, code = S.sh(("timeout 20 %q run --listen 127.0.0.1:0 --statsd off --data %q --rules %q")
      :format(S.bin, data, rules))
    assert.are.equal(1, code, out)
    assert.is_truthy(out:find(rules .. '/b.lua:2: alert "rule_a" is also declared in ' .. rules .. "/a.lua:1", 1, true),
      out)
  end)
end)
