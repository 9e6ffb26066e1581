-- Concrete escapes, one plugin file each, tried as an attacker would (issue 13 §1): every one
-- must fail inside its own plugin (a blocked attempt, a failed run or a failed load) while the
-- agent stays up, keeps answering and keeps its own code and the other plugins intact.
--
-- A check below runs `attack()` under pcall: it returns true only when the attack reached what
-- it was after ("ESCAPED"); anything else, an error included, is "blocked: <why>".
local S = require "support"

local function probe(name, attack)
  return ([[
return beagle.check {
  name = %q, interval = "1h", retries = 0, timeout = "3s",
  run = function(opt, ctx)
    local function attack() %s end
    local ok, got = pcall(attack)
    if ok and got == true then return ctx.unhealthy("ESCAPED") end
    return ctx.healthy("blocked: " .. tostring(got))
  end,
}
]]):format(name, attack)
end

-- name -> the attack's body (returns true when it got through)
local BLOCKED = {
  req_config = [[ return require("agent.config") ~= nil ]],
  req_delivery = [[ return require("agent.delivery") ~= nil ]],
  req_metrics_c = [[ return require("agent.metrics").C ~= nil ]],
  req_dsl_getenv = [[ local d = require("agent.rules.dsl") return d ~= nil ]],
  req_ffi = [[ return require("ffi") ~= nil ]],
  req_jit = [[ return require("jit") ~= nil or jit ~= nil ]],
  req_debug = [[ return require("debug") ~= nil or debug ~= nil ]],
  req_io = [[ return require("io") ~= nil or io ~= nil ]],
  req_package = [[ return package ~= nil or require("package") ~= nil ]],
  req_core = [[ return require("agent.core") ~= nil ]],
  metrics_field = [[ return beagle.metrics ~= nil or beagle.set_limits ~= nil or beagle.C ~= nil ]],
  loaders = [[ return load ~= nil or loadstring ~= nil or dofile ~= nil or loadfile ~= nil ]],
  fenv = [[ return getfenv ~= nil or setfenv ~= nil ]],
  gc = [[ return collectgarbage ~= nil or newproxy ~= nil or gcinfo ~= nil ]],
  dump = [[ return string.dump ~= nil or ("").dump ~= nil ]],
  string_mt = [[ local mt = getmetatable("") return type(mt) == "table" ]],
  bytecode = [[
    -- bytecode through any path: a loader is needed, and none is reachable
    for _, f in ipairs { rawget(_G, "load"), rawget(_G, "loadstring"), beagle.load, string.load } do
      if f then return pcall(f, "\27LJ\2") end
    end
    return false ]],
  bg_global = [[ return rawget(_G, "__bg") ~= nil or __bg ~= nil ]],
  -- a counter handle is bounded: no index reaches beyond its series, no write lowers it
  handle_index = [[ local c = beagle.counter("escape_c") c[2^26].v = 1 return true ]],
  handle_read_past = [[ local c = beagle.counter("escape_r") return c[1] ~= nil or c[-1] ~= nil ]],
  handle_methods_nil = [[
    local h = beagle.histogram("escape_h") local mt = getmetatable(h)
    local observe = type(mt) == "table" and type(mt.__index) == "table" and mt.__index.observe or h.observe
    observe(nil, 1) return true ]],
  handle_foreign = [[ local h = beagle.histogram("escape_h2") h.observe(beagle.counter("escape_c2"), 1) return true ]],
  handle_tostring = [[ return tostring(beagle.counter("escape_t")):find("0x", 1, true) ~= nil ]],
  read_environ = [[ return ctx.read_file("/proc/self/environ") ~= nil ]],
  read_passwd = [[ return ctx.read_file("/etc/passwd") ~= nil ]],
  read_root_link = [[ return ctx.read_file("/proc/self/root/etc/passwd") ~= nil ]],
  read_dotdot = [[ return ctx.read_file("/proc/../etc/passwd") ~= nil ]],
  read_fd = [[ return ctx.read_file("/proc/self/fd/0") ~= nil ]],
  -- the run's own coroutine, to be resumed by another run while this one waits
  run_coroutine = [[ return coroutine.running() ~= nil or pcall(coroutine.status, "x") == true ]],
  http_file_url = [[ local r = ctx.http.get("file:///etc/passwd") return r ~= nil and r.body ~= nil ]],
  exec_shell = [[ return ctx.exec { "/bin/sh", "-c", "cat /proc/$PPID/environ" } ~= nil ]],
  ctx_bad_args = [[
    ctx.sleep("x") ctx.tcp.connect(nil, nil) ctx.http.get(123) ctx.http.request("x")
    ctx.statvfs(nil) ctx.read_file({})
    return false ]],
  json_depth = [[ return require("beagle.json").decode(("["):rep(100000)) ~= nil ]],
  query_bad = [[ return require("beagle.query").rate(nil) ~= nil ]],
  -- a finalizer that never returns would run where no hook fires: tables have none here
  gc_finalizer = [[
    for i = 1, 2000 do setmetatable({ ("x"):rep(1000) }, { __gc = function() while true do end end }) end
    return false ]],
  shared_types = [[
    -- vandalise everything reachable: it is this plugin's own copy
    string.format, table.concat, beagle.validate_options, beagle.log = nil, nil, nil, nil
    pcall(setmetatable, beagle, { __index = function() error("hijacked") end })
    return false ]],
}

-- name -> { body of run, what the failed run's message must contain }
local FAILS = {
  endless = { "while true do end", "" },
  coroutine_wrap = { "coroutine.wrap(function() while true do end end)()", "" },
  pcall_catch = { "while true do pcall(function() while true do end end) end", "" },
  error_object_loops = {
    [[error(setmetatable({}, { __tostring = function() while true do end end }))]], "error object" },
  -- a message whose __tostring never returns, handed to the agent's own code (ctx.healthy)
  tostring_message = {
    [[return ctx.healthy(setmetatable({}, { __tostring = function() while true do end end }))]], "" },
  rep_bomb = { [[local s = ("x"):rep(2^30) return ctx.healthy(#s)]], "" },
  table_bomb = { [[local t = {} for i = 1, 1e9 do t[i] = { i } end]], "" },
}

describe("sandbox escapes", function()
  local agent, dir
  setup(function()
    dir = S.tmpdir()
    for name, body in pairs(BLOCKED) do S.write(dir .. "/" .. name .. ".lua", probe(name, body)) end
    for name, f in pairs(FAILS) do
      S.write(dir .. "/" .. name .. ".lua", ([[
return beagle.check { name = %q, interval = "1h", retries = 0, timeout = "2s",
  run = function(opt, ctx) %s end }
]]):format(name, f[1]))
    end
    -- at load time: a top-level loop, and a require of a trusted module
    S.write(dir .. "/load_loop.lua", "while true do end")
    S.write(dir .. "/load_require.lua", 'local c = require("agent.config") return beagle.check { name = "x", run = function() end }')
    S.write(dir .. "/bystander.lua", [[
return beagle.check { name = "bystander", interval = "200ms", retries = 0,
  run = function(opt, ctx) return ctx.healthy(string.format("%d", 7)) end }
]])
    agent = S.start { plugins = dir, config = S.calm_system, env = { MONITORING_PLUGIN_MEMORY_LIMIT_MB = "32" } }
  end)
  teardown(function() if agent then agent:stop() end end)

  local function final(name)
    return agent:wait_check(name, function(c) return c.runs and c.runs > 0 end, 15)
  end

  for name in pairs(BLOCKED) do
    it("blocks " .. name, function()
      local o = final(name)
      assert.is_table(o, name .. " never ran")
      assert.are.equal("healthy", o.status, o.message)
      assert.is_truthy(o.message:find("^blocked"), o.message)
      assert.is_true(agent:alive())
    end)
  end

  for name, f in pairs(FAILS) do
    it("ends " .. name .. " inside the plugin", function()
      local o = final(name)
      assert.is_table(o, name .. " never ran")
      assert.are.equal("unhealthy", o.status, o.message)
      assert.is_truthy(o.message:find(f[2], 1, true), o.message)
      assert.is_true(agent:alive())
      assert.are.equal(200, (agent:get("/health/live")))
    end)
  end

  it("fails the loads that loop or require trusted modules, naming why", function()
    local _, d = agent:get_json("/health/detailed")
    local seen = {}
    for _, p in ipairs(d.plugins) do
      if p.file:find("load_loop", 1, true) then
        seen.loop = true
        assert.are.equal("failed", p.state)
        assert.is_truthy(p.error == "timeout" or p.error == "instruction budget exceeded", p.error)
      elseif p.file:find("load_require", 1, true) then
        seen.req = true
        assert.are.equal("failed", p.state)
        assert.is_truthy(p.error:find('require "agent.config" is not allowed', 1, true), p.error)
      end
    end
    assert.is_true(seen.loop and seen.req)
  end)

  it("keeps the agent's own code and the other plugins intact", function()
    local o = agent:wait_check("bystander", function(c) return c.runs and c.runs > 3 end, 10)
    assert.are.equal("healthy", o.status)
    assert.are.equal("7", o.message)
    local st, body = agent:get("/metrics")
    assert.are.equal(200, st)
    assert.is_truthy(body:find("beagle_check_", 1, true))
    assert.is_true(agent:alive())
  end)
end)
