-- agent.delivery: the notification outbox, the notification kind of the delivery queue
-- (agent.queue). Every notification the alert engine decides is already a row in the store
-- (written in the same transaction as the alert state, see rules/engine.lua); this module
-- delivers it through its channel and marks the row sent only after the channel reported
-- success. After a crash, resume() loads the pending rows again: delivery is at least once, and
-- every attempt carries the row's dedup_key.
--
--   local d = Delivery.new {
--     now = fn -> epoch seconds, timer = fn(delay, cb) -> handle with :stop(), random = fn -> [0, 1),
--     store = st | nil,                 -- agent.rules.store (nil: memory only)
--     settings = { notification_* },    -- lua/agent/settings.lua
--     channel = fn(name) -> conf | nil, err   -- { name, plugin, timeout, resend } of a channel
--     attempt = fn(conf, n, done)       -- starts one delivery; done(ok, err, info) later, once
--     active_alerts = fn(name) -> { alert... }   -- firing alerts last sent to a `resend` channel
--     log = fn(level, msg, fields), metrics = agent.metrics | nil }
--   d:enqueue(n)        n from the engine (n.id = its row) or a test notification (no row)
--   d:resume()          the store's pending rows, oldest first
--   d:sync(confs)       the configured channels (starts/stops resend timers)
--   d:status() -> { [name] = {...} }  for /health/detailed
--   d:stop()
--
-- What the queue does per channel (order per group_key, notification_max_in_flight, full-jitter
-- backoff, Retry-After, permanent failures, the breaker, notification_ttl, notification_outbox_max
-- dropping the oldest resolved first) is described in agent.queue; this file names it: the
-- metrics, logs and settings of notifications, the store's rows as queue items, and the periodic
-- resend of alertmanager-like channels.
local Queue = require "agent.queue"
local store_status = require "agent.store_status"

local M = Queue.kind {
  label = "channel",
  noun = "notifications",
  metrics = {
    outcomes = "beagle_notifications_total",
    attempt_failures = "beagle_notification_attempt_failures_total",
    latency = "beagle_notification_delivery_seconds",
    depth = "beagle_notification_outbox_depth",
    breaker = "beagle_notification_breaker_open",
  },
  text = {
    dropped = "notification dropped", expired = "notification expired",
    failed = "notification failed for good", retry = "notification delivery failed, will retry",
    breaker_open = "channel breaker open: deliveries paused, probing",
    breaker_closed = "channel breaker closed: deliveries resume",
    flush_failed = "outbox update failed", flush_recovered = "outbox updates written again",
    load_failed = "cannot read the outbox", resumed = "outbox resumed",
    drop_reason = "dropped: the outbox holds at most %d undelivered notifications",
    expire_reason = "expired: undelivered after %gs (%d attempts)",
  },
  settings = function(s)
    return { ttl = s.notification_ttl, max_in_flight = s.notification_max_in_flight,
      backoff_initial = s.notification_backoff_initial, backoff_max = s.notification_backoff_max,
      breaker_failures = s.notification_breaker_failures, breaker_probe = s.notification_breaker_probe,
      limit = s.notification_outbox_max }
  end,
  -- past the bound, a resolve is the least to lose: its firing went out, or is dropped with it
  prefer_drop = function(e) return e.status == "resolved" end,
}

local new_queue = M.new

-- A notification (and its row, after a restart) as a queue item.
local function item_of(n, row)
  return {
    target = n.channel, payload = n, id = row and row.id or n.id,
    group = tostring(n.group_key or n.dedup_key or ""), status = n.status or "firing",
    dedup_key = n.dedup_key, ok_result = n.test and "test" or nil,
    created_at = tonumber(row and row.created_at or n.created_at) or 0,
    attempts = row and row.attempts or 0, next_at = row and row.next_attempt_at or 0,
  }
end

-- The store's notification rows as the queue's persistence adapter.
local function adapter(st)
  return {
    pending = function(_, limit)
      local rows, err = st:pending_notifications(1e300, limit)
      if not rows then return nil, err end
      local items = {}
      for i, r in ipairs(rows) do
        local n = r.notification or {}
        n.id = r.id
        n.channel = n.channel or r.channel
        n.dedup_key = n.dedup_key or r.dedup_key
        n.group_key = n.group_key or r.group_key
        items[i] = item_of(n, r)
      end
      return items
    end,
    update = function(_, id, fields) return st:update_notification(id, fields) end,
    tx = function(_, fn) return st:tx(fn) end,
  }
end

function M.new(o)
  local attempt = assert(o.attempt)
  local self = new_queue {
    now = o.now, timer = o.timer, random = o.random, settings = o.settings, log = o.log, metrics = o.metrics,
    store = o.store and adapter(o.store), resolve = assert(o.channel),
    -- the channel plugin sees which attempt this is
    send = function(conf, n, done, item)
      n.attempt = item.attempts
      return attempt(conf, n, done)
    end,
  }
  self.channel, self.attempt = o.channel, attempt
  self.active_alerts = o.active_alerts or function() return {} end
  return self
end

-- A notification the engine decided (or a test one). Never raises. With a store, only one
-- whose row is committed (n.id) leaves: one without would be sent again, under a new dedup
-- key, after a restart (the engine holds and retries what it could not commit).
function M:enqueue(n)
  if type(n) ~= "table" or type(n.channel) ~= "string" then return end
  if self.store and not n.test and n.id == nil then
    self.uncommitted = (self.uncommitted or 0) + 1
    if self.uncommitted == 1 then
      self.log(3, "notification not in the outbox: not sent", { channel = n.channel, status = tostring(n.status) })
    end
    return
  end
  self:push(item_of(n))
end

-- ---- periodic resend (channels whose plugin sets `resend`, e.g. alertmanager) -----------------

function M:resend(name)
  local ch = self:target(name)
  if ch.breaker == "open" or ch.resending or ch.in_flight >= self.max_in_flight then return end
  local conf = self.channel(name)
  if not conf then return end
  local alerts = self.active_alerts(name) or {}
  if #alerts == 0 then return end
  local n = { channel = name, status = "firing", resend = true, test = false, alerts = alerts,
    created_at = self.now(), attempt = 1, group_key = "resend" }
  ch.resending = true
  ch.in_flight = ch.in_flight + 1
  local done = false
  local function finish(ok, err)
    if done then return end
    done = true
    ch.resending = false
    ch.in_flight = ch.in_flight - 1
    if self.metrics then
      self.metrics.increment_counter("beagle_notification_resends_total", 1,
        { channel = name, result = ok and "sent" or "error" })
    end
    if not ok then ch.last_error, ch.last_error_at = tostring(err), self.now()
    else ch.last_success_at = self.now() end
    self:pump(ch)
  end
  local ok, err = pcall(self.attempt, conf, n, finish)
  if not ok then finish(false, err) end
end

-- The configured channels: { name = conf }. Resend timers follow the confs.
function M:sync(confs)
  self.resend_timers = self.resend_timers or {}
  for name, t in pairs(self.resend_timers) do
    local c = confs[name]
    if not c or c.resend ~= t.every then
      t.handle:stop()
      self.resend_timers[name] = nil
    end
  end
  for name, c in pairs(confs) do
    if c.resend and c.resend > 0 and not self.resend_timers[name] then
      self.resend_timers[name] = { every = c.resend, handle = self.timer(c.resend, function() self:resend(name) end, c.resend) }
    end
  end
end

local queue_update_metrics = M.update_metrics

-- The outbox's depth per channel, and beagle_store_* of the store it keeps its rows in.
function M:update_metrics()
  queue_update_metrics(self)
  if self.metrics then store_status.update_metrics(self.metrics) end
end

local queue_stop = M.stop

-- Writes the pending row updates and stops every timer; undelivered rows stay for the next start.
function M:stop()
  queue_stop(self)
  for _, t in pairs(self.resend_timers or {}) do t.handle:stop() end
  self.resend_timers = {}
end

return M
