-- agent.rules.engine: alert instance states (after Prometheus alerting rules) and, through
-- agent.rules.policy, when they notify (after Alertmanager). Pure Lua, no I/O: time is the
-- injected now(), persistence the optional injected store, delivery the injected notify(n).
-- The contract with dsl.lua and the store is lua/agent/rules/CONTRACT.md.
--
--   local e = Engine.new { now = fn, settings = {...}, store = st, notify = fn, render = fn,
--                          match = fn, resolved_retention = 900 }
--   e:set_rules(rules, routes, inhibits) -> true | nil, err   e:set_silences(list)
--   e:evaluate(name, samples, err) -> true | nil, err          e:tick() -> notifications sent
--   e:alerts{ resolved = bool } -> instance copies             e:rule_state(name) -> table | nil
--   e:test(name, samples) -> notifications, instances | nil, err
--   e.suppressed = { cooldown, hourly_limit, silenced, inhibited, store_unavailable (past the
--   UNSAVED_MAX notifications held while the store cannot commit) }, e.sent, e.store_errors,
--   e.notify_errors, e.render_errors: counters for metrics.
--   e.trace_id: the trace id (hex) of the evaluation round under way, set by the caller around
--   its evaluate calls; an instance that starts firing keeps it (inst.trace_id, in e:alerts()
--   and in the alerts of notifications), not persisted: one restored after a restart has none.
--
-- Instance, per rule and series: labels = series labels, then the rule's static labels, then
-- alertname = rule name and severity = rule severity (later wins). Fingerprint: FNV-1a 64 over
-- the canonical label string (labels sorted by name, each "name\0value\0"), 16 lowercase hex
-- digits; alertname is a label, so the rule name is part of it.
--
-- States: inactive -> pending when the condition holds (active_at = now) -> firing once it has
-- held `duration` (starts_at = now; duration 0 fires in the same evaluation) -> resolved when it
-- no longer holds (ends_at = now). keep_firing_for: a firing instance resolves only after its
-- condition has been false for that long. clear_threshold: once firing, the condition is tested
-- against clear_threshold with the same operator (ignored for == and !=). A pending instance whose
-- condition fails is forgotten without notifying; a series absent from the samples, or a NaN
-- value, counts as false. A resolved instance becomes pending again when the condition holds
-- (keeping the starts_at and ends_at of the episode that ended until it fires again: a resolve
-- still owed to a channel carries them), and is dropped `resolved_retention` seconds (900) after
-- ends_at. An evaluation error changes no state.
--
-- Restart: an instance restored from the store (pending or firing) keeps its state while its
-- series is absent, until it is seen or `restore_grace` (300 s; at least two of its rule's
-- evaluation intervals and two history samples, and for an anomaly rule min_samples + 1 of
-- them) has passed since the restore: right after a start, history has no
-- sample yet, and absence there says nothing about the value (Prometheus restores its `for`
-- state with a grace period too). Only an evaluation that saw data can clear it before that.
local policy = require("agent.rules.policy")

local bit = require("bit")
local bxor, tohex = bit.bxor, bit.tohex
local byte, floor = string.byte, math.floor

local Engine = {}
Engine.__index = Engine
Engine.policy = policy

local RETENTION = 900
local UNSAVED_MAX = 1000 -- notifications held while the store cannot commit them
local RESTORE_GRACE = 300
local TWO32 = 4294967296

-- FNV-1a 64 on two 32-bit halves held in doubles (every intermediate stays below 2^53):
-- h * 0x100000001b3 = h * 0x1b3 + (h << 40) mod 2^64.
function Engine.fnv1a64(s)
  local hi, lo = 0xcbf29ce4, 0x84222325
  for i = 1, #s do
    lo = bxor(lo, byte(s, i)) % TWO32
    local l = lo * 0x1b3
    hi = (hi * 0x1b3 + floor(l / TWO32) + (lo % 16777216) * 256) % TWO32
    lo = l % TWO32
  end
  return tohex(hi, 8) .. tohex(lo, 8)
end

-- The same in C when the core is there (the agent, specs with BEAGLE_LIB): 30x faster on the
-- long strings of dedup keys. Engine.fnv1a64_lua stays the reference.
Engine.fnv1a64_lua = Engine.fnv1a64
do
  local ok_ffi, ffi = pcall(require, "ffi")
  local ok_m, metrics = pcall(require, "agent.metrics")
  if ok_ffi and ok_m and metrics.C then
    pcall(ffi.cdef, "void bg_fnv1a64_hex(const char *s, size_t n, char *out);")
    local C, buf = metrics.C, ffi.new("char[16]")
    if pcall(function() return C.bg_fnv1a64_hex end) then
      function Engine.fnv1a64(s)
        C.bg_fnv1a64_hex(s, #s, buf)
        return ffi.string(buf, 16)
      end
    end
  end
end

function Engine.canonical(labels)
  local ks = {}
  for k in pairs(labels) do ks[#ks + 1] = k end
  table.sort(ks)
  local parts = {}
  for i, k in ipairs(ks) do parts[i] = k .. "\0" .. tostring(labels[k]) .. "\0" end
  return table.concat(parts)
end

function Engine.fingerprint(labels)
  return Engine.fnv1a64(Engine.canonical(labels))
end

-- Label matching for routes, silences and inhibits until dsl.match exists: swap it by assigning
-- Engine.match = dsl.match (or pass Engine.new{ match = fn }). A matcher is "v" (equal), "!v"
-- (negation of any form), "glob*" ("*" = any run of characters) or "~pat" (a Lua pattern
-- anchored at both ends); a label the instance lacks reads "".
local function glob_to_pattern(g)
  return "^" .. g:gsub("[%^%$%(%)%%%.%[%]%+%-%?]", "%%%0"):gsub("%*", ".*") .. "$"
end

local function match_one(m, v)
  if m:sub(1, 1) == "!" then return not match_one(m:sub(2), v) end
  if m:sub(1, 1) == "~" then return v:find("^(" .. m:sub(2) .. ")$") ~= nil end
  if m:find("*", 1, true) then return v:find(glob_to_pattern(m)) ~= nil end
  return v == m
end

function Engine.local_match(matchers, labels)
  for k, m in pairs(matchers) do
    if not match_one(tostring(m), tostring(labels[k] or "")) then return false end
  end
  return true
end

Engine.match = Engine.local_match

local function copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy(v) end
  return c
end

-- The public (and persisted) view of an instance: everything but the group link.
local function copy_instance(inst)
  return { fingerprint = inst.fingerprint, name = inst.name, labels = copy(inst.labels),
    state = inst.state, value = inst.value, active_at = inst.active_at, starts_at = inst.starts_at,
    ends_at = inst.ends_at, last_eval = inst.last_eval, keep_since = inst.keep_since,
    last_notified = copy(inst.last_notified), annotations = copy(inst.annotations),
    deleted = inst.deleted, trace_id = inst.trace_id }
end

-- An alert as a notification carries it: the instance's fields at this moment. Its labels and
-- annotations tables are shared, not copied: an instance's labels never change (they are its
-- identity) and annotate() replaces the annotations table rather than changing it, so the
-- snapshot stays true; nothing downstream writes into them (the store encodes them, channels
-- get a copy in their own state). Only the fields docs/channels.md lists (status is set by the
-- caller): each one more is encoded into the outbox row and copied into the channel's state
-- on every delivery attempt.
local function alert_snapshot(inst)
  return { fingerprint = inst.fingerprint, name = inst.name, labels = inst.labels,
    value = inst.value, active_at = inst.active_at, starts_at = inst.starts_at,
    ends_at = inst.ends_at, annotations = inst.annotations, trace_id = inst.trace_id }
end

-- The evaluation interval of a rule: its `every`, else the setting.
local function interval_of(self, name)
  local r = self.rules[name]
  return r and tonumber(r.every) or tonumber(self.settings.alert_evaluation_interval) or 60
end

-- How long after a restore an absent series keeps a restored instance of rule `name` as it
-- was: restore_grace, and at least the time for two evaluations and two history samples (an
-- anomaly rule's score needs min_samples of them first).
local function grace_of(self, name)
  local r = self.rules[name]
  local step = tonumber(self.settings.metrics_collection_interval) or 0
  local g = math.max(self.restore_grace, 2 * interval_of(self, name), 2 * step)
  if r and r.kind == "anomaly" then g = math.max(g, ((tonumber(r.min_samples) or 0) + 1) * step) end
  return g
end

function Engine.new(opts)
  opts = opts or {}
  local self = setmetatable({
    now = opts.now or os.time,
    settings = opts.settings or {},
    store = opts.store,
    notify = opts.notify or function() end,
    render = opts.render or function(text) return text end,
    retention = opts.resolved_retention or RETENTION,
    restore_grace = opts.restore_grace or RESTORE_GRACE,
    logger = opts.log or function() end,
    rules = {}, rstate = {}, routes = {}, inhibits = {}, silences = {},
    instances = {}, by_rule = {}, groups = {}, log = {}, dirty = {}, fpcache = {}, touched = {},
    direct_due = {},
    suppressed = { cooldown = 0, hourly_limit = 0, silenced = 0, inhibited = 0 },
    sent = 0, store_errors = 0, notify_errors = 0, render_errors = 0,
    hash = Engine.fnv1a64, snapshot = alert_snapshot,
  }, Engine)
  -- what direct channels (and their re-sends) get: a receiver that keeps alerts alive by their
  -- endsAt (Alertmanager) needs the interval of the rule behind each. The grouped channels' copies
  -- (e.snapshot) go without it: one more field in every outbox row costs its encoding.
  self.copy = function(inst)
    local c = alert_snapshot(inst)
    c.eval_interval = interval_of(self, inst.name)
    return c
  end
  self.match = opts.match or function(m, l) return Engine.match(m, l) end
  -- which channels are direct, asked once per channel and step (a flush asks per alert)
  local direct, known = opts.direct, {}
  self.direct_known = known
  self.direct = function(ch)
    if not direct then return false end
    local v = known[ch]
    if v == nil then
      v = direct(ch) and true or false
      known[ch] = v
    end
    return v
  end
  if self.store then self:restore() end
  return self
end

local function store_call(self, method, ...)
  local ok, res, err = pcall(self.store[method], self.store, ...)
  if not ok or res == nil and err ~= nil then
    self.store_errors = self.store_errors + 1
    self.last_store_error = tostring(ok and err or res)
    return nil
  end
  return res
end

local function rule_insts(self, name)
  local t = self.by_rule[name]
  if not t then t = {}; self.by_rule[name] = t end
  return t
end

local LIVE = { pending = true, firing = true, resolved = true }

-- Rebuilds instances and the notification log from store:load(). Groups are formed at set_rules.
-- Pending and firing instances are marked `restored` until an evaluation sees their series.
function Engine:restore()
  local data = store_call(self, "load") or {}
  local now = self.now()
  self.restored_at = now
  for _, s in ipairs(data.instances or {}) do
    if not s.deleted and type(s.fingerprint) == "string" and type(s.name) == "string" and LIVE[s.state]
      and not (s.state == "resolved" and s.ends_at and now - s.ends_at >= self.retention) then
      local inst = copy_instance(s)
      inst.labels = inst.labels or {}
      inst.annotations = inst.annotations or {}
      -- the write-ahead log, not the instance row, says what was notified
      inst.last_notified = {}
      if inst.state == "pending" or inst.state == "firing" then inst.restored = true end
      self.instances[inst.fingerprint] = inst
      rule_insts(self, inst.name)[inst.fingerprint] = inst
    end
  end
  local rows = copy(data.notified or {})
  table.sort(rows, function(a, b) return (a.at or 0) < (b.at or 0) end)
  for _, r in ipairs(rows) do
    if r.fingerprint and r.channel and r.at and not r.test then
      policy.record(self, r.fingerprint, r.channel, r.status or "firing", r.at)
      local inst = self.instances[r.fingerprint]
      if inst then inst.last_notified[r.channel] = r.at end
    end
  end
end

local function mark(self, inst)
  self.dirty[inst.fingerprint] = inst
  -- a changed instance may make its group owe a notification: the tick looks at it again
  local g = inst.group and self.groups[inst.group]
  if g then g.idle_until = nil end
end

local function forget(self, inst)
  local fp = inst.fingerprint
  if self.instances[fp] == inst then self.instances[fp] = nil end
  local t = self.by_rule[inst.name]
  if t and t[fp] == inst then t[fp] = nil end
  inst.deleted = true
  mark(self, inst)
end

-- Flushes due groups (all of them with `full`, else only those placed into since the last step,
-- so that an evaluation costs what it touched), expires history (with `full`), persists changed
-- instances, then logs each notification and only then delivers it (write-ahead).
function Engine:_step(now, full)
  if not full and next(self.touched) == nil and next(self.dirty) == nil and next(self.direct_due) == nil then
    return 0
  end
  local out = {}
  -- channels come and go with the configuration: asked afresh each step
  if next(self.direct_known) ~= nil then
    for k in pairs(self.direct_known) do self.direct_known[k] = nil end
  end
  policy.flush_direct(self, now, out)
  policy.flush(self, now, out, not full and self.touched or nil)
  self.touched = {}
  if self.unsaved then
    -- notifications whose rows did not commit at an earlier step go first, in their order
    local held = self.unsaved
    self.unsaved = nil
    for _, n in ipairs(out) do held[#held + 1] = n end
    out = held
  end
  if full then
    for _, inst in pairs(self.instances) do
      if inst.state == "resolved" and not inst.group and now - (inst.ends_at or now) >= self.retention then
        forget(self, inst)
      end
    end
    policy.prune_log(self, now)
  end
  local list
  if next(self.dirty) ~= nil then
    if self.store then
      -- the instances themselves: the store writes them out now, in this step's transaction
      -- (and a store that keeps them, like memory_store, keeps copies)
      list = {}
      for _, inst in pairs(self.dirty) do list[#list + 1] = inst end
    end
    self.dirty = {}
  end
  -- the state change and its notification rows (the outbox) commit together: after a crash
  -- either both are there (and the outbox delivers) or neither (and the transition reruns)
  if self.store and (list or #out > 0) then
    local st = self.store
    local function write()
      if list then assert(st:save_instances(list)) end
      if st.log_notifications and #out > 1 then
        local ids = assert(st:log_notifications(out))
        for i, n in ipairs(out) do n.id = ids[i] end
      else
        for _, n in ipairs(out) do
          local id = assert(st:log_notification(n))
          if type(id) == "number" then n.id = id end
        end
      end
      return true
    end
    local committed
    if st.tx then committed = store_call(self, "tx", write) ~= nil
    else
      local ok, err = pcall(write)
      committed = ok
      if not ok then
        self.store_errors = self.store_errors + 1
        self.last_store_error = tostring(err)
      end
    end
    if not committed then
      -- nothing leaves that is not in the outbox: the instances and notifications wait for the
      -- next step to write them again (a full disk, a locked file; the store logs it), the
      -- newest UNSAVED_MAX notifications at most
      for _, inst in ipairs(list or {}) do
        if self.dirty[inst.fingerprint] == nil then self.dirty[inst.fingerprint] = inst end
      end
      for _, n in ipairs(out) do n.id = nil end
      if #out > UNSAVED_MAX then
        -- counted and logged (once while the store stays down), never dropped unseen
        local dropped = #out - UNSAVED_MAX
        out = { unpack(out, dropped + 1) }
        self.suppressed.store_unavailable = (self.suppressed.store_unavailable or 0) + dropped
        if not self.unsaved_dropping then
          self.unsaved_dropping = true
          pcall(self.logger, 3, "notifications dropped: the store cannot commit them", {
            dropped = tostring(dropped), kept = tostring(UNSAVED_MAX), error = tostring(self.last_store_error or "") })
        end
      end
      self.unsaved = out
      return 0
    end
  end
  self.unsaved_dropping = nil
  for _, n in ipairs(out) do
    local ok = pcall(self.notify, n)
    if ok then self.sent = self.sent + 1 else self.notify_errors = self.notify_errors + 1 end
  end
  return #out
end

-- Rules replace the previous set. An instance is kept (state, times, notification history) when
-- its rule still exists, is enabled, and still gives it the same alertname, severity and static
-- labels; otherwise a firing one resolves (and its resolve is sent), a pending one is dropped, a
-- resolved one stays for the history. Duplicate names are refused and change nothing.
function Engine:set_rules(rules, routes, inhibits)
  local map, order = {}, {}
  for i, r in ipairs(rules or {}) do
    if type(r) ~= "table" or type(r.name) ~= "string" then
      error(("bad argument #1 to 'set_rules' (rule %d has no name)"):format(i), 2)
    end
    if map[r.name] then return nil, ("duplicate rule name %q"):format(r.name) end
    map[r.name], order[#order + 1] = r, r.name
  end
  local now = self.now()
  self.rules, self.rule_order = map, order
  self.routes, self.inhibits = routes or {}, inhibits or {}
  self.fpcache = {}
  local rs = {}
  for name in pairs(map) do rs[name] = self.rstate[name] or {} end
  self.rstate = rs
  for _, inst in pairs(self.instances) do
    local r = map[inst.name]
    local keep = r and r.enabled ~= false and inst.labels.alertname == r.name
      and inst.labels.severity == (r.severity or "warning")
    if keep then
      for k, v in pairs(r.labels or {}) do
        if k ~= "alertname" and k ~= "severity" and inst.labels[k] ~= tostring(v) then keep = false end
      end
    end
    if not keep then
      if inst.state == "firing" then
        inst.state, inst.ends_at, inst.keep_since = "resolved", now, nil
        mark(self, inst)
      elseif inst.state == "pending" then
        inst.state = "inactive"
        forget(self, inst)
      end
    end
  end
  policy.regroup(self, now)
  self:_step(now, true)
  return true
end

-- Silences: { { matchers, starts, ends, ... } }, replacing the previous list; checked at each flush.
function Engine:set_silences(list)
  self.silences = list or {}
end

local function holds(op, v, t)
  if op == ">" then return v > t
  elseif op == "<" then return v < t
  elseif op == ">=" then return v >= t
  elseif op == "<=" then return v <= t
  elseif op == "==" then return v == t
  elseif op == "!=" then return v ~= t
  end
  error(("unknown condition %q"):format(tostring(op)))
end

local function to_value(v)
  if type(v) == "boolean" then return v and 1 or 0 end
  v = tonumber(v)
  if v ~= v then return nil end
  return v
end

-- Moves one instance given this evaluation's value (nil: series absent). Returns true when
-- something that is persisted changed.
local function transition(rule, inst, value, now)
  local before, kept = inst.state, inst.keep_since
  local active = false
  if value ~= nil then
    local op, t = rule.condition or ">", rule.threshold
    if before == "firing" and rule.clear_threshold ~= nil and op ~= "==" and op ~= "!=" then
      t = rule.clear_threshold
    end
    active = holds(op, value, t)
    inst.value = value
  end
  inst.last_eval = now
  if active then
    inst.keep_since = nil
    if before ~= "pending" and before ~= "firing" then
      -- starts_at and ends_at stay those of the last episode until it fires again: a resolve
      -- still owed to a channel (its group not flushed yet) carries them
      inst.state, inst.active_at = "pending", now
    end
    if inst.state == "pending" and now - inst.active_at >= (rule.duration or 0) then
      inst.state, inst.starts_at, inst.ends_at = "firing", now, nil
    end
  elseif before == "pending" then
    inst.state = "inactive"
  elseif before == "firing" then
    inst.keep_since = inst.keep_since or now
    if now - inst.keep_since >= (rule.keep_firing_for or 0) then
      inst.state, inst.ends_at, inst.keep_since = "resolved", now, nil
    end
  end
  return inst.state ~= before or inst.keep_since ~= kept
end

local TEMPLATES = { "message", "summary", "description" }

local function annotate(self, rule, inst)
  local ctx = { value = inst.value, threshold = rule.threshold, labels = inst.labels,
    duration = rule.duration or 0, name = rule.name, severity = rule.severity }
  local a = {}
  for _, k in ipairs(TEMPLATES) do
    local t = rule[k]
    if t ~= nil then
      local ok, s = pcall(self.render, t, ctx)
      if ok and s ~= nil then
        a[k] = s
      else
        a[k] = t
        self.render_errors = self.render_errors + 1
      end
    end
  end
  inst.annotations = a
end

local function instance_labels(rule, series)
  local l = {}
  for k, v in pairs(series or {}) do l[k] = tostring(v) end
  for k, v in pairs(rule.labels or {}) do l[k] = tostring(v) end
  l.alertname = rule.name
  l.severity = rule.severity or "warning"
  return l
end

-- Labels and fingerprint of a sample, cached on the identity of its labels table (weakly), so a
-- caller that reuses label tables across evaluations pays for the hash once.
local function identify(self, rule, series)
  if series == nil then
    local l = instance_labels(rule, nil)
    return l, Engine.fingerprint(l)
  end
  local cache = self.fpcache[rule.name]
  if not cache then
    cache = setmetatable({}, { __mode = "k" })
    self.fpcache[rule.name] = cache
  end
  local hit = cache[series]
  if hit then return hit[1], hit[2] end
  local l = instance_labels(rule, series)
  local fp = Engine.fingerprint(l)
  cache[series] = { l, fp }
  return l, fp
end

local function new_instance(rule, labels, fp)
  return { fingerprint = fp, name = rule.name, labels = labels, state = "inactive",
    last_notified = {}, annotations = {} }
end

-- One evaluation of rule `name` at now(): samples = { { labels = {...}, value = n }, ... }.
-- With `err` (the evaluation failed) no state changes and the error is kept for rule_state.
function Engine:evaluate(name, samples, err)
  return self:_evaluate(name, err, samples and #samples or 0, samples)
end

-- The same from columns (agent.query's last_columns): n series, vals a 0-based array of
-- values, labs a 1-based list of label tables (reused between calls: their identity keys the
-- fingerprint cache). A quiet series costs a comparison and allocates nothing.
function Engine:evaluate_columns(name, n, vals, labs)
  return self:_evaluate(name, nil, n, nil, vals, labs)
end

function Engine:_evaluate(name, err, n, samples, vals, labs)
  local rule = self.rules[name]
  if not rule then return nil, ("unknown rule %q"):format(tostring(name)) end
  local now = self.now()
  local rs = self.rstate[name]
  rs.last_eval = now
  if err ~= nil then
    rs.last_error = tostring(err)
    return true
  end
  rs.last_error = nil
  if rule.enabled == false then return true end
  local insts = rule_insts(self, name)
  local any = next(insts) ~= nil
  -- instances this evaluation saw carry its stamp (no table per evaluation): the others are
  -- missing their series. A rule without instances has none to miss.
  local stamp
  if any then
    stamp = (self.eval_stamp or 0) + 1
    self.eval_stamp = stamp
  end
  local op, threshold = rule.condition or ">", rule.threshold
  for i = 1, n do
    local v
    if vals then v = vals[i - 1] else v = to_value(samples[i].value) end
    if v ~= v then v = nil end
    -- the common case, a quiet series of a quiet rule, costs one comparison; a quiet series
    -- without an instance (the rule has others) a lookup, and never a new instance
    local cond = v ~= nil and holds(op, v, threshold)
    local labels, fp, inst
    if any or cond then
      labels, fp = identify(self, rule, vals and labs[i] or samples[i].labels)
      inst = insts[fp]
    end
    if inst or cond then
      inst = inst or new_instance(rule, labels, fp)
      inst.seen = stamp
      if inst.restored then
        -- seen again after a restart: a firing one is sent again to the channels that keep
        -- alerts alive by re-sends (Alertmanager), as Prometheus does after its restart
        inst.restored = nil
        if inst.state == "firing" then policy.resend_direct(self, inst) end
      end
      local before, value = inst.state, inst.value
      local changed = transition(rule, inst, v, now)
      -- the trace of the evaluation that fired it (e.trace_id, set by the caller for a round)
      if inst.state == "firing" and before ~= "firing" then inst.trace_id = self.trace_id end
      if inst.state == "inactive" then
        if before ~= "inactive" then forget(self, inst) end
      else
        if before == "inactive" then
          insts[fp], self.instances[fp] = inst, inst
        end
        if changed or inst.value ~= value or inst.state ~= before then annotate(self, rule, inst) end
        if changed then mark(self, inst) end
        if inst.state ~= before then policy.place(self, inst, now) end
      end
    end
  end
  if stamp then
    local hold = self.restored_at and now - self.restored_at < grace_of(self, name)
    for _, inst in pairs(insts) do
      if inst.seen ~= stamp and (inst.state == "pending" or inst.state == "firing")
        and not (hold and inst.restored) then
        local before = inst.state
        if transition(rule, inst, nil, now) then mark(self, inst) end
        if inst.state == "inactive" then
          forget(self, inst)
        elseif inst.state ~= before then
          policy.place(self, inst, now)
        end
      end
    end
  end
  self:_step(now)
  return true
end

-- Group timers (group_wait, group_interval, repeat_interval), resolved-history expiry.
-- Returns the number of notifications sent.
function Engine:tick()
  return self:_step(self.now(), true)
end

local function by_name_fp(a, b)
  if a.name ~= b.name then return a.name < b.name end
  return a.fingerprint < b.fingerprint
end

-- Pending and firing instances (and resolved ones still kept, with { resolved = true }).
function Engine:alerts(opts)
  local all = opts and opts.resolved
  local out = {}
  for _, inst in pairs(self.instances) do
    if inst.state == "pending" or inst.state == "firing" or (all and inst.state == "resolved") then
      local c = copy_instance(inst)
      -- a pending instance keeps the times of its last episode (for a resolve still owed): not its own
      if c.state == "pending" then c.starts_at, c.ends_at = nil, nil end
      out[#out + 1] = c
    end
  end
  table.sort(out, by_name_fp)
  return out
end

-- Instances by state, without copying any: { pending = n, firing = n, resolved = n, inactive = n }.
function Engine:counts()
  local c = { pending = 0, firing = 0, resolved = 0, inactive = 0 }
  for _, inst in pairs(self.instances) do
    local st = inst.state
    c[st] = (c[st] or 0) + 1
  end
  return c
end

-- { state = "firing"|"pending"|"inactive"|"disabled", last_eval, last_error, instances = n }
-- where n counts pending and firing instances; nil for an unknown rule.
function Engine:rule_state(name)
  local rule, rs = self.rules[name], self.rstate[name]
  if not rule then return nil end
  local state, n = "inactive", 0
  for _, inst in pairs(self.by_rule[name] or {}) do
    if inst.state == "firing" then state, n = "firing", n + 1
    elseif inst.state == "pending" then
      n = n + 1
      if state ~= "firing" then state = "pending" end
    end
  end
  if rule.enabled == false then state = "disabled" end
  return { state = state, last_eval = rs.last_eval, last_error = rs.last_error, instances = n }
end

-- Evaluates once on copies, changing nothing (no state, counter, store or notify call). Returns
-- the test notifications (test = true, one per channel of the routing) holding every series whose
-- condition holds now against `threshold` (duration, silences and limits are not applied), and
-- the copies of every evaluated instance in the state this evaluation would have moved it to.
function Engine:test(name, samples)
  local rule = self.rules[name]
  if not rule then return nil, ("unknown rule %q"):format(tostring(name)) end
  local now = self.now()
  local insts = self.by_rule[name] or {}
  local alerts, evaluated = {}, {}
  for _, s in ipairs(samples or {}) do
    local v = to_value(s.value)
    local labels = instance_labels(rule, s.labels)
    local fp = Engine.fingerprint(labels)
    local inst = insts[fp] and copy_instance(insts[fp]) or new_instance(rule, copy(labels), fp)
    transition(rule, inst, v, now)
    local probe = { annotations = {}, value = v, labels = inst.labels }
    annotate(self, rule, probe)
    inst.annotations = probe.annotations
    local c = copy_instance(inst)
    c.test = true
    if c.state == "pending" then c.starts_at, c.ends_at = nil, nil end
    evaluated[#evaluated + 1] = c
    if v ~= nil and holds(rule.condition or ">", v, rule.threshold) then
      local a = copy_instance(inst)
      a.status, a.test = "firing", true
      alerts[#alerts + 1] = a
    end
  end
  return policy.test_notifications(self, rule, alerts, now), evaluated
end

-- The reference store, in memory (agent.rules.memory_store: its header is the store contract).
function Engine.memory_store()
  return require("agent.rules.memory_store").new()
end

return Engine
