-- Alert channels in the agent: the channel instances of the config (`channel "oncall" { plugin =
-- "pagerduty", routing_key = env "PD_KEY" }`), plus every channel plugin whose options all have
-- defaults under its own name (so `channels = { "log" }` needs no declaration), validated against
-- their plugins; one delivery attempt as a run of the plugin's `send` in its sandboxed state; and
-- secrets kept out of logs, errors and /health/detailed. The outbox (agent.delivery) decides when.
local core = require "agent.core"
local util = require "agent.util"
local instances = require "agent.instances"
local T = require "agent.trace"
-- beagle.channel_util is the plugins' library; the agent needs only its mask, when there is text
-- to mask, so an idle agent does not hold its ~20 KB of code
local function mask(text, secrets)
  if not secrets or #secrets == 0 then return tostring(text) end
  return require("beagle.channel_util").mask(text, secrets)
end

local M = {}
M.__index = M

local INSTANCE_KEYS = { plugin = true, timeout = true, enabled = true, description = true }

-- new{ plugins (manager), settings, log }
function M.new(o)
  local self = setmetatable({ plugins = o.plugins, settings = o.settings, log = o.log or function() end,
    config = {}, config_path = nil, confs = {} }, M)
  self.kind = { name = "channel", keys = INSTANCE_KEYS, plugin_of = function(name, spec) return spec.plugin or name end,
    build = function(...) return self:build(...) end,
    mask = function(name, text) return self:mask(self.confs[name], text) end }
  return self
end

-- The instance's conf, or nil, err. spec: the config table (nil for an automatic instance).
-- dry: validates only; the plugin's state keeps the options it had (a reload checks every
-- declaration before it applies any).
function M:build(name, spec, line, dry)
  spec = spec or {}
  local pname = spec.plugin or name
  if type(pname) ~= "string" then return nil, "plugin must be a string" end
  local rec = self.plugins:get(pname)
  if not rec then return nil, ("channel plugin %q is not loaded"):format(pname) end
  if rec.kind ~= "channel" then return nil, ("plugin %q is a %s, not a channel"):format(pname, rec.kind) end
  local given = instances.given(spec, INSTANCE_KEYS)
  local opts, err
  if dry then opts, err = rec.script:call("__validate", given)
  else opts, err = rec.script:call("__configure", { name = name, given = given }) end
  if not opts then return nil, err end
  local timeout = rec.meta.timeout or self.settings.notification_timeout
  if spec.timeout ~= nil then
    local d, derr = util.parse_duration(spec.timeout)
    if not d then return nil, "timeout " .. derr end
    timeout = d
  end
  local secrets = {}
  for oname, o in pairs(rec.meta.options or {}) do
    if o.type == "secret" and type(opts[oname]) == "string" and opts[oname] ~= "" then
      secrets[#secrets + 1] = opts[oname]
    end
  end
  return { name = name, plugin = pname, opts = opts, timeout = timeout, resend = rec.meta.resend,
    secrets = secrets, line = line, auto = line == nil, version = rec.version,
    enabled = spec.enabled ~= false, description = spec.description or rec.meta.description }
end

-- The config's channel declarations ({ name = { spec, line } }) and the file they come from;
-- sync builds them.
function M:set_config(config_channels, config_path)
  self.config, self.config_path = config_channels, config_path
end

-- Rebuilds every instance from the config channels and the loaded plugins. Returns the list of
-- problems ("file:line: channel "x": reason"), empty when all are fine. An instance that fails
-- keeps its previous conf (if it had one).
function M:sync(config_channels, config_path)
  if config_channels then self.config, self.config_path = config_channels, config_path end
  local confs, problems = {}, {}
  for name, c in pairs(self.config) do
    local conf, err = self:build(name, c.spec, c.line)
    if conf then confs[name] = conf
    else
      problems[#problems + 1] = ("%s:%d: channel %q: %s"):format(self.config_path or "config", c.line, name,
        self:mask(self.confs[name], err))
      if self.confs[name] then
        confs[name] = self.confs[name]
        confs[name].error = err
      else
        confs[name] = { name = name, plugin = c.spec.plugin or name, error = err, line = c.line, secrets = {} }
      end
    end
  end
  for pname, rec in pairs(self.plugins.by_name) do
    if rec.kind == "channel" and rec.meta.all_defaults and not confs[pname] then
      confs[pname] = self:build(pname)
    end
  end
  self.confs = confs
  local secrets = {}
  for _, c in pairs(confs) do
    for _, v in ipairs(c.secrets or {}) do secrets[#secrets + 1] = v end
  end
  util.set_secrets("channels", secrets)
  return problems
end

-- Every channel of a new config built against the loaded plugins, validated only. Returns the
-- problems ("file:line: channel "x": reason").
function M:check_config(config_channels, config_path)
  return instances.check_config(self.kind, config_channels, config_path)
end

-- A fresh version of channel plugin `name` must validate every configured instance of it.
function M:validate_plugin(name, script, meta)
  return instances.validate_plugin(self.kind, self.config, self.config_path, name, script, meta)
end

-- For the outbox: the conf of a usable channel, or nil, why.
function M:get(name)
  local conf = self.confs[name]
  if not conf then return nil, ("no channel named %q (declare channel %q { plugin = ... } in the config)"):format(name, name) end
  if conf.error and not conf.opts then return nil, ("channel %q: %s"):format(name, self:mask(conf, conf.error)) end
  if conf.enabled == false then return nil, ("channel %q is disabled"):format(name) end
  return conf
end

-- Replaces every secret of conf in text with ***.
function M.mask(_, conf, text)
  return mask(text, conf and conf.secrets)
end

-- The names and the trace ids (those of the evaluations that fired them) of n's alerts.
local function alert_ids(n)
  local names, traces, seen = {}, {}, {}
  for _, a in ipairs(type(n.alerts) == "table" and n.alerts or {}) do
    if type(a) == "table" then
      names[#names + 1] = tostring(a.name)
      if type(a.trace_id) == "string" and not seen[a.trace_id] then
        seen[a.trace_id] = true
        traces[#traces + 1] = a.trace_id
      end
    end
  end
  return names, traces
end

-- One delivery attempt: the plugin's send as a run in its state, cut at conf.timeout. The
-- attempt is a span "notify <channel>", the parent of the plugin's spans and requests.
function M:attempt(conf, n, done)
  local rec = self.plugins:get(conf.plugin)
  if not rec or rec.kind ~= "channel" then
    error(("channel plugin %q is not loaded"):format(conf.plugin), 0)
  end
  local span = T.start("notify " .. conf.name, "internal")
  if T.recording(span) then
    local names, traces = alert_ids(n)
    T.set(span, "beagle.channel.name", conf.name)
    T.set(span, "beagle.channel.plugin", conf.plugin)
    T.set(span, "beagle.notification.status", tostring(n.status or "firing"))
    T.set(span, "beagle.notification.attempt", tonumber(n.attempt) or 0)
    T.set(span, "beagle.notification.alerts", names)
    if #traces > 0 then T.set(span, "beagle.alert.trace_ids", traces) end
    if n.test then T.set(span, "beagle.notification.test", true) end
    if n.dedup_key then T.set(span, "beagle.notification.dedup_key", tostring(n.dedup_key)) end
  end
  local ended = false
  local function finish(ok, err, info)
    if not ended then
      ended = true
      if T.recording(span) then
        T.set(span, "beagle.notification.result", ok and "sent" or (info and info.permanent and "failed" or "error"))
      end
      T.finish(span, not ok and "error" or nil, not ok and util.redact(err) or nil)
    end
    return done(ok, err, info)
  end
  local ok, err = pcall(rec.script.run, rec.script, "__send", { name = conf.name, n = n },
    { timeout = conf.timeout, budget = self.settings.plugin_instruction_budget, traceparent = T.traceparent(span) },
    instances.send_result(finish, function(text) return self:mask(conf, text) end))
  if not ok then
    ended = true
    T.finish(span, "error", util.redact(self:mask(conf, tostring(err))))
    error(err, 0)
  end
end

-- Options as /health/detailed shows them: secrets as ***.
function M:shown_options(conf)
  local rec = self.plugins:get(conf.plugin)
  local out = {}
  for k, v in pairs(conf.opts or {}) do
    local o = rec and rec.meta.options and rec.meta.options[k]
    if o and o.type == "secret" then out[k] = "***"
    elseif type(v) == "string" then out[k] = self:mask(conf, v)
    elseif type(v) ~= "table" then out[k] = v
    else out[k] = "(table)" end
  end
  return out
end

-- For /health/detailed: every channel with its delivery state (status from agent.delivery).
function M:list(status)
  local out = {}
  status = status or {}
  for _, name in ipairs(util.sorted_keys(self.confs)) do
    local c = self.confs[name]
    local st = status[name] or {}
    local state = "ok"
    if c.error then state = "misconfigured"
    elseif st.breaker == "open" then state = "open"
    elseif (st.consecutive_failures or 0) > 0 then state = "failing"
    elseif not st.sent and not st.attempts then state = "idle" end
    out[#out + 1] = {
      name = name, plugin = c.plugin, state = state, automatic = c.auto or nil,
      error = c.error and self:mask(c, c.error) or nil, options = c.opts and self:shown_options(c) or nil,
      breaker = st.breaker or "closed", in_flight = st.in_flight or 0, pending = st.pending or 0,
      sent = st.sent or 0, failed = st.failed or 0, expired = st.expired or 0, dropped = st.dropped or 0,
      consecutive_failures = st.consecutive_failures or 0,
      last_error = st.last_error and self:mask(c, st.last_error) or nil,
      last_error_at = st.last_error_at and util.iso8601(st.last_error_at) or nil,
      last_success_at = st.last_success_at and util.iso8601(st.last_success_at) or nil,
    }
  end
  -- names notifications were routed to that no channel answers to
  for name, st in pairs(status) do
    if not self.confs[name] then
      out[#out + 1] = { name = name, state = "unknown", error = st.last_error, pending = st.pending or 0,
        breaker = st.breaker }
    end
  end
  return out
end

-- The timer shape agent.delivery wants, over core.timer: one-shot unless `every`.
function M.timer(delay, fn, every)
  local t
  t = core.timer(math.max(0, delay), every or 0, function()
    if not every then t:stop() end
    fn()
  end)
  return t
end

return M
