-- The config file: declarations, settings, env, and errors with file:line.
local config = require "agent.config"

local function load(text, env)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
  local cfg, err = config.load(path, function(k) return (env or {})[k] end)
  os.remove(path)
  if err then err = err:gsub("^[^:]+:", "beagle.lua:"):gsub("\n[^:]+:", "\nbeagle.lua:") end
  return cfg, err
end

describe("config", function()
  it("collects checks and channels with their lines", function()
    local cfg = assert(load([[
check "api" { plugin = "http", url = "http://127.0.0.1:8000/health", interval = "30s" }

channel "oncall" { plugin = "pagerduty", routing_key = env "PD_KEY" }
]], { PD_KEY = "secret" }))
    assert.are.equal("http", cfg.checks.api.spec.plugin)
    assert.are.equal(1, cfg.checks.api.line)
    assert.are.equal("secret", cfg.channels.oncall.spec.routing_key)
    assert.are.equal(3, cfg.channels.oncall.line)
  end)

  it("records backend declarations with their lines, and rejects one without a name", function()
    local cfg = assert(load([[
check "api" { plugin = "http", url = "http://127.0.0.1:8000/health" }

backend "prom" { plugin = "remote_write", url = "http://127.0.0.1:9090/api/v1/write" }
]]))
    assert.are.equal("remote_write", cfg.backends.prom.spec.plugin)
    assert.are.equal(3, cfg.backends.prom.line)
    local bad, err = load('backend { plugin = "remote_write" }\nbackend "x" { plugin = "a" }\nbackend "x" { plugin = "b" }\n')
    assert.is_nil(bad)
    assert.are.equal(table.concat({
      'beagle.lua:1: backend needs a name: backend "name" { ... }',
      'beagle.lua:3: backend "x" is declared twice (first on line 2)',
    }, "\n"), err)
  end)

  it("takes settings as top-level assignments and in settings { }", function()
    local cfg = assert(load('health_check_interval = "10s"\nsettings { alert_cooldown_minutes = 5 }\n'))
    assert.are.equal(10, cfg.settings.health_check_interval.value)
    assert.are.equal(1, cfg.settings.health_check_interval.line)
    assert.are.equal(5, cfg.settings.alert_cooldown_minutes.value)
  end)

  it("reports every bad setting with its line, value and reason", function()
    local cfg, err = load('listen = "nowhere"\n\nhealth_check_timeout = -1\nfoo = 1\n')
    assert.is_nil(cfg)
    assert.are.equal(table.concat({
      'beagle.lua:1: listen = "nowhere": must be "host:port" with a port from 0 to 65535',
      'beagle.lua:3: health_check_timeout = -1: must be a non-negative number of seconds',
      'beagle.lua:4: unknown setting "foo"',
    }, "\n"), err)
  end)

  it("rejects a duplicate declaration and a missing environment variable", function()
    local _, err = load('check "a" { plugin = "tcp", port = 1 }\ncheck "a" { plugin = "tcp", port = 2 }\n')
    assert.are.equal('beagle.lua:2: check "a" is declared twice (first on line 1)', err)
    _, err = load('channel "c" { key = env "NOPE" }\n')
    assert.are.equal("beagle.lua:1: environment variable NOPE is not set", err)
    local cfg = assert(load('channel "c" { key = env("NOPE", "fallback") }\n'))
    assert.are.equal("fallback", cfg.channels.c.spec.key)
  end)

  it("reports syntax and runtime errors with their line", function()
    local _, err = load('check "a" {\n  port = ,\n}\n')
    assert.is_truthy(err:find("^beagle.lua:2:"), err)
    _, err = load('local x = nil\nx.y = 1\n')
    assert.is_truthy(err:find("^beagle.lua:2:"), err)
  end)

  it("fails clearly on a missing file", function()
    local cfg, err = config.load("/nonexistent/beagle.lua")
    assert.is_nil(cfg)
    assert.is_truthy(err:find("cannot read config /nonexistent/beagle.lua", 1, true))
  end)
end)
