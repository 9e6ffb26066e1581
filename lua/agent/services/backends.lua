-- The metric backend service: the config's `backend` declarations, built against the backend
-- plugins (agent.backends), each sending the registry's samples every collection interval
-- through a buffer of its own. agent.backends loads only when a backend is declared: an agent
-- without one holds none of its code.
-- The service interface is described at the top of lua/agent/init.lua.
local M = {}
M.__index = M

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
  if next(cfg.backends or {}) or self.backends then self:mod():set_config(cfg.backends or {}, cfg.path) end
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
  if not next(cfg.backends or {}) and not self.backends then return {} end
  return self:mod():check_config(cfg.backends or {}, cfg.path)
end

function M:commit()
  local cfg = self.pending
  self.pending = nil
  if not cfg or not next(cfg.backends or {}) and not self.backends then return end
  local b = self:mod()
  b:set_config(cfg.backends or {}, cfg.path)
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

function M:update_metrics()
  if self.backends then self.backends:update_metrics() end
end

function M:detail()
  return "backends", setmetatable(self.backends and self.backends:list() or {}, { __json_array = true })
end

return M
