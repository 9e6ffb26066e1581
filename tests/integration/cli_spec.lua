-- The command line: subcommands, usage errors, `beagle check` exit codes, settings errors.
local S = require "support"

local function run(args, env)
  local prefix = ""
  for k, v in pairs(env or {}) do prefix = prefix .. ("%s=%q "):format(k, v) end
  local dir = S.tmpdir()
  return S.sh(("cd %q && %s%q %s"):format(dir, prefix, S.bin, args))
end

local function status_plugin(dir, name, status, msg)
  S.write(dir .. "/" .. name .. ".lua", ([[
return beagle.check { name = %q, retries = 0,
  run = function(opt, ctx) return ctx.%s(%q) end }
]]):format(name, status, msg or status))
end

describe("beagle command line", function()
  it("prints the version", function()
    local out, code = run("version")
    assert.are.equal(0, code)
    assert.is_truthy(out:match("^beagle %d+%.%d+%.%d+"), out)
  end)

  it("prints usage for --help and exits 0", function()
    local out, code = run("--help")
    assert.are.equal(0, code)
    assert.is_truthy(out:find("usage: beagle", 1, true))
  end)

  it("exits 2 with usage on a wrong flag, a missing command or an unknown command", function()
    for _, args in ipairs { "run --bogus", "", "frobnicate", "check --listen 1.2.3.4:5", "run --listen" } do
      local out, code = run(args)
      assert.are.equal(2, code, args .. ": " .. out)
      assert.is_truthy(out:find("usage: beagle", 1, true), args)
    end
  end)

  describe("check", function()
    local dir
    setup(function()
      dir = S.tmpdir()
      status_plugin(dir, "fine", "healthy", "all good")
      status_plugin(dir, "meh", "degraded")
      status_plugin(dir, "down", "unhealthy", "it broke")
      status_plugin(dir, "dunno", "unknown")
    end)

    it("exits 0 when healthy and prints one line per check", function()
      local cdir = S.tmpdir()
      S.write(cdir .. "/calm.lua", S.calm_system)
      local out, code = run(("check -c %q --plugins %q fine system"):format(cdir .. "/calm.lua", dir))
      assert.are.equal(0, code, out)
      assert.is_truthy(out:find("fine: healthy %(%d+ms%) all good"), out)
      assert.is_truthy(out:find("system: healthy", 1, true), out)
      assert.are.equal(2, select(2, out:gsub("\n", "")))
    end)

    it("exits 1 when degraded, 2 when unhealthy, 3 when unknown", function()
      local out, code = run(("check --plugins %q fine meh"):format(dir))
      assert.are.equal(1, code, out)
      out, code = run(("check --plugins %q meh down fine"):format(dir))
      assert.are.equal(2, code, out)
      assert.is_truthy(out:find("down: unhealthy %(%d+ms%) it broke"), out)
      out, code = run(("check --plugins %q dunno fine"):format(dir))
      assert.are.equal(3, code, out)
    end)

    it("exits 3 for a check that does not exist", function()
      local out, code = run(("check --plugins %q nosuch"):format(dir))
      assert.are.equal(3, code, out)
      assert.is_truthy(out:find("nosuch", 1, true))
    end)

    it("runs every check when none is named, worst status wins", function()
      local out, code = run(("check --plugins %q"):format(dir))
      assert.are.equal(2, code, out)
      for _, n in ipairs { "fine", "meh", "down", "dunno", "system" } do
        assert.is_truthy(out:find(n .. ": ", 1, true), n)
      end
    end)

    it("runs config checks with their options", function()
      local cfgdir = S.tmpdir()
      S.write(cfgdir .. "/beagle.lua", [[
check "closed_port" { plugin = "tcp", host = "127.0.0.1", port = 1, retries = 0 }
]])
      local out, code = run(("check -c %q closed_port"):format(cfgdir .. "/beagle.lua"))
      assert.are.equal(2, code, out)
      assert.is_truthy(out:find("closed_port: unhealthy", 1, true), out)
    end)
  end)

  describe("configuration errors", function()
    local function with_config(text, env)
      local d = S.tmpdir()
      S.write(d .. "/beagle.lua", text)
      return run(("run --listen 127.0.0.1:0 -c %q"):format(d .. "/beagle.lua"), env)
    end

    it("names the setting, the value and the line of a bad value, and does not start", function()
      local out, code = with_config('-- settings\nhealth_check_interval = "soon"\n')
      assert.are.equal(1, code, out)
      assert.is_truthy(out:find("beagle.lua:2:", 1, true), out)
      assert.is_truthy(out:find('health_check_interval = "soon"', 1, true), out)
      assert.is_falsy(out:find("beagle started", 1, true))
    end)

    it("rejects values of the wrong type or range inside settings { }", function()
      local out, code = with_config('settings {\n  trace_sampling_rate = 2,\n}\n')
      assert.are.equal(1, code, out)
      assert.is_truthy(out:find("trace_sampling_rate = 2: must be between 0 and 1", 1, true), out)
      out, code = with_config('settings { health_check_retries = 1.5 }\n')
      assert.are.equal(1, code, out)
      assert.is_truthy(out:find("health_check_retries = 1.5: must be a whole number", 1, true), out)
    end)

    it("rejects an unknown setting", function()
      local out, code = with_config('health_check_intervall = 5\n')
      assert.are.equal(1, code, out)
      assert.is_truthy(out:find('beagle.lua:1: unknown setting "health_check_intervall"', 1, true), out)
    end)

    it("names a bad MONITORING_ variable and its value", function()
      local out, code = run("run --listen 127.0.0.1:0", { MONITORING_HEALTH_CHECK_RETRIES = "many" })
      assert.are.equal(1, code, out)
      assert.is_truthy(out:find('MONITORING_HEALTH_CHECK_RETRIES="many"', 1, true), out)
    end)

    it("names the check, the option and the line of a misconfigured check", function()
      local out, code = with_config('\n\ncheck "api" { plugin = "http", timeout = "2s" }\n')
      assert.are.equal(1, code, out)
      assert.is_truthy(out:find('beagle.lua:3: check "api": option "url" is required', 1, true), out)
      out, code = with_config('check "api" { plugin = "http", url = "http://x", urll = 1 }\n')
      assert.are.equal(1, code, out)
      assert.is_truthy(out:find('unknown option "urll"', 1, true), out)
      out, code = with_config('check "api" { plugin = "nope" }\n')
      assert.are.equal(1, code, out)
      assert.is_truthy(out:find('plugin "nope" is not loaded', 1, true), out)
    end)

    it("refuses a backend it cannot build at start-up and in beagle check, naming the file and line", function()
      local d = S.tmpdir()
      local file = d .. "/beagle.lua"
      S.write(file, 'listen = "127.0.0.1:0"\n\nbackend "prom" { plugin = "remote_write" }\n')
      for _, cmd in ipairs { "run --statsd off", "check" } do
        -- an agent that accepted the file would run until the timeout
        local out, code = S.sh(("cd %q && timeout 10 %q %s -c %q"):format(d, S.bin, cmd, file))
        assert.are.equal(cmd == "check" and 3 or 1, code, out)
        assert.is_truthy(out:find(file .. ':3: backend "prom": option "url" is required', 1, true), out)
        assert.is_falsy(out:find("beagle started", 1, true), out)
      end
    end)

    it("reports a syntax error in the config with its line", function()
      local out, code = with_config('check "x" {\n  plugin = \n}\n')
      assert.are.equal(1, code, out)
      assert.is_truthy(out:find("beagle.lua:3:", 1, true), out)
    end)
  end)

  describe("settings", function()
    it("takes MONITORING_ variables over the config file", function()
      local agent = S.start {
        config = 'health_check_interval = "30s"\nhealth_check_retries = 1\n',
        env = { MONITORING_HEALTH_CHECK_INTERVAL = "0.25", MONITORING_HEALTH_CHECK_TIMEOUT = "0.2" },
      }
      local o = agent:wait_check("system", function(c) return c.runs and c.runs >= 3 end, 5)
      agent:stop()
      assert.is_truthy(o)
      assert.are.equal(0.25, o.interval)
      assert.are.equal(0.2, o.timeout)
      assert.are.equal(1, o.retries)
    end)
  end)
end)
