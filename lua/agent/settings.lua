-- The guide's MonitoringSettings, beagle's own settings, their defaults, validation and the
-- MONITORING_<NAME> environment overrides. A bad value is an error that names the setting,
-- the value and where it came from (file:line or the environment variable).
local util = require "agent.util"

local M = {}

-- kind: "int" (whole, >= min), "number", "rate" (0..1), "bool", "string", "duration",
-- "enum" (values), "address" (host:port)
M.schema = {
  -- health checks
  health_check_interval = { kind = "duration", default = 30, min = 0.01, help = "seconds between runs of a check" },
  health_check_timeout = { kind = "duration", default = 10, min = 0.001, help = "seconds a check run may take" },
  health_check_retries = { kind = "int", default = 3, min = 0, help = "extra attempts before a failing check is reported" },
  health_check_retry_delay = { kind = "duration", default = 1, min = 0.01,
    help = "wait before a failed check is retried; at most interval / (retries + 1)" },
  health_check_flap_threshold = { kind = "int", default = 5, min = 0,
    help = "a check whose status changes more than this often within health_check_flap_window is flapping (0: never)" },
  health_check_flap_window = { kind = "duration", default = 600, min = 1,
    help = "the window over which a check's status changes are counted for flap detection" },
  -- metrics
  metrics_collection_interval = { kind = "duration", default = 15, min = 0.01, help = "seconds between samples of every series" },
  metrics_retention_days = { kind = "int", default = 30, min = 1, help = "days of rollups kept" },
  metrics_batch_size = { kind = "int", default = 100, min = 1,
    help = "samples per batch a metric backend sends (a backend plugin or instance may set its own)" },
  -- metric backends: each backend's buffer and retries
  backend_buffer_limit = { kind = "int", default = 10000, min = 1,
    help = "samples a backend holds while its target is down; beyond, the oldest are dropped and counted" },
  backend_timeout = { kind = "duration", default = 30, min = 0.001, help = "seconds one send to a backend may take" },
  backend_backoff_initial = { kind = "duration", default = 0.5, min = 0.001,
    help = "first retry delay of a failed send (full-jitter exponential backoff)" },
  backend_backoff_max = { kind = "duration", default = 30, min = 0.001, help = "longest retry delay of a backend" },
  backend_max_in_flight = { kind = "int", default = 4, min = 1,
    help = "sends in flight per backend: batches of one collection (a collection waits for the one before)" },
  backend_breaker_failures = { kind = "int", default = 5, min = 1,
    help = "straight failures that pause a backend (one probe every backend_backoff_max)" },
  backend_max_age = { kind = "duration", default = 3600, min = 1,
    help = "age at which a buffered batch is dropped (a receiver refuses samples that old)" },
  history_raw = { kind = "duration", default = 3600, min = 60, help = "how long raw samples are kept in memory" },
  max_series = { kind = "int", default = 100000, min = 1, help = "series the registry holds at most" },
  max_series_per_metric = { kind = "int", default = 2000, min = 1, help = "series one metric holds at most" },
  statsd_address = { kind = "address", allow_off = true, default = "127.0.0.1:8125",
    help = "StatsD/DogStatsD UDP and TCP address, or \"off\"" },
  -- alerts
  builtin_rules = { kind = "bool", default = true,
    help = "load the built-in rules/ directory (with --rules DIR as well); false loads only --rules" },
  alert_evaluation_interval = { kind = "duration", default = 60, min = 0.01, help = "seconds between rule evaluations" },
  alert_cooldown_minutes = { kind = "int", default = 15, min = 0, help = "minutes between repeat notifications of one alert" },
  alert_max_notifications_per_hour = { kind = "int", default = 10, min = 0, help = "notifications per alert and channel per hour" },
  -- alert channels: the delivery of notifications (the outbox)
  notification_timeout = { kind = "duration", default = 10, min = 0.001, help = "seconds one delivery attempt may take" },
  notification_backoff_initial = { kind = "duration", default = 5, min = 0.001,
    help = "first retry delay (full-jitter exponential backoff)" },
  notification_backoff_max = { kind = "duration", default = 300, min = 0.001, help = "longest retry delay" },
  notification_ttl = { kind = "duration", default = 86400, min = 1, help = "age at which an undelivered notification expires" },
  notification_max_in_flight = { kind = "int", default = 4, min = 1, help = "deliveries in flight per channel" },
  notification_breaker_failures = { kind = "int", default = 5, min = 1,
    help = "straight failures that open a channel's circuit breaker" },
  notification_breaker_probe = { kind = "duration", default = 60, min = 0.001, help = "seconds between probes of an open breaker" },
  notification_outbox_max = { kind = "int", default = 10000, min = 1,
    help = "undelivered notifications kept; beyond, the oldest resolved go first" },
  notification_retention_days = { kind = "int", default = 30, min = 1,
    help = "days notification rows stay in the state store (at least notification_ttl)" },
  -- tracing and structured logs (docs/tracing.md)
  trace_sampling_rate = { kind = "rate", default = 0.01,
    help = "share of new traces sampled (trace-id ratio); a parent's decision, local or from traceparent, is kept" },
  trace_buffer_size = { kind = "int", default = 2048, min = 1,
    help = "finished spans held for the trace exporters; beyond, new spans are dropped and counted" },
  log_buffer_size = { kind = "int", default = 2048, min = 1,
    help = "log records held for the log exporters; beyond, new records are dropped and counted" },
  trace_batch_size = { kind = "int", default = 512, min = 1,
    help = "spans or log records per export batch; a buffer this full is exported before the interval" },
  trace_export_interval = { kind = "duration", default = 5, min = 0.01,
    help = "seconds between exports of the span and log buffers" },
  service_name = { kind = "string", default = "beagle", help = "service.name of exported spans, logs and OTLP metrics" },
  service_version = { kind = "string", default = "", help = "service.version of exported telemetry (empty: beagle's version)" },
  -- Logfire: a token (and logfire_enabled) is all it takes to send spans and logs to Logfire
  logfire_token = { kind = "string", default = "", secret = true,
    help = "Logfire write token; set, and with logfire_enabled, spans and logs go to Logfire" },
  logfire_project_name = { kind = "string", default = "beagle", help = "Logfire project (a resource attribute)" },
  logfire_environment = { kind = "string", default = "production", help = "deployment.environment of exported telemetry" },
  logfire_enabled = { kind = "bool", default = true, help = "send to Logfire when a token is set" },
  logfire_base_url = { kind = "string", default = "",
    help = "Logfire endpoint (empty: the region the token names, US or EU)" },
  performance_sampling_rate = { kind = "rate", default = 0.1, not_yet = true, help = "not yet: share of operations profiled" },
  enable_profiling = { kind = "bool", default = false, not_yet = true, help = "not yet: collect profiles" },
  -- beagle's own
  listen = { kind = "address", default = "127.0.0.1:8001", help = "HTTP address of the agent" },
  http_first_byte_timeout = { kind = "duration", default = 5, min = 0.001,
    help = "seconds a new HTTP connection may stay silent before it is closed" },
  http_header_timeout = { kind = "duration", default = 5, min = 0.001,
    help = "seconds a request's head may take from its first byte (a deadline, not reset by each byte)" },
  http_idle_timeout = { kind = "duration", default = 75, min = 0.001, help = "seconds a keep-alive connection may wait between requests" },
  http_max_connections = { kind = "int", default = 1024, min = 1,
    help = "HTTP connections open at once; beyond, a new one closes the oldest idle or slow one" },
  log_format = { kind = "enum", values = { "logfmt", "json" }, default = "logfmt", help = "log line format" },
  log_level = { kind = "enum", values = { "debug", "info", "warn", "error" }, default = "info", help = "lowest level logged" },
  data_dir = { kind = "string", default = "data", help = "directory for durable state" },
  api_token = { kind = "string", default = "", secret = true, help = "bearer token required by write routes" },
  plugin_memory_limit_mb = { kind = "number", default = 64, min = 1, help = "memory limit of one plugin's Lua state" },
  plugin_instruction_budget = { kind = "number", default = 100000000, min = 1000, help = "VM instructions one plugin run may execute" },
  plugin_exec_allow = { kind = "string", default = "",
    help = "programs plugins may run with ctx.exec: absolute paths, comma-separated (none by default)" },
  plugin_tls_files = { kind = "string", default = "",
    help = "files plugins may use as TLS client certificate or key: absolute paths, comma-separated, a dir/ for all under it" },
  reload_debounce = { kind = "duration", default = 0.05, min = 0, help = "quiet time after a file change before reloading" },
  shutdown_grace = { kind = "duration", default = 5, min = 0, help = "seconds in-flight runs get to finish at shutdown" },
}

local function in_list(v, list)
  for _, x in ipairs(list) do if x == v then return true end end
  return false
end

-- Converts and checks one value. from_env: the value is a string from the environment.
-- Returns the value or nil, reason.
function M.coerce(name, v, from_env)
  local s = M.schema[name]
  if not s then return nil, "unknown setting" end
  local k = s.kind
  if k == "int" or k == "number" or k == "rate" then
    local n = tonumber(v)
    if type(v) ~= "number" and not (from_env and n) then
      return nil, "must be a number"
    end
    if n ~= n or n == math.huge or n == -math.huge then return nil, "must be a finite number" end
    if k == "int" and n % 1 ~= 0 then return nil, "must be a whole number" end
    if k == "rate" and (n < 0 or n > 1) then return nil, "must be between 0 and 1" end
    if s.min and n < s.min then return nil, ("must be at least %s"):format(s.min) end
    return n
  elseif k == "duration" then
    local d, err
    if from_env and tonumber(v) then d = tonumber(v) else d, err = util.parse_duration(v) end
    if not d then return nil, err end
    if s.min and d < s.min then return nil, ("must be at least %s"):format(util.format_duration(s.min)) end
    return d
  elseif k == "bool" then
    if type(v) == "boolean" then return v end
    if from_env then
      local l = tostring(v):lower()
      if l == "true" or l == "1" or l == "yes" or l == "on" then return true end
      if l == "false" or l == "0" or l == "no" or l == "off" or l == "" then return false end
    end
    return nil, "must be true or false"
  elseif k == "string" then
    if type(v) ~= "string" then return nil, "must be a string" end
    return v
  elseif k == "enum" then
    if type(v) ~= "string" or not in_list(v, s.values) then
      return nil, "must be one of " .. table.concat(s.values, ", ")
    end
    return v
  elseif k == "address" then
    if type(v) ~= "string" then return nil, "must be \"host:port\"" end
    if s.allow_off and v == "off" then return v end
    local host, port = v:match("^%[?([^%]]*)%]?:(%d+)$")
    port = tonumber(port)
    if not host or host == "" or not port or port > 65535 then
      return nil, "must be \"host:port\" with a port from 0 to 65535"
    end
    return v
  end
  return nil, "unsupported kind"
end

function M.defaults()
  local t = {}
  for name, s in pairs(M.schema) do t[name] = s.default end
  return t
end

-- Applies MONITORING_<NAME> variables over t. getenv defaults to os.getenv.
-- Returns true or nil, err.
function M.apply_env(t, getenv)
  getenv = getenv or os.getenv
  for _, name in ipairs(util.sorted_keys(M.schema)) do
    local var = "MONITORING_" .. name:upper()
    local raw = getenv(var)
    if raw ~= nil then
      local v, err = M.coerce(name, raw, true)
      if v == nil then
        return nil, ("%s=%q: %s %s"):format(var, raw, name, err)
      end
      t[name] = v
    end
  end
  return true
end

function M.split_address(addr)
  local host, port = addr:match("^%[?([^%]]*)%]?:(%d+)$")
  return host, tonumber(port)
end

return M
