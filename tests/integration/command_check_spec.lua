-- The command check running the real Monitoring Plugins (Debian's monitoring-plugins-basic,
-- installed by scripts/deps.sh test): exit codes as statuses, output as message, perfdata as
-- gauges in /metrics, and the failures (a missing program, one that outlives its timeout).
local S = require "support"

local NP = "/usr/lib/nagios/plugins"
local REQUIRED = { "check_dummy", "check_load", "check_disk", "check_tcp" }

-- check_curl where the package has it (monitoring-plugins 2.4 on), else check_http
local function http_plugin()
  for _, p in ipairs { "check_curl", "check_http" } do
    local f = io.open(NP .. "/" .. p, "r")
    if f then f:close() return NP .. "/" .. p end
  end
  error(NP .. "/check_curl and check_http are missing: install Debian's monitoring-plugins-basic")
end

describe("command check", function()
  local agent, sink
  setup(function()
    for _, p in ipairs(REQUIRED) do
      local f = io.open(NP .. "/" .. p, "r")
      if not f then
        error(("%s/%s is missing: install Debian's monitoring-plugins-basic (scripts/deps.sh test)")
          :format(NP, p))
      end
      f:close()
    end
    -- a real HTTP server (tests/http_sink.py) for check_tcp and check_http/check_curl to probe
    sink = S.sink()
    local closed = S.free_port()
    local HTTP = http_plugin()
    local net = ([[
plugin_exec_allow = plugin_exec_allow .. ", %s/check_tcp, %s"
check "tcp_ok" { plugin = "command", command = { "%s/check_tcp", "-H", "127.0.0.1", "-p", "%d" }, retries = 0 }
check "tcp_closed" { plugin = "command", command = { "%s/check_tcp", "-H", "127.0.0.1", "-p", "%d" }, retries = 0 }
check "http_ok" { plugin = "command", retries = 0,
  command = { "%s", "-H", "127.0.0.1", "-p", "%d", "-u", "/probe", "-s", "ok" } }
check "http_string" { plugin = "command", retries = 0,
  command = { "%s", "-H", "127.0.0.1", "-p", "%d", "-u", "/probe", "-s", "no such text" } }
]]):format(NP, HTTP, NP, sink.port, NP, closed, HTTP, sink.port, HTTP, sink.port)
    agent = S.start {
      config = S.calm_system .. ([[
plugin_exec_allow = "%s/check_dummy, %s/check_load, %s/check_disk, /bin/sh, /bin/sleep, /no/such/program"
check "dummy_ok" { plugin = "command", command = { "%s/check_dummy", "0", "all fine" }, retries = 0 }
check "dummy_warn" { plugin = "command", command = { "%s/check_dummy", "1", "a bit off" }, retries = 0 }
check "dummy_crit" { plugin = "command", command = { "%s/check_dummy", "2", "broken" }, retries = 0 }
check "dummy_unknown" { plugin = "command", command = { "%s/check_dummy", "3", "no idea" }, retries = 0 }
check "load" { plugin = "command", command = { "%s/check_load", "-w", "1000,1000,1000", "-c", "2000,2000,2000" }, retries = 0 }
check "disk" { plugin = "command", command = { "%s/check_disk", "-w", "0%%", "-c", "0%%", "-p", "/" }, retries = 0 }
check "missing" { plugin = "command", command = { "/no/such/program" }, retries = 0 }
check "not_allowed" { plugin = "command", command = { "/bin/true" }, retries = 0 }
check "odd_exit" { plugin = "command", shell = true, command = "echo 'weird | x=1 y=zz'; exit 42", retries = 0 }
check "long" { plugin = "command", shell = true, retries = 0,
  command = "printf 'OK head|a=1s\nmore text\nstill | b=5MB;;;0;10\nc=50%%%%\n'" }
check "slow" { plugin = "command", command = { "/bin/sleep", "30" }, timeout = "1s", retries = 0 }
]]):format(NP, NP, NP, NP, NP, NP, NP, NP, NP) .. net,
    }
  end)
  teardown(function()
    if agent then agent:stop() end
    if sink then sink.stop() end
  end)

  local function result(name, timeout)
    local o = agent:wait_check(name, function(c) return c.runs and c.runs > 0 end, timeout or 10)
    assert.is_truthy(o, "check " .. name .. " did not run:\n" .. agent:logtext())
    return o
  end

  it("maps check_dummy's exit codes 0/1/2/3 and its text", function()
    local want = { dummy_ok = { "healthy", "OK: all fine" }, dummy_warn = { "degraded", "WARNING: a bit off" },
      dummy_crit = { "unhealthy", "CRITICAL: broken" }, dummy_unknown = { "unknown", "UNKNOWN: no idea" } }
    for name, w in pairs(want) do
      local o = result(name)
      assert.are.equal(w[1], o.status, name .. ": " .. tostring(o.message))
      assert.are.equal(w[2], o.message, name)
    end
  end)

  it("runs check_load with thresholds and exposes its perfdata as gauges", function()
    local o = result("load")
    assert.are.equal("healthy", o.status, o.message)
    assert.truthy(o.message:find("^LOAD OK"), o.message)
    assert.is_number(o.details.perfdata.load1)
    local _, body = agent:get("/metrics")
    for _, l in ipairs { "load1", "load5", "load15" } do
      assert.truthy(body:find("\ncheck_load_" .. l .. " [%d%.e+-]+\n"), "no check_load_" .. l .. " in /metrics:\n" .. body)
    end
  end)

  it("runs check_disk on / and records its perfdata in bytes", function()
    local o = result("disk")
    assert.are.equal("healthy", o.status, o.message)
    assert.truthy(o.message:find("^DISK OK"), o.message)
    local used = o.details.perfdata["/"]
    assert.is_number(used)
    assert.is_true(used > 1024 * 1024, tostring(used)) -- bytes, not MB
    local _, body = agent:get("/metrics")
    local v = tonumber(body:match("\ncheck_disk__ ([%d%.e+]+)\n"))
    assert.is_truthy(v, body)
    assert.is_true(v > 1024 * 1024)
  end)

  it("reports a program that cannot run, or is not allowed, as unknown", function()
    local o = result("missing")
    assert.are.equal("unknown", o.status)
    assert.truthy(o.message:find("no such file", 1, true), o.message)
    o = result("not_allowed")
    assert.are.equal("unknown", o.status)
    assert.truthy(o.message:find("not allowed", 1, true), o.message)
  end)

  it("reports an exit code outside the API as unknown and skips malformed perfdata", function()
    local o = result("odd_exit")
    assert.are.equal("unknown", o.status)
    assert.are.equal("exit code 42: weird", o.message)
    assert.are.equal(1, o.details.perfdata.x)
    assert.are.equal(1, o.details.perfdata_skipped)
    assert.truthy(o.details.perfdata_errors:find("y=zz", 1, true), o.details.perfdata_errors)
  end)

  it("reads the long output form", function()
    local o = result("long")
    assert.are.equal("healthy", o.status, o.message)
    assert.are.equal("OK head", o.message)
    assert.are.equal(1, o.details.perfdata.a)
    assert.are.equal(5 * 1024 * 1024, o.details.perfdata.b)
    assert.are.equal(50, o.details.perfdata.c)
    assert.truthy(o.details.long_output:find("more text", 1, true), o.details.long_output)
  end)

  it("runs check_tcp against a listening port and a closed one", function()
    local o = result("tcp_ok")
    assert.are.equal("healthy", o.status, o.message)
    assert.truthy(o.message:find("^TCP OK"), o.message)
    assert.is_number(o.details.perfdata.time) -- seconds
    assert.is_true(o.details.perfdata.time < 10)
    local _, body = agent:get("/metrics")
    assert.truthy(body:find("\ncheck_tcp_ok_time [%d%.e+-]+\n"), "no check_tcp_ok_time in /metrics:\n" .. body)
    o = result("tcp_closed")
    assert.are.equal("unhealthy", o.status, o.message)
    assert.truthy(o.message:lower():find("refused", 1, true), o.message)
  end)

  it("runs check_http (or check_curl) against a real HTTP server", function()
    local o = result("http_ok")
    assert.are.equal("healthy", o.status, o.message)
    assert.truthy(o.message:find("^HTTP OK"), o.message)
    assert.is_number(o.details.perfdata.time)
    assert.is_number(o.details.perfdata.size) -- bytes
    local seen = false
    for _, r in ipairs(sink.requests()) do
      if r.path == "/probe" and r.method == "GET" then seen = true end
    end
    assert.is_true(seen, "the sink saw no GET /probe")
    o = result("http_string")
    assert.are.equal("unhealthy", o.status, o.message)
    assert.truthy(o.message:find("^HTTP CRITICAL"), o.message)
    assert.truthy(o.message:find("not found", 1, true), o.message)
  end)

  it("kills a program that outlives the timeout", function()
    local o = result("slow", 10)
    assert.are.equal("unhealthy", o.status)
    assert.are.equal("timeout", o.message)
  end)

  it("refuses an empty command, or one string with spaces without shell, at load, naming the file and line",
    function()
    for _, case in ipairs {
      { 'check "empty" { plugin = "command", command = {} }', "option command: empty" },
      { 'check "spaces" { plugin = "command", command = "check_dummy 0 ok" }',
        "option command: a string with spaces: give an argv list, or set shell = true" },
      { 'check "shell_argv" { plugin = "command", command = { "echo", "x" }, shell = true }',
        "option command: shell = true takes command as one string" },
    } do
      local name = case[1]:match('check "([^"]+)"')
      assert.are.equal(('beagle.lua:%d: check "%s": %s'):format(S.calm_lines + 1, name, case[2]),
        S.refused(case[1] .. "\n"))
    end
  end)
end)
