-- Alert rules in the agent: rule files (rules/ and --rules DIR) each in a sandboxed lua_State,
-- reloaded on change (a file that fails keeps its previous rules), evaluated on their schedule
-- through beagle.query, fed to the engine (beagle.rules.engine), persisted in the store, and the
-- /alerts routes. Delivery through channels arrives with the channels issue: until then every
-- notification is a structured log line and a counter.
local core = require "beagle.core"
local util = require "beagle.util"
local json = require "beagle.json"

local M = {}
M.__index = M

-- new{ dirs, settings, metrics, log, data_dir, memory_limit }
function M.new(o)
  local self = setmetatable({
    dirs = o.dirs, settings = o.settings, metrics = o.metrics, log = o.log, data_dir = o.data_dir,
    memory_limit = o.memory_limit, files = {}, timers = {}, watches = {}, api_rules = {},
    api_silences = {},
  }, M)
  local ok_engine, Engine = pcall(require, "beagle.rules.engine")
  if not ok_engine then return nil, "alert engine: " .. tostring(Engine) end
  local ok_tpl, template = pcall(require, "beagle.rules.template")
  self.store = nil
  if core.store_open then
    local sok, store_mod = pcall(require, "beagle.rules.store")
    if sok then
      local st, err = store_mod.open(o.data_dir .. "/state.db")
      if st then self.store = st
      else self.log(3, "alert state is not kept", { error = tostring(err) }) end
    end
  end
  local dsl = require "beagle.rules.dsl"
  self.engine = Engine.new {
    now = core.wall,
    match = dsl.match, -- the same matchers (regex subset, globs) as the rule files declare
    settings = o.settings,
    store = self.store,
    render = ok_tpl and function(text, ctx) return template.render(text, ctx) or text end or nil,
    notify = function(n) self:deliver(n) end,
  }
  return self
end

-- Where a notification goes until channels exist: the log, and a counter.
function M:deliver(n)
  local names = {}
  for _, a in ipairs(n.alerts or {}) do names[#names + 1] = a.name end
  self.log(n.status == "firing" and 2 or 1, n.test and "test notification" or "alert notification", {
    channel = n.channel, status = n.status, alerts = table.concat(names, ","),
    group = tostring(n.group_key), dedup_key = tostring(n.dedup_key),
  })
  self.metrics.increment_counter("beagle_notifications_total", 1,
    { channel = tostring(n.channel), result = n.test and "test" or "logged" })
end

function M:rule_files()
  local out = {}
  for _, dir in ipairs(self.dirs) do
    for _, e in ipairs(core.listdir(dir) or {}) do
      if not e.dir and e.name:match("%.lua$") and not e.name:match("_test%.lua$") and not e.name:match("^%.") then
        out[#out + 1] = dir .. "/" .. e.name
      end
    end
  end
  if self.api_file then out[#out + 1] = self.api_file end
  table.sort(out)
  return out
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Loads or reloads one file into a fresh state. A failure keeps the old rules of that file.
function M:load_file(path)
  local src = read(path)
  local old = self.files[path]
  if not src then return self:unload_file(path) end
  if old and old.source == src then return true end
  local script, err = core.script_new { name = util.basename(path), memory_limit = self.memory_limit }
  local set
  if script then set, err = script:call("__load_rules", path) end
  if not set then
    if script then script:close(true) end
    self.log(3, "rule file failed to load", { file = path, error = tostring(err),
      kept = old and old.set and "previous rules" or "nothing" })
    self.metrics.increment_counter("beagle_rule_load_failures_total", 1, { file = util.basename(path) })
    if old then old.error = tostring(err)
    else self.files[path] = { file = path, error = tostring(err) } end
    return nil, err
  end
  if old and old.script then old.script:close(false) end
  self.files[path] = { file = path, script = script, set = set, source = src, loaded_at = core.wall() }
  self.log(1, old and "rules reloaded" or "rules loaded", { file = path, alerts = tostring(#(set.alerts or {})) })
  return true
end

function M:unload_file(path)
  local f = self.files[path]
  if not f then return end
  if f.script then f.script:close(false) end
  self.files[path] = nil
  self.log(1, "rules removed", { file = path })
end

-- Every rule, route, inhibit and silence of the loaded files, in file order.
function M:collect()
  local alerts, routes, inhibits, silences, owner = {}, {}, {}, {}, {}
  for _, path in ipairs(util.sorted_keys(self.files)) do
    local f = self.files[path]
    if f.set then
      for _, r in ipairs(f.set.alerts or {}) do
        if owner[r.name] then
          self.log(3, "duplicate alert name, the first one is kept", { alert = r.name, file = path, first = owner[r.name] })
        else
          owner[r.name] = path
          alerts[#alerts + 1] = r
        end
      end
      for _, x in ipairs(f.set.routes or {}) do routes[#routes + 1] = x end
      for _, x in ipairs(f.set.inhibits or {}) do inhibits[#inhibits + 1] = x end
      for _, x in ipairs(f.set.silences or {}) do silences[#silences + 1] = x end
    end
  end
  for _, x in pairs(self.api_silences) do silences[#silences + 1] = x end
  self.owner = owner
  return alerts, routes, inhibits, silences
end

-- Applies the current files to the engine and (re)schedules evaluations.
function M:apply()
  local alerts, routes, inhibits, silences = self:collect()
  self.engine:set_rules(alerts, routes, inhibits)
  self.engine:set_silences(silences)
  for _, t in pairs(self.timers) do t:stop() end
  self.timers = {}
  self.rules = {}
  for _, r in ipairs(alerts) do
    self.rules[r.name] = r
    if r.enabled ~= false then
      local every = r.every or self.settings.alert_evaluation_interval
      -- the first evaluation waits one interval, as Prometheus does: metrics (and, after a
      -- restart, the series a stored alert depends on) get the time to arrive
      self.timers[r.name] = core.timer(every, every, function() self:evaluate(r.name) end)
    end
  end
  self.timers["__tick"] = core.timer(1, 1, function() self.engine:tick() end)
end

-- Evaluates one rule now in its file's state.
function M:evaluate(name, at)
  local path = self.owner and self.owner[name]
  local f = path and self.files[path]
  if not f or not f.script then return nil, "rule is not loaded" end
  local t0 = core.now()
  local res, err = f.script:call("__eval_rule", { name = name, at = at })
  self.metrics.record_histogram("beagle_rule_evaluation_seconds", core.now() - t0, { rule = name })
  if not res then
    self.metrics.increment_counter("beagle_rule_evaluation_failures_total", 1, { rule = name })
    self.engine:evaluate(name, nil, tostring(err))
    return nil, err
  end
  self.engine:evaluate(name, res.samples or {})
  return res.samples
end

function M:scan()
  local seen, failures = {}, 0
  for _, path in ipairs(self:rule_files()) do
    seen[path] = true
    if not self:load_file(path) then failures = failures + 1 end
  end
  for path in pairs(self.files) do
    if not seen[path] then self:unload_file(path) end
  end
  self:apply()
  return failures
end

function M:watch(debounce)
  for _, d in ipairs(self.dirs) do
    if core.listdir(d) then
      local w = core.watch(d, debounce, function() self:scan() end)
      if w then self.watches[#self.watches + 1] = w end
    end
  end
end

function M:stop()
  for _, w in ipairs(self.watches) do w:stop() end
  for _, t in pairs(self.timers) do t:stop() end
  self.watches, self.timers = {}, {}
  for _, f in pairs(self.files) do if f.script then f.script:close(true) end end
end

-- GET /alerts/rules
function M:rules_json()
  local out = json.array()
  for _, path in ipairs(util.sorted_keys(self.files)) do
    local f = self.files[path]
    for _, r in ipairs(f.set and f.set.alerts or {}) do
      local st = self.engine:rule_state(r.name) or {}
      out[#out + 1] = { name = r.name, file = path, line = r.line, kind = r.kind, metric = r.metric,
        expr = r.expr and true or nil, condition = r.condition, threshold = r.threshold,
        duration = r.duration, severity = r.severity, enabled = r.enabled ~= false,
        state = st.state, last_evaluation = st.last_eval and util.iso8601(st.last_eval) or nil,
        error = st.last_error, file_error = f.error }
    end
    if not f.set then out[#out + 1] = { file = path, file_error = f.error } end
  end
  return out
end

function M:alerts_json()
  local out = json.array()
  for _, a in ipairs(self.engine:alerts() or {}) do
    out[#out + 1] = {
      name = a.name, fingerprint = a.fingerprint, state = a.state, labels = a.labels,
      annotations = a.annotations, value = a.value,
      activeAt = a.active_at and util.iso8601(a.active_at) or nil,
      startsAt = a.starts_at and util.iso8601(a.starts_at) or nil,
      endsAt = a.ends_at and util.iso8601(a.ends_at) or nil,
    }
  end
  return out
end

return M
