-- A FIFO with a plugin's or a rule file's name (issue 14 §3, plugin I/O): the agent read those
-- files with io.open, and a FIFO held the loop until something wrote to it, at start-up and
-- at every reload. They are read as plugins read theirs now: regular files only, the error
-- reported on the file.
local S = require "support"

local function find_plugin(list, suffix)
  for _, p in ipairs(list or {}) do
    if p.file:sub(-#suffix) == suffix then return p end
  end
end

describe("a FIFO in the plugin directory", function()
  local agent, dir
  setup(function()
    dir = S.tmpdir()
    assert(os.execute(("mkdir -p %q && mkfifo %q"):format(dir .. "/checks", dir .. "/checks/fifo.lua")) == 0)
    S.write(dir .. "/checks/fine.lua", [[
return beagle.check { name = "fine", run = function(_, ctx) return ctx.healthy("ok") end }
]])
    agent = S.start { plugins = dir, config = S.calm_system .. 'check "fine" { plugin = "fine" }\n' }
  end)
  teardown(function()
    if agent then agent:stop() end
  end)

  it("is refused with its path and reason, and the agent goes on", function()
    local st, o, body = agent:get_json("/health/detailed")
    assert.are.equal(200, st, body)
    local p = find_plugin(o.plugins, "/checks/fifo.lua")
    assert.is_truthy(p, body)
    assert.are.equal("failed", p.state)
    assert.is_truthy(p.error:find("fifo.lua: not a regular file", 1, true), p.error)
    assert.are.equal("loaded", find_plugin(o.plugins, "/checks/fine.lua").state)
    assert.is_truthy(agent:wait_check("fine", function(c) return c.status == "healthy" end, 10))
  end)

  it("does not hold a reload", function()
    local st, body = agent:post("/-/reload", "")
    assert.is_truthy(st == 200 or st == 422, tostring(st) .. " " .. tostring(body))
    assert.are.equal(200, (agent:get("/health/live")))
  end)
end)

describe("a FIFO in the rules directory", function()
  it("stops the start with its path and reason instead of hanging", function()
    local rules = S.tmpdir()
    assert(os.execute(("mkfifo %q"):format(rules .. "/fifo.lua")) == 0)
    local ok, err = pcall(S.start, { config = S.calm_system, args = { "--rules", rules } })
    assert.is_false(ok, "the agent started with a FIFO as a rule file")
    assert.is_truthy(tostring(err):find("fifo.lua: not a regular file", 1, true), tostring(err))
  end)
end)
