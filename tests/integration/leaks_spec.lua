-- Every plugin state and SQLite handle is freed at exit and at SIGTERM (issue 14 §2):
-- LeakSanitizer finds nothing after `beagle check`, after `beagle run` stopped by SIGTERM
-- (with checks, rules, a channel that delivered, an API rule and the state store in use), and
-- after a start that fails. BEAGLE_LSAN_BIN is the agent linked with LeakSanitizer's runtime
-- (beagle_lsan in CMakeLists.txt; the agent itself in an ASan build).
local S = require "support"
local cjson = require "cjson"

local LSAN = os.getenv("BEAGLE_LSAN_BIN")

-- Where LeakSanitizer cannot run (no ptrace in some containers) it says so: not our leak.
local function unusable(out)
  return out:find("LeakSanitizer has encountered a fatal error", 1, true)
    or out:find("LeakSanitizer does not work under ptrace", 1, true)
end

local function no_leak(out)
  if unusable(out) then
    pending("LeakSanitizer cannot run here: " .. out:match("[^\n]*LeakSanitizer[^\n]*"))
    return
  end
  assert.is_nil(out:find("LeakSanitizer", 1, true), out)
  assert.is_nil(out:find("AddressSanitizer", 1, true), out)
  assert.is_nil(out:find("runtime error:", 1, true), out)
end

local describe_lsan = LSAN and LSAN ~= "" and describe or pending

describe_lsan("no leaks at exit", function()
  local sink, agent

  setup(function() sink = S.sink() end)
  teardown(function()
    if agent then agent:stop() end
    if sink then sink.stop() end
  end)

  local function with_lsan(fn)
    local bin = S.bin
    S.bin = LSAN
    local ok, res = pcall(fn)
    S.bin = bin
    assert(ok, res)
    return res
  end

  it("after beagle check", function()
    local dir = S.tmpdir()
    S.write(dir .. "/beagle.lua", S.calm_system .. ([[
check "closed" { plugin = "tcp", host = "127.0.0.1", port = 1, timeout = "1s" }
check "web" { plugin = "http", url = "%s/up", timeout = "2s" }
channel "hook" { plugin = "webhook", url = "%s/hook" }
]]):format(sink.url, sink.url))
    local out, code = S.sh(("cd %q && %q check -c beagle.lua"):format(dir, LSAN))
    no_leak(out)
    assert.is_true(code >= 0 and code <= 3, out)
    assert.is_truthy(out:find("closed", 1, true), out)
  end)

  it("after beagle run and SIGTERM, with every part in use", function()
    local rules = S.tmpdir()
    S.write(rules .. "/leak.lua", [[
route { channels = { "hook" }, group_wait = "0s", group_interval = "0.2s", repeat_interval = "1h" }
alert "leaky" { metric = "leak.value", condition = ">", threshold = 10, duration = "0s", every = "0.2s",
  severity = "warning", message = "leak" }
]])
    agent = with_lsan(function()
      return S.start {
        env = { MONITORING_METRICS_COLLECTION_INTERVAL = "0.2" },
        args = { "--rules", rules },
        config = S.calm_system .. ([[
check "web" { plugin = "http", url = "%s/up", interval = "1s", timeout = "2s" }
channel "hook" { plugin = "webhook", url = "%s/hook" }
]]):format(sink.url, sink.url),
      }
    end)
    agent:post("/metrics/custom", cjson.encode { name = "leak.value", type = "gauge", value = 50 },
      { "Content-Type: application/json" })
    agent:statsd("leak.count:1|c\nleak.set:a|s\n")
    local st, body = agent:post("/alerts/rules", cjson.encode { name = "api_leak", condition = "greater_than",
      metric = "system.disk_percent", threshold = 99, duration_minutes = 5, severity = "warning", message = "x" })
    assert.are.equal(201, st, body)
    local delivered = S.wait(function()
      for _, r in ipairs(sink.requests()) do if r.path == "/hook" then return true end end
    end, 20)
    assert.is_truthy(delivered, agent:logtext())
    agent:get("/health/detailed")
    -- a deferred answer: the check runs now, the connection waits for it
    local rst, rbody = agent:get("/health/web?run=1")
    assert.are.equal(200, rst, rbody)
    agent:get("/metrics")
    agent:get("/alerts")
    local a = agent
    assert.is_true(a:stop(30), a:logtext())
    agent = nil
    local log = a:logtext()
    no_leak(log)
    assert.is_truthy(log:find('msg=stopped', 1, true), log)
  end)

  it("after a start that fails", function()
    local busy = with_lsan(function() return S.start { config = S.calm_system } end)
    local dir = S.tmpdir()
    local out, code = S.sh(("cd %q && %q run --listen 127.0.0.1:%d --data %q/data --statsd off"):format(
      dir, LSAN, busy.port, dir))
    busy:stop()
    no_leak(out)
    assert.are.equal(1, code, out)
    assert.is_truthy(out:find("cannot listen", 1, true), out)
  end)
end)
