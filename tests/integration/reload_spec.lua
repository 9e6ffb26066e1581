-- Hot reload of a drop-in plugin: write v1, change to v2, break it, fix it, delete it.
local S = require "support"

local function plugin(version, extra)
  return ([[
return beagle.check {
  name = "probe",
  interval = "1h",
  options = { word = { "string", default = "%s" } },
  run = function(opt, ctx) %s return ctx.healthy(opt.word) end,
}
]]):format(version, extra or "")
end

describe("hot reload", function()
  local agent, dir
  setup(function()
    dir = S.tmpdir()
    S.write(dir .. "/probe.lua", plugin("v1"))
    agent = S.start { plugins = dir }
  end)
  teardown(function() if agent then agent:stop() end end)

  local function detailed_plugin(name)
    local _, o = agent:get_json("/health/detailed")
    for _, p in ipairs(o and o.plugins or {}) do
      if p.name == name then return p end
    end
  end

  it("runs a dropped-in plugin whose options all have defaults as a check of its own name", function()
    local o = agent:wait_check("probe", function(c) return c.message == "v1" end)
    assert.is_truthy(o, agent:logtext())
    assert.are.equal("healthy", o.status)
  end)

  it("swaps in a changed file within a second", function()
    local t0 = S.now()
    S.write(dir .. "/probe.lua", plugin("v2"))
    local o = agent:wait_check("probe", function(c) return c.message == "v2" end, 3)
    assert.is_truthy(o, agent:logtext())
    assert.is_true(S.now() - t0 < 1.5)
    assert.are.equal(2, detailed_plugin("probe").version)
  end)

  it("keeps the old version running when the new one has a syntax error, and reports why", function()
    S.write(dir .. "/probe.lua", "return beagle.check { name = 'probe', run = function( end }")
    local p = S.wait(function()
      local x = detailed_plugin("probe")
      if x and x.error then return x end
    end, 3)
    assert.is_truthy(p, agent:logtext())
    assert.are.equal("loaded", p.state)
    assert.are.equal(2, p.version)
    assert.is_truthy(p.error:find("probe.lua:1:", 1, true), p.error)
    -- the old version still answers, and a forced run uses it
    local st, body = agent:post("/-/reload", "")
    assert.are.equal(200, st)
    assert.are.equal("partial", S.json(body).status)
    assert.are.equal("v2", agent:check("probe").message)
    local _, metrics = agent:get("/metrics")
    assert.is_truthy(metrics:find('beagle_plugin_load_failures_total{plugin="probe"}', 1, true))
  end)

  it("rejects a version whose file does not return a plugin", function()
    S.write(dir .. "/probe.lua", "return 42")
    local p = S.wait(function()
      local x = detailed_plugin("probe")
      if x and x.error and x.error:find("must return") then return x end
    end, 3)
    assert.is_truthy(p, agent:logtext())
    assert.are.equal(2, p.version)
  end)

  it("loads the fixed file", function()
    S.write(dir .. "/probe.lua", plugin("v3"))
    local o = agent:wait_check("probe", function(c) return c.message == "v3" end, 3)
    assert.is_truthy(o, agent:logtext())
    local p = detailed_plugin("probe")
    assert.is_nil(p.error)
    assert.are.equal(3, p.version)
  end)

  it("reloads everything on SIGHUP", function()
    local f = assert(io.open(dir .. "/probe.lua", "w")) -- in place, as some editors do
    f:write(plugin("v4"))
    f:close()
    agent:signal("HUP")
    local o = agent:wait_check("probe", function(c) return c.message == "v4" end, 3)
    assert.is_truthy(o, agent:logtext())
  end)

  it("removes the check when the file is deleted", function()
    os.remove(dir .. "/probe.lua")
    local gone = S.wait(function()
      local st = agent:get("/health/probe")
      return st == 404
    end, 3)
    assert.is_truthy(gone, agent:logtext())
    assert.is_nil(detailed_plugin("probe"))
    assert.is_true(agent:alive())
  end)
end)
