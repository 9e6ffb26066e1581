-- Misbehaving plugins fail their own run, with the reason, and nothing else: the agent keeps
-- serving and the other checks keep their schedule.
local S = require "support"

local function check(name, body, extra)
  return ([[
return beagle.check {
  name = %q, interval = "1h", retries = 0, %s
  run = function(opt, ctx) %s end,
}
]]):format(name, extra or "", body)
end

describe("sandbox", function()
  local agent, dir
  setup(function()
    dir = S.tmpdir()
    S.write(dir .. "/ticker.lua", check("ticker", "return ctx.healthy('tick')", 'interval = "200ms",'))
    S.write(dir .. "/raises.lua", check("raises", "error('boom at run')"))
    S.write(dir .. "/endless.lua", check("endless", "while true do end", 'timeout = "300ms",'))
    S.write(dir .. "/stubborn.lua", check("stubborn",
      "while true do pcall(function() while true do end end) end", 'timeout = "300ms",'))
    S.write(dir .. "/hog.lua", check("hog",
      "local t = {} while true do t[#t + 1] = ('x'):rep(1024 * 1024) .. #t end", 'timeout = "5s",'))
    S.write(dir .. "/waits.lua", check("waits", "ctx.sleep(30) return ctx.healthy()", 'timeout = "300ms",'))
    S.write(dir .. "/garbage.lua", check("garbage", "return 42"))
    S.write(dir .. "/escape.lua", check("escape", [[
      local found = {}
      for _, k in ipairs { "io", "debug", "ffi", "jit", "load", "loadstring", "dofile", "loadfile", "package", "__bg" } do
        if _G[k] ~= nil then found[#found + 1] = k end
      end
      if os.execute or os.remove or os.exit then found[#found + 1] = "os" end
      local ok = pcall(require, "ffi")
      if ok then found[#found + 1] = "require ffi" end
      if #found > 0 then return ctx.unhealthy("reachable: " .. table.concat(found, ",")) end
      return ctx.healthy("sealed")
    ]]))
    -- the public modules a check may require, each working inside the sandbox
    S.write(dir .. "/libs.lua", check("libs", [[
      local A = require "beagle.analysis"
      local P = require "beagle.proto"
      local s = A.summary({ 1, 2, 3, 4 })
      local pts = {}
      for i = 1, 40 do pts[i] = { i * 60, i == 35 and 50 or 10 } end
      local found = A.detect(pts, "mad")
      local conn = { chunks = { "he", "llo|" } }
      function conn:read() return table.remove(self.chunks, 1) end
      local r = P.reader(conn, function(buf) local i = buf:find("|", 1, true) if i then return buf:sub(1, i - 1), i end end,
        100, "word")
      return ctx.healthy(("mean %g p50 %g anomaly at %d, read %s"):format(s.mean, s.p50, found[1].t, r.next()))
    ]]))
    S.write(dir .. "/loadbomb.lua", "while true do end")
    agent = S.start { plugins = dir, env = { MONITORING_PLUGIN_MEMORY_LIMIT_MB = "32" } }
  end)
  teardown(function() if agent then agent:stop() end end)

  local function final(name)
    return agent:wait_check(name, function(c) return c.runs and c.runs > 0 end, 8)
  end

  it("lets a check require beagle.analysis and beagle.proto", function()
    local o = final("libs")
    assert.are.equal("healthy", o.status, o.message)
    assert.are.equal("mean 2.5 p50 2.5 anomaly at 2100, read hello", o.message)
  end)

  it("reports a raised error as the run's failure", function()
    local o = final("raises")
    assert.are.equal("unhealthy", o.status)
    assert.is_truthy(o.message:find("boom at run", 1, true), o.message)
  end)

  it("stops an endless loop", function()
    local o = final("endless")
    assert.are.equal("unhealthy", o.status)
    assert.is_truthy(o.message == "timeout" or o.message == "instruction budget exceeded", o.message)
  end)

  it("stops an endless loop that catches errors with pcall", function()
    local o = final("stubborn")
    assert.are.equal("unhealthy", o.status)
    assert.is_truthy(o.message == "timeout" or o.message == "instruction budget exceeded", o.message)
  end)

  it("stops a plugin that allocates without bound at its memory limit", function()
    local o = final("hog")
    assert.are.equal("unhealthy", o.status)
    assert.are.equal("memory limit", o.message)
  end)

  it("times out a run that waits too long", function()
    local o = final("waits")
    assert.are.equal("unhealthy", o.status)
    assert.are.equal("timeout", o.message)
    assert.is_true(o.response_time < 1, tostring(o.response_time))
  end)

  it("rejects a result that is not a check result", function()
    local o = final("garbage")
    assert.are.equal("unhealthy", o.status)
    assert.is_truthy(o.message:find("returned number", 1, true), o.message)
  end)

  it("gives plugins no io, os.execute, debug, ffi or loaders", function()
    local o = final("escape")
    assert.are.equal("healthy", o.status, o.message)
  end)

  it("reports a plugin whose load never ends as failed", function()
    local _, d = agent:get_json("/health/detailed")
    local p
    for _, x in ipairs(d.plugins) do if x.file:find("loadbomb", 1, true) then p = x end end
    assert.is_truthy(p)
    assert.are.equal("failed", p.state)
    assert.is_truthy(p.error == "timeout" or p.error == "instruction budget exceeded", p.error)
  end)

  it("keeps serving and keeps the other checks on schedule", function()
    local first = agent:check("ticker").runs
    S.sleep(1)
    local later = agent:check("ticker").runs
    assert.is_true(later >= first + 3, ("ticker ran %d then %d"):format(first, later))
    assert.are.equal(200, (agent:get("/health/live")))
    assert.is_true(agent:alive())
    -- overall status reflects the failing checks
    local st, o = agent:get_json("/health")
    assert.are.equal(503, st)
    assert.are.equal("unhealthy", o.status)
  end)
end)
