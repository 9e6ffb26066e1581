-- The outbox (beagle.delivery) on a fake clock: ordering per group, the in-flight limit, backoff,
-- Retry-After, permanent failures, the breaker, expiry, the bound, resume from the SQLite store,
-- and ten minutes of a receiver being down with the default settings.
local Delivery = require "agent.delivery"

local fake_loop = require("fake_loop").new

-- A channel whose attempts are recorded and answered by the test (or by `answer`).
local function fake_channel(L, answer)
  local C = { calls = {}, open = {}, max_open = 0 }
  function C.attempt(conf, n, done)
    local call = { n = n, at = L.t, conf = conf, done = done, attempt = n.attempt }
    C.calls[#C.calls + 1] = call
    C.open[call] = true
    local k = 0
    for _ in pairs(C.open) do k = k + 1 end
    C.max_open = math.max(C.max_open, k)
    call.reply = function(...)
      C.open[call] = nil
      done(...)
    end
    if answer then answer(call) end
  end
  return C
end

local function new(L, C, settings, store)
  return Delivery.new {
    now = L.now, timer = L.timer, random = function() return 1 end, store = store,
    settings = settings or {},
    channel = function(name) return { name = name, plugin = "test" } end,
    attempt = C.attempt,
  }
end

local function note(id, group, status)
  return { id = id, channel = "sink", status = status or "firing", group_key = group or ("g" .. id),
    dedup_key = "dk" .. id, created_at = 1000, alerts = { { name = "a", fingerprint = "fp" .. id, status = status or "firing" } } }
end

describe("agent.delivery", function()
  it("with a store, sends nothing whose row is not committed (no id), and says so once", function()
    local L = fake_loop()
    local C = fake_channel(L, function(c) c.reply(true) end)
    local logs = {}
    local d = Delivery.new {
      now = L.now, timer = L.timer, random = function() return 1 end, settings = {},
      store = { pending_notifications = function() return {} end },
      channel = function(name) return { name = name, plugin = "test" } end, attempt = C.attempt,
      log = function(_, msg) logs[#logs + 1] = msg end,
    }
    local n = note(1)
    n.id = nil
    d:enqueue(n)
    d:enqueue(note(2))
    local t = note(3)
    t.id, t.test = nil, true -- a test notification has no row
    d:enqueue(t)
    assert.equals(2, #C.calls)
    assert.equals("dk2", C.calls[1].n.dedup_key)
    assert.equals("dk3", C.calls[2].n.dedup_key)
    assert.are.same({ "notification not in the outbox: not sent" }, logs)
  end)

  it("delivers, and counts the notification sent", function()
    local L = fake_loop()
    local C = fake_channel(L, function(c) c.reply(true) end)
    local d = new(L, C)
    d:enqueue(note(1))
    assert.equals(1, #C.calls)
    assert.equals("dk1", C.calls[1].n.dedup_key)
    assert.equals(1, C.calls[1].attempt)
    assert.equals(1, d.totals.sent)
    assert.equals(0, d.depth)
  end)

  it("reports each channel's outbox depth when metrics are collected", function()
    local L = fake_loop()
    local C = fake_channel(L)
    local gauges = {}
    local d = Delivery.new {
      now = L.now, timer = L.timer, random = function() return 1 end, settings = {},
      channel = function(name) return { name = name, plugin = "test" } end, attempt = C.attempt,
      metrics = {
        set_gauge = function(name, v, tags) gauges[name .. "/" .. tags.channel] = v end,
        increment_counter = function() end, record_histogram = function() end,
      },
    }
    for i = 1, 6 do d:enqueue(note(i)) end
    d:update_metrics()
    assert.equals(6, gauges["beagle_notification_outbox_depth/sink"]) -- 4 in flight, 2 waiting
    C.calls[1].reply(true)
    C.calls[2].reply(true)
    d:update_metrics()
    assert.equals(4, gauges["beagle_notification_outbox_depth/sink"])
  end)

  it("keeps a group's order: a resolve never overtakes its firing", function()
    local L = fake_loop()
    local C = fake_channel(L)
    local d = new(L, C, { notification_backoff_initial = 10 })
    d:enqueue(note(1, "g", "firing"))
    d:enqueue(note(2, "g", "resolved"))
    assert.equals(1, #C.calls) -- the resolve waits behind the firing
    C.calls[1].reply(false, "HTTP 500")
    L.advance(5)
    assert.equals(1, #C.calls) -- still waiting for the firing's retry (10 s with random = 1)
    L.advance(5)
    assert.equals(2, #C.calls)
    assert.equals("firing", C.calls[2].n.status)
    C.calls[2].reply(true)
    assert.equals(3, #C.calls)
    assert.equals("resolved", C.calls[3].n.status)
    C.calls[3].reply(true)
    assert.equals(2, d.totals.sent)
  end)

  it("has at most notification_max_in_flight deliveries in flight per channel", function()
    local L = fake_loop()
    local C = fake_channel(L)
    local d = new(L, C)
    for i = 1, 10 do d:enqueue(note(i)) end
    assert.equals(4, #C.calls)
    C.calls[2].reply(true)
    assert.equals(5, #C.calls)
    assert.equals(4, C.max_open)
    while #C.calls < 10 or next(C.open) do
      local c = next(C.open)
      c.reply(true)
    end
    assert.equals(4, C.max_open)
    assert.equals(10, d.totals.sent)
  end)

  it("backs off exponentially with full jitter, up to the maximum", function()
    local L = fake_loop()
    local C = fake_channel(L, function(c) c.reply(false, "down") end)
    local d = new(L, C, { notification_backoff_initial = 5, notification_backoff_max = 40,
      notification_breaker_failures = 100 })
    d.random = function() return 0.5 end
    d:enqueue(note(1))
    L.advance(1000)
    local gaps = {}
    for i = 2, 8 do gaps[#gaps + 1] = C.calls[i].at - C.calls[i - 1].at end
    -- half of min(40, 5 * 2^(k-1))
    assert.same({ 2.5, 5, 10, 20, 20, 20, 20 }, gaps)
    -- and the jitter is drawn: random() = 0 retries at once
    assert.equals(0, (function() d.random = function() return 0 end return d:backoff(3) end)())
  end)

  it("waits what Retry-After says", function()
    local L = fake_loop()
    local C = fake_channel(L)
    local d = new(L, C, { notification_backoff_initial = 0.1 })
    d:enqueue(note(1))
    C.calls[1].reply(false, "HTTP 429", { retry_after = 7 })
    L.advance(6.9)
    assert.equals(1, #C.calls)
    L.advance(0.2)
    assert.equals(2, #C.calls)
    assert.near(7, C.calls[2].at - C.calls[1].at, 1e-9)
  end)

  it("does not retry a permanent failure, and counts it", function()
    local L = fake_loop()
    local C = fake_channel(L, function(c) c.reply(false, "HTTP 400: bad payload", { permanent = true }) end)
    local d = new(L, C)
    d:enqueue(note(1))
    L.advance(3600)
    assert.equals(1, #C.calls)
    assert.equals(1, d.totals.failed)
    assert.equals(0, d.depth)
  end)

  it("opens the breaker after straight failures, probes once a minute, and a good probe releases the rest", function()
    local L = fake_loop()
    local up = false
    local C = fake_channel(L, function(c) if up then c.reply(true) else c.reply(false, "connection refused") end end)
    local d = new(L, C, { notification_backoff_initial = 1, notification_backoff_max = 2 })
    for i = 1, 8 do d:enqueue(note(i)) end
    L.advance(3)
    assert.equals("open", d:status().sink.breaker)
    local n = #C.calls
    assert.equals(5, n) -- the fifth straight failure opened it (at t = 1000)
    L.advance(56)
    assert.equals(n, #C.calls) -- nothing while open
    L.advance(1)
    assert.equals(n + 1, #C.calls) -- one probe
    L.advance(59)
    assert.equals(n + 1, #C.calls)
    up = true
    L.advance(1)
    assert.equals("closed", d:status().sink.breaker)
    assert.equals(8, d.totals.sent)
    assert.equals(0, d.depth)
  end)

  it("expires what is older than notification_ttl", function()
    local L = fake_loop()
    local C = fake_channel(L, function(c) c.reply(false, "down") end)
    local d = new(L, C, { notification_ttl = 100, notification_backoff_initial = 10, notification_backoff_max = 10,
      notification_breaker_failures = 1000 })
    d:enqueue(note(1))
    L.advance(200)
    assert.equals(1, d.totals.expired)
    assert.equals(0, d.depth)
    assert.is_true(#C.calls <= 10)
  end)

  it("keeps at most notification_outbox_max, dropping the oldest resolved first", function()
    local L = fake_loop()
    local C = fake_channel(L) -- never answers: everything stays queued behind 4 in flight
    local d = new(L, C, { notification_outbox_max = 6 })
    for i = 1, 4 do d:enqueue(note(i)) end                -- in flight
    d:enqueue(note(5, "g5", "firing"))
    d:enqueue(note(6, "g6", "resolved"))
    d:enqueue(note(7, "g7", "resolved"))                  -- 7 > 6: drops 6 (oldest resolved)
    assert.equals(1, d.totals.dropped)
    assert.equals(6, d.depth)
    d:enqueue(note(8, "g8", "firing"))                    -- drops 7 (the other resolved)
    d:enqueue(note(9, "g9", "firing"))                    -- no resolved left: the oldest, 5
    assert.equals(3, d.totals.dropped)
    for _, c in ipairs(C.calls) do c.reply(true) end
    local got = {}
    for i = 5, #C.calls do got[#got + 1] = C.calls[i].n.id end
    table.sort(got)
    assert.same({ 8, 9 }, got)
  end)

  it("re-sends the firing alerts of a resend channel until they resolve", function()
    local L = fake_loop()
    local C = fake_channel(L, function(c) c.reply(true) end)
    local active = { { name = "a", fingerprint = "fp1", status = "firing" } }
    local d = Delivery.new { now = L.now, timer = L.timer, settings = {},
      channel = function(name) return { name = name, resend = 60 } end, attempt = C.attempt,
      active_alerts = function() return active end }
    d:sync { am = { name = "am", resend = 60 } }
    L.advance(59)
    assert.equals(0, #C.calls)
    L.advance(1)
    assert.equals(1, #C.calls)
    assert.is_true(C.calls[1].n.resend)
    assert.equals("fp1", C.calls[1].n.alerts[1].fingerprint)
    L.advance(60)
    assert.equals(2, #C.calls)
    active = {}
    L.advance(120)
    assert.equals(2, #C.calls)
  end)

  it("with the default settings and the receiver down for 10 minutes: few attempts, all delivered after", function()
    local L = fake_loop()
    local down_until = L.t + 600
    local C = fake_channel(L, function(c)
      -- the receiver answers after 50 ms
      L.timer(0.05, function() if L.t < down_until then c.reply(false, "HTTP 503") else c.reply(true) end end)
    end)
    local d = Delivery.new { now = L.now, timer = L.timer, random = math.random, settings = {},
      channel = function(name) return { name = name } end, attempt = C.attempt }
    math.randomseed(7)
    for i = 1, 20 do d:enqueue(note(i)) end
    L.advance(600)
    assert.equals(20, d.depth)
    L.advance(120) -- the next probe (at most a minute) and the release
    assert.equals(20, d.totals.sent)
    local per = {}
    for _, c in ipairs(C.calls) do per[c.n.id] = (per[c.n.id] or 0) + 1 end
    local most = 0
    for _, k in pairs(per) do most = math.max(most, k) end
    assert.is_true(most <= 12, "attempts of one notification: " .. most)
    assert.is_true(C.max_open <= 4)
  end)
end)

describe("beagle.delivery with the SQLite store", function()
  local Store = require "agent.rules.store"
  local dir, path

  before_each(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir) == 0)
    path = dir .. "/state.db"
  end)
  after_each(function() os.execute("rm -rf " .. dir) end)

  it("resumes the pending rows after a restart, in order, and marks them sent", function()
    local L = fake_loop()
    local st = assert(Store.open(path, { now = L.now }))
    local ids = {}
    for i = 1, 3 do
      local n = note(i, "g", i == 3 and "resolved" or "firing")
      n.id = nil
      ids[i] = assert(st:log_notification(n))
    end
    -- the first was delivered before the crash
    assert(st:update_notification(ids[1], { state = "sent", sent_at = 1000 }))
    st:close()

    st = assert(Store.open(path, { now = L.now }))
    local C = fake_channel(L, function(c) c.reply(true) end)
    local d = new(L, C, {}, st)
    assert.equals(2, d:resume())
    L.advance(1)
    assert.equals(2, #C.calls)
    assert.equals(ids[2], C.calls[1].n.id)
    assert.equals("firing", C.calls[1].n.status)
    assert.equals("resolved", C.calls[2].n.status)
    assert.equals("dk2", C.calls[1].n.dedup_key)
    assert.same({}, st:pending_notifications(1e300, 10))
    local rows = st.db:query("SELECT state, attempts FROM notifications ORDER BY id")
    assert.same({ "sent", "sent", "sent" }, { rows[1].state, rows[2].state, rows[3].state })
    assert.equals(1, rows[2].attempts)
    st:close()
  end)
end)
