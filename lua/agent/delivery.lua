-- agent.delivery: the notification outbox. Every notification the alert engine decides is
-- already a row in the store (written in the same transaction as the alert state, see
-- rules/engine.lua); this module delivers it through its channel and marks the row sent only
-- after the channel reported success. After a crash, resume() loads the pending rows again:
-- delivery is at least once, and every attempt carries the row's dedup_key.
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
-- Per channel: notifications of one group_key go out in order (a group's resolve never
-- overtakes its firing), at most notification_max_in_flight at once; a failure is retried
-- after a full-jitter exponential backoff (notification_backoff_initial doubling up to
-- notification_backoff_max), or after the receiver's Retry-After; a permanent failure (the
-- channel says so, e.g. HTTP 400) is not retried. notification_breaker_failures straight
-- failures open the channel's breaker: then one probe goes every notification_breaker_probe,
-- and the first probe that succeeds closes it and releases everything waiting. A notification
-- older than notification_ttl expires; beyond notification_outbox_max undelivered ones the
-- oldest resolved ones are dropped first. Every outcome is counted.
local M = {}
M.__index = M

-- ---- a binary heap of entries by (next_at, seq), with positions for removal ---------------------

local function less(a, b)
  if a.next_at ~= b.next_at then return a.next_at < b.next_at end
  return a.seq < b.seq
end

local function heap_swap(h, i, j)
  h[i], h[j] = h[j], h[i]
  h[i].hpos, h[j].hpos = i, j
end

local function heap_up(h, i)
  while i > 1 do
    local p = math.floor(i / 2)
    if not less(h[i], h[p]) then break end
    heap_swap(h, i, p)
    i = p
  end
end

local function heap_down(h, i)
  local n = #h
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= n and less(h[l], h[m]) then m = l end
    if r <= n and less(h[r], h[m]) then m = r end
    if m == i then return end
    heap_swap(h, i, m)
    i = m
  end
end

local function heap_push(h, e)
  h[#h + 1] = e
  e.hpos = #h
  heap_up(h, #h)
end

local function heap_remove(h, e)
  local i, n = e.hpos, #h
  if not i or h[i] ~= e then return end
  if i ~= n then heap_swap(h, i, n) end
  h[n] = nil
  e.hpos = nil
  if i < n then
    heap_up(h, i)
    heap_down(h, i)
  end
end

-- ---- the outbox -------------------------------------------------------------------------------

function M.new(o)
  local self = setmetatable({
    now = assert(o.now), timer = assert(o.timer), random = o.random or math.random,
    store = o.store, settings = o.settings or {}, channel = assert(o.channel), attempt = assert(o.attempt),
    active_alerts = o.active_alerts or function() return {} end,
    log = o.log or function() end, metrics = o.metrics,
    channels = {}, -- name -> per-channel state (chan)
    depth = 0,     -- undelivered entries, every channel
    seq = 0,
    updates = {},  -- row updates not yet written
    stopped = false,
    totals = {},   -- result -> n, for tests and /health/detailed
  }, M)
  local s = self.settings
  self.ttl = s.notification_ttl or 86400
  self.max_in_flight = s.notification_max_in_flight or 4
  self.backoff_initial = s.notification_backoff_initial or 5
  self.backoff_max = s.notification_backoff_max or 300
  self.breaker_failures = s.notification_breaker_failures or 5
  self.breaker_probe = s.notification_breaker_probe or 60
  self.outbox_max = s.notification_outbox_max or 10000
  return self
end

function M:chan(name)
  local ch = self.channels[name]
  if not ch then
    ch = { name = name, heap = {}, groups = {}, in_flight = 0, failures = 0,
      breaker = "closed", open_until = 0, probing = false, pending = 0,
      sent = 0, failed = 0, expired = 0, dropped = 0, attempts = 0, tags = {} }
    self.channels[name] = ch
  end
  return ch
end

-- The labels of a channel's series, one table each, kept: agent.metrics resolves a tags table
-- it has seen before without reading it again (a fresh one per delivery cost ~100 ns twice).
local function tags(ch, result)
  local t = ch.tags[result]
  if not t then
    t = result == "" and { channel = ch.name } or { channel = ch.name, result = result }
    ch.tags[result] = t
  end
  return t
end

local function count(self, ch, result)
  self.totals[result] = (self.totals[result] or 0) + 1
  if self.metrics then
    self.metrics.increment_counter("beagle_notifications_total", 1, tags(ch, result))
  end
end

-- The outbox depth per channel, set when metrics are collected or scraped (not on every
-- enqueue and delivery: a burst of 20,000 made that two metric writes per notification).
function M:update_metrics()
  if not self.metrics then return end
  for _, ch in pairs(self.channels) do
    self.metrics.set_gauge("beagle_notification_outbox_depth", ch.pending, tags(ch, ""))
  end
end

local function gauge_breaker(self, ch)
  if self.metrics then
    self.metrics.set_gauge("beagle_notification_breaker_open", ch.breaker == "closed" and 0 or 1, tags(ch, ""))
  end
end

-- Row updates are written together: FLUSH_DELAY after the first, or at once past FLUSH_MAX
-- (one transaction for many deliveries). A crash in between loses only "sent" marks, and
-- those notifications are delivered again (at least once).
local FLUSH_DELAY, FLUSH_MAX = 0.05, 1000
function M:persist(e, fields)
  if not self.store or not e.id then return end
  self.updates[#self.updates + 1] = { e.id, fields }
  if #self.updates >= FLUSH_MAX then
    if self.flush_timer then self.flush_timer:stop() self.flush_timer = nil end
    return self:flush()
  end
  if self.flush_timer then return end
  self.flush_timer = self.timer(FLUSH_DELAY, function()
    self.flush_timer = nil
    self:flush()
  end)
end

function M:flush()
  local list = self.updates
  if #list == 0 or not self.store then return true end
  self.updates = {}
  local st = self.store
  local ok, err = st:tx(function()
    for _, u in ipairs(list) do assert(st:update_notification(u[1], u[2])) end
    return true
  end)
  if not ok then
    -- the rows stay pending: at worst they are delivered again after a restart
    self.log(3, "outbox update failed", { error = tostring(err), rows = tostring(#list) })
  end
  return ok, err
end

-- Adds an entry behind its group; the group's head is what the heap schedules.
local function place(self, ch, e)
  self.seq = self.seq + 1
  e.seq = self.seq
  local g = ch.groups[e.group]
  if not g then
    g = { head = 1, items = {} }
    ch.groups[e.group] = g
  end
  g.items[#g.items + 1] = e
  ch.pending = ch.pending + 1
  self.depth = self.depth + 1
  if g.items[g.head] == e then heap_push(ch.heap, e) end
end

-- The entry left the outbox (sent, failed, expired, dropped): its group moves on.
local function retire(self, ch, e)
  if e.retired then return end
  e.retired = true
  heap_remove(ch.heap, e)
  ch.pending = ch.pending - 1
  self.depth = self.depth - 1
  local g = ch.groups[e.group]
  if g and g.items[g.head] == e then
    repeat
      g.items[g.head] = nil
      g.head = g.head + 1
    until g.items[g.head] == nil or not g.items[g.head].retired
    local nxt = g.items[g.head]
    if nxt then heap_push(ch.heap, nxt) else ch.groups[e.group] = nil end
  end
end

-- Drops the oldest resolved entries (then the oldest of any status) until the outbox fits.
function M:trim()
  while self.depth > self.outbox_max do
    local victim, vch
    for _, want in ipairs { "resolved", false } do
      for _, ch in pairs(self.channels) do
        for _, g in pairs(ch.groups) do
          for i = g.head, #g.items do
            local e = g.items[i]
            if e and not e.retired and not e.in_flight and (not want or e.status == want)
              and (not victim or e.seq < victim.seq) then
              victim, vch = e, ch
            end
          end
        end
      end
      if victim then break end
    end
    if not victim then return end
    retire(self, vch, victim)
    vch.dropped = vch.dropped + 1
    count(self, vch, "dropped")
    local why = ("dropped: the outbox holds at most %d undelivered notifications"):format(self.outbox_max)
    self:persist(victim, { state = "failed", last_error = why })
    self.log(2, "notification dropped", { channel = vch.name, id = tostring(victim.id), status = victim.status,
      dedup_key = tostring(victim.n.dedup_key), reason = why })
  end
end

local function entry_of(n, row)
  return {
    id = row and row.id or n.id, n = n, group = tostring(n.group_key or n.dedup_key or ""),
    status = n.status or "firing", created_at = tonumber(row and row.created_at or n.created_at) or 0,
    attempts = row and row.attempts or 0, next_at = row and row.next_attempt_at or 0,
  }
end

-- A notification the engine decided (or a test one). Never raises.
function M:enqueue(n)
  if self.stopped or type(n) ~= "table" or type(n.channel) ~= "string" then return end
  local e = entry_of(n)
  if e.created_at == 0 then e.created_at = self.now() end
  local ch = self:chan(n.channel)
  place(self, ch, e)
  self:trim()
  self:pump(ch)
end

-- Loads the undelivered rows of the store (after a restart), oldest first.
function M:resume()
  if not self.store then return 0 end
  local rows, err = self.store:pending_notifications(1e300, self.outbox_max + 1)
  if not rows then
    self.log(3, "cannot read the outbox", { error = tostring(err) })
    return 0
  end
  local touched = {}
  for _, r in ipairs(rows) do
    local n = r.notification or {}
    n.id = r.id
    n.channel = n.channel or r.channel
    n.dedup_key = n.dedup_key or r.dedup_key
    n.group_key = n.group_key or r.group_key
    local e = entry_of(n, r)
    local ch = self:chan(n.channel)
    place(self, ch, e)
    touched[ch] = true
  end
  if #rows > 0 then self.log(1, "outbox resumed", { notifications = tostring(#rows) }) end
  self:trim()
  for ch in pairs(touched) do self:pump(ch) end
  return #rows
end

function M:backoff(attempts)
  local cap = math.min(self.backoff_max, self.backoff_initial * 2 ^ math.max(0, attempts - 1))
  return self.random() * cap
end

local function arm(self, ch, at)
  if ch.timer and ch.timer_at == at then return end
  if ch.timer then ch.timer:stop() end
  ch.timer, ch.timer_at = nil, nil
  if not at or self.stopped then return end
  ch.timer_at = at
  ch.timer = self.timer(math.max(0, at - self.now()), function()
    ch.timer, ch.timer_at = nil, nil
    self:pump(ch)
  end)
end

local function expire(self, ch, e, now)
  retire(self, ch, e)
  ch.expired = ch.expired + 1
  count(self, ch, "expired")
  local why = ("expired: undelivered after %gs (%d attempts)"):format(now - e.created_at, e.attempts)
  self:persist(e, { state = "expired", last_error = why })
  self.log(3, "notification expired", { channel = ch.name, id = tostring(e.id), status = e.status,
    dedup_key = tostring(e.n.dedup_key), attempts = tostring(e.attempts), last_error = tostring(e.last_error) })
end

-- Starts what is due, within the in-flight limit and the breaker; arms the channel's timer for
-- the next due entry.
function M:pump(ch)
  if self.stopped then return end
  if ch.pumping then
    ch.repump = true
    return
  end
  ch.pumping = true
  repeat
    ch.repump = false
    local now = self.now()
    local wake
    while true do
      local e = ch.heap[1]
      if not e then break end
      if now - e.created_at >= self.ttl then
        expire(self, ch, e, now)
      elseif e.next_at > now then
        wake = e.next_at
        break
      elseif ch.in_flight >= self.max_in_flight then
        break -- a completion pumps again
      elseif ch.breaker == "open" and (now < ch.open_until or ch.probing) then
        if not ch.probing then wake = ch.open_until end
        break
      else
        heap_remove(ch.heap, e)
        if ch.breaker == "open" then
          ch.probing, e.probe = true, true
        end
        self:start(ch, e)
      end
    end
    arm(self, ch, wake)
  until not ch.repump
  ch.pumping = false
end

function M:start(ch, e)
  e.attempts = e.attempts + 1
  e.in_flight = true
  ch.in_flight = ch.in_flight + 1
  ch.attempts = ch.attempts + 1
  local n = e.n
  n.attempt = e.attempts
  local conf, cerr = self.channel(ch.name)
  if not conf then
    -- not configured (or its plugin failed to load): retried, so a fixed config delivers it
    self.timer(0, function() self:finish(ch, e, false, cerr or ("no channel named %q"):format(ch.name)) end)
    return
  end
  e.conf = conf
  local done = false
  local ok, err = pcall(self.attempt, conf, n, function(fine, why, info)
    if done then return end
    done = true
    self:finish(ch, e, fine, why, info)
  end)
  if not ok then
    done = true
    self.timer(0, function() self:finish(ch, e, false, tostring(err)) end)
  end
end

local function open_breaker(self, ch, now)
  local was = ch.breaker
  ch.breaker = "open"
  ch.open_until = now + self.breaker_probe
  if was ~= "open" then
    self.log(3, "channel breaker open: deliveries paused, probing", { channel = ch.name,
      failures = tostring(ch.failures), probe_every = ("%gs"):format(self.breaker_probe), last_error = ch.last_error })
    gauge_breaker(self, ch)
  end
end

local function close_breaker(self, ch, now)
  if ch.breaker == "closed" then return end
  ch.breaker = "closed"
  self.log(1, "channel breaker closed: deliveries resume", { channel = ch.name })
  gauge_breaker(self, ch)
  -- the probe proved the receiver is back: everything waiting goes now
  for _, e in ipairs(ch.heap) do
    if e.next_at > now then e.next_at = now end
  end
  table.sort(ch.heap, less)
  for i, e in ipairs(ch.heap) do e.hpos = i end
end

function M:finish(ch, e, ok, err, info)
  e.in_flight = nil
  ch.in_flight = ch.in_flight - 1
  local probe = e.probe
  e.probe = nil
  if probe then ch.probing = false end
  if self.stopped then return end
  local now = self.now()
  if ok then
    ch.failures = 0
    ch.last_success_at = now
    close_breaker(self, ch, now)
    ch.sent = ch.sent + 1
    retire(self, ch, e)
    count(self, ch, e.n.test and "test" or "sent")
    if self.metrics then
      self.metrics.record_histogram("beagle_notification_delivery_seconds", math.max(0, now - e.created_at),
        tags(ch, ""))
    end
    self:persist(e, { state = "sent", sent_at = now, attempts = e.attempts })
  else
    err = tostring(err or "delivery failed")
    e.last_error = err
    ch.last_error, ch.last_error_at = err, now
    if self.metrics then
      self.metrics.increment_counter("beagle_notification_attempt_failures_total", 1, tags(ch, ""))
    end
    if info and info.permanent then
      ch.failed = ch.failed + 1
      retire(self, ch, e)
      count(self, ch, "failed")
      self:persist(e, { state = "failed", attempts = e.attempts, last_error = err })
      self.log(3, "notification failed for good", { channel = ch.name, id = tostring(e.id),
        dedup_key = tostring(e.n.dedup_key), error = err })
    else
      ch.failures = ch.failures + 1
      if probe or ch.failures >= self.breaker_failures then open_breaker(self, ch, now) end
      local delay = self:backoff(e.attempts)
      local ra = info and tonumber(info.retry_after)
      if ra and ra >= 0 then delay = math.min(ra, 3600) end
      e.next_at = now + delay
      if e.next_at - e.created_at >= self.ttl then
        expire(self, ch, e, now)
      else
        heap_push(ch.heap, e)
        self:persist(e, { attempts = e.attempts, next_attempt_at = e.next_at, last_error = err })
        self.log(2, "notification delivery failed, will retry", { channel = ch.name, id = tostring(e.id),
          attempt = tostring(e.attempts), retry_in = ("%.3fs"):format(delay), error = err })
      end
    end
  end
  self:pump(ch)
end

-- ---- periodic resend (channels whose plugin sets `resend`, e.g. alertmanager) -----------------

function M:resend(name)
  local ch = self:chan(name)
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

function M:status()
  local out = {}
  for name, ch in pairs(self.channels) do
    out[name] = { breaker = ch.breaker, in_flight = ch.in_flight, pending = ch.pending,
      consecutive_failures = ch.failures, sent = ch.sent, failed = ch.failed, expired = ch.expired,
      dropped = ch.dropped, attempts = ch.attempts, last_error = ch.last_error,
      last_error_at = ch.last_error_at, last_success_at = ch.last_success_at,
      breaker_retry_at = ch.breaker == "open" and ch.open_until or nil }
  end
  return out
end

function M:stop()
  self:flush()
  self.stopped = true
  for _, ch in pairs(self.channels) do arm(self, ch, nil) end
  for _, t in pairs(self.resend_timers or {}) do t.handle:stop() end
  self.resend_timers = {}
  if self.flush_timer then self.flush_timer:stop() self.flush_timer = nil end
end

return M
