-- A plugin no instance uses gives up its lua_State once the agent has started (issue 13: an idle
-- agent paid ~1 MB for six channel plugins and the http and tcp checks nobody declared); its
-- first use loads it again, from the source it was validated with.
local S = require "support"

describe("unused plugin states", function()
  local agent
  setup(function() agent = S.start { config = S.calm_system } end)
  teardown(function() if agent then agent:stop() end end)

  local function plugin(name)
    local _, d = agent:get_json("/health/detailed")
    for _, p in ipairs(d and d.plugins or {}) do if p.name == name then return p end end
  end

  it("are parked: still listed as loaded, holding no memory", function()
    local p = S.wait(function()
      local x = plugin("http")
      if x and x.parked then return x end
    end, 5)
    assert.is_table(p, "http was never parked")
    assert.are.equal("loaded", p.state)
    assert.are.equal(0, p.memory_bytes)
    local sys = plugin("system") -- the automatic system check uses its state
    assert.is_nil(sys.parked)
    assert.is_true(sys.memory_bytes > 0)
  end)

  it("load again on first use, and run", function()
    S.write(agent.config, S.calm_system .. ([[
check "self" { plugin = "http", url = "%s/health/live", interval = "200ms" }
]]):format(agent.url))
    agent:signal("HUP")
    local c = agent:wait_check("self", function(x) return x.runs and x.runs > 0 end, 10)
    assert.is_table(c, agent:logtext())
    assert.are.equal("healthy", c.status, c.message)
    local p = plugin("http")
    assert.is_nil(p.parked)
    assert.is_true(p.memory_bytes > 0)
  end)
end)
