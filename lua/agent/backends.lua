-- Metric backends in the agent: the config's `backend "prom" { plugin = "remote_write", url = ... }`
-- instances validated against their plugins; every collection interval a snapshot of the registry
-- (core.metrics_snapshot: C memory, shared by the backends that collect at that instant) cut
-- into batches; a buffer per backend (the backend kind of agent.queue, weighed in samples) that
-- sends them through the plugin's `send(batch, ctx)` in its sandboxed state (a collection's
-- batches several at a time, a collection only after the one before: each series in order), retries
-- with backoff while the target is down, and past backend_buffer_limit drops the oldest,
-- counted in beagle_backend_dropped_samples_total. A slow backend delays only itself: each
-- send is a run of its own plugin state and waits on the loop.
--
-- Trace and log backends (a plugin with signal = "traces" or "logs", or a list of both) take the
-- same path from the buffer on: every trace_export_interval, and early when the tracer's buffer
-- holds trace_batch_size items (core.trace_on_ready), the finished spans and log records are
-- taken out of the tracer (core.trace_take) in batches of trace_batch_size, each shared by every
-- backend of that signal (batch:share(): one more reference on the same C batch), weighed in
-- spans or records. The tracer records spans (logs) only while a backend of that signal runs.
-- A trace or log send runs outside any trace, so exporting spans makes none.
local core = require "agent.core"
local util = require "agent.util"
local Queue = require "agent.queue"
local instances = require "agent.instances"
local T = require "agent.trace"

local M = {}
M.__index = M

local DROPPED = "beagle_backend_dropped_samples_total"
local SENT = "beagle_backend_samples_total"
local SKIPPED = "beagle_backend_skipped_samples_total"

local LOSS = {
  dropped = "backend buffer full: dropping the oldest samples until a send succeeds",
  expired = "backend batches too old to send: dropped",
  failed = "backend refused a batch for good: dropped",
}

-- The backend kind of agent.queue: the same order, backoff, breaker and limits as the
-- notifications, in samples. Settings per backend (new{ settings = conf }).
local Buffer = Queue.kind {
  label = "backend",
  noun = "batches",
  metrics = {
    outcomes = "beagle_backend_sends_total",
    attempt_failures = "beagle_backend_send_failures_total",
    latency = "beagle_backend_send_delay_seconds",
    depth = "beagle_backend_buffered_samples",
    breaker = "beagle_backend_paused",
  },
  text = {
    -- a backend retries every few seconds while its target is down, and drops batch after batch
    -- once its buffer is full: the pause is logged once (breaker_open), the drops once per
    -- episode (on_retire), never each
    failed = false, retry = false, dropped = false, expired = false,
    breaker_open = "backend paused after failures: probing", breaker_closed = "backend back: sending",
    drop_reason = "dropped: the backend holds at most %d samples",
    expire_reason = "dropped: unsent after %gs (%d attempts)",
  },
  settings = function(c)
    return { ttl = c.max_age, max_in_flight = c.max_in_flight, backoff_initial = c.backoff_initial,
      backoff_max = c.backoff_max, breaker_failures = c.breaker_failures, breaker_probe = c.backoff_max,
      limit = c.buffer_limit }
  end,
  -- a batch leaving the buffer gives back its part of the snapshot; its samples are counted as
  -- sent or as dropped (with why: dropped, expired, failed, stopped)
  on_retire = function(target, e, result)
    local n, m, st = e.weight or 0, e.queue_metrics, e.stats
    if result == "sent" then
      if m then m.increment_counter(SENT, n, { backend = target }) end
      if st then st.sent = st.sent + n end
      if st then st.losing = nil end
    else
      if m then m.increment_counter(DROPPED, n, { backend = target, reason = result }) end
      if st then
        st.dropped = st.dropped + n
        -- once per episode (until a batch goes out again), and once per reason
        st.losing = st.losing or {}
        if not st.losing[result] and st.log then
          st.losing[result] = true
          st.log(result == "dropped" and 2 or 3, LOSS[result] or "backend dropped samples", { backend = target,
            reason = result, samples = tostring(n), last_error = e.last_error })
        end
      end
    end
    if e.payload then
      e.payload:release()
      e.payload = nil
    end
  end,
}

-- The signals a plugin's metadata declares: a list, or nil and why.
local SIGNALS = { metrics = true, traces = true, logs = true }
local function signals_of(v)
  if v == nil then return { "metrics" } end
  local list = type(v) == "table" and v or { v }
  local out, seen, n = {}, {}, 0
  for _ in pairs(list) do n = n + 1 end
  for _, x in ipairs(list) do
    if SIGNALS[x] and not seen[x] then
      seen[x] = true
      out[#out + 1] = x
    end
  end
  if #out == 0 or #out ~= n or (seen.metrics and #out > 1) then
    return nil, 'signal must be "metrics", "traces", "logs" or { "traces", "logs" }'
  end
  return out
end
M.signals_of = signals_of

local INSTANCE_KEYS = { plugin = true, timeout = true, enabled = true, description = true, interval = true,
  batch_size = true, buffer_limit = true, spill = true }

-- new{ plugins (manager), settings, log, metrics, timer }
function M.new(o)
  local self = setmetatable({ plugins = o.plugins, settings = o.settings, log = o.log or function() end,
    metrics = o.metrics, timer = o.timer, config = {}, config_path = nil, confs = {}, live = {} }, M)
  self.kind = { name = "backend", keys = INSTANCE_KEYS, plugin_of = function(_, spec) return spec.plugin end,
    build = function(...) return self:build(...) end,
    mask = function(name, text) return self:mask(self.confs[name], text) end }
  return self
end

local function whole(v, what, min)
  if type(v) ~= "number" or v < min or v % 1 ~= 0 then return nil, ("%s must be a whole number >= %d"):format(what, min) end
  return v
end

-- The instance's conf, or nil, err. dry: validates only (a reload checks every declaration
-- before it applies any).
function M:build(name, spec, line, dry)
  local pname = spec.plugin
  if type(pname) ~= "string" then return nil, 'plugin is required: backend "x" { plugin = "remote_write", ... }' end
  local rec = self.plugins:get(pname)
  if not rec then return nil, ("backend plugin %q is not loaded"):format(pname) end
  if rec.kind ~= "backend" then return nil, ("plugin %q is a %s, not a backend"):format(pname, rec.kind) end
  local signals, serr = signals_of(rec.meta.signal)
  if not signals then return nil, ("backend plugin %q: %s"):format(pname, serr) end
  local s = self.settings
  local c = { name = name, plugin = pname, line = line, version = rec.version, enabled = spec.enabled ~= false,
    description = spec.description or rec.meta.description, timeout = rec.meta.timeout or s.backend_timeout,
    interval = rec.meta.interval or s.metrics_collection_interval,
    batch_size = rec.meta.batch_size or s.metrics_batch_size, buffer_limit = s.backend_buffer_limit,
    backoff_initial = s.backend_backoff_initial, backoff_max = s.backend_backoff_max,
    breaker_failures = s.backend_breaker_failures, max_age = s.backend_max_age,
    max_in_flight = s.backend_max_in_flight }
  for _, k in ipairs { "timeout", "interval" } do
    if spec[k] ~= nil then
      local d, err = util.parse_duration(spec[k])
      if not d or d <= 0 then return nil, ("%s %s"):format(k, err or "must be above 0") end
      c[k] = d
    end
  end
  for _, k in ipairs { "batch_size", "buffer_limit" } do
    if spec[k] ~= nil then
      -- a batch_size of 0: every sample of a collection in one batch (a Pushgateway's PUT)
      local v, err = whole(spec[k], k, k == "batch_size" and 0 or 1)
      if not v then return nil, err end
      c[k] = v
    end
  end
  if spec.spill ~= nil and type(spec.spill) ~= "boolean" then return nil, "spill must be true or false" end
  c.spill = spec.spill == true
  c.signals = signals
  if signals[1] ~= "metrics" then
    -- the tracer's buffers are drained for every trace and log backend at once: an instance's
    -- own interval or batch size would be a promise not kept
    for _, k in ipairs { "interval", "batch_size" } do
      if spec[k] ~= nil then
        return nil, ("%s does not apply to a %s backend (the tracer's trace_%s applies)")
          :format(k, table.concat(signals, " and "), k == "interval" and "export_interval" or "batch_size")
      end
    end
    c.interval, c.batch_size = s.trace_export_interval, s.trace_batch_size
  end
  local given = instances.given(spec, INSTANCE_KEYS)
  local opts, err
  if dry then opts, err = rec.script:call("__validate", given)
  else opts, err = rec.script:call("__configure", { name = name, given = given }) end
  if not opts then return nil, err end
  c.opts = opts
  c.secrets = {}
  for oname, od in pairs(rec.meta.options or {}) do
    if od.type == "secret" and type(opts[oname]) == "string" and opts[oname] ~= "" then
      c.secrets[#c.secrets + 1] = opts[oname]
    end
  end
  return c
end

function M.mask(_, conf, text)
  text = tostring(text)
  if not conf or not conf.secrets or #conf.secrets == 0 then return text end
  return require("beagle.channel_util").mask(text, conf.secrets)
end

-- Every backend of a new config built against the loaded plugins, validated only. Returns the
-- problems ("file:line: backend "x": reason").
function M:check_config(config_backends, config_path)
  return instances.check_config(self.kind, config_backends, config_path)
end

function M:set_config(config_backends, config_path)
  self.config, self.config_path = config_backends, config_path
end

-- Rebuilds every instance from the config and the loaded plugins; returns the problems. An
-- instance that fails keeps its previous conf (if it had one) and reports the error.
function M:sync()
  local confs, problems = {}, {}
  for name, c in pairs(self.config) do
    local conf, err = self:build(name, c.spec, c.line)
    if conf then confs[name] = conf
    else
      problems[#problems + 1] = instances.problem(self.kind, self.config_path, c, name, self:mask(self.confs[name], err))
      local old = self.confs[name]
      confs[name] = old or { name = name, plugin = c.spec.plugin, line = c.line, secrets = {} }
      confs[name].error = err
    end
  end
  self.confs = confs
  local secrets = {}
  for _, c in pairs(confs) do
    for _, v in ipairs(c.secrets or {}) do secrets[#secrets + 1] = v end
  end
  util.set_secrets("backends", secrets)
  if self.running then self:apply() end
  return problems
end

-- A fresh version of backend plugin `name` must validate every configured instance of it.
function M:validate_plugin(name, script, meta)
  return instances.validate_plugin(self.kind, self.config, self.config_path, name, script, meta)
end

-- ---- running: a collection timer and a buffer per backend ---------------------------------------

-- One snapshot per instant: backends whose timers fire in the same loop turn share it.
function M:snapshot()
  local now = core.now()
  if self.snap and self.snap_at == now then return self.snap end
  local snap, err = core.metrics_snapshot()
  if not snap then return nil, err end
  self.snap, self.snap_at = snap, now
  -- the batches hold what they need: the snapshot's own hold ends after this loop turn
  self.timer(0, function()
    if self.snap == snap then self.snap = nil end
    snap:release()
  end)
  return snap
end

-- A context that is not sampled, current while a trace or log backend sends: whatever its send
-- does (ctx.http's client span) inherits the decision and is not recorded, so exporting spans
-- makes no spans to export. One per agent: nothing of it is ever kept.
local UNTRACED
local function untraced()
  if not UNTRACED then
    local h = {}
    for i = 1, 6 do h[i] = ("%08x"):format(math.random(0, 0x7fffffff)) end
    UNTRACED = ("00-%s%s%s%s-%s%s-00"):format(h[1], h[2], h[3], h[4], h[5], h[6])
  end
  return UNTRACED
end

-- The resource attributes the settings give exported spans and logs (ctx.resource in a trace
-- or log backend's send): service.name, service.version, deployment.environment, host.name.
function M:resource()
  if self.res then return self.res end
  local s = self.settings
  local ok, host = pcall(core.read_file, "/proc/sys/kernel/hostname", 1024)
  host = ok and type(host) == "string" and host:gsub("%s+$", "") or os.getenv("HOSTNAME") or ""
  local function nonempty(v) return type(v) == "string" and v ~= "" and v or nil end
  self.res = { ["service.name"] = nonempty(s.service_name) or "beagle",
    ["service.version"] = nonempty(s.service_version) or core.version,
    ["deployment.environment"] = nonempty(s.logfire_environment), ["host.name"] = nonempty(host) }
  return self.res
end

-- One send: the plugin's send as a run in its state, cut at conf.timeout. signal: nil for a
-- metric batch, "traces" or "logs". A metric send is a span ("backend <name>", a new root: the
-- plugin's spans and its ctx.http request are its children); a trace or log send is none.
function M:attempt(conf, batch, done, signal)
  local rec = self.plugins:get(conf.plugin)
  if not rec or rec.kind ~= "backend" then error(("backend plugin %q is not loaded"):format(conf.plugin), 0) end
  local span, traceparent = nil, untraced()
  if not signal then
    span = T.start("backend " .. conf.name, "internal", nil, "beagle")
    if span.recording ~= 0 then
      T.set(span, "beagle.backend.name", conf.name)
      T.set(span, "beagle.backend.plugin", conf.plugin)
      T.set(span, "beagle.backend.samples", batch:size())
    end
    traceparent = T.traceparent(span)
    local finish = done
    done = function(ok, err, info)
      if span then
        T.finish(span, ok and "ok" or "error", not ok and self:mask(conf, err) or nil)
        span = nil
      end
      return finish(ok, err, info)
    end
  end
  local ok, err = pcall(rec.script.run, rec.script, "__send_batch", { name = conf.name, id = batch:id(),
    signal = signal, resource = signal and self:resource() or nil },
    { timeout = conf.timeout, budget = self.settings.plugin_instruction_budget, traceparent = traceparent },
    instances.send_result(done, function(text) return self:mask(conf, text) end,
      function(res) if res.skipped then self:skipped(conf.name, res.skipped) end end))
  if not ok then
    if span then T.finish(span, "error", self:mask(conf, tostring(err))) end
    error(err, 0)
  end
end

-- Samples a send's format could not carry (a NaN in line protocol): counted, never silent.
function M:skipped(name, n)
  if type(n) ~= "number" or n <= 0 then return end
  if self.metrics then self.metrics.increment_counter(SKIPPED, n, { backend = name }) end
  local live = self.live[name]
  if live then live.stats.skipped = (live.stats.skipped or 0) + n end
end

-- The running part of backend `name`: its buffer, its timer and its counts.
function M:start_one(conf)
  local name = conf.name
  local stats = { sent = 0, dropped = 0, collected = 0, retries = 0, log = self.log }
  local live = { conf = conf, stats = stats }
  local metrics = self.metrics
  local store = conf.spill and self:store() or nil
  live.store = store
  live.buffer = Buffer.new {
    now = core.wall, timer = self.timer, settings = conf, log = self.log, metrics = metrics,
    store = store and store:adapter(name, function(e) e.queue_metrics, e.stats = metrics, stats end),
    resolve = function() return self:usable(name) end,
    send = function(c, batch, done, item)
      return self:attempt(c, batch, function(ok, err, info)
        if not ok and not (info and info.permanent) then stats.retries = stats.retries + 1 end
        done(ok, err, info)
      end, item and item.signal)
    end,
  }
  self.live[name] = live
  if conf.signals[1] == "metrics" then
    live.timer = self.timer(conf.interval, function() self:collect(live) end, conf.interval)
  else
    self:tracing()
  end
  if store then
    -- what an earlier run collected and did not send goes first
    live.buffer:resume()
    stats.collected = stats.collected + live.buffer.depth
  end
end

-- The buffer file of the backends with spill = true, opened on first need; nil when it cannot
-- be (those backends then buffer in memory, said once).
function M:store()
  if self.spill_store ~= nil then return self.spill_store or nil end
  local dir = self.settings.data_dir
  core.mkdir(dir)
  local st, err = require("agent.backend_store").open(dir .. "/backends.db", self.log)
  if not st then
    self.log(3, "backend buffer file cannot be opened: backends buffer in memory only", { error = tostring(err) })
    self.spill_store = false
    return nil
  end
  local names = {}
  for name, c in pairs(self.confs) do if c.spill then names[name] = true end end
  st:forget_others(names)
  self.spill_store = st
  return st
end

-- removed: the backend is no longer declared (else the agent stops, and a spilled buffer
-- stays on disk for the next start).
function M:stop_one(live, removed)
  if live.timer then live.timer:stop() end
  live.buffer:stop()
  local kept = live.store and not removed
  if live.store and removed then live.store:forget(live.conf.name) end
  -- what waited is released: the samples are counted as dropped unless they wait on disk
  for _, tg in pairs(live.buffer.targets) do
    for _, g in pairs(tg.groups) do
      for i = g.head, g.tail do
        local e = g.items[i]
        if e and not e.retired and e.payload then
          if not (kept and e.id) then
            live.stats.dropped = live.stats.dropped + (e.weight or 0)
            if self.metrics then
              self.metrics.increment_counter(DROPPED, e.weight or 0, { backend = live.conf.name, reason = "stopped" })
            end
          end
          e.payload:release()
          e.payload = nil
        end
      end
    end
  end
end

function M:usable(name)
  local conf = self.confs[name]
  if not conf then return nil, ("no backend named %q"):format(name) end
  if conf.error and not conf.opts then return nil, ("backend %q: %s"):format(name, self:mask(conf, conf.error)) end
  return conf
end

-- Cuts this instant's snapshot into the backend's batches and buffers them.
function M:collect(live)
  local conf = live.conf
  local snap, err = self:snapshot()
  if not snap then
    live.stats.last_collect_error = err
    self.log(3, "backend collection failed", { backend = conf.name, error = tostring(err) })
    return
  end
  local name, metrics, stats = conf.name, self.metrics, live.stats
  local items, now, total = {}, core.wall(), 0
  for i, b in ipairs(snap:batches(conf.batch_size > 0 and conf.batch_size or math.huge)) do
    local n = b:size()
    total = total + n
    -- a collection is a fence: its batches (each series once) go out together, after the
    -- collection before has left, so that a receiver sees every series' samples in order
    items[i] = { target = name, payload = b, weight = n, queue_metrics = metrics, stats = stats,
      created_at = now, fence = now }
  end
  stats.collected = stats.collected + total
  -- the buffer always holds the newest collection whole: with more series than buffer_limit,
  -- the older collections go first, never part of this one
  live.buffer.limit = math.max(conf.buffer_limit, total)
  if live.store and #items > 0 then self:spill(live, items) end
  for _, e in ipairs(items) do live.buffer:push(e) end
end

-- ---- trace and log backends ---------------------------------------------------------------

-- The running backends of each signal: { traces = { live... }, logs = { live... } }.
function M:by_signal()
  local t = { traces = {}, logs = {} }
  for _, name in ipairs(util.sorted_keys(self.live)) do
    local live = self.live[name]
    for _, sig in ipairs(live.conf.signals) do
      if t[sig] then t[sig][#t[sig] + 1] = live end
    end
  end
  return t
end

-- Recording, the export timer and the early drain follow the running trace and log backends:
-- on while one runs, off (nothing recorded, nothing buffered) when none does.
function M:tracing()
  local t = self:by_signal()
  local spans, logs = #t.traces > 0, #t.logs > 0
  core.trace_recording(spans, logs)
  local s = self.settings
  if (spans or logs) and not self.export_timer then
    self.export_timer = self.timer(s.trace_export_interval, function() self:export() end, s.trace_export_interval)
    core.trace_on_ready(s.trace_batch_size, function()
      -- from the loop: the buffer holds a batch, sent before the interval (OpenTelemetry's
      -- batch processor does the same)
      self:export()
    end)
  elseif not (spans or logs) and self.export_timer then
    self.export_timer:stop()
    self.export_timer = nil
    core.trace_on_ready(0, nil)
  end
end

-- Takes what the tracer holds, in batches of trace_batch_size, into every backend of each signal.
function M:export()
  local t = self:by_signal()
  for _, sig in ipairs { "traces", "logs" } do
    if #t[sig] > 0 then self:drain(sig, t[sig]) end
  end
end

-- At most this many batches a drain, so that records the drain itself causes (a log line about
-- a full buffer) wait for the next one instead of keeping it going.
local MAX_DRAIN = 64

function M:drain(sig, lives)
  local max, now = self.settings.trace_batch_size, core.wall()
  for _ = 1, MAX_DRAIN do
    local b = core.trace_take(sig, max)
    if not b then return end
    local n = b:size()
    for i, live in ipairs(lives) do
      -- one C batch for all: each backend's item holds a reference of its own
      local payload = i < #lives and b:share() or b
      local conf, stats = live.conf, live.stats
      local e = { target = conf.name, payload = payload, weight = n, queue_metrics = self.metrics, stats = stats,
        created_at = now, signal = sig }
      stats.collected = stats.collected + n
      live.buffer.limit = math.max(conf.buffer_limit, n)
      if live.store then self:spill(live, { e }) end
      live.buffer:push(e)
    end
    if n < max then return end
  end
end

-- Writes a collection's items to the buffer file; a failure is said once until a write works.
function M:spill(live, items)
  local name = live.conf.name
  local ok, serr = live.store:add(name, items)
  if not ok and not live.spill_failing then
    self.log(3, "backend buffer file write failed: batches wait in memory only", { backend = name,
      error = tostring(serr) })
  elseif ok and live.spill_failing then
    self.log(1, "backend buffer file written again", { backend = name })
  end
  live.spill_failing = not ok
end

-- Starts, restarts (changed conf) or stops the running backends to match the confs.
function M:apply()
  for name, live in pairs(self.live) do
    local conf = self.confs[name]
    if not conf or conf.enabled == false or conf ~= live.conf and (conf.interval ~= live.conf.interval
        or conf.signals == nil or table.concat(conf.signals, ",") ~= table.concat(live.conf.signals, ",")
        or conf.batch_size ~= live.conf.batch_size or conf.buffer_limit ~= live.conf.buffer_limit) then
      self:stop_one(live, not conf or conf.enabled == false)
      self.live[name] = nil
    elseif conf.opts then
      live.conf = conf -- new options: the next sends use them
    end
  end
  for name, conf in pairs(self.confs) do
    if not self.live[name] and conf.opts and conf.enabled ~= false then self:start_one(conf) end
  end
  self:tracing()
end

function M:start()
  self.running = true
  self:apply()
end

function M:stop()
  self.running = false
  for name, live in pairs(self.live) do
    self:stop_one(live)
    self.live[name] = nil
  end
  self.snap = nil
  self:tracing()
  if self.spill_store then self.spill_store:close() end
  self.spill_store = nil
end

function M:update_metrics()
  for _, live in pairs(self.live) do live.buffer:update_metrics() end
end

-- For /health/detailed: every backend with its state.
function M:list()
  local out = {}
  local ts -- the tracer's counters, read once, for the trace and log backends' entries
  for _, name in ipairs(util.sorted_keys(self.confs)) do
    local c, live = self.confs[name], self.live[name]
    local st = live and live.buffer:status()[name] or {}
    local stats = live and live.stats or {}
    local state = "ok"
    if c.error then state = "misconfigured"
    elseif c.enabled == false then state = "disabled"
    elseif st.breaker == "open" then state = "paused"
    elseif (st.consecutive_failures or 0) > 0 then state = "failing"
    elseif not st.last_success_at then state = "idle" end
    local sig = c.signals and c.signals[1] ~= "metrics" and table.concat(c.signals, ",") or nil
    out[#out + 1] = {
      name = name, plugin = c.plugin, state = state, error = c.error and self:mask(c, c.error) or nil,
      signal = sig or "metrics",
      interval = c.interval, batch_size = c.batch_size, buffer_limit = c.buffer_limit,
      buffered = st.pending or 0, sent = stats.sent or 0, dropped = stats.dropped or 0,
      collected = stats.collected or 0, retries = stats.retries or 0, skipped = stats.skipped or 0,
      consecutive_failures = st.consecutive_failures or 0,
      last_error = st.last_error and self:mask(c, st.last_error) or nil,
      last_error_at = st.last_error_at and util.iso8601(st.last_error_at) or nil,
      last_success_at = st.last_success_at and util.iso8601(st.last_success_at) or nil,
    }
    if sig then
      -- what waits in (or was refused by) the tracer's buffers this backend drains
      ts = ts or core.trace_stats()
      local e = out[#out]
      local spans, logs = sig:find("traces", 1, true), sig:find("logs", 1, true)
      e.tracer_buffered = (spans and ts.spans_buffered or 0) + (logs and ts.logs_buffered or 0)
      e.tracer_dropped = (spans and ts.spans_dropped or 0) + (logs and ts.logs_dropped or 0)
    end
  end
  return out
end

return M
