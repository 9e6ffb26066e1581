-- Settings: the guide's defaults, coercion, and MONITORING_ overrides.
local settings = require "agent.settings"

describe("settings", function()
  it("has every MonitoringSettings field of the guide with its default", function()
    local d = settings.defaults()
    local guide = {
      health_check_interval = 30, health_check_timeout = 10, health_check_retries = 3,
      metrics_collection_interval = 15, metrics_retention_days = 30, metrics_batch_size = 100,
      alert_evaluation_interval = 60, alert_cooldown_minutes = 15, alert_max_notifications_per_hour = 10,
      logfire_token = "", logfire_environment = "production", logfire_enabled = true,
      performance_sampling_rate = 0.1, trace_sampling_rate = 0.01, enable_profiling = false,
    }
    for k, v in pairs(guide) do assert.are.equal(v, d[k], k) end
    assert.are.equal("127.0.0.1:8001", d.listen)
  end)

  it("coerces durations, numbers, rates, booleans and enums", function()
    assert.are.equal(0.5, settings.coerce("health_check_interval", "500ms"))
    assert.are.equal(300, settings.coerce("health_check_interval", "5m"))
    assert.are.equal(7, settings.coerce("health_check_timeout", 7))
    assert.is_nil(settings.coerce("health_check_interval", "soon"))
    assert.is_nil(settings.coerce("health_check_interval", 0))
    local v, err = settings.coerce("trace_sampling_rate", 1.5)
    assert.is_nil(v)
    assert.are.equal("must be between 0 and 1", err)
    assert.is_nil(settings.coerce("health_check_retries", 2.5))
    assert.is_nil(settings.coerce("health_check_retries", -1))
    assert.is_nil(settings.coerce("metrics_batch_size", "100"))   -- a string in Lua config is a mistake
    assert.are.equal(100, settings.coerce("metrics_batch_size", "100", true)) -- but not from the env
    assert.is_true(settings.coerce("enable_profiling", "yes", true))
    assert.is_false(settings.coerce("logfire_enabled", "0", true))
    assert.is_nil(settings.coerce("logfire_enabled", "maybe", true))
    assert.is_nil(settings.coerce("log_format", "xml"))
    assert.are.equal("0.0.0.0:9000", settings.coerce("listen", "0.0.0.0:9000"))
    assert.are.equal("[::1]:9000", settings.coerce("listen", "[::1]:9000"))
    assert.is_nil(settings.coerce("listen", "localhost"))
    assert.is_nil(settings.coerce("listen", "host:99999"))
    assert.is_nil(settings.coerce("no_such_setting", 1))
  end)

  it("applies MONITORING_<NAME> variables and names a bad one", function()
    local t = settings.defaults()
    local env = { MONITORING_HEALTH_CHECK_INTERVAL = "45", MONITORING_ALERT_COOLDOWN_MINUTES = "5",
      MONITORING_LOGFIRE_ENABLED = "false" }
    assert.is_true(settings.apply_env(t, function(k) return env[k] end))
    assert.are.equal(45, t.health_check_interval)
    assert.are.equal(5, t.alert_cooldown_minutes)
    assert.is_false(t.logfire_enabled)
    env = { MONITORING_METRICS_BATCH_SIZE = "lots" }
    local ok, err = settings.apply_env(t, function(k) return env[k] end)
    assert.is_nil(ok)
    assert.are.equal('MONITORING_METRICS_BATCH_SIZE="lots": metrics_batch_size must be a number', err)
  end)
end)

describe("docs/configuration.md", function()
  it("documents every setting with its environment variable", function()
    local f = assert(io.open("docs/configuration.md"))
    local doc = f:read("*a")
    f:close()
    for name in pairs(settings.schema) do
      assert.is_truthy(doc:find("`" .. name .. "`", 1, true), name)
      assert.is_truthy(doc:find("`MONITORING_" .. name:upper() .. "`", 1, true), name)
    end
  end)
end)
