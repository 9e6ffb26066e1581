-- Alert rules in the agent: rule files (rules/ and --rules DIR) each in a sandboxed lua_State,
-- reloaded on change (a file that fails keeps its previous rules), evaluated on their schedule
-- through agent.query, fed to the engine (agent.rules.engine), persisted in the store, and the
-- /alerts routes. Notifications go to the outbox (agent.delivery), which delivers them through
-- the channels (agent.channels).
local core = require "agent.core"
local util = require "agent.util"
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
  local ok_engine, Engine = pcall(require, "agent.rules.engine")
  if not ok_engine then return nil, "alert engine: " .. tostring(Engine) end
  self.store = nil
  if core.store_open then
    local sok, store_mod = pcall(require, "agent.rules.store")
    if sok then
      local st, err = store_mod.open(o.data_dir .. "/state.db")
      if st then self.store = st
      else self.log(3, "alert state is not kept", { error = tostring(err) }) end
    end
  end
  -- agent.rules.dsl and the template engine are loaded when first needed (an API rule, the
  -- first message rendered): the rule files load in states of their own, so an idle agent
  -- holds only the matchers
  local matchers = require "agent.rules.matchers"
  self.engine = Engine.new {
    now = core.wall,
    match = matchers.match, -- the same matchers (regex subset, globs) as the rule files declare
    settings = o.settings,
    store = self.store,
    render = function(text, ctx) return require("agent.rules.template").render(text, ctx) or text end,
    notify = function(n) self:deliver(n) end,
    log = o.log,
    -- a channel whose plugin re-sends (Alertmanager) groups and times by itself: the engine
    -- sends to it directly (agent.rules.policy)
    direct = function(ch)
      local conf = self.delivery and self.delivery.channel(ch)
      return conf ~= nil and (conf.resend or 0) > 0
    end,
  }
  return self
end

-- Every notification goes to the outbox (agent.delivery); without one (rules run without the
-- agent), to the log and a counter.
function M:deliver(n)
  if self.delivery then return self.delivery:enqueue(n) end
  local names = {}
  for _, a in ipairs(n.alerts or {}) do names[#names + 1] = a.name end
  self.log(n.status == "firing" and 2 or 1, n.test and "test notification" or "alert notification", {
    channel = n.channel, status = n.status, alerts = table.concat(names, ","),
    group = tostring(n.group_key), dedup_key = tostring(n.dedup_key),
  })
  self.metrics.increment_counter("beagle_notifications_total", 1,
    { channel = tostring(n.channel), result = n.test and "test" or "logged" })
end

-- The firing alerts whose last notification on `channel` was a firing one: what a `resend`
-- channel (alertmanager) re-sends until they resolve.
function M:active_for(channel)
  local out = {}
  local e = self.engine
  for fp, inst in pairs(e.instances or {}) do
    local ent = e.log[fp] and e.log[fp][channel]
    if inst.state == "firing" and ent and ent.last_status == "firing" then
      local c = e.copy(inst)
      c.status = "firing"
      out[#out + 1] = c
    end
  end
  table.sort(out, function(a, b) return a.fingerprint < b.fingerprint end)
  return out
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

local read = util.read_file

-- A companion test runs in the agent's own state (it replays its rule file through the engine),
-- so it gets a deadline there: its code and the rule file's run with the JIT off (testing.lua,
-- dsl.lua), where this count hook fires, and a test that loops fails the load instead of
-- holding the loop for good. It still holds the loop for up to this long while it runs.
local COMPANION_SECONDS = 2
local function bounded(seconds, fn, ...)
  local deadline, late = core.now() + seconds, nil
  debug.sethook(function()
    -- raises again at every hook once late: a pcall inside the test cannot outlive it
    if core.now() > deadline then
      late = ("timeout: the companion test ran for more than %gs"):format(seconds)
      error(late, 0)
    end
  end, "", 10000)
  local r = { pcall(fn, ...) }
  debug.sethook()
  if late then return false, late end -- whatever the test made of the errors it caught
  return unpack(r)
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
  -- a companion test (x.lua + x_test.lua) must pass before the new rules replace the old
  local companion = path:gsub("%.lua$", "_test.lua")
  if set and companion ~= path and read(companion) then
    local testing = require "agent.rules.testing"
    local report = {}
    local sink = { write = function(_, ...) for _, x in ipairs { ... } do report[#report + 1] = tostring(x) end end }
    local ok, passed = bounded(COMPANION_SECONDS, testing.run_file, companion, sink)
    if not ok or not passed then
      set, err = nil, ("companion test failed: %s"):format(ok and table.concat(report):gsub("%s+$", "") or tostring(passed))
    end
  end
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
  local ok, err = self.engine:set_rules(alerts, routes, inhibits)
  if ok == nil and err then self.log(3, "rules not applied", { error = tostring(err) }) end
  self.engine:set_silences(silences)
  self.engine.silences = silences
  for _, t in pairs(self.timers) do t:stop() end
  self.timers = {}
  self.rules = {}
  -- one timer per file and interval: the rules due together are evaluated in one call into
  -- the file's state
  local groups = {}
  for _, r in ipairs(alerts) do
    self.rules[r.name] = r
    if r.enabled ~= false then
      local every = r.every or self.settings.alert_evaluation_interval
      local key = self.owner[r.name] .. "\0" .. every
      groups[key] = groups[key] or { file = self.owner[r.name], every = every, names = {} }
      table.insert(groups[key].names, r.name)
    end
  end
  for key, g in pairs(groups) do
    -- the first evaluation waits one interval, as Prometheus does: metrics (and, after a
    -- restart, the series a stored alert depends on) get the time to arrive
    self.timers[key] = core.timer(g.every, g.every, function() self:evaluate_group(g.file, g.names) end)
  end
  self.timers["__tick"] = core.timer(1, 1, function() self.engine:tick() end)
end

local SCORE_FN = require("agent.rules.eval").SCORE_FN

-- A declarative rule (metric, matchers, threshold; or an anomaly) has no code: the agent
-- evaluates it itself, through one query object whose label tables are shared between rounds
-- (so the engine's fingerprint cache hits). Only `expr` rules run in their file's state.
-- Evaluates a declarative rule now: a threshold rule straight from history columns into the
-- engine (nothing allocated for a quiet series), an anomaly rule through its score query.
local function eval_declarative(self, r)
  local q = self.q
  if not q then
    q = require("agent.query").new(nil, { shared_labels = true })
    self.q = q
  end
  if r.kind == "anomaly" then
    return self.engine:evaluate(r.name, q[SCORE_FN[r.method]](r.metric, r.window, r.matchers, r.min_samples))
  end
  return self.engine:evaluate_columns(r.name, q.last_columns(r.metric, r.matchers))
end

-- Evaluates the named rules of one file now: the declarative ones here, at once; the expr ones
-- in a run of the file's state, as plugin code: sliced, under the run budget and a deadline of
-- the group's interval, so a rule that loops holds neither the loop nor the next round. A round
-- still running when the next is due is skipped and counted. done(), when given, is called
-- when the round has ended.
function M:evaluate_group(path, names, done)
  local f = self.files[path]
  if not f or not f.script then return nil, "rules are not loaded" end
  local t0, c0 = core.now(), core.cpu()
  local file = util.basename(path)
  local coded = {}
  local engine = self.engine
  for _, name in ipairs(names) do
    local r = self.rules[name]
    if r and not r.expr and r.metric then
      local ok, e = pcall(eval_declarative, self, r)
      if not ok then
        self.metrics.increment_counter("beagle_rule_evaluation_failures_total", 1, { file = file })
        engine:evaluate(name, nil, tostring(e))
      end
    else
      coded[#coded + 1] = name
    end
  end
  local function finish()
    self.metrics.record_histogram("beagle_rule_group_evaluation_seconds", core.now() - t0, { file = file })
    -- the loop's CPU for it: on a busy machine the wall time also holds other processes' turns
    self.metrics.record_histogram("beagle_rule_group_evaluation_cpu_seconds", core.cpu() - c0, { file = file })
    if done then done() end
  end
  if #coded == 0 then
    finish()
    return true
  end
  f.running = f.running or {}
  local key = table.concat(coded, "\0")
  if f.running[key] then
    self.metrics.increment_counter("beagle_rule_evaluations_skipped_total", 1, { file = file })
    if done then done() end
    return true
  end
  f.running[key] = true
  local script = f.script
  local function settle(ok, res)
    f.running[key] = nil
    if self.files[path] ~= f or f.script ~= script then return end -- reloaded meanwhile
    for _, name in ipairs(coded) do
      local r = ok and type(res) == "table" and res[name]
      if r and r.samples then
        engine:evaluate(name, r.samples)
      else
        self.metrics.increment_counter("beagle_rule_evaluation_failures_total", 1, { file = file })
        engine:evaluate(name, nil, tostring(r and r.error or (not ok and res) or "no result"))
      end
    end
    finish()
  end
  local interval = self.settings.alert_evaluation_interval or 60
  local ok, err = pcall(script.run, script, "__eval_rules", { names = coded },
    { timeout = math.max(1, interval), budget = self.settings.plugin_instruction_budget }, settle)
  if not ok then settle(false, err) end
  return true
end

-- Evaluates one rule now in its file's state.
function M:evaluate(name, at)
  local path = self.owner and self.owner[name]
  local f = path and self.files[path]
  if not f or not f.script then return nil, "rule is not loaded" end
  local res, err = f.script:call("__eval_rule", { name = name, at = at })
  if not res then
    self.engine:evaluate(name, nil, tostring(err))
    return nil, err
  end
  self.engine:evaluate(name, res.samples or {})
  return res.samples
end

-- Alert counts by state and what the engine held back, for /metrics.
function M:update_metrics()
  local all = self.engine:counts()
  for _, st in ipairs { "pending", "firing" } do
    self.metrics.set_gauge("beagle_alerts", all[st] or 0, { state = st })
  end
  for reason, n in pairs(self.engine.suppressed or {}) do
    self.metrics.set_gauge("beagle_notifications_suppressed", n, { reason = reason })
  end
  local failed = 0
  for _, f in pairs(self.files) do if f.error then failed = failed + 1 end end
  self.metrics.set_gauge("beagle_rule_files_failed", failed)
end

-- For /health/detailed: every rule file with its state and error.
function M:files_json()
  local out = json.array()
  for _, path in ipairs(util.sorted_keys(self.files)) do
    local f = self.files[path]
    out[#out + 1] = { file = path, state = f.set and "loaded" or "failed", error = f.error,
      alerts = f.set and #(f.set.alerts or {}) or 0 }
  end
  return out
end

function M:scan()
  if not self.api_loaded then
    self.api_loaded = true
    self:load_api_state()
  end
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

-- ---- the write side of the API ------------------------------------------------------------

-- Serialises a declarative rule (no functions) as a Lua literal, for the generated file that
-- holds the rules created over HTTP.
local function literal(v, depth)
  depth = depth or 0
  if depth > 16 then error("rule is nested too deeply") end
  local t = type(v)
  if t == "string" then return ("%q"):format(v) end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then error("numbers must be finite") end
    return ("%.17g"):format(v)
  end
  if t == "boolean" then return tostring(v) end
  if t ~= "table" then error(("%s values are not allowed in a rule"):format(t)) end
  local parts = {}
  for _, k in ipairs(util.sorted_keys(v)) do
    local key = type(k) == "number" and ("[%d]"):format(k) or ("[%q]"):format(tostring(k))
    parts[#parts + 1] = key .. " = " .. literal(v[k], depth + 1)
  end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

function M:write_api_file()
  if not self.store then return nil, "no state store" end
  local rows, err = self.store:api_rules()
  if not rows then return nil, err end
  local lines = { "-- rules created over POST /alerts/rules; generated, do not edit" }
  for _, r in ipairs(rows) do
    local spec = r.rule
    spec.name = nil
    lines[#lines + 1] = ("alert %q %s"):format(r.name, literal(spec))
  end
  local path = self.data_dir .. "/api_rules.lua"
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  assert(os.rename(tmp, path))
  self.api_file = path
  return true
end

-- Loads what the API created earlier (rules and silences) from the store.
function M:load_api_state()
  if not self.store then return end
  local rows = self.store:api_rules()
  if rows and #rows > 0 then self:write_api_file() end
  for _, s in ipairs(self.store:silences(core.wall()) or {}) do
    if s.source == "api" then self.api_silences[s.id] = s end
  end
end

-- POST /alerts/rules: status, body table
function M:api_put_rule(spec)
  if not self.store then return 503, { error = "alert state is not kept (no store)" } end
  if type(spec) ~= "table" then return 400, { error = "body must be a JSON object" } end
  if spec.expr ~= nil then return 400, { error = "expr rules exist only in rule files: no code is accepted over HTTP" } end
  local dsl = require "agent.rules.dsl"
  local item, problems = dsl.normalize(spec.kind == "anomaly" and "anomaly" or "alert", spec, { file = "api" })
  if not item then return 400, { error = "invalid rule", problems = json.array(problems) } end
  local owner = self.owner and self.owner[item.name]
  if owner and owner ~= self.api_file then
    return 409, { error = ("rule %q is defined in %s"):format(item.name, owner) }
  end
  local copy = {}
  for k, v in pairs(spec) do if v ~= json.null then copy[k] = v end end
  local ok, err = self.store:put_api_rule(item.name, copy)
  if not ok then return 500, { error = tostring(err) } end
  ok, err = pcall(self.write_api_file, self)
  if not ok then return 500, { error = tostring(err) } end
  self:scan()
  local f = self.files[self.api_file]
  if f and f.error then return 400, { error = "invalid rule", problems = json.array { f.error } } end
  return 201, { status = "created", name = item.name }
end

-- DELETE /alerts/rules/{name}
function M:api_delete_rule(name)
  local owner = self.owner and self.owner[name]
  if owner and owner ~= self.api_file then
    return 409, { error = ("rule %q is defined in %s: edit that file"):format(name, owner) }
  end
  if not self.store then return 404, { error = ("no rule named %q"):format(name) } end
  local ok = self.store:delete_api_rule(name)
  if not ok then return 404, { error = ("no rule named %q"):format(name) } end
  self:write_api_file()
  self:scan()
  return 200, { status = "deleted", name = name }
end

-- POST /alerts/test/{name}: evaluates now and sends a test notification for what holds now.
function M:api_test_rule(name)
  local path = self.owner and self.owner[name]
  local f = path and self.files[path]
  if not f or not f.script then return 404, { error = ("no rule named %q"):format(name) } end
  local res, err = f.script:call("__eval_rule", { name = name })
  if not res then return 422, { error = "evaluation failed: " .. tostring(err) } end
  local notes, terr = self.engine:test(name, res.samples or {})
  if not notes then return 422, { error = tostring(terr) } end
  for _, n in ipairs(notes) do n.test = true self:deliver(n) end
  local samples = json.array()
  for _, s in ipairs(res.samples or {}) do samples[#samples + 1] = s end
  return 200, { rule = name, samples = samples, notifications = #notes }
end

function M:silences_json()
  local now = core.wall()
  local out = json.array()
  for _, s in ipairs(self.engine.silences or {}) do
    if (s.ends or math.huge) > now then
      out[#out + 1] = { id = s.id, matchers = s.matchers, starts = s.starts and util.iso8601(s.starts),
        ends = s.ends and util.iso8601(s.ends), comment = s.comment, created_by = s.created_by,
        source = s.file and s.file ~= "api" and "file" or "api", file = s.file ~= "api" and s.file or nil }
    end
  end
  return out
end

-- POST /alerts/silences
function M:api_add_silence(spec)
  if not self.store then return 503, { error = "alert state is not kept (no store)" } end
  local dsl = require "agent.rules.dsl"
  local item, problems = dsl.normalize("silence", spec, { file = "api" })
  if not item then return 400, { error = "invalid silence", problems = json.array(problems) } end
  item.source = "api"
  local id, err = self.store:add_silence(item)
  if not id then return 500, { error = tostring(err) } end
  item.id = id
  self.api_silences[id] = item
  self:apply_silences()
  return 201, { status = "created", id = id }
end

-- DELETE /alerts/silences/{id}
function M:api_delete_silence(id)
  if not self.api_silences[id] then
    return 404, { error = ("no silence %q created over the API (file silences live in their files)"):format(id) }
  end
  if self.store then self.store:delete_silence(id) end
  self.api_silences[id] = nil
  self:apply_silences()
  return 200, { status = "deleted", id = id }
end

function M:apply_silences()
  local _, _, _, silences = self:collect()
  self.engine:set_silences(silences)
  self.engine.silences = silences
end

return M
