-- The process check against processes started here: two sleeps under a name of their own (a
-- copy of sleep, so that no other sleep on the machine counts), found by /proc/<pid>/comm, by
-- their command line and by a pidfile; count bounds; RSS and CPU (a busy shell loop) against
-- thresholds; then the sleeps killed: unhealthy.
local S = require "support"

describe("process check", function()
  local agent, dir, sleeps, busy, pidfile
  local tag = tostring(math.random(10000, 99999)) .. tostring(os.time() % 1000)
  local sname, bname = ("bgs%s"):format(tag):sub(1, 15), ("bgb%s"):format(tag):sub(1, 15)
  local arg = ("3001.%s"):format(tag)

  setup(function()
    dir = S.tmpdir()
    local out, code = S.sh(("cp /bin/sleep %q && cp /bin/sh %q"):format(dir .. "/" .. sname, dir .. "/" .. bname))
    assert(code == 0, out)
    sleeps = {}
    for i = 1, 2 do sleeps[i] = S.service(("exec %q %s"):format(dir .. "/" .. sname, arg)) end
    busy = S.service(("exec %q -c 'while :; do :; done'"):format(dir .. "/" .. bname))
    pidfile = dir .. "/app.pid"
    S.write(pidfile, sleeps[1].pid .. "\n")
    assert(S.wait(function()
      local c = S.read("/proc/" .. sleeps[2].pid .. "/comm")
      return c and c:find(sname, 1, true)
    end, 10), "the sleeps did not start")
    agent = S.start {
      config = S.calm_system .. ([[
local sname, bname, arg, pidfile = %q, %q, %q, %q
local function c(name, t) t.plugin = "process" t.retries = 0 t.interval = "1s" check(name)(t) end
c("by_name", { name = sname })
c("at_most_one", { name = sname, max_count = 1 })
c("at_least_three", { name = sname, min_count = 3 })
c("by_cmdline", { name = arg, match_cmdline = true, min_count = 2, max_count = 2 })
c("by_pidfile", { pidfile = pidfile })
c("rss", { pidfile = pidfile, rss_degraded = 0.01 })
c("busy", { name = bname, cpu_unhealthy = 5 })
c("quiet", { pidfile = pidfile, cpu_unhealthy = 50 })
c("gone", { name = "bgnever" .. arg })
c("no_pidfile", { pidfile = pidfile .. ".missing" })
]]):format(sname, bname, arg, pidfile),
    }
  end)

  teardown(function()
    if agent then agent:stop() end
    for _, s in ipairs(sleeps or {}) do s.stop() end
    if busy then busy.stop() end
  end)

  local function expect(name, status, message, timeout)
    local o = agent:wait_check(name, function(c) return c.runs and c.runs > 0 and c.status == status end, timeout or 20)
    if not o then o = agent:check(name) end
    assert.is_truthy(o, "check " .. name .. " did not run:\n" .. agent:logtext())
    assert.are.equal(status, o.status, name .. ": " .. tostring(o.message))
    if message then
      assert.is_truthy(tostring(o.message):find(message, 1, true), name .. ": " .. tostring(o.message))
    end
    return o
  end

  it("finds processes by name, with their count, CPU and RSS, and records gauges", function()
    local o = expect("by_name", "healthy", ('process "%s": 2 running, cpu '):format(sname))
    assert.are.equal(2, o.details.count)
    assert.is_true(o.details.rss_bytes > 0)
    local pids = { tostring(sleeps[1].pid), tostring(sleeps[2].pid) }
    table.sort(pids, function(a, b) return tonumber(a) < tonumber(b) end)
    assert.are.equal(table.concat(pids, ", "), o.details.pids)
    local _, body = agent:get("/metrics")
    assert.is_truthy(body:find('\ncheck_process_count{check="by_name"} 2\n'), body)
    assert.is_truthy(body:find('\ncheck_process_rss_bytes{check="by_name"} [%d%.e+]+\n'), body)
    assert.is_truthy(body:find('\ncheck_process_cpu_percent{check="by_name"} [%d%.e+-]+\n'), body)
  end)

  it("holds the count to min_count and max_count", function()
    expect("at_most_one", "unhealthy", ('2 of process "%s" running, expected at most 1'):format(sname))
    expect("at_least_three", "unhealthy", "expected at least 3")
    expect("by_cmdline", "healthy", "2 running")
  end)

  it("finds the process of a pidfile", function()
    local o = expect("by_pidfile", "healthy", "process of " .. pidfile .. ": 1 running")
    assert.are.equal(tostring(sleeps[1].pid), o.details.pids)
    expect("no_pidfile", "unhealthy", "pidfile ")
  end)

  it("holds CPU and RSS to their thresholds", function()
    expect("rss", "degraded", "elevated rss ")
    local o = expect("busy", "unhealthy", "high cpu ")
    assert.is_true(o.details.cpu_percent >= 5, tostring(o.details.cpu_percent))
    o = expect("quiet", "healthy")
    assert.is_true(o.details.cpu_percent < 50, tostring(o.details.cpu_percent))
  end)

  it("is unhealthy for a name nothing runs under", function()
    expect("gone", "unhealthy", "is not running")
  end)

  it("refuses wrong options at load, naming the file and line, the check and the options", function()
    for _, case in ipairs {
      { 'check "both" { plugin = "process", name = "x", pidfile = "/run/x.pid" }',
        "options name and pidfile: give exactly one of them" },
      { 'check "neither" { plugin = "process" }', "options name and pidfile: give exactly one of them" },
      { 'check "empty" { plugin = "process", name = "" }', "option name: empty" },
      { 'check "relative" { plugin = "process", pidfile = "x.pid" }', 'option pidfile: "x.pid" is not an absolute path' },
      { 'check "counts" { plugin = "process", name = "x", min_count = 3, max_count = 2 }',
        "option max_count: 2 is below min_count (3)" },
    } do
      local name = case[1]:match('check "([^"]+)"')
      assert.are.equal(('beagle.lua:%d: check "%s": %s'):format(S.calm_lines + 1, name, case[2]),
        S.refused(case[1] .. "\n"))
    end
  end)

  it("is unhealthy once the processes are killed", function()
    local pid1 = sleeps[1].pid
    for _, s in ipairs(sleeps) do s.stop() end
    expect("by_name", "unhealthy", ('process "%s" is not running'):format(sname))
    expect("by_pidfile", "unhealthy", ("pid %d (from %s) is not running"):format(pid1, pidfile))
  end)
end)
