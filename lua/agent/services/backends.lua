-- The metric backend service: the config's `backend` declarations, built against the backend
-- plugins (agent.backends), each sending the registry's samples every collection interval
-- through a buffer of its own. agent.backends loads only when a backend is declared: an agent
-- without one holds none of its code.
-- The service interface is described at the top of lua/agent/init.lua.
--
-- Trace and log backends are backends too (a plugin with signal = "traces" or "logs"); with the
-- logfire_token setting (and logfire_enabled) the agent declares `backend "logfire" { plugin =
-- "logfire" }` itself, unless the config declares a backend of that name or plugin. The tracer's
-- counters are the beagle_trace_* series whether or not a backend runs.
local core = require "agent.core"

local M = {}
M.__index = M

-- The logfire_* settings in force for cfg: a reload's config file (cfg.settings: name -> {
-- value }) over the running settings, unless a MONITORING_* variable set them.
local LOGFIRE = { "logfire_token", "logfire_enabled", "logfire_base_url", "logfire_project_name",
  "logfire_environment" }
local function logfire_settings(settings, cfg)
  local s = {}
  for _, k in ipairs(LOGFIRE) do
    s[k] = settings[k]
    local c = cfg and cfg.settings and cfg.settings[k]
    if type(c) == "table" and c.value ~= nil and not os.getenv("MONITORING_" .. k:upper()) then s[k] = c.value end
  end
  return s
end

-- The config's backends, with the Logfire backend the settings ask for.
local function declared(settings, backends)
  backends = backends or {}
  if settings.logfire_enabled and type(settings.logfire_token) == "string" and settings.logfire_token ~= "" then
    local mine = backends.logfire ~= nil
    for _, c in pairs(backends) do
      if type(c.spec) == "table" and c.spec.plugin == "logfire" then mine = true end
    end
    if not mine then
      local out = {}
      for k, v in pairs(backends) do out[k] = v end
      out.logfire = { line = 0, spec = { plugin = "logfire", token = settings.logfire_token,
        base_url = settings.logfire_base_url or "", project = settings.logfire_project_name or "",
        environment = settings.logfire_environment or "" } }
      return out
    end
  end
  return backends
end
M.declared = declared

-- new{ settings, metrics, log, plugins (service) }
function M.new(d)
  local self = setmetatable({ settings = d.settings, metrics = d.metrics, log = d.log, plugins = d.plugins }, M)
  d.plugins:subscribe(self)
  return self
end

-- The module, made on first need (a backend declared now or by a reload).
function M:mod()
  if not self.backends then
    self.backends = require("agent.backends").new { plugins = self.plugins.manager, settings = self.settings,
      log = self.log, metrics = self.metrics, timer = require("agent.channels").timer }
  end
  return self.backends
end

function M:configure(cfg)
  local list = declared(logfire_settings(self.settings, cfg), cfg.backends)
  if next(list) or self.backends then self:mod():set_config(list, cfg.path) end
  return {}
end

-- Builds every instance: problems ("file:line: backend "x": reason"), fatal at start-up.
function M:load() return self.backends and self.backends:sync() or {} end

function M:validate_plugin(name, script, meta)
  if not self.backends then return true end
  return self.backends:validate_plugin(name, script, meta)
end

function M:plugins_changed()
  if not self.backends then return end
  for _, p in ipairs(self.backends:sync()) do self.log(3, "backend is misconfigured", { error = p }) end
end

function M:prepare(cfg)
  if not cfg then return {} end
  self.pending = cfg
  local list = declared(logfire_settings(self.settings, cfg), cfg.backends)
  if not next(list) and not self.backends then return {} end
  return self:mod():check_config(list, cfg.path)
end

function M:commit()
  local cfg = self.pending
  self.pending = nil
  local list = cfg and declared(logfire_settings(self.settings, cfg), cfg.backends)
  if not cfg or not next(list) and not self.backends then return end
  local b = self:mod()
  b:set_config(list, cfg.path)
  self:plugins_changed()
  if self.started and not b.running then b:start() end
end

function M:discard() self.pending = nil end

function M:start()
  self.started = true
  if self.backends then self.backends:start() end
  return true
end

function M:stop()
  if self.backends then self.backends:stop() end
  return 0
end

-- The tracer's counters (core/trace: spans begun, recorded, dropped by a full buffer; log
-- records kept and dropped; what waits for the exporters), as the agent's own series.
local TRACE_COUNTERS = { { "started", "beagle_trace_spans_started_total" },
  { "sampled", "beagle_trace_spans_sampled_total" }, { "spans_dropped", "beagle_trace_spans_dropped_total" },
  { "logs_recorded", "beagle_trace_logs_recorded_total" }, { "logs_dropped", "beagle_trace_logs_dropped_total" } }

function M:update_metrics()
  if self.backends then self.backends:update_metrics() end
  local m = self.metrics
  if not m or not core.trace_stats then return end
  local st = core.trace_stats()
  self.trace_seen = self.trace_seen or {}
  for _, c in ipairs(TRACE_COUNTERS) do
    local v, was = st[c[1]] or 0, self.trace_seen[c[1]] or 0
    m.increment_counter(c[2], v > was and v - was or 0) -- 0: the series exists from the start
    self.trace_seen[c[1]] = v
  end
  m.set_gauge("beagle_trace_spans_buffered", st.spans_buffered or 0)
  m.set_gauge("beagle_trace_logs_buffered", st.logs_buffered or 0)
end

function M:detail()
  return "backends", setmetatable(self.backends and self.backends:list() or {}, { __json_array = true })
end

return M
