-- The plugin files service: finds and loads every plugin file (agent.plugins) before any kind
-- builds its instances, watches the directories, and reports each file's state. The kinds that
-- use plugin files subscribe: a new version of a file must validate every instance of theirs
-- (`svc:validate_plugin`), and after a change they rebuild (`svc:plugins_changed`).
--
-- The service interface is described at the top of lua/agent/init.lua.
local util = require "agent.util"
local plugins_mod = require "agent.plugins"

local M = {}
M.__index = M

-- new{ dirs, settings, metrics, log }
function M.new(d)
  local self = setmetatable({ metrics = d.metrics, debounce = d.settings.reload_debounce, subscribers = {},
    loaded = false }, M)
  local s = d.settings
  self.manager = plugins_mod.new {
    dirs = d.dirs, memory_limit = s.plugin_memory_limit_mb * 1024 * 1024, log = d.log,
    exec_allow = util.split_list(s.plugin_exec_allow), tls_allow = util.split_list(s.plugin_tls_files),
    metrics = d.metrics,
    validate = function(name, script, meta) return self:validate(name, script, meta) end,
    on_change = function()
      -- the first scan builds nothing: each kind builds its instances in its own configure
      if not self.loaded then return end
      for _, sub in ipairs(self.subscribers) do sub:plugins_changed() end
      if self.started then self.manager:park_unused() end
    end,
  }
  return self
end

-- svc: a service with validate_plugin(name, script, meta) and plugins_changed().
function M:subscribe(svc) self.subscribers[#self.subscribers + 1] = svc end

function M:validate(name, script, meta)
  for _, sub in ipairs(self.subscribers) do
    local ok, err = sub:validate_plugin(name, script, meta)
    if not ok then return nil, err end
  end
  return true
end

-- Loads every file; a file that fails is reported on its own (GET /health/detailed, the log).
function M:load()
  self.manager:scan(false, true)
  self.loaded = true
  return {}
end

function M:start()
  self.manager:watch(self.debounce)
  self.started = true
  return true
end

-- Gives up the state of every plugin no instance uses (agent.plugins park_unused); called once
-- every kind has built its instances, and after a reload or a plugin change.
function M:park() self.manager:park_unused() end

function M:reload() return self.manager:scan(false) end

function M:stop()
  self.manager:stop_watching()
  return 0
end

-- After the grace (or at once on abort): every state closes, runs still in flight cancelled.
function M:close() self.manager:close_all(true) end

-- Closes every state and lets runs in flight finish within their deadlines (`beagle check`).
function M:release() self.manager:close_all(false) end

function M:list() return setmetatable(self.manager:list(), { __json_array = true }) end

function M:detail() return "plugins", self:list() end

function M:update_metrics()
  local m, n = self.metrics, 0
  for _ in pairs(self.manager.by_name) do n = n + 1 end
  m.set_gauge("beagle_plugins_loaded", n)
  for _, p in ipairs(self.manager:list()) do
    if p.memory_bytes then m.set_gauge("beagle_plugin_lua_memory_bytes", p.memory_bytes, { plugin = p.name }) end
    m.set_gauge("beagle_plugin_up", p.state == "loaded" and not p.error and 1 or 0, { plugin = p.name })
  end
end

return M
