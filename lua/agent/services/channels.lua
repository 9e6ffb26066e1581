-- The channel service: the config's `channel` declarations and the channels plugins offer
-- without one (agent.channels validates them and runs each delivery attempt), the outbox that
-- delivers the alert rules' notifications through them (agent.delivery, durable in the rules'
-- state store), and that store's retention.
-- The service interface is described at the top of lua/agent/init.lua.
local core = require "agent.core"
local channels_mod = require "agent.channels"
local delivery_mod = require "agent.delivery"

local M = {}
M.__index = M

-- new{ settings, metrics, log, plugins (service), rules (service) }
function M.new(d)
  local self = setmetatable({ settings = d.settings, metrics = d.metrics, log = d.log, rules = d.rules,
    timers = {} }, M)
  self.channels = channels_mod.new { plugins = d.plugins.manager, settings = d.settings, log = d.log }
  d.plugins:subscribe(self)
  return self
end

-- Takes the config's channel declarations; they are built against their plugins in load.
function M:configure(cfg)
  self.channels:set_config(cfg.channels, cfg.path)
  return {}
end

-- Builds every instance: problems ("file:line: channel "x": reason"), fatal at start-up.
function M:load() return self.channels:sync() end

function M:validate_plugin(name, script, meta) return self.channels:validate_plugin(name, script, meta) end

-- Re-validates the channel instances (config or plugins changed) and tells the outbox.
function M:sync()
  local problems = self.channels:sync()
  for _, p in ipairs(problems) do self.log(3, "channel is misconfigured", { error = p }) end
  if self.delivery then self.delivery:sync(self.channels.confs) end
  return #problems
end

function M:plugins_changed() self:sync() end

-- A reload's first step: every channel of the new config must validate against the loaded
-- plugins (nothing changes yet). Returns the problems; commit applies the config.
function M:prepare(cfg)
  if not cfg then return {} end
  self.pending = cfg
  return self.channels:check_config(cfg.channels, cfg.path)
end

function M:commit()
  if self.pending then self.channels:set_config(self.pending.channels, self.pending.path) end
  self.pending = nil
  self:sync()
end

function M:discard() self.pending = nil end

-- The outbox starts once the rules run: it keeps its rows in their state store, and resends
-- what they still fire.
function M:start()
  local rm = self.rules.manager
  if not rm then return true end
  local s = self.settings
  -- the outbox: notifications go out through the channels, durably when the store is open
  local delivery = delivery_mod.new {
    now = core.wall, timer = channels_mod.timer, store = rm.store, settings = s, log = self.log,
    metrics = self.metrics,
    channel = function(name) return self.channels:get(name) end,
    attempt = function(conf, n, done) return self.channels:attempt(conf, n, done) end,
    active_alerts = function(name) return rm:active_for(name) end,
  }
  self.delivery = delivery
  rm.delivery = delivery
  delivery:sync(self.channels.confs)
  delivery:resume()
  -- the notification rows (sent, failed, expired, and pending ones past their time-to-live),
  -- resolved instances and ended silences older than notification_retention_days: at start
  -- and every hour, so that the state store stays the size of its window
  if rm.store then
    local function prune()
      local keep = math.max(s.notification_retention_days * 86400, s.notification_ttl)
      local res, perr = rm.store:prune(core.wall() - keep)
      if not res then
        self.log(3, "state store prune failed", { error = tostring(perr) })
      elseif res.notifications + res.instances + res.silences > 0 then
        self.log(1, "state store pruned", { notifications = tostring(res.notifications),
          instances = tostring(res.instances), silences = tostring(res.silences) })
      end
    end
    prune()
    self.timers.prune = core.timer(3600, 3600, prune)
  end
  return true
end

-- Undelivered notifications stay in the outbox for the next start.
function M:stop()
  if self.delivery then self.delivery:stop() end
  for _, t in pairs(self.timers) do t:stop() end
  self.timers = {}
  return 0
end

function M:update_metrics()
  if self.delivery then self.delivery:update_metrics() end
end

function M:detail()
  return "channels", setmetatable(self.channels:list(self.delivery and self.delivery:status() or nil),
    { __json_array = true })
end

return M
