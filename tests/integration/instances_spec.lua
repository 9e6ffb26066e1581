-- Instances own their state (issue 13 §3): each instance of a plugin has its own ctx.state
-- across runs, init(opt, ctx) runs once before its first run, close(opt, ctx) when the instance
-- goes away or the plugin file is replaced, and its validated options stay in the plugin's
-- state (a run crosses with the instance's name only).
local S = require "support"

local PLUGIN = [[
return beagle.check {
  name = "tally", interval = "150ms", retries = 0,
  options = { step = { "number", default = 1, description = "added per run" } },
  init = function(opt, ctx) ctx.state.inits = (ctx.state.inits or 0) + 1 ctx.state.n = 0 end,
  run = function(opt, ctx)
    ctx.state.n = ctx.state.n + opt.step
    -- the options table is the instance's own, kept in this state: what a run leaves on it is
    -- still there at the next run (it is not a fresh copy per run)
    opt.seen = (opt.seen or 0) + 1
    return ctx.healthy(("%s n=%d inits=%d seen=%d"):format(ctx.name, ctx.state.n, ctx.state.inits, opt.seen))
  end,
  close = function(opt, ctx) ctx.log.info("tally closed", { instance = ctx.name, n = ctx.state.n }) end,
}
]]

describe("plugin instances", function()
  local agent, dir
  local config = S.calm_system .. [[
check "a" { plugin = "tally", step = 1 }
check "b" { plugin = "tally", step = 10 }
]]
  setup(function()
    dir = S.tmpdir()
    S.write(dir .. "/tally.lua", PLUGIN)
    agent = S.start { plugins = dir, config = config }
  end)
  teardown(function() if agent then agent:stop() end end)

  local function parse(msg)
    local name, n, inits, seen = msg:match("^(%S+) n=(%d+) inits=(%d+) seen=(%d+)$")
    return name, tonumber(n), tonumber(inits), tonumber(seen)
  end

  it("gives each instance its own state, one init, and options kept between runs", function()
    local a = agent:wait_check("a", function(c) return c.runs and c.runs >= 4 end, 10)
    local b = agent:wait_check("b", function(c) return c.runs and c.runs >= 4 end, 10)
    local an, ai, as = select(2, parse(a.message))
    local bn, bi, bs = select(2, parse(b.message))
    assert.are.equal(1, ai)
    assert.are.equal(1, bi)
    assert.is_true(an >= 4 and an == as, a.message)
    assert.is_true(bn >= 40 and bn == 10 * bs, b.message)
  end)

  it("closes an instance dropped from the config, and every instance when the file changes", function()
    S.write(agent.config, S.calm_system .. 'check "a" { plugin = "tally", step = 1 }\n')
    agent:signal("HUP")
    assert.is_truthy(S.wait(function() return agent:logtext():find('msg="tally closed"[^\n]*instance=b') end, 5)
      or S.wait(function() return agent:logtext():find('instance=b[^\n]*msg="tally closed"') end, 1),
      agent:logtext())
    S.write(dir .. "/tally.lua", PLUGIN .. "\n-- v2\n")
    assert.is_truthy(S.wait(function()
      local log = agent:logtext()
      return log:find('tally closed[^\n]*instance=a') or log:find('instance=a[^\n]*tally closed')
    end, 5), agent:logtext())
    -- the new version starts the instance afresh: a new state, init once more
    local a = agent:wait_check("a", function(c)
      local _, n, inits = parse(c.message or "")
      return inits == 1 and n and n <= 3
    end, 10)
    assert.is_table(a)
  end)
end)
