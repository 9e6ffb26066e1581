-- The file check through ctx.stat and ctx.statvfs: a fresh file, a stale one (its mtime set
-- back with touch), a missing one, absence wanted, size bounds, free space of its filesystem,
-- a directory, a relative path, and the gauges.
local S = require "support"

describe("file check", function()
  local agent, dir

  setup(function()
    dir = S.tmpdir()
    S.write(dir .. "/fresh", "hello, file check\n") -- 18 bytes
    S.write(dir .. "/stale", "old\n")
    local out, code = S.sh(("touch -d '2 hours ago' %q"):format(dir .. "/stale"))
    assert(code == 0, out)
    agent = S.start {
      config = S.calm_system .. ([[
local dir = %q
local function c(name, t) t.plugin = "file" t.retries = 0 t.interval = "5s" check(name)(t) end
c("fresh", { path = dir .. "/fresh", max_age = "1h", min_size = 1, max_size = 100, min_free_percent = 0.0001 })
c("stale", { path = dir .. "/stale", max_age = "1h" })
c("missing", { path = dir .. "/nothing-here" })
c("absent_ok", { path = dir .. "/nothing-here", absent = true })
c("absent_bad", { path = dir .. "/fresh", absent = true })
c("too_small", { path = dir .. "/fresh", min_size = 100 })
c("too_big", { path = dir .. "/fresh", max_size = 10 })
c("no_space", { path = dir .. "/fresh", min_free_percent = 100.5 })
c("no_space_mb", { path = dir .. "/fresh", min_free_mb = 1e12 })
c("directory", { path = dir, max_age = "1h" })
]]):format(dir),
    }
  end)

  teardown(function()
    if agent then agent:stop() end
  end)

  local function expect(name, status, message)
    local o = agent:wait_check(name, function(c) return c.runs and c.runs > 0 end, 20)
    assert.is_truthy(o, "check " .. name .. " did not run:\n" .. agent:logtext())
    assert.are.equal(status, o.status, name .. ": " .. tostring(o.message))
    if message then
      assert.is_truthy(tostring(o.message):find(message, 1, true), name .. ": " .. tostring(o.message))
    end
    return o
  end

  it("is healthy for a fresh file within its bounds, with its metadata and gauges", function()
    local o = expect("fresh", "healthy", dir .. "/fresh: 18 bytes, modified ")
    assert.are.equal("file", o.details.type)
    assert.are.equal(18, o.details.size)
    assert.is_true(o.details.age_seconds >= 0 and o.details.age_seconds < 600, tostring(o.details.age_seconds))
    assert.is_true(o.details.free_percent > 0 and o.details.free_percent <= 100)
    local _, body = agent:get("/metrics")
    assert.is_truthy(body:find('\ncheck_file_size_bytes{check="fresh"} 18\n'), body)
    assert.is_truthy(body:find('\ncheck_file_age_seconds{check="fresh"} [%d%.e+-]+\n'), body)
    assert.is_truthy(body:find('\ncheck_file_free_percent{check="fresh"} [%d%.e+-]+\n'), body)
  end)

  it("is unhealthy for a stale file", function()
    local o = expect("stale", "unhealthy", "modified 2.0h ago (max_age 60m)")
    assert.is_true(o.details.age_seconds > 7000, tostring(o.details.age_seconds))
  end)

  it("is unhealthy for a missing file, healthy when absence is wanted", function()
    expect("missing", "unhealthy", "no such file or directory")
    expect("absent_ok", "healthy", "is absent")
    expect("absent_bad", "unhealthy", dir .. "/fresh exists (absent = true)")
  end)

  it("checks the size and the free space of the filesystem", function()
    expect("too_small", "unhealthy", "18 bytes, below min_size 100")
    expect("too_big", "unhealthy", "18 bytes, above max_size 10")
    expect("no_space", "unhealthy", "below min_free_percent 100.5")
    expect("no_space_mb", "unhealthy", "below min_free_mb 1e+12")
  end)

  it("looks at a directory too", function()
    local o = expect("directory", "healthy")
    assert.are.equal("directory", o.details.type)
  end)

  it("refuses a relative path or crossed size bounds at load, naming the file and line, the check and the option",
    function()
    for _, case in ipairs {
      { 'check "relative" { plugin = "file", path = "fresh" }', 'option path: "fresh" is not absolute' },
      { 'check "crossed" { plugin = "file", path = "/tmp", min_size = 100, max_size = 10 }',
        "option min_size: 100 is above max_size (10)" },
    } do
      local name = case[1]:match('check "([^"]+)"')
      assert.are.equal(('beagle.lua:%d: check "%s": %s'):format(S.calm_lines + 1, name, case[2]),
        S.refused(case[1] .. "\n"))
    end
  end)
end)
