-- Health checks (the guide's HealthChecker): check instances from the config and from
-- drop-in plugins whose options all have defaults, their schedules, retries, results, and
-- the JSON of /health, /health/ready, /health/detailed and /health/{name}.
local core = require "agent.core"
local util = require "agent.util"
local json = require "beagle.json"
local store_status = require "agent.store_status"
local T = require "agent.trace"

local M = {}
M.__index = M

local rank = { healthy = 0, unknown = 1, degraded = 2, unhealthy = 3 }
M.rank = rank
M.exit_codes = { healthy = 0, degraded = 1, unhealthy = 2, unknown = 3 }
-- results each check keeps for /health/{name}, /health/detailed and the dashboard
local HISTORY = 100

-- new{ settings, plugins (manager), metrics, log, on_update = fn() }
function M.new(o)
  return setmetatable({
    settings = o.settings, plugins = o.plugins, metrics = o.metrics, log = o.log,
    on_update = o.on_update or function() end,
    instances = {}, config_checks = {}, started = false, stopping = false,
    first_round_done = false,
  }, M)
end

-- The config's check declarations ({ name = { spec, line } }) and the file they come from.
function M:set_config(checks, path)
  self.config_checks, self.config_path = checks, path
end

local function pick(...)
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    if v ~= nil then return v end
  end
end

-- The instance's run limits. budget: VM instructions (default plugin_instruction_budget).
-- memory: bytes or a size string ("16MB"): how much one run may grow its plugin's state;
-- none by default, and never above plugin_memory_limit_mb, the whole state's limit.
-- Return the value, or nil, err naming the key and the value.
local MIN_BUDGET = 1000

local function limit_budget(v, default)
  if v == nil then return default end
  if type(v) ~= "number" or v ~= v or v == math.huge or v % 1 ~= 0 or v < MIN_BUDGET then
    return nil, ("budget = %s: must be a whole number of VM instructions, at least %d")
      :format(type(v) == "string" and ("%q"):format(v) or tostring(v), MIN_BUDGET)
  end
  return v
end

local function limit_memory(v, state_mb)
  if v == nil then return nil end
  local shown = type(v) == "string" and ("%q"):format(v) or tostring(v)
  local n, err = util.parse_size(v)
  if not n then return nil, ("memory = %s: %s"):format(shown, err) end
  if n < 1 then return nil, ("memory = %s: must be at least 1 byte"):format(shown) end
  local cap = state_mb * 1024 * 1024
  if n > cap then
    return nil, ("memory = %s: more than the plugin state may hold (plugin_memory_limit_mb = %s)")
      :format(shown, tostring(state_mb))
  end
  return n
end

-- The declaration without the agent's own limit keys: the plugin validates its options only
-- (and the public library does not know `memory`).
local AGENT_KEYS = { budget = true, memory = true }
local function plugin_options(spec)
  local out = {}
  for k, v in pairs(spec) do
    if not AGENT_KEYS[k] then out[k] = v end
  end
  return out
end

-- Drops a retry the instance waits for; with report, its last failed attempt is the result.
local function cancel_wait(inst, report)
  local w = inst.waiting
  if not w then return end
  inst.waiting = nil
  w.timer:stop()
  if report then w.finish(w.result) end
end

-- Works out one instance from its declaration (spec may be nil for an automatic one).
-- Returns inst or nil, err. dry: only validates (the plugin's state keeps what it had), for a
-- reload that must know every declaration is good before it applies any.
function M:build(name, plugin_name, spec, line, dry)
  spec = spec or {}
  local rec = self.plugins:get(plugin_name)
  local inst = {
    name = name, plugin = plugin_name, spec = spec, line = line, auto = line == nil,
    enabled = spec.enabled ~= false, tags = spec.tags or {},
  }
  if not rec then return inst, ("plugin %q is not loaded"):format(plugin_name) end
  if rec.kind ~= "check" then return inst, ("plugin %q is a %s, not a check"):format(plugin_name, rec.kind) end
  local meta, s = rec.meta, self.settings
  local function dur(key)
    local v = spec[key]
    if v == nil then return nil end
    local d, err = util.parse_duration(v)
    if not d then
      error(("%s = %s: %s"):format(key, type(v) == "string" and ("%q"):format(v) or tostring(v), err), 0)
    end
    return d
  end
  local ok, err = pcall(function()
    inst.interval = pick(dur("interval"), meta.interval, s.health_check_interval)
    inst.timeout = pick(dur("timeout"), meta.timeout, s.health_check_timeout)
  end)
  if not ok then return inst, err end
  -- 0 would mean a schedule that never repeats, a run without a deadline
  for _, key in ipairs { "interval", "timeout" } do
    if inst[key] <= 0 then return inst, ("%s = %s: must be more than 0"):format(key, tostring(inst[key])) end
  end
  -- a run cannot outlast its schedule (as Prometheus' scrape_timeout <= scrape_interval): an
  -- endless check is reported within its interval, and the next run finds the last one done
  inst.timeout = math.min(inst.timeout, inst.interval)
  inst.retries = pick(spec.retries, meta.retries, s.health_check_retries)
  if type(inst.retries) ~= "number" or inst.retries < 0 or inst.retries % 1 ~= 0 then
    return inst, ("retries = %s: must be a whole number >= 0"):format(tostring(inst.retries))
  end
  -- retries wait, so that a passing fault can pass and a check that measures over the time
  -- since its last run (system's CPU) has a window; all attempts fit in one interval
  inst.retry_delay = math.min(s.health_check_retry_delay, inst.interval / (inst.retries + 1))
  inst.budget, err = limit_budget(spec.budget, s.plugin_instruction_budget)
  if err then return inst, err end
  inst.memory, err = limit_memory(spec.memory, s.plugin_memory_limit_mb)
  if err then return inst, err end
  inst.critical = pick(spec.critical, meta.critical, false) == true
  local deps = spec.depends_on
  if type(deps) == "string" then deps = { deps } end
  if deps ~= nil then
    if type(deps) ~= "table" then
      return inst, ("depends_on = %s: must be a check name or a list of check names"):format(tostring(deps))
    end
    for i, d in ipairs(deps) do
      if type(d) ~= "string" or d == "" then
        return inst, ("depends_on[%d] = %s: must be a check name"):format(i, tostring(d))
      end
      if d == name then return inst, "depends_on: a check cannot depend on itself" end
    end
  end
  inst.depends_on = deps or {}
  inst.flap_threshold = pick(spec.flap_threshold, s.health_check_flap_threshold)
  if type(inst.flap_threshold) ~= "number" or inst.flap_threshold < 0 or inst.flap_threshold % 1 ~= 0 then
    return inst, ("flap_threshold = %s: must be a whole number >= 0 (0: no flap detection)")
      :format(tostring(inst.flap_threshold))
  end
  ok, err = pcall(function() inst.flap_window = pick(dur("flap_window"), s.health_check_flap_window) end)
  if not ok then return inst, err end
  if inst.flap_window <= 0 then return inst, ("flap_window = %s: must be more than 0"):format(tostring(inst.flap_window)) end
  local opts
  if dry then opts, err = rec.script:call("__validate", plugin_options(spec))
  else opts, err = rec.script:call("__configure", { name = name, given = plugin_options(spec) }) end
  if not opts then return inst, err end
  inst.opts = opts
  return inst
end

-- Validates every config instance of plugin `name` against a freshly loaded script, for the
-- plugin manager's swap decision.
function M:validate_plugin(name, script, meta)
  if meta.kind ~= "check" then return true end
  for cname, c in pairs(self.config_checks) do
    if (c.spec.plugin or cname) == name then
      -- a swap-in state keeps the instance's options from here (its runs name only the instance)
      local ok, err = script:call("__configure", { name = cname, given = plugin_options(c.spec) })
      if not ok then
        return nil, ("check %q (%s:%d) does not validate against the new version: %s")
          :format(cname, self.config_path or "config", c.line, err)
      end
    end
  end
  return true
end

-- Rebuilds the instance set from the config checks and the loaded plugins, keeping the state
-- (last results, schedule) of instances whose declaration did not change.
function M:sync()
  local want = {}
  for name, c in pairs(self.config_checks) do want[name] = { plugin = c.spec.plugin or name, spec = c.spec, line = c.line } end
  for pname, rec in pairs(self.plugins.by_name) do
    if rec.kind == "check" and rec.meta.all_defaults and not want[pname] then
      want[pname] = { plugin = pname }
    end
  end
  self.sorted_cache = nil
  for name in pairs(self.instances) do
    if not want[name] then self:remove(name) end
  end
  for name, w in pairs(want) do
    local old = self.instances[name]
    local rec = self.plugins:get(w.plugin)
    local version = rec and rec.version or 0
    if not old or old.spec ~= w.spec or old.plugin_version ~= version or old.error then
      local inst, err = self:build(name, w.plugin, w.spec, w.line)
      inst.plugin_version = version
      inst.error = err
      if old then
        inst.last, inst.history, inst.runs = old.last, old.history, old.runs
        inst.changes, inst.flapping, inst.held = old.changes, old.flapping, old.held
        inst.last_status, inst.flapping_since = old.last_status, old.flapping_since
        -- a run in flight and whoever waits for a result move to the new instance (never two
        -- runs of one check at once; its result is recorded there); a retry not started yet
        -- is dropped
        inst.running, inst.waiters, inst.dep_wait = old.running, old.waiters, old.dep_wait
        old.running, old.waiters, old.dep_wait = nil, nil, nil
        if old.timer then old.timer:stop() end
        cancel_wait(old, false)
      end
      inst.history = inst.history or {}
      inst.runs = inst.runs or 0
      self.instances[name] = inst
      if err then
        self.log(3, "check is misconfigured", { check = name, error = err,
          where = w.line and ((self.config_path or "config") .. ":" .. w.line) or "plugin" })
        self:record(inst, { status = "unknown", message = err, error = err, response_time = 0 })
      end
      -- at once, unless a run is in flight (its result comes) or it waits for a dependency
      if self.started then self:schedule(inst, not inst.running and not inst.dep_wait) end
    end
  end
  self.sorted_cache = nil -- the loop above replaced instances
  self:check_dependencies()
end

-- A depends_on that names no check, or a cycle of them, makes the check misconfigured.
function M:check_dependencies()
  for name, inst in pairs(self.instances) do
    local why
    if not inst.error or inst.dep_error then
      for _, d in ipairs(inst.depends_on or {}) do
        if not self.instances[d] then why = ("depends_on: no check named %q"):format(d) break end
      end
      if not why then
        -- a path back to this check through depends_on
        local seen, stack = {}, { { name, { name } } }
        while #stack > 0 and not why do
          local top = table.remove(stack)
          local dep = self.instances[top[1]]
          for _, d in ipairs(dep and dep.depends_on or {}) do
            local path = { unpack(top[2]) }
            path[#path + 1] = d
            if d == name then why = "depends_on: a cycle: " .. table.concat(path, " -> ") break end
            if not seen[d] then seen[d] = true stack[#stack + 1] = { d, path } end
          end
        end
      end
      if why and why ~= inst.error then
        inst.error, inst.dep_error = why, true
        if inst.timer then inst.timer:stop() inst.timer = nil end
        self.log(3, "check is misconfigured", { check = name, error = why,
          where = inst.line and ((self.config_path or "config") .. ":" .. inst.line) or "plugin" })
        self:record(inst, { status = "unknown", message = why, error = why, response_time = 0 })
      elseif not why and inst.dep_error then
        inst.error, inst.dep_error = nil, nil
        if self.started then self:schedule(inst, true) end
      end
    end
  end
end

function M:remove(name)
  local inst = self.instances[name]
  if not inst then return end
  if inst.timer then inst.timer:stop() end
  cancel_wait(inst, false)
  self.instances[name] = nil
  self.sorted_cache = nil
  self:notify(inst, { name = name, status = "unknown", message = "check removed", response_time = 0 })
  -- the plugin's close(opt, ctx) for this instance, in its state (synchronous, bounded)
  local rec = self.plugins:get(inst.plugin)
  local script = rec and rec.kind == "check" and rawget(rec, "script") -- a parked state has no instance
  if script then pcall(script.call, script, "__close", { name = name }) end
  self.on_update()
end

-- The offset of a check's runs inside its interval, as a fraction, from a hash of its name
-- (FNV-1a): like Prometheus' scrape offsets, the checks of one interval are spread over it
-- rather than all started in one burst (where a check's start would depend on its place in the
-- burst), and a check keeps its offset across restarts and reloads.
local function phase(name)
  local h = 2166136261
  for i = 1, #name do
    h = bit.bxor(h, name:byte(i)) % 4294967296
    -- h * 16777619 mod 2^32 exactly (the product itself is past a double's 53 bits)
    h = (bit.lshift(h, 24) % 4294967296 + h * 403) % 4294967296
  end
  return h / 4294967296
end
M.phase = phase

-- Runs inst at its due times: phase * interval + k * interval on the monotonic clock, each
-- armed as a one-shot timer for the time left, so that a late turn of the loop delays one run
-- and never the ones after it (a repeating uv timer would carry every delay forward).
-- run_now: a first run at once (the first round /health/ready waits for), then the schedule,
-- whose first due time is at least half an interval later.
function M:schedule(inst, run_now)
  if inst.timer then inst.timer:stop() inst.timer = nil end
  if not inst.enabled or inst.error or self.stopping then return end
  local iv = inst.interval
  local off = phase(inst.name) * iv
  -- the first due time on the grid off + k * iv after t
  local function after(t)
    local due = off + math.ceil((t - off) / iv) * iv
    if due <= t then due = due + iv end
    return due
  end
  local arm
  arm = function(due)
    inst.due = due
    local function fire()
      if inst.timer then inst.timer:stop() end
      inst.timer = nil
      -- a timer counts from the loop's cached time, older than now after a long turn: it can
      -- fire early, so what is left is waited again
      local now = core.now()
      if due - now > 0.001 then inst.timer = core.timer(due - now, 0, fire) return end
      -- the next one on the grid; a turn late by more than an interval skips what it missed
      local nxt = due + iv
      if nxt <= now then nxt = after(now) end
      arm(nxt)
      self:execute(inst)
    end
    inst.timer = core.timer(math.max(0, due - core.now()), 0, fire)
  end
  if run_now then
    inst.timer = core.timer(0, 0, function()
      if inst.timer then inst.timer:stop() end
      inst.timer = nil
      arm(after(core.now() + iv / 2))
      self:execute(inst)
    end)
  else
    arm(after(core.now()))
  end
end

-- How often the state stores' health (agent.store_status) is looked at, so that /health/ready
-- changes within that when a store starts or stops failing (a check's result republishes too).
local STORE_POLL = 1

function M:start()
  self.started = true
  for _, inst in pairs(self.instances) do self:schedule(inst, true) end
  self:check_first_round()
  self.store_epoch = store_status.epoch()
  if self.store_timer then self.store_timer:stop() end
  self.store_timer = core.timer(STORE_POLL, STORE_POLL, function()
    local e = store_status.epoch()
    if e ~= self.store_epoch then
      self.store_epoch = e
      self.on_update()
    end
  end)
end

-- Ends the span of one attempt of inst with its result r (OpenTelemetry: error when unhealthy).
local function end_span(span, inst, r)
  if T.recording(span) then
    T.set(span, "beagle.check.name", inst.name)
    T.set(span, "beagle.check.plugin", inst.plugin)
    T.set(span, "beagle.check.status", r.status)
    T.set(span, "beagle.check.attempt", r.attempts or 1)
    if type(r.response_time) == "number" then T.set(span, "beagle.check.duration", r.response_time) end
    if r.message then T.set(span, "beagle.check.message", util.redact(r.message)) end
  end
  -- what leaves for a collector has no secret or URL credential in it (util.redact, as routes)
  local bad = r.status == "unhealthy"
  T.finish(span, bad and "error" or nil, bad and util.redact(r.message or r.error or "unhealthy") or nil)
end

-- The instance that holds run now: a reload that rebuilt inst while the run was in flight
-- moved the run (and whoever waits for its result) to the new instance of that name.
function M:holder(inst, run)
  local cur = self.instances[inst.name]
  if cur and cur.running == run then return cur end
  return inst
end

-- Runs one instance now (with its retries); done(inst, result), when given, is called with the
-- next result the instance records (this run's, or the one under way's: GET
-- /health/{name}?run=1 and `beagle check` do not start a second), possibly before execute
-- returns (a misconfigured check, a dependency that is down). A failed attempt is retried after
-- inst.retry_delay (a timer: the loop serves meanwhile), never back to back; the instance
-- counts as running while it waits, so its schedule does not start another.
function M:execute(inst, done)
  if done then
    inst.waiters = inst.waiters or {}
    inst.waiters[#inst.waiters + 1] = done
  end
  if inst.running or inst.waiting or inst.dep_wait then
    if not done and self.metrics then
      self.metrics.increment_counter("beagle_check_skipped_total", 1, { check = inst.name })
    end
    return
  end
  if inst.error then
    self:notify(inst, inst.last)
    return
  end
  -- a dependency that has not reported yet (the first round) is waited for; the instance is
  -- looked up again by name then (a reload may have replaced it)
  local pending = self:pending_dependency(inst)
  if pending then
    inst.dep_wait = true
    pending.waiters = pending.waiters or {}
    local name = inst.name
    pending.waiters[#pending.waiters + 1] = function()
      local cur = self.instances[name]
      if not cur or not cur.dep_wait then return end
      cur.dep_wait = nil
      if self.stopping then self:notify(cur, cur.last) else self:execute(cur) end
    end
    return
  end
  -- a check whose dependency is down says so instead of piling on (and does not run)
  local down = self:failed_dependency(inst)
  if down then
    local dl = down.last
    self:record(inst, { status = "unknown", response_time = 0, dependency = down.name,
      message = ("dependency %s is %s%s"):format(down.name, dl.dependency and "unavailable" or dl.status,
        dl.message and (": " .. dl.message) or "") })
    return
  end
  local attempt = 0
  local first = core.now()
  local run = {}
  local try
  try = function(at)
    attempt = attempt + 1
    local rec = self.plugins:get(at.plugin)
    if not rec then
      return self:record(at, { status = "unknown", message = ("plugin %q is not loaded"):format(at.plugin),
        response_time = 0 })
    end
    local started = core.now()
    -- each attempt is a span "check <name>", the parent of the plugin's spans and requests
    local span = T.start("check " .. at.name, "internal")
    run.script = rec.script
    at.running = run
    local ok, id = pcall(rec.script.run, rec.script, "__run_check", { name = at.name },
      { timeout = at.timeout, budget = at.budget, memory = at.memory, traceparent = T.traceparent(span) },
      function(fine, res)
        local cur = self:holder(at, run)
        cur.running = nil
        -- removed meanwhile, or rebuilt misconfigured (its error is its result): nothing to record
        if self.instances[cur.name] ~= cur or cur.error then
          local gone = cur.error and cur.last or { status = "unknown", message = "check removed", response_time = 0 }
          end_span(span, cur, gone)
          return self:notify(cur, gone)
        end
        local r
        if fine and type(res) == "table" and rank[res.status] then
          r = res
        else
          local why = fine and "check returned a malformed result" or tostring(res)
          r = { status = "unhealthy", message = why, error = why, response_time = core.now() - started }
        end
        r.attempts = attempt
        r.trace_id = T.trace_id(span)
        end_span(span, cur, r)
        -- A retry is for a fault that may pass: not for a run the agent ended for its
        -- instruction budget or memory (the same code does the same again), and only when it
        -- can start inside the interval (a check that timed out at its interval reports now),
        -- and only for the instance that is still the agent's.
        local killed = not fine and (res == "instruction budget exceeded" or res == "memory limit")
        local fits = core.now() - first + cur.retry_delay < cur.interval
        local live = self.instances[cur.name] == cur and not self.stopping
        if r.status == "unhealthy" and attempt <= cur.retries and live and not killed and fits then
          -- A timer counts from the loop's cached time, which is as old as the current turn
          -- (a turn that starts many runs is long), so it can fire early: the wait is checked
          -- against the clock and re-armed for what is left.
          local w = { result = r, due = core.now() + cur.retry_delay }
          w.finish = function(x) self:record(cur, x) end
          local function arm(delay)
            w.timer = core.timer(delay, 0, function()
              w.timer:stop()
              if cur.waiting ~= w then return end
              local left = w.due - core.now()
              if left > 0.001 then return arm(left) end
              cur.waiting = nil
              try(cur)
            end)
          end
          arm(cur.retry_delay)
          cur.waiting = w
          return
        end
        self:record(cur, r)
      end)
    if ok then run.id = id
    else
      at.running = nil
      local r = { status = "unknown", message = tostring(id), error = tostring(id), response_time = 0,
        attempts = attempt, trace_id = T.trace_id(span) }
      end_span(span, at, r)
      self:record(at, r)
    end
  end
  try(inst)
end

-- Calls and forgets whoever waits for inst's next result (execute's done).
function M.notify(_, inst, r)
  local ws = inst.waiters
  inst.waiters = nil
  for _, w in ipairs(ws or {}) do w(inst, r) end
end

-- A dependency of inst that is enabled, scheduled and has no result yet, or nil.
function M:pending_dependency(inst)
  for _, d in ipairs(inst.depends_on or {}) do
    local dep = self.instances[d]
    if dep and not dep.last and dep.enabled and not dep.error and (dep.timer or dep.running) then return dep end
  end
end

-- The first of inst's dependencies whose last result is unhealthy, or unknown because its own
-- dependency is down; nil when none is.
function M:failed_dependency(inst)
  for _, d in ipairs(inst.depends_on or {}) do
    local dep = self.instances[d]
    local l = dep and dep.last
    if l and (l.status == "unhealthy" or l.dependency) then return dep end
  end
end

-- Flap detection (after Nagios): the times the status changed within the flap window; more
-- changes than the threshold and the check is flapping, until no more than half as many are
-- left in the window. While it flaps, beagle_check_status holds the status it had when it began
-- (so alert rules over it neither fire nor resolve on each change: its notifications are held)
-- and beagle_check_flapping is 1; /health still shows each result, with flapping = true.
function M:flap(inst, r)
  local prev = inst.last_status
  inst.last_status = r.status
  if (inst.flap_threshold or 0) == 0 then -- off, or a misconfigured instance
    inst.flapping, inst.held, inst.changes = nil, nil, nil
    return
  end
  local now = core.now()
  local ch = inst.changes or {}
  inst.changes = ch
  if prev and prev ~= r.status then ch[#ch + 1] = now end
  if ch[1] and ch[1] < now - inst.flap_window then
    local kept = {}
    for _, t in ipairs(ch) do if t >= now - inst.flap_window then kept[#kept + 1] = t end end
    ch = kept
    inst.changes = ch
  end
  if not inst.flapping and #ch > inst.flap_threshold then
    inst.flapping, inst.flapping_since, inst.held = true, core.wall(), prev
    self.log(2, "check is flapping: its notifications are held", { check = inst.name,
      changes = tostring(#ch), window = tostring(inst.flap_window) .. "s", held = prev })
  elseif inst.flapping and #ch <= math.floor(inst.flap_threshold / 2) then
    inst.flapping, inst.flapping_since, inst.held = nil, nil, nil
    self.log(1, "check stopped flapping", { check = inst.name, status = r.status })
  end
end

function M:record(inst, r)
  r.name = inst.name
  r.timestamp = core.wall()
  self:flap(inst, r)
  r.flapping = inst.flapping
  inst.last = r
  inst.runs = (inst.runs or 0) + 1
  inst.history = inst.history or {}
  table.insert(inst.history, 1, { status = r.status, message = r.message, response_time = r.response_time,
    timestamp = r.timestamp, attempts = r.attempts, trace_id = r.trace_id })
  if #inst.history > HISTORY then inst.history[#inst.history] = nil end
  local m = self.metrics
  if m then
    local labels = { check = inst.name }
    m.record_histogram("beagle_check_duration_seconds", r.response_time or 0, labels)
    m.increment_counter("beagle_check_runs_total", 1, { check = inst.name, status = r.status })
    local shown = inst.flapping and inst.held or r.status
    for st in pairs(rank) do
      m.set_gauge("beagle_check_status", st == shown and 1 or 0, { check = inst.name, status = st })
    end
    m.set_gauge("beagle_check_flapping", inst.flapping and 1 or 0, { check = inst.name })
  end
  if r.status ~= "healthy" then
    -- the ids of the attempt's span, which has ended (a line written inside a span gets them
    -- from the log itself)
    self.log(r.status == "unhealthy" and 2 or 1, "check " .. r.status,
      { check = inst.name, message = r.message or "", attempts = tostring(r.attempts or 1),
        trace_id = not T.trace_id() and r.trace_id or nil })
  end
  self:check_first_round()
  self.on_update()
  self:notify(inst, r)
end

function M:check_first_round()
  if self.first_round_done then return end
  for _, inst in pairs(self.instances) do
    if inst.enabled and not inst.last then return end
  end
  self.first_round_done = true
end

-- Overall status: the worst of the enabled checks' last results.
function M:overall()
  local worst = "healthy"
  for _, inst in pairs(self.instances) do
    if inst.enabled and inst.last and rank[inst.last.status] > rank[worst] then worst = inst.last.status end
  end
  return worst
end

-- /health/detailed shows each check's last DETAILED_HISTORY results (with 1,000 checks, all 100
-- each would make every request encode ~15 MB on the loop); /health/{name} shows all it keeps.
local DETAILED_HISTORY = 10

local function check_object(inst, detailed, nhistory)
  local r = inst.last or { status = "unknown", message = "not run yet" }
  local o = {
    name = inst.name, status = r.status, message = r.message, response_time = r.response_time,
    timestamp = r.timestamp and util.iso8601(r.timestamp) or nil,
  }
  if detailed then
    o.details = r.details
    o.tags = inst.tags
    o.plugin = inst.plugin
    o.critical = inst.critical
    o.enabled = inst.enabled
    o.interval = inst.interval
    o.timeout = inst.timeout
    o.retries = inst.retries
    o.retry_delay = inst.retry_delay
    o.budget = inst.budget
    o.memory = inst.memory
    o.attempts = r.attempts
    o.trace_id = r.trace_id -- of the last attempt's span "check <name>"
    o.error = inst.error or r.error
    o.runs = inst.runs
    o.depends_on = json.array(inst.depends_on or {})
    o.dependency = r.dependency -- the dependency that is down, when the check did not run for it
    o.flapping = inst.flapping == true
    o.flapping_since = inst.flapping_since and util.iso8601(inst.flapping_since) or nil
    o.held_status = inst.flapping and inst.held or nil
    o.status_changes = inst.changes and #inst.changes or 0
    local h = json.array()
    for i, e in ipairs(inst.history or {}) do
      if i > (nhistory or HISTORY) then break end
      h[i] = { status = e.status, message = e.message, response_time = e.response_time,
        timestamp = util.iso8601(e.timestamp), attempts = e.attempts, trace_id = e.trace_id }
    end
    o.history = h
    o.history_kept = #(inst.history or {})
  end
  return o
end

-- The instances by name (kept until the set changes: sync and remove drop it).
function M:sorted()
  if self.sorted_cache then return self.sorted_cache end
  local names = util.sorted_keys(self.instances)
  local out = {}
  for _, n in ipairs(names) do out[#out + 1] = self.instances[n] end
  self.sorted_cache = out
  return out
end

-- /health: (http status, body), redacted (util.redact). It is rendered again after results come
-- in, so each check's part is kept as JSON until its next result (or until the secrets to
-- redact change): a result costs the encoding of one check, not of all of them.
function M:health_json()
  local status = self:overall()
  local parts, ver = {}, util.secrets_version
  for _, inst in ipairs(self:sorted()) do
    if inst.enabled then
      if not inst.frag or inst.frag_last ~= inst.last or inst.frag_version ~= ver then
        inst.frag = util.redact(json.encode(check_object(inst, false)))
        inst.frag_last, inst.frag_version = inst.last, ver
      end
      parts[#parts + 1] = inst.frag
    end
  end
  -- json.encode's order: keys sorted
  return status == "unhealthy" and 503 or 200,
    '{"checks":[' .. table.concat(parts, ",") .. '],"status":' .. json.encode(status)
      .. ',"timestamp":' .. json.encode(util.iso8601(core.wall())) .. "}"
end

-- /health/ready: 503 until the first round is done and while a critical check is unhealthy;
-- 200 "degraded" with the reasons while a state store is not kept or fails to write (the agent
-- serves, but what it decides is not durable: agent.store_status), else 200 "ready".
function M:ready_json()
  if not self.first_round_done then
    return 503, json.encode { status = "not ready", reason = "first round of checks not finished" }
  end
  local failing = json.array()
  for _, inst in ipairs(self:sorted()) do
    if inst.enabled and inst.critical and inst.last and inst.last.status == "unhealthy" then
      failing[#failing + 1] = inst.name
    end
  end
  if #failing > 0 then
    return 503, json.encode { status = "not ready", reason = "critical checks unhealthy", checks = failing }
  end
  local problems = store_status.problems()
  if #problems > 0 then
    local stores = json.array()
    for i, p in ipairs(problems) do stores[i] = p end
    return 200, json.encode { status = "degraded", reason = "state store not durable", stores = stores }
  end
  return 200, json.encode { status = "ready" }
end

function M:detailed(extra)
  local checks = json.array()
  for _, inst in ipairs(self:sorted()) do checks[#checks + 1] = check_object(inst, true, DETAILED_HISTORY) end
  local o = extra or {}
  o.status = self:overall()
  -- a state store that is not kept or fails makes the whole at least degraded
  local stores = json.array()
  for i, st in ipairs(store_status.detailed()) do
    stores[i] = st
    if st.problem and rank[o.status] < rank.degraded then o.status = "degraded" end
  end
  o.stores = stores
  o.timestamp = util.iso8601(core.wall())
  o.checks = checks
  return o
end

function M:check_json(name)
  local inst = self.instances[name]
  if not inst then return nil end
  return check_object(inst, true)
end

-- Cancels scheduling; returns the number of runs still in flight.
function M:stop()
  self.stopping = true
  if self.store_timer then self.store_timer:stop() self.store_timer = nil end
  local n = 0
  for _, inst in pairs(self.instances) do
    if inst.timer then inst.timer:stop() inst.timer = nil end
    -- a retry not started yet is not started: its last attempt's failure is the result
    cancel_wait(inst, true)
    if inst.dep_wait then -- its dependency's first result will not be waited for
      inst.dep_wait = nil
      self:notify(inst, inst.last or { status = "unknown", message = "agent stopping", response_time = 0 })
    end
    if inst.running then n = n + 1 end
  end
  return n
end

function M:in_flight()
  local n = 0
  for _, inst in pairs(self.instances) do if inst.running then n = n + 1 end end
  return n
end

return M
