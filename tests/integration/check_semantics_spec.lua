-- What every check gets from the agent, whatever its plugin: depends_on (a check whose
-- dependency is down reports unknown with the reason and does not run), flap detection (the
-- status a rule sees is held while a check flaps), its last 100 results, and
-- GET /health/{name}?run=1 (run now, authenticated, answered with the fresh result).
local S = require "support"

-- The number of times the log says check `name` ran (the plugins log "ran").
local function runs_in_log(log, name)
  local n = 0
  for line in log:gmatch("[^\n]+") do
    if line:find("msg=ran", 1, true) and (line .. " "):find(" check=" .. name .. " ", 1, true) then n = n + 1 end
  end
  return n
end

-- The value of one series in a /metrics text, or nil.
local function series(text, name, labels)
  for line in text:gmatch("[^\n]+") do
    local n, l, v = line:match("^([%w_]+){(.-)} (%S+)$")
    if n == name then
      local all = true
      for k, want in pairs(labels) do
        if not l:find(('%s="%s"'):format(k, want), 1, true) then all = false break end
      end
      if all then return tonumber(v) end
    end
  end
end

describe("check semantics", function()
  local dir
  setup(function()
    dir = S.tmpdir()
    -- the status its instance is given, and a line in the log for each run
    S.write(dir .. "/fixed.lua", [[
return beagle.check { name = "fixed", interval = "1h",
  options = { status = { "string", default = "healthy" }, pause = { "duration", default = 0 } },
  run = function(opt, ctx)
    beagle.log.info("ran", { check = ctx.name })
    ctx.state.n = (ctx.state.n or 0) + 1
    if opt.pause > 0 then ctx.sleep(opt.pause) end
    return ctx[opt.status](("run %d"):format(ctx.state.n))
  end }
]])
    -- healthy, unhealthy, healthy, ... one run each
    S.write(dir .. "/alternating.lua", [[
return beagle.check { name = "alternating", interval = "1h",
  run = function(opt, ctx)
    ctx.state.n = (ctx.state.n or 0) + 1
    if ctx.state.n % 2 == 1 then return ctx.healthy("odd") end
    return ctx.unhealthy("even")
  end }
]])
  end)

  it("reports unknown with the reason, without running, while a dependency is down", function()
    local agent = S.start { plugins = dir, config = S.calm_system .. [[
check "fixed" { enabled = false }
check "alternating" { enabled = false }
check "db" { plugin = "fixed", status = "unhealthy", retries = 0 }
check "api" { plugin = "fixed", depends_on = "db", interval = "200ms" }
check "frontend" { plugin = "fixed", depends_on = { "api" }, interval = "200ms" }
check "cache" { plugin = "fixed", depends_on = { "db" }, status = "healthy" }
]] }
    local api = agent:wait_check("api", function(o) return o.runs and o.runs >= 3 end, 8)
    local front = agent:wait_check("frontend", function(o) return o.runs and o.runs >= 3 end, 8)
    local _, h = agent:get_json("/health")
    local log = agent:logtext()
    agent:stop()
    assert.is_truthy(api, log)
    assert.are.equal("unknown", api.status)
    assert.are.equal("db", api.dependency)
    assert.truthy(api.message:find("dependency db is unhealthy: run 1", 1, true), api.message)
    assert.are.same({ "db" }, api.depends_on)
    -- a dependency that is itself held back by its own is down too
    assert.is_truthy(front, log)
    assert.are.equal("unknown", front.status)
    assert.truthy(front.message:find("dependency api is unavailable", 1, true), front.message)
    -- neither ran its plugin (the dependency did, once)
    assert.are.equal(0, runs_in_log(log, "api"), log)
    assert.are.equal(0, runs_in_log(log, "frontend"), log)
    assert.are.equal(1, runs_in_log(log, "db"), log)
    -- the whole is unhealthy for db, not for the checks that depend on it
    assert.are.equal("unhealthy", h.status)
  end)

  it("runs a check again once its dependency is back", function()
    local agent = S.start { plugins = dir, config = S.calm_system .. [[
check "fixed" { enabled = false }
check "alternating" { enabled = false }
check "db" { plugin = "fixed", status = "unhealthy", retries = 0, interval = "300ms" }
check "api" { plugin = "fixed", depends_on = "db", interval = "200ms" }
]] }
    local down = agent:wait_check("api", function(o) return o.status == "unknown" and o.dependency == "db" end, 8)
    -- db comes back: the config changes, reloaded
    S.write(agent.config, S.calm_system .. [[
check "fixed" { enabled = false }
check "alternating" { enabled = false }
check "db" { plugin = "fixed", status = "healthy", interval = "300ms" }
check "api" { plugin = "fixed", depends_on = "db", interval = "200ms" }
]])
    agent:signal("HUP")
    local up = agent:wait_check("api", function(o) return o.status == "healthy" end, 8)
    local log = agent:logtext()
    agent:stop()
    assert.is_truthy(down, log)
    assert.is_truthy(up, log)
    assert.is_nil(up.dependency)
    assert.is_true(runs_in_log(log, "api") >= 1, log)
  end)

  it("refuses a depends_on that names no check, or a cycle, naming the check", function()
    for _, case in ipairs {
      { [[check "api" { plugin = "fixed", depends_on = "nope" }]], 'check "api".-depends_on: no check named "nope"' },
      { [[check "a" { plugin = "fixed", depends_on = "b" }
check "b" { plugin = "fixed", depends_on = { "a" } }]], "depends_on: a cycle: [ab] %-> [ab] %-> [ab]" },
      { [[check "a" { plugin = "fixed", depends_on = "a" }]], "cannot depend on itself" },
      { [[check "a" { plugin = "fixed", depends_on = 7 }]], "depends_on = 7: must be a check name" },
    } do
      local ok, err = pcall(S.start, { plugins = dir, config = S.calm_system .. [[
check "fixed" { enabled = false }
check "alternating" { enabled = false }
]] .. case[1] .. "\n" })
      if ok then err:stop() end
      assert.is_false(ok, case[1])
      assert.truthy(tostring(err):find(case[2]), tostring(err))
    end
  end)

  it("refuses an instance its plugin's validate refuses, at start, naming the line", function()
    local vdir = S.tmpdir()
    S.write(vdir .. "/ported.lua", [[
return beagle.check { name = "ported", automatic = false,
  options = { port = { "integer" }, mode = { "string", default = "ok" } },
  validate = function(opt)
    if opt.port < 1 or opt.port > 65535 then return ("option port: %d is not a TCP port"):format(opt.port) end
    if opt.mode == "raise" then error("option mode: raised") end
    if opt.mode == "spin" then while true do end end
  end,
  run = function(opt, ctx) return ctx.healthy("port " .. opt.port) end }
]])
    for _, case in ipairs {
      { 'check "p" { plugin = "ported", port = 70000 }', 'beagle.lua:%d+: check "p": option port: 70000 is not a TCP port' },
      { 'check "p" { plugin = "ported", port = 80, mode = "raise" }', 'check "p": .*option mode: raised' },
      { 'check "p" { plugin = "ported", port = 80, mode = "spin" }', 'check "p": .*' },
    } do
      local ok, err = pcall(S.start, { plugins = vdir, config = S.calm_system .. case[1] .. "\n" })
      if ok then err:stop() end
      assert.is_false(ok, case[1])
      assert.truthy(tostring(err):find(case[2]), tostring(err))
    end
    local agent = S.start { plugins = vdir, config = S.calm_system .. 'check "p" { plugin = "ported", port = 80 }\n' }
    local o = agent:wait_check("p", function(c) return c.runs >= 1 end, 8)
    agent:stop()
    assert.are.equal("port 80", o.message)
  end)

  it("holds the status rules see while a check flaps, and shows every result", function()
    local agent = S.start { plugins = dir, config = S.calm_system .. [[
check "fixed" { enabled = false }
check "alternating" { interval = "150ms", retries = 0, flap_threshold = 3, flap_window = "1m" }
]] }
    local flapping = agent:wait_check("alternating", function(o) return o.flapping end, 8)
    assert.is_truthy(flapping, agent:logtext())
    -- the held status is the one before it began to flap; the gauge stays on it whatever the
    -- check's latest result is
    local held = flapping.held_status
    assert.truthy(held == "healthy" or held == "unhealthy", tostring(held))
    local seen = {}
    for _ = 1, 6 do
      local _, text = agent:get("/metrics")
      local o = agent:check("alternating")
      seen[o.status] = true
      assert.are.equal(1, series(text, "beagle_check_status", { check = "alternating", status = held }), text)
      assert.are.equal(1, series(text, "beagle_check_flapping", { check = "alternating" }), text)
      S.sleep(0.1)
    end
    local log = agent:logtext()
    agent:stop()
    assert.is_true(seen.healthy and seen.unhealthy, "/health/alternating showed each result")
    assert.truthy(log:find("check is flapping", 1, true), log)
    assert.is_true(flapping.status_changes > 3)
  end)

  it("runs each check on its own phase of the interval, none skipped, none doubled", function()
    local agent = S.start { plugins = dir, config = S.calm_system .. [[
check "alternating" { enabled = false }
check "fixed" { interval = "100ms" }
check "alpha" { plugin = "fixed", interval = "100ms" }
]] }
    S.sleep(2.2)
    local _, text = agent:get("/metrics")
    local a, b = agent:check("fixed"), agent:check("alpha")
    local log = agent:logtext()
    agent:stop()
    -- a first run at once, then one per 100 ms (a timer that refired until its due time passed
    -- ran up thousands of skipped runs here)
    for _, o in ipairs { a, b } do
      assert.is_true(o.runs >= 14 and o.runs <= 24, ("%s ran %d times in 2.2 s"):format(o.name, o.runs))
    end
    for _, name in ipairs { "fixed", "alpha" } do
      local skipped = series(text, "beagle_check_skipped_total", { check = name }) or 0
      assert.are.equal(0, skipped, text)
    end
    -- the two start at different points of the interval (their phases come from their names)
    local function phase_of(name)
      local ph = {}
      for line in log:gmatch("[^\n]+") do
        if line:find("msg=ran", 1, true) and (line .. " "):find(" check=" .. name .. " ", 1, true) then
          local sec = tonumber(line:match("T%d+:%d+:([%d%.]+)Z"))
          ph[#ph + 1] = (sec * 1000) % 100
        end
      end
      table.sort(ph)
      return ph[math.ceil(#ph / 2)]
    end
    -- FNV-1a of the names puts "fixed" at 70.3 ms and "alpha" at 36.5 ms of each 100 ms: the
    -- runs of fixed come 33.8 ms after those of alpha (the same instant, without phases)
    local d = (phase_of("fixed") - phase_of("alpha")) % 100
    assert.is_true(d > 20 and d < 48, ("fixed runs %.1f ms after alpha, not about 33.8 ms"):format(d))
  end)

  it("keeps the last 100 results", function()
    local agent = S.start { plugins = dir, config = S.calm_system .. [[
check "alternating" { enabled = false }
check "fixed" { interval = "20ms", flap_threshold = 0 }
]] }
    local o = agent:wait_check("fixed", function(c) return c.runs >= 110 end, 20)
    local _, d = agent:get_json("/health/detailed")
    agent:stop()
    assert.is_truthy(o)
    assert.are.equal(100, #o.history)
    assert.are.equal(100, o.history_kept)
    -- /health/detailed: the last 10 of each (all of every check's would be megabytes)
    local fd
    for _, c in ipairs(d.checks) do if c.name == "fixed" then fd = c end end
    assert.are.equal(10, #fd.history)
    assert.are.equal(100, fd.history_kept)
    assert.are.equal(("run %d"):format(o.runs), o.history[1].message)
    assert.are.equal(("run %d"):format(o.runs - 99), o.history[100].message)
  end)

  it("runs a check now for GET /health/{name}?run=1 and answers with the fresh result", function()
    local agent = S.start { plugins = dir, config = S.calm_system .. [[
check "alternating" { enabled = false }
check "fixed" { pause = "300ms" }
check "bad" { plugin = "fixed", status = "unhealthy", retries = 0 }
]] }
    agent:wait_check("fixed", function(o) return o.runs == 1 end, 8)
    local t0 = S.now()
    local st, body, head = agent:get("/health/fixed?run=1")
    local took = S.now() - t0
    local o = S.json(body)
    assert.are.equal(200, st, body)
    assert.are.equal("run 2", o.message)
    assert.are.equal(2, o.runs)
    assert.is_true(took >= 0.29, ("answered in %.3f s, before the run could end"):format(took))
    assert.truthy(head:lower():find("connection: close", 1, true), head)
    -- without run= it is the last result, not a new run
    local _, again = agent:get_json("/health/fixed")
    assert.are.equal(2, again.runs)
    -- two at once: both answered, each with a run at least as new as when it asked
    local a = S.service(("curl -s -m 5 %q > %q"):format(agent.url .. "/health/fixed?run=1", dir .. "/a.json"))
    local b = S.service(("curl -s -m 5 %q > %q"):format(agent.url .. "/health/fixed?run=1", dir .. "/b.json"))
    local both = S.wait(function()
      local x, y = S.json(S.read(dir .. "/a.json") or ""), S.json(S.read(dir .. "/b.json") or "")
      return x and y and { x, y }
    end, 8)
    a.stop() b.stop()
    assert.is_truthy(both)
    assert.is_true(both[1].runs >= 3 and both[2].runs >= 3)
    -- unhealthy: 503, with the fresh result
    st, body = agent:get("/health/bad?run=1")
    assert.are.equal(503, st, body)
    assert.are.equal("run 2", S.json(body).message)
    st = agent:get("/health/nope?run=1")
    assert.are.equal(404, st)
    local log = agent:logtext()
    agent:stop()
    assert.truthy(agent, log)
  end)

  it("answers ?run=1 at once when the result is known without a run, and after a dependency's first result", function()
    local agent = S.start { plugins = dir, config = S.calm_system .. [[
check "alternating" { enabled = false }
check "fixed" { enabled = false }
check "db" { plugin = "fixed", status = "unhealthy", retries = 0 }
check "api" { plugin = "fixed", depends_on = "db" }
check "slowdep" { plugin = "fixed", pause = "1500ms", timeout = "5s" }
check "waiter" { plugin = "fixed", depends_on = "slowdep" }
]] }
    -- waiter waits for slowdep's first result: asked now, it answers once that came and it ran
    local t0 = S.now()
    local st, body = agent:get("/health/waiter?run=1")
    local took = S.now() - t0
    assert.are.equal(200, st, body)
    assert.are.equal("healthy", S.json(body).status, body)
    assert.is_true(took < 4.5, ("answered after %.1f s"):format(took))
    agent:wait_check("api", function(o) return o.dependency == "db" end, 8)
    t0 = S.now()
    st, body = agent:get("/health/api?run=1")
    took = S.now() - t0
    agent:stop()
    -- a dependency that is down: the answer is at once (it was a 504 after 120 s)
    assert.are.equal(200, st, body)
    assert.are.equal("unknown", S.json(body).status)
    assert.is_true(took < 2, ("answered after %.1f s"):format(took))
  end)

  it("does not run a check twice, or loop, when a reload rebuilds it mid-run", function()
    local agent = S.start { plugins = dir, config = S.calm_system .. [[
check "alternating" { enabled = false }
check "fixed" { enabled = false }
check "a" { plugin = "fixed", pause = "2s", timeout = "5s" }
check "b" { plugin = "fixed", depends_on = "a" }
]] }
    S.sleep(0.7)
    -- a changes while its first run is in flight and b waits for it
    S.write(agent.config, S.calm_system .. [[
check "alternating" { enabled = false }
check "fixed" { enabled = false }
check "a" { plugin = "fixed", pause = "2s", timeout = "5s", tags = { x = "1" } }
check "b" { plugin = "fixed", depends_on = "a" }
]])
    agent:signal("HUP")
    local b = agent:wait_check("b", function(o) return o.runs >= 1 end, 8)
    local st = agent:get("/health/live")
    local a = agent:check("a")
    local log = agent:logtext()
    agent:stop()
    assert.are.equal(200, st, "the loop stopped serving")
    assert.is_truthy(b, log)
    assert.are.equal("healthy", b.status)
    assert.are.equal(1, a.runs, "the run in flight was recorded on the new instance, once")
    assert.are.equal(1, runs_in_log(log, "a"), log)
    assert.are.equal(1, runs_in_log(log, "b"), log)
  end)

  it("runs nothing for HEAD /health/{name}?run=1", function()
    local agent = S.start { plugins = dir, config = S.calm_system .. [[
check "alternating" { enabled = false }
check "fixed" { }
]] }
    agent:wait_check("fixed", function(o) return o.runs == 1 end, 8)
    local st = S.http("HEAD", agent.url .. "/health/fixed?run=1")
    S.sleep(0.3)
    local o = agent:check("fixed")
    agent:stop()
    assert.are.equal(200, st)
    assert.are.equal(1, o.runs)
  end)

  it("stops cleanly while an on-demand run is waited for", function()
    local agent = S.start { plugins = dir, config = S.calm_system .. [[
check "alternating" { enabled = false }
check "fixed" { pause = "3s", timeout = "5s" }
]] }
    agent:wait_check("fixed", function(o) return o.runs == 1 end, 8)
    local out = dir .. "/pending.txt"
    local c = S.service(("curl -s -m 10 -o /dev/null -w '%%{http_code}' %q > %q"):format(agent.url .. "/health/fixed?run=1", out))
    S.sleep(0.5)
    local stopped = agent:stop(8)
    local code = S.wait(function() local t = S.read(out) return t and t ~= "" and t end, 10)
    c.stop()
    local log = agent:logtext()
    assert.is_true(stopped, log)
    assert.truthy(log:find("msg=stopped", 1, true), log)
    assert.is_nil(log:find("level=error", 1, true), log)
    -- the client got an answer or a closed connection, never a hang
    assert.is_truthy(code, "curl did not finish")
  end)

  it("asks for the api_token before running a check on demand", function()
    local agent = S.start { plugins = dir, env = { MONITORING_API_TOKEN = "run-token-5678" }, config = S.calm_system .. [[
check "alternating" { enabled = false }
check "fixed" { }
]] }
    agent:wait_check("fixed", function(o) return o.runs == 1 end, 8)
    local st, body = agent:get("/health/fixed?run=1")
    assert.are.equal(401, st, body)
    st, body = agent:get("/health/fixed?run=1", { "Authorization: Bearer wrong" })
    assert.are.equal(401, st, body)
    local _, o = agent:get_json("/health/fixed")
    assert.are.equal(1, o.runs) -- refused: nothing ran
    st, body = agent:get("/health/fixed?x=1&run=1", { "Authorization: Bearer run-token-5678" })
    agent:stop()
    assert.are.equal(200, st, body)
    assert.are.equal("run 2", S.json(body).message)
  end)
end)
