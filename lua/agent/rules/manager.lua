-- Alert rules in the agent: rule files (rules/ and --rules DIR) each in a sandboxed lua_State,
-- reloaded on change (a file that fails keeps its previous rules), evaluated on their schedule
-- through agent.query, fed to the engine (agent.rules.engine), persisted in the store, and the
-- /alerts routes. Notifications go to the outbox (agent.delivery), which delivers them through
-- the channels (agent.channels).
local core = require "agent.core"
local util = require "agent.util"
local json = require "beagle.json"
local T = require "agent.trace"

local M = {}
M.__index = M

-- new{ dirs, settings, metrics, log, data_dir, memory_limit, sample_now = fn() (history samples
-- every series now) }
function M.new(o)
  local self = setmetatable({
    sample_now = o.sample_now, dirs = o.dirs, settings = o.settings, metrics = o.metrics, log = o.log, data_dir = o.data_dir,
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

local read = util.read_source

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

-- Loads one file's source into a fresh state (its companion test must pass). Returns the file
-- entry, or nil, err; nothing of the manager changes.
function M:load_state(path, src)
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
    return nil, tostring(err)
  end
  return { file = path, script = script, set = set, source = src, loaded_at = core.wall() }
end

-- A load error as problems { file, line, message }: the rule DSL reports one "file:line: ..."
-- a line; other lines (a companion test's report) belong to the problem above them.
local function file_problems(path, err, out)
  local first = #out + 1
  for line in (err .. "\n"):gmatch("([^\n]*)\n") do
    local f, l, msg = line:match("^(.-):(%d+): (.*)$")
    if f and (f == path or f:sub(-#util.basename(path)) == util.basename(path)) then
      out[#out + 1] = { file = path, line = tonumber(l), message = msg }
    elseif #out >= first then
      out[#out].message = out[#out].message .. "\n" .. line
    elseif line ~= "" then
      out[#out + 1] = { file = path, message = line }
    end
  end
  if #out < first then out[#out + 1] = { file = path, message = err } end
  for i = first, #out do out[i].message = out[i].message:gsub("%s+$", "") end
end

-- The rule files as they would be after a reload: every file on disk (or, with `only`, just
-- that path; the others as loaded), a changed file in a fresh state. Returns the staged set
-- (path -> entry), the problems ({ file, line, message }: a file that fails, an alert name
-- declared twice) and the fresh entries. The manager itself is unchanged: commit or discard.
function M:prepare(only)
  local staged, problems, fresh = {}, {}, {}
  local paths = {}
  if only then
    for path, f in pairs(self.files) do if f.set and path ~= only then paths[#paths + 1] = path end end
    paths[#paths + 1] = only
  else
    paths = self:rule_files()
  end
  for _, path in ipairs(paths) do
    local old = self.files[path]
    if only and path ~= only then
      staged[path] = old
    else
      local src, rerr = read(path)
      if src and old and old.set and old.source == src then
        staged[path] = old
      elseif src then
        local f, err = self:load_state(path, src)
        if f then
          staged[path] = f
          fresh[#fresh + 1] = f
        else
          file_problems(path, err, problems)
        end
      elseif rerr then
        file_problems(path, rerr, problems)
      end
    end
  end
  -- one name, one rule: the same alert in two files is an error, not a first-one-wins; it is
  -- reported on the file that brings the name anew (a file already loaded keeps it)
  local by_name, names = {}, {}
  local is_fresh = {}
  for _, f in ipairs(fresh) do is_fresh[f] = true end
  for _, path in ipairs(util.sorted_keys(staged)) do
    for _, r in ipairs(staged[path].set.alerts or {}) do
      if not by_name[r.name] then
        by_name[r.name] = {}
        names[#names + 1] = r.name
      end
      local l = by_name[r.name]
      l[#l + 1] = { file = path, line = r.line, kind = r.kind, fresh = is_fresh[staged[path]] }
    end
  end
  for _, name in ipairs(names) do
    local l = by_name[name]
    if #l > 1 then
      local keep = 1
      for i, d in ipairs(l) do if not d.fresh then keep = i break end end
      local first = l[keep]
      for i, d in ipairs(l) do
        if i ~= keep then
          problems[#problems + 1] = { file = d.file, line = d.line, message = ("%s %q is also declared in %s:%d")
            :format(d.kind or "alert", name, first.file, first.line or 0) }
        end
      end
    end
  end
  return staged, problems, fresh
end

-- Drops what prepare loaded; the problems are recorded on their files (the loaded version
-- stays) for /alerts/rules and /health/detailed.
function M:discard(problems, fresh)
  for _, f in ipairs(fresh or {}) do f.script:close(true) end
  local by_file = {}
  for _, p in ipairs(problems or {}) do
    local text = p.line and ("%s:%d: %s"):format(p.file, p.line, p.message) or p.message
    by_file[p.file] = by_file[p.file] and (by_file[p.file] .. "\n" .. text) or text
    self.metrics.increment_counter("beagle_rule_load_failures_total", 1, { file = util.basename(p.file) })
    self.log(3, "rule file refused, the previous rules stay", { file = p.file, line = p.line and tostring(p.line),
      error = p.message })
  end
  for path, err in pairs(by_file) do
    if self.files[path] then self.files[path].error = err
    else self.files[path] = { file = path, error = err } end
  end
end

-- Makes a prepared set the running one: replaced and removed files close, the rules apply.
-- only: the set was prepared for that path alone; what the others recorded (a file refused
-- earlier, with its error) stays as it is.
function M:commit(staged, only)
  for path, old in pairs(self.files) do
    if only and path ~= only and not staged[path] then
      staged[path] = old -- a refused file's record, never loaded
    elseif staged[path] ~= old then
      if old.script then old.script:close(false) end
      if not staged[path] and old.set then self.log(1, "rules removed", { file = path }) end
    end
  end
  for path, f in pairs(staged) do
    if not only or path == only then f.error = nil end
    if self.files[path] ~= f and f.set then
      self.log(1, self.files[path] and self.files[path].set and "rules reloaded" or "rules loaded",
        { file = path, alerts = tostring(#(f.set.alerts or {})) })
    end
  end
  self.files = staged
  self:apply()
end

-- Every rule, route, inhibit and silence of the loaded files, in file order.
function M:collect()
  local alerts, routes, inhibits, silences, owner = {}, {}, {}, {}, {}
  for _, path in ipairs(util.sorted_keys(self.files)) do
    local f = self.files[path]
    if f.set then
      for _, r in ipairs(f.set.alerts or {}) do
        if not owner[r.name] then -- prepare refuses a set that declares a name twice
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
  self:park_states()
end

-- Whether the schedule runs rule r in its file's state: an expr, or a rule without a metric
-- (evaluate_group's split); a declarative rule is evaluated here, in the agent.
local function needs_state(r) return r.enabled ~= false and (r.expr or not r.metric) end

-- A rule file none of whose rules the schedule runs in its state (only declarative ones, or
-- expr rules disabled) keeps its rules and source but not its lua_State: the built-in
-- rules/guide.lua held ~290 KB for nothing that way. The first call that needs the state
-- (POST /alerts/test, evaluate) loads the file into a fresh one (state_of); the next apply
-- parks it again.
function M:park_states()
  local parked = 0
  for _, f in pairs(self.files) do
    local needed = false
    for _, r in ipairs(f.set and f.set.alerts or {}) do
      if needs_state(r) then needed = true break end
    end
    if f.script and f.set and not needed and f.script:active() == 0 then
      f.script:close(false)
      f.script = nil
      parked = parked + 1
    end
  end
  -- the states are freed by the loop's next turn (script.c's reaper); their pages go back then
  if parked > 0 and core.release_memory then
    local t
    t = core.timer(0.05, 0, function()
      t:stop()
      core.release_memory()
    end)
  end
end

-- The state of loaded file f, loaded again from its file when it was parked; nil, err when
-- that fails.
function M:state_of(f)
  if f.script then return f.script end
  if not f.set then return nil, "rules are not loaded" end
  local script, err = core.script_new { name = util.basename(f.file), memory_limit = self.memory_limit }
  if not script then return nil, err end
  local set
  set, err = script:call("__load_rules", f.file)
  if not set then
    script:close(true)
    return nil, err
  end
  f.script = script
  return script
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
-- The firing instances of the named rules (for the span of their round).
local function firing_of(engine, names)
  local n = 0
  for _, name in ipairs(names) do
    for _, inst in pairs(engine.by_rule and engine.by_rule[name] or {}) do
      if inst.state == "firing" then n = n + 1 end
    end
  end
  return n
end

function M:evaluate_group(path, names, done)
  local f = self.files[path]
  if not f or not f.set then return nil, "rules are not loaded" end
  local t0, c0 = core.now(), core.cpu()
  local file = util.basename(path)
  local coded = {}
  local engine = self.engine
  -- the round is a span "rules <file>"; an alert it fires carries its trace id (engine.trace_id)
  -- and the rule file's run is its child
  local span = T.start("rules " .. file, "internal")
  local trace_id = T.trace_id(span)
  local failed = 0
  -- fn with the round's trace id on the engine; should it raise (the store failing under
  -- engine:evaluate), the id is cleared and the span ended before the error goes on up
  local function traced(fn)
    engine.trace_id = trace_id
    local ok, e = pcall(fn)
    engine.trace_id = nil
    if not ok then
      T.finish(span, "error", util.redact(tostring(e)))
      error(e, 0)
    end
  end
  traced(function()
    for _, name in ipairs(names) do
      local r = self.rules[name]
      if r and not r.expr and r.metric then
        local ok, e = pcall(eval_declarative, self, r)
        if not ok then
          failed = failed + 1
          self.metrics.increment_counter("beagle_rule_evaluation_failures_total", 1, { file = file })
          engine:evaluate(name, nil, tostring(e))
        end
      else
        coded[#coded + 1] = name
      end
    end
  end)
  -- skipped: how many coded rules still run from the round before (such a round is not timed)
  local function finish(skipped)
    if not skipped then
      self.metrics.record_histogram("beagle_rule_group_evaluation_seconds", core.now() - t0, { file = file })
      -- the loop's CPU for it: on a busy machine the wall time also holds other processes' turns
      self.metrics.record_histogram("beagle_rule_group_evaluation_cpu_seconds", core.cpu() - c0, { file = file })
    end
    if T.recording(span) then
      T.set(span, "beagle.rules.file", file)
      T.set(span, "beagle.rules.count", #names)
      T.set(span, "beagle.rules.names", names)
      T.set(span, "beagle.rules.failed", failed)
      T.set(span, "beagle.rules.firing", firing_of(engine, names))
      if skipped then T.set(span, "beagle.rules.skipped", skipped) end
    end
    T.finish(span, failed > 0 and "error" or nil, failed > 0 and ("%d rule(s) failed"):format(failed) or nil)
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
    finish(#coded)
    return true
  end
  local script, serr = self:state_of(f)
  if not script then
    for _, name in ipairs(coded) do
      failed = failed + 1
      self.metrics.increment_counter("beagle_rule_evaluation_failures_total", 1, { file = file })
      engine:evaluate(name, nil, tostring(serr))
    end
    finish()
    return true
  end
  f.running[key] = true
  local function settle(ok, res)
    f.running[key] = nil
    if self.files[path] ~= f or f.script ~= script then -- reloaded meanwhile
      T.finish(span)
      return
    end
    traced(function()
      for _, name in ipairs(coded) do
        local r = ok and type(res) == "table" and res[name]
        if r and r.samples then
          engine:evaluate(name, r.samples)
        else
          failed = failed + 1
          self.metrics.increment_counter("beagle_rule_evaluation_failures_total", 1, { file = file })
          engine:evaluate(name, nil, tostring(r and r.error or (not ok and res) or "no result"))
        end
      end
    end)
    finish()
  end
  local interval = self.settings.alert_evaluation_interval or 60
  local ok, err = pcall(script.run, script, "__eval_rules", { names = coded },
    { timeout = math.max(1, interval), budget = self.settings.plugin_instruction_budget,
      traceparent = T.traceparent(span) }, settle)
  if not ok then settle(false, err) end
  return true
end

-- Evaluates one rule now in its file's state.
function M:evaluate(name, at)
  local path = self.owner and self.owner[name]
  local f = path and self.files[path]
  local script = f and f.set and self:state_of(f)
  if not script then return nil, "rule is not loaded" end
  local res, err = script:call("__eval_rule", { name = name, at = at })
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

-- Reloads the rule files all or nothing: when any file fails (or two declare one alert name),
-- every loaded rule stays and the problems ({ file, line, message }) are returned and logged.
-- only: re-read just that path (the API's file); the others stay as loaded.
function M:scan(only)
  if not self.api_loaded then
    self.api_loaded = true
    self:load_api_state()
  end
  local staged, problems, fresh = self:prepare(only)
  if #problems > 0 then
    self:discard(problems, fresh)
    return problems
  end
  self:commit(staged, only)
  return problems
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
      traceId = a.trace_id, -- the trace of the evaluation that fired it
    }
  end
  return out
end

-- The write side of the API (rules and silences created over HTTP, POST /alerts/test) is
-- agent.rules.manager_api, loaded on the first call of one of its methods: an agent nobody
-- sends a rule or a silence keeps ~20 KB less in its state.
for _, name in ipairs { "write_api_file", "api_write", "api_rule_spec", "api_put_rule", "api_replace_rule",
  "api_delete_rule", "api_test_rule", "silences_json", "api_add_silence", "api_delete_silence", "apply_silences" } do
  M[name] = function(...)
    local api = require "agent.rules.manager_api"
    for k, v in pairs(api) do M[k] = v end
    return api[name](...)
  end
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

return M
