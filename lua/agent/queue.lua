-- agent.queue: a durable delivery queue, for any kind that delivers items to named targets
-- (the channels' notifications now, metric backends next). The kind describes itself once,
-- Queue.kind(spec) -> class: its metric names, target label, log texts, settings and trim
-- policy become upvalues of the class's methods, so the hot path looks nothing up by name.
--
--   local Kind = Queue.kind {
--     label = "channel",                      -- the target's label in metrics and logs
--     noun = "notifications",                 -- the count field of the `resumed` log
--     metrics = { outcomes, attempt_failures, latency, depth, breaker },  -- names; nil: not kept
--     text = { dropped, expired, failed, retry (these four: false = not logged), breaker_open, breaker_closed, flush_failed,
--              load_failed, resumed, drop_reason (%d), expire_reason (%g, %d) },
--     settings = fn(s) -> { ttl, max_in_flight, backoff_initial, backoff_max, breaker_failures,
--                           breaker_probe, limit, target_limit },
--     prefer_drop = fn(item) -> bool,         -- trimmed first (then the oldest of any)
--     on_drop = fn(target, item),             -- after an item is trimmed (e.g. to count its samples)
--     on_retire = fn(target, item, result),   -- after any item leaves the queue (sent, failed,
--                                             -- expired, dropped): to free what its payload holds
--   }
--   local q = Kind.new {
--     now = fn -> epoch seconds, timer = fn(delay, cb) -> handle with :stop(), random = fn -> [0, 1),
--     resolve = fn(target) -> conf | nil, err,
--     send = fn(conf, payload, done, item)  -- starts one attempt; done(ok, err, info) once;
--                                           -- item (read only) has attempts (1 the first time), dedup_key
--     store = adapter | nil,                    -- nil: memory only
--     settings = {...}, log = fn(level, msg, fields), metrics = agent.metrics | nil }
--   q:push(item)   item = { target, payload, id?, group?, status?, dedup_key?, created_at?,
--                  attempts?, next_at?, ok_result? ("sent"), weight? (1), fence? }
-- An item's weight is what it counts for in the depth and the limits (a batch: its samples).
-- An item with a fence (a number, rising) starts only once no item of its target with a lower
-- fence waits or is in flight: items of one fence go out together, up to max_in_flight, and
-- never before an older fence (a backend's collections: each series once per fence, in order).
--   q:resume()     the adapter's pending items, oldest first
--   q:status(), q:update_metrics(), q:flush(), q:stop()
--
-- The persistence adapter: adapter:pending(limit) -> { item... } | nil, err (undelivered, oldest
-- first, at most limit); adapter:update(id, fields) -> ok | nil, err with fields among state
-- ("sent", "failed", "expired"), sent_at, attempts, next_attempt_at, last_error; adapter:tx(fn)
-- -> fn's results | nil, err runs fn in one transaction (updates are written in batches).
--
-- Per target: items of one group go out in order (the next waits until the one before left
-- the queue), at most max_in_flight at once; a failure is retried after a full-jitter
-- exponential backoff (backoff_initial doubling up to backoff_max) or the receiver's
-- Retry-After (info.retry_after); a permanent failure (info.permanent) is not retried.
-- breaker_failures straight failures open the target's breaker: one probe every breaker_probe,
-- and the first probe that succeeds closes it and releases everything waiting. An item older
-- than ttl expires; past limit items in the whole queue (or target_limit in one target) the
-- oldest the kind prefers to drop go first. The dedup_key stays the item's across attempts and
-- restarts, so a receiver can drop a repeat. Every outcome is counted.
-- ---- a binary heap of items by (next_at, seq), with positions for removal -----------------------

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

-- ---- the queue --------------------------------------------------------------------------------

local Queue = {}

local function default_settings(s)
  return { ttl = s.ttl or 86400, max_in_flight = s.max_in_flight or 4, backoff_initial = s.backoff_initial or 5,
    backoff_max = s.backoff_max or 300, breaker_failures = s.breaker_failures or 5,
    breaker_probe = s.breaker_probe or 60, limit = s.limit or 10000, target_limit = s.target_limit }
end

local DEFAULT_TEXT = {
  dropped = "item dropped", expired = "item expired", failed = "item failed for good",
  retry = "item delivery failed, will retry", breaker_open = "target breaker open: deliveries paused, probing",
  breaker_closed = "target breaker closed: deliveries resume", flush_failed = "queue update failed",
  flush_recovered = "queue updates written again",
  load_failed = "cannot read the queue", resumed = "queue resumed",
  drop_reason = "dropped: the queue holds at most %d undelivered items",
  expire_reason = "expired: undelivered after %gs (%d attempts)",
}

-- Row updates are written together: FLUSH_DELAY after the first, or at once past FLUSH_MAX
-- (one transaction for many deliveries). A crash in between loses only "sent" marks, and
-- those items are delivered again (at least once). A write that fails keeps its updates and
-- is tried again every FLUSH_RETRY seconds (a full disk, a locked file).
local FLUSH_DELAY, FLUSH_MAX, FLUSH_RETRY = 0.05, 1000, 1

-- spec: see the top of the file. Returns the kind's class; Class.new(o) makes a queue, and
-- a kind may add methods to the class (its __index is itself).
function Queue.kind(spec)
  local label = assert(spec.label, "a queue kind needs a label")
  local noun = spec.noun or "items"
  local m = spec.metrics or {}
  local M_OUTCOMES, M_FAILURES, M_LATENCY = m.outcomes, m.attempt_failures, m.latency
  local M_DEPTH, M_BREAKER = m.depth, m.breaker
  local text = setmetatable(spec.text or {}, { __index = DEFAULT_TEXT })
  local settings_of = spec.settings or default_settings
  local prefer_drop, on_drop, on_retire = spec.prefer_drop, spec.on_drop, spec.on_retire

  local C = {}
  C.__index = C

  function C.new(o)
    local self = setmetatable({
      now = assert(o.now), timer = assert(o.timer), random = o.random or math.random,
      store = o.store, settings = o.settings or {}, resolve = assert(o.resolve), send = assert(o.send),
      log = o.log or function() end, metrics = o.metrics,
      targets = {},  -- name -> per-target state
      depth = 0,     -- undelivered items, every target
      seq = 0,
      updates = {},  -- row updates not yet written
      stopped = false,
      totals = {},   -- result -> n, for tests and /health/detailed
    }, C)
    local s = default_settings(settings_of(self.settings))
    self.ttl, self.max_in_flight, self.limit, self.target_limit = s.ttl, s.max_in_flight, s.limit, s.target_limit
    self.backoff_initial, self.backoff_max = s.backoff_initial, s.backoff_max
    self.breaker_failures, self.breaker_probe = s.breaker_failures, s.breaker_probe
    return self
  end

  -- The state of one target, made on first use.
  function C:target(name)
    local tg = self.targets[name]
    if not tg then
      tg = { name = name, heap = {}, groups = {}, in_flight = 0, failures = 0,
        breaker = "closed", open_until = 0, probing = false, pending = 0,
        sent = 0, failed = 0, expired = 0, dropped = 0, attempts = 0, tags = {}, fences = {} }
      self.targets[name] = tg
    end
    return tg
  end

  -- The labels of a target's series, one table each, kept: agent.metrics resolves a tags table
  -- it has seen before without reading it again (a fresh one per delivery cost ~100 ns twice).
  local function tags(tg, result)
    local t = tg.tags[result]
    if not t then
      t = result == "" and { [label] = tg.name } or { [label] = tg.name, result = result }
      tg.tags[result] = t
    end
    return t
  end

  local function count(self, tg, result)
    self.totals[result] = (self.totals[result] or 0) + 1
    if self.metrics and M_OUTCOMES then
      self.metrics.increment_counter(M_OUTCOMES, 1, tags(tg, result))
    end
  end

  -- The depth per target, set when metrics are collected or scraped (not on every push and
  -- delivery: a burst of 20,000 made that two metric writes per item).
  function C:update_metrics()
    if not self.metrics or not M_DEPTH then return end
    for _, tg in pairs(self.targets) do
      self.metrics.set_gauge(M_DEPTH, tg.pending, tags(tg, ""))
    end
  end

  local function gauge_breaker(self, tg)
    if self.metrics and M_BREAKER then
      self.metrics.set_gauge(M_BREAKER, tg.breaker == "closed" and 0 or 1, tags(tg, ""))
    end
  end

  function C:persist(e, fields)
    if not self.store or not e.id then return end
    self.updates[#self.updates + 1] = { e.id, fields }
    -- while writes fail, the retry timer writes them
    if self.flush_failing and self.flush_timer then return end
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

  function C:flush()
    local list = self.updates
    if #list == 0 or not self.store then return true end
    self.updates = {}
    local st = self.store
    local ok, err = st:tx(function()
      for _, u in ipairs(list) do assert(st:update(u[1], u[2])) end
      return true
    end)
    if not ok then
      -- kept, before anything newer, and written again later: until then the rows stay pending
      -- (after a restart they are delivered again, with the same dedup keys). Logged once per
      -- episode (the store logs SQLite's side of it).
      for _, u in ipairs(self.updates) do list[#list + 1] = u end
      self.updates = list
      if not self.flush_failing then
        self.flush_failing = true
        self.log(3, text.flush_failed, { error = tostring(err), rows = tostring(#list) })
      end
      if not self.flush_timer and not self.stopped then
        self.flush_timer = self.timer(FLUSH_RETRY, function()
          self.flush_timer = nil
          self:flush()
        end)
      end
    elseif self.flush_failing then
      self.flush_failing = false
      self.log(1, text.flush_recovered, { rows = tostring(#list) })
    end
    return ok, err
  end

  -- Adds an item behind its group; the group's head is what the heap schedules.
  local function place(self, tg, e)
    self.seq = self.seq + 1
    e.seq = self.seq
    local g = tg.groups[e.group]
    if not g then
      g = { head = 1, tail = 0, items = {} }
      tg.groups[e.group] = g
    end
    -- at its own tail: once the items before the head are gone, # of the table may answer any
    -- border, one below the head too
    g.tail = g.tail + 1
    g.items[g.tail] = e
    local w = e.weight or 1
    tg.pending = tg.pending + w
    self.depth = self.depth + w
    local f = e.fence
    if f then
      tg.fences[f] = (tg.fences[f] or 0) + 1
      if not tg.fence_min or f < tg.fence_min then tg.fence_min = f end
    end
    if g.items[g.head] == e then heap_push(tg.heap, e) end
  end

  -- The item left the queue (sent, failed, expired, dropped): its group moves on.
  local function retire(self, tg, e, result)
    if e.retired then return end
    e.retired = true
    heap_remove(tg.heap, e)
    local w = e.weight or 1
    tg.pending = tg.pending - w
    self.depth = self.depth - w
    local f = e.fence
    if f then
      local left = tg.fences[f] - 1
      tg.fences[f] = left > 0 and left or nil
      if left == 0 and f == tg.fence_min then
        tg.fence_min = nil
        for k in pairs(tg.fences) do
          if not tg.fence_min or k < tg.fence_min then tg.fence_min = k end
        end
      end
    end
    local g = tg.groups[e.group]
    if g and g.items[g.head] == e then
      repeat
        g.items[g.head] = nil
        g.head = g.head + 1
      until g.head > g.tail or not g.items[g.head].retired
      local nxt = g.items[g.head]
      if nxt then heap_push(tg.heap, nxt) else tg.groups[e.group] = nil end
    end
    if on_retire then on_retire(tg.name, e, result) end
  end

  -- The oldest waiting item of tg older than `than` (that the kind prefers to drop, if picky),
  -- other than `keep`.
  local function oldest(tg, picky, than, keep)
    for _, g in pairs(tg.groups) do
      for i = g.head, g.tail do
        local e = g.items[i]
        if e ~= keep and not e.retired and not e.in_flight and (not picky or prefer_drop(e))
          and (not than or e.seq < than.seq) then
          than = e
        end
      end
    end
    return than
  end

  local function drop(self, tg, victim, max)
    retire(self, tg, victim, "dropped")
    tg.dropped = tg.dropped + 1
    count(self, tg, "dropped")
    local why = text.drop_reason:format(max)
    self:persist(victim, { state = "failed", last_error = why })
    if text.dropped then
      self.log(2, text.dropped, { [label] = tg.name, id = tostring(victim.id), status = victim.status,
        dedup_key = tostring(victim.dedup_key), reason = why })
    end
    if on_drop then on_drop(tg.name, victim) end
  end

  -- Drops the oldest items the kind prefers to drop (then the oldest of any) until the queue
  -- fits its limit, and tg its target_limit; never `keep`, the item just pushed (a batch that
  -- alone is over the limit waits above it rather than go unsent: the newest state is the one
  -- worth sending).
  function C:trim(tg, keep)
    while self.depth > self.limit do
      local victim, vtg
      for pass = prefer_drop and 1 or 2, 2 do
        for _, t in pairs(self.targets) do
          local e = oldest(t, pass == 1, victim, keep)
          if e ~= victim then victim, vtg = e, t end
        end
        if victim then break end
      end
      if not victim then return end
      drop(self, vtg, victim, self.limit)
    end
    local max = self.target_limit
    while tg and max and tg.pending > max do
      local victim = prefer_drop and oldest(tg, true, nil, keep) or oldest(tg, false, nil, keep)
      if not victim then return end
      drop(self, tg, victim, max)
    end
  end

  local function arm(self, tg, at)
    if tg.timer and tg.timer_at == at then return end
    if tg.timer then tg.timer:stop() end
    tg.timer, tg.timer_at = nil, nil
    if not at or self.stopped then return end
    tg.timer_at = at
    tg.timer = self.timer(math.max(0, at - self.now()), function()
      tg.timer, tg.timer_at = nil, nil
      self:pump(tg)
    end)
  end

  local function norm(self, e)
    if not e.created_at or e.created_at == 0 then e.created_at = self.now() end
    -- an item without a group is one of its own
    e.group, e.attempts, e.next_at = e.group or e.dedup_key or e, e.attempts or 0, e.next_at or 0
  end

  -- An item to deliver. Never raises. The item is the queue's from now on.
  function C:push(e)
    if self.stopped then return end
    norm(self, e)
    local tg = self:target(e.target)
    place(self, tg, e)
    self:trim(tg, e)
    self:pump(tg)
  end

  -- Loads the undelivered items of the store (after a restart), oldest first.
  function C:resume()
    if not self.store then return 0 end
    local items, err = self.store:pending(self.limit + 1)
    if not items then
      self.log(3, text.load_failed, { error = tostring(err) })
      return 0
    end
    local touched = {}
    for _, e in ipairs(items) do
      norm(self, e)
      local tg = self:target(e.target)
      place(self, tg, e)
      touched[tg] = true
    end
    if #items > 0 then self.log(1, text.resumed, { [noun] = tostring(#items) }) end
    self:trim()
    for tg in pairs(touched) do self:trim(tg) self:pump(tg) end
    return #items
  end

  function C:backoff(attempts)
    local cap = math.min(self.backoff_max, self.backoff_initial * 2 ^ math.max(0, attempts - 1))
    return self.random() * cap
  end

  local function expire(self, tg, e, now)
    retire(self, tg, e, "expired")
    tg.expired = tg.expired + 1
    count(self, tg, "expired")
    local why = text.expire_reason:format(now - e.created_at, e.attempts)
    self:persist(e, { state = "expired", last_error = why })
    if text.expired then
      self.log(3, text.expired, { [label] = tg.name, id = tostring(e.id), status = e.status,
        dedup_key = tostring(e.dedup_key), attempts = tostring(e.attempts), last_error = tostring(e.last_error) })
    end
  end

  -- Starts what is due, within the in-flight limit and the breaker; arms the target's timer for
  -- the next due item.
  function C:pump(tg)
    if self.stopped then return end
    if tg.pumping then
      tg.repump = true
      return
    end
    tg.pumping = true
    repeat
      tg.repump = false
      local now = self.now()
      local wake
      while true do
        local e = tg.heap[1]
        if not e then break end
        if now - e.created_at >= self.ttl then
          expire(self, tg, e, now)
        elseif e.next_at > now then
          wake = e.next_at
          break
        elseif tg.in_flight >= self.max_in_flight then
          break -- a completion pumps again
        elseif tg.breaker == "open" and (now < tg.open_until or tg.probing) then
          if not tg.probing then wake = tg.open_until end
          break
        else
          if e.fence and e.fence > tg.fence_min then
            -- an older fence goes first: its next item due, else wait for it (a retry's time,
            -- or a completion, which pumps again)
            local first
            for _, x in ipairs(tg.heap) do
              if x.fence == tg.fence_min and (not first or less(x, first)) then first = x end
            end
            if not first or first.next_at > now then
              wake = first and first.next_at
              break
            end
            e = first
          end
          heap_remove(tg.heap, e)
          if tg.breaker == "open" then
            tg.probing, e.probe = true, true
          end
          self:start(tg, e)
        end
      end
      arm(self, tg, wake)
    until not tg.repump
    tg.pumping = false
  end

  function C:start(tg, e)
    e.attempts = e.attempts + 1
    e.in_flight = true
    tg.in_flight = tg.in_flight + 1
    tg.attempts = tg.attempts + 1
    local conf, cerr = self.resolve(tg.name)
    if not conf then
      -- not configured (or its plugin failed to load): retried, so a fixed config delivers it
      self.timer(0, function() self:finish(tg, e, false, cerr or ("no %s named %q"):format(label, tg.name)) end)
      return
    end
    e.conf = conf
    local done = false
    local ok, err = pcall(self.send, conf, e.payload, function(fine, why, info)
      if done then return end
      done = true
      self:finish(tg, e, fine, why, info)
    end, e)
    if not ok then
      done = true
      self.timer(0, function() self:finish(tg, e, false, tostring(err)) end)
    end
  end

  local function open_breaker(self, tg, now)
    local was = tg.breaker
    tg.breaker = "open"
    tg.open_until = now + self.breaker_probe
    if was ~= "open" then
      self.log(3, text.breaker_open, { [label] = tg.name,
        failures = tostring(tg.failures), probe_every = ("%gs"):format(self.breaker_probe), last_error = tg.last_error })
      gauge_breaker(self, tg)
    end
  end

  local function close_breaker(self, tg, now)
    if tg.breaker == "closed" then return end
    tg.breaker = "closed"
    self.log(1, text.breaker_closed, { [label] = tg.name })
    gauge_breaker(self, tg)
    -- the probe proved the receiver is back: everything waiting goes now
    for _, e in ipairs(tg.heap) do
      if e.next_at > now then e.next_at = now end
    end
    table.sort(tg.heap, less)
    for i, e in ipairs(tg.heap) do e.hpos = i end
  end

  local function failed(self, tg, e, now, err, info, probe)
    e.last_error = err
    tg.last_error, tg.last_error_at = err, now
    if self.metrics and M_FAILURES then
      self.metrics.increment_counter(M_FAILURES, 1, tags(tg, ""))
    end
    if info and info.permanent then
      tg.failed = tg.failed + 1
      retire(self, tg, e, "failed")
      count(self, tg, "failed")
      self:persist(e, { state = "failed", attempts = e.attempts, last_error = err })
      if text.failed then
        self.log(3, text.failed, { [label] = tg.name, id = tostring(e.id),
          dedup_key = tostring(e.dedup_key), error = err })
      end
      return
    end
    tg.failures = tg.failures + 1
    if probe or tg.failures >= self.breaker_failures then open_breaker(self, tg, now) end
    local delay = self:backoff(e.attempts)
    local ra = info and tonumber(info.retry_after)
    if ra and ra >= 0 then delay = math.min(ra, 3600) end
    e.next_at = now + delay
    if e.next_at - e.created_at >= self.ttl then
      expire(self, tg, e, now)
    else
      heap_push(tg.heap, e)
      self:persist(e, { attempts = e.attempts, next_attempt_at = e.next_at, last_error = err })
      if text.retry then self.log(2, text.retry, { [label] = tg.name, id = tostring(e.id),
        attempt = tostring(e.attempts), retry_in = ("%.3fs"):format(delay), error = err }) end
    end
  end

  function C:finish(tg, e, ok, err, info)
    e.in_flight = nil
    tg.in_flight = tg.in_flight - 1
    local probe = e.probe
    e.probe = nil
    if probe then tg.probing = false end
    if self.stopped then return end
    local now = self.now()
    if ok then
      tg.failures = 0
      tg.last_success_at = now
      close_breaker(self, tg, now)
      tg.sent = tg.sent + 1
      retire(self, tg, e, e.ok_result or "sent")
      count(self, tg, e.ok_result or "sent")
      if self.metrics and M_LATENCY then
        self.metrics.record_histogram(M_LATENCY, math.max(0, now - e.created_at), tags(tg, ""))
      end
      self:persist(e, { state = "sent", sent_at = now, attempts = e.attempts })
    else
      failed(self, tg, e, now, tostring(err or "delivery failed"), info, probe)
    end
    self:pump(tg)
  end

  function C:status()
    local out = {}
    for name, tg in pairs(self.targets) do
      out[name] = { breaker = tg.breaker, in_flight = tg.in_flight, pending = tg.pending,
        consecutive_failures = tg.failures, sent = tg.sent, failed = tg.failed, expired = tg.expired,
        dropped = tg.dropped, attempts = tg.attempts, last_error = tg.last_error,
        last_error_at = tg.last_error_at, last_success_at = tg.last_success_at,
        breaker_retry_at = tg.breaker == "open" and tg.open_until or nil }
    end
    return out
  end

  -- Writes what is not yet written, and stops every timer; undelivered items stay in the store.
  function C:stop()
    self:flush()
    self.stopped = true
    for _, tg in pairs(self.targets) do arm(self, tg, nil) end
    if self.flush_timer then self.flush_timer:stop() self.flush_timer = nil end
  end

  return C
end

return Queue
