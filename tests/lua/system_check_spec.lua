-- The built-in system check with /proc and statvfs faked, as the guide's test does with
-- psutil patched: cpu 45%, memory 60%, disk 70% is healthy, with those details.
local beagle = require "beagle"
do -- what the sandbox gives a plugin's copy of beagle on first use
  local api = require("agent.metrics").plugin_api()
  for k in pairs(beagle.metric_keys) do beagle[k] = api[k] end
end

local function load_plugin()
  local chunk = assert(loadfile("plugins/checks/system.lua"))
  setfenv(chunk, setmetatable({ beagle = beagle }, { __index = _G }))
  return chunk()
end

-- A fake ctx whose /proc/stat advances by (busy, idle) jiffies per read.
local function fake_ctx(cpu_busy_pct, mem_pct, disk_pct)
  local busy, idle = 1000, 1000
  local ctx = {}
  function ctx.read_file(path)
    if path == "/proc/stat" then
      busy = busy + cpu_busy_pct
      idle = idle + (100 - cpu_busy_pct)
      return ("cpu  %d 0 0 %d 0 0 0 0 0 0\ncpu0 1 2 3 4\n"):format(busy, idle)
    elseif path == "/proc/meminfo" then
      return ("MemTotal:       1000000 kB\nMemFree:         100000 kB\nMemAvailable:    %d kB\n")
        :format(1000000 * (100 - mem_pct) / 100)
    elseif path == "/proc/loadavg" then
      return "0.50 0.40 0.30 1/100 12345\n"
    end
    return nil, path .. ": no such file"
  end
  function ctx.statvfs() return 1000, 1000 * (100 - disk_pct) / 100 end
  local clock = 0
  ctx.state = {}
  function ctx.now() return clock end
  function ctx.sleep(s) clock = clock + s end
  local function result(status)
    return function(msg, details) return { status = status, message = msg, details = details } end
  end
  ctx.healthy, ctx.degraded, ctx.unhealthy, ctx.unknown =
    result("healthy"), result("degraded"), result("unhealthy"), result("unknown")
  return ctx
end

local function run(cpu, mem, disk, given)
  local p = load_plugin()
  local opts = assert(beagle.validate_options(p.options, given or {}))
  return p.run(opts, fake_ctx(cpu, mem, disk))
end

describe("system check", function()
  it("is healthy at cpu 45%, memory 60%, disk 70% with those details", function()
    local r = run(45, 60, 70)
    assert.are.equal("healthy", r.status)
    assert.is_true(math.abs(r.details.cpu_percent - 45) < 1e-9)
    assert.is_true(math.abs(r.details.memory_percent - 60) < 1e-9)
    assert.is_true(math.abs(r.details.disk_percent - 70) < 1e-9)
    assert.are.equal(0.5, r.details.load_1m)
    assert.are.equal("cpu 45.0%, memory 60.0%, disk 70.0%", r.message)
  end)

  it("is degraded and unhealthy above its thresholds, naming what is high", function()
    local r = run(90, 60, 70)
    assert.are.equal("degraded", r.status)
    assert.is_truthy(r.message:find("cpu 90.0%", 1, true))
    r = run(45, 97, 70)
    assert.are.equal("unhealthy", r.status)
    assert.is_truthy(r.message:find("memory 97.0%", 1, true))
    r = run(45, 60, 88, { disk_degraded = 80, disk_unhealthy = 90 })
    assert.are.equal("degraded", r.status)
  end)

  it("keeps its CPU baseline per instance and never measures over a ~0 ms window", function()
    local p = load_plugin()
    local opts = assert(beagle.validate_options(p.options, {}))
    local ctx = fake_ctx(50, 60, 70)
    local slept = 0
    local sleep = ctx.sleep
    ctx.sleep = function(s) slept = slept + s sleep(s) end
    assert.is_true(math.abs(p.run(opts, ctx).details.cpu_percent - 50) < 1e-9)
    assert.are.equal(0.25, slept)
    -- a retry at once: the window since the last sample is ~0, so it samples over `sample` again
    assert.is_true(math.abs(p.run(opts, ctx).details.cpu_percent - 50) < 1e-9)
    assert.are.equal(0.5, slept)
    -- the next run an interval later uses the kept baseline: no sleep
    ctx.sleep(30)
    slept = 0
    assert.is_true(math.abs(p.run(opts, ctx).details.cpu_percent - 50) < 1e-9)
    assert.are.equal(0, slept)
    -- another instance has a baseline of its own
    local other = fake_ctx(10, 60, 70)
    other.sleep = function(s) slept = slept + s end
    p.run(opts, other)
    assert.are.equal(0.25, slept)
  end)

  it("is unknown when /proc cannot be read", function()
    local p = load_plugin()
    local ctx = fake_ctx(1, 1, 1)
    ctx.read_file = function() return nil, "permission denied" end
    local r = p.run(assert(beagle.validate_options(p.options, {})), ctx)
    assert.are.equal("unknown", r.status)
    assert.are.equal("permission denied", r.message)
  end)
end)
