-- The delivery queue (agent.queue) alone, with a made-up kind that is not notifications:
-- batches of samples to "backends", with its own metric names, label, log texts, settings,
-- trim policy and an in-memory persistence adapter. Retries, backoff, the breaker, expiry,
-- trimming, group order and dedup keys work for it as they do for the outbox, and nothing of
-- the notification kind shows.
local Queue = require "agent.queue"
local DROPPED = {} -- backend -> samples in the batches trimmed (the kind's on_drop)
local fake_loop = require("fake_loop").new

local Batches = Queue.kind {
  label = "backend",
  noun = "batches",
  metrics = {
    outcomes = "fake_batches_total", attempt_failures = "fake_batch_attempt_failures_total",
    latency = "fake_batch_seconds", depth = "fake_batch_queue_depth", breaker = "fake_backend_breaker_open",
  },
  text = {
    dropped = "batch dropped", expired = "batch expired", failed = "batch rejected",
    retry = "batch send failed, will retry", breaker_open = "backend paused", breaker_closed = "backend back",
    flush_failed = "spill update failed", load_failed = "cannot read the spill", resumed = "spill resumed",
    drop_reason = "dropped: at most %d batches", expire_reason = "expired after %gs (%d attempts)",
  },
  settings = function(s)
    return { ttl = s.keep, max_in_flight = s.parallel, backoff_initial = s.wait, backoff_max = s.wait_max,
      breaker_failures = s.trip, breaker_probe = s.probe, limit = s.total, target_limit = s.per_backend }
  end,
  prefer_drop = function(e) return e.status == "cheap" end,
  on_drop = function(target, item) DROPPED[target] = (DROPPED[target] or 0) + item.payload.samples end,
}

-- The spill: rows by id, written in transactions (counted).
local function memory_store()
  local S = { rows = {}, txs = 0, next_id = 0 }
  function S:add(item)
    self.next_id = self.next_id + 1
    item.id = self.next_id
    self.rows[item.id] = { item = item, attempts = 0 }
    return item
  end
  function S:pending(limit)
    local ids = {}
    for id, r in pairs(self.rows) do if not r.state then ids[#ids + 1] = id end end
    table.sort(ids)
    local out = {}
    for i = 1, math.min(limit, #ids) do
      local r, it = self.rows[ids[i]], self.rows[ids[i]].item
      out[i] = { id = ids[i], target = it.target, payload = it.payload, group = it.group, status = it.status,
        dedup_key = it.dedup_key, created_at = it.created_at, attempts = r.attempts, next_at = r.next_attempt_at }
    end
    return out
  end
  function S:update(id, fields)
    for k, v in pairs(fields) do self.rows[id][k] = v end
    return true
  end
  function S:tx(fn)
    self.txs = self.txs + 1
    local ok, res = pcall(fn)
    if not ok then return nil, res end
    return res
  end
  return S
end

local function recorder()
  local R = { counters = {}, gauges = {}, hist = {}, logs = {} }
  R.metrics = {
    increment_counter = function(name, v, tags)
      local k = name .. "/" .. tostring(tags.backend) .. "/" .. tostring(tags.result)
      R.counters[k] = (R.counters[k] or 0) + v
    end,
    set_gauge = function(name, v, tags) R.gauges[name .. "/" .. tags.backend] = v end,
    record_histogram = function(name, v, tags) R.hist[#R.hist + 1] = { name, v, tags.backend } end,
  }
  function R.log(level, msg, fields) R.logs[#R.logs + 1] = { level = level, msg = msg, fields = fields } end
  function R.names()
    local all = {}
    for k in pairs(R.counters) do all[#all + 1] = k end
    for k in pairs(R.gauges) do all[#all + 1] = k end
    for _, h in ipairs(R.hist) do all[#all + 1] = h[1] end
    for _, l in ipairs(R.logs) do
      all[#all + 1] = l.msg
      for k, v in pairs(l.fields) do all[#all + 1] = k .. "=" .. tostring(v) end
    end
    return all
  end
  return R
end

-- A backend whose sends are recorded and answered by the test (or by `answer`).
local function fake_backend(L, answer)
  local B = { calls = {} }
  function B.send(conf, batch, done, item)
    local call = { batch = batch, conf = conf, at = L.t, attempts = item.attempts, dedup_key = item.dedup_key,
      done = done }
    B.calls[#B.calls + 1] = call
    call.reply = done
    if answer then answer(call) end
  end
  return B
end

local function new(L, B, settings, extra)
  extra = extra or {}
  return Batches.new {
    now = L.now, timer = L.timer, random = function() return 1 end, settings = settings or {},
    resolve = function(name) return { name = name, url = "mem://" .. name } end, send = B.send,
    store = extra.store, metrics = extra.R and extra.R.metrics, log = extra.R and extra.R.log,
  }
end

local function batch(n, backend, group, status)
  return { target = backend or "tsdb", payload = { samples = n }, group = group, status = status,
    dedup_key = "batch-" .. n }
end

describe("agent.queue with a made-up kind", function()
  it("delivers, counting and logging under the kind's own names", function()
    local L, R = fake_loop(), recorder()
    local B = fake_backend(L, function(c) c.reply(true) end)
    local q = new(L, B, {}, { R = R })
    q:push(batch(1))
    assert.equals(1, #B.calls)
    assert.same({ samples = 1 }, B.calls[1].batch)
    assert.equals("mem://tsdb", B.calls[1].conf.url)
    assert.equals(1, R.counters["fake_batches_total/tsdb/sent"])
    assert.equals("fake_batch_seconds", R.hist[1][1])
    q:update_metrics()
    assert.equals(0, R.gauges["fake_batch_queue_depth/tsdb"])
    assert.equals(0, q.depth)
  end)

  it("retries with full-jitter backoff and the same dedup key, up to the kind's maximum", function()
    local L, R = fake_loop(), recorder()
    local B = fake_backend(L, function(c) c.reply(false, "HTTP 500") end)
    local q = new(L, B, { wait = 2, wait_max = 16, trip = 100 }, { R = R })
    q.random = function() return 0.5 end
    q:push(batch(1))
    L.advance(200)
    local gaps = {}
    for i = 2, 7 do gaps[#gaps + 1] = B.calls[i].at - B.calls[i - 1].at end
    assert.same({ 1, 2, 4, 8, 8, 8 }, gaps) -- half of min(16, 2 * 2^(k-1))
    for i, c in ipairs(B.calls) do
      assert.equals(i, c.attempts)
      assert.equals("batch-1", c.dedup_key) -- every attempt carries it: a receiver can drop a repeat
    end
    assert.equals(#B.calls, R.counters["fake_batch_attempt_failures_total/tsdb/nil"])
    assert.equals("batch send failed, will retry", R.logs[1].msg)
    assert.equals("tsdb", R.logs[1].fields.backend)
  end)

  it("waits what Retry-After says and never retries a permanent failure", function()
    local L = fake_loop()
    local B = fake_backend(L)
    local q = new(L, B, { wait = 0.1 })
    q:push(batch(1))
    B.calls[1].reply(false, "HTTP 429", { retry_after = 3 })
    L.advance(2.9)
    assert.equals(1, #B.calls)
    L.advance(0.2)
    assert.equals(2, #B.calls)
    B.calls[2].reply(false, "HTTP 400", { permanent = true })
    L.advance(3600)
    assert.equals(2, #B.calls)
    assert.equals(1, q.totals.failed)
  end)

  it("opens the backend's breaker, probes at the kind's interval, and a good probe releases the rest", function()
    local L, R = fake_loop(), recorder()
    local up = false
    local B = fake_backend(L, function(c) if up then c.reply(true) else c.reply(false, "refused") end end)
    local q = new(L, B, { wait = 1, wait_max = 1, trip = 3, probe = 30 }, { R = R })
    for i = 1, 5 do q:push(batch(i)) end
    assert.equals("open", q:status().tsdb.breaker)
    assert.equals(3, #B.calls)
    local open
    for _, l in ipairs(R.logs) do if l.msg == "backend paused" then open = l end end
    assert.equals("30s", open.fields.probe_every)
    assert.equals(1, R.gauges["fake_backend_breaker_open/tsdb"])
    L.advance(29)
    assert.equals(3, #B.calls)
    L.advance(1)
    assert.equals(4, #B.calls) -- one probe
    up = true
    L.advance(30)
    assert.equals("closed", q:status().tsdb.breaker)
    assert.equals(5, q.totals.sent)
    assert.equals(0, R.gauges["fake_backend_breaker_open/tsdb"])
  end)

  it("expires what is older than the kind's ttl, and writes it to the spill", function()
    local L, R = fake_loop(), recorder()
    local S = memory_store()
    local B = fake_backend(L, function(c) c.reply(false, "down") end)
    local q = new(L, B, { keep = 50, wait = 10, wait_max = 10, trip = 1000 }, { store = S, R = R })
    local b = S:add(batch(1))
    q:push(b)
    L.advance(100)
    assert.equals(1, q.totals.expired)
    assert.equals("expired", S.rows[b.id].state)
    assert.matches("^expired after", S.rows[b.id].last_error)
    assert.equals(1, R.counters["fake_batches_total/tsdb/expired"])
  end)

  it("keeps a group's order, and sends different groups in parallel up to the kind's limit", function()
    local L = fake_loop()
    local B = fake_backend(L)
    local q = new(L, B, { parallel = 2 })
    q:push(batch(1, "tsdb", "a"))
    q:push(batch(2, "tsdb", "a"))
    q:push(batch(3, "tsdb", "b"))
    q:push(batch(4, "tsdb", "c"))
    assert.equals(2, #B.calls) -- 1 (a) and 3 (b); 2 waits behind 1, 4 behind the limit
    assert.same({ 1, 3 }, { B.calls[1].batch.samples, B.calls[2].batch.samples })
    B.calls[1].reply(true)
    assert.equals(2, B.calls[3].batch.samples)
  end)

  it("trims past the per-target limit (oldest first) and past the total (what the kind prefers first)", function()
    local L, R = fake_loop(), recorder()
    local S = memory_store()
    local B = fake_backend(L) -- never answers
    local q = new(L, B, { parallel = 1, per_backend = 3, total = 5 }, { store = S, R = R })
    for i = 1, 5 do q:push(S:add(batch(i, "a"))) end -- 1 in flight; 2 and 3 dropped, oldest first
    assert.equals(2, q.totals.dropped)
    assert.equals(3, q.targets.a.pending)
    assert.equals(2 + 3, DROPPED.a)
    assert.equals(2, R.counters["fake_batches_total/a/dropped"])
    q:flush()
    assert.equals("failed", S.rows[2].state)
    assert.equals("dropped: at most 3 batches", S.rows[3].last_error)
    q:push(S:add(batch(6, "b")))                -- in flight
    q:push(S:add(batch(7, "b", nil, "cheap")))
    q:push(S:add(batch(8, "b"))) -- 6 > 5: drops 7, the one the kind prefers, not the oldest (4)
    assert.equals(3, q.totals.dropped)
    assert.equals(1, R.counters["fake_batches_total/b/dropped"])
    assert.equals(7, DROPPED.b)
    q:flush()
    assert.equals("failed", S.rows[7].state)
    assert.is_nil(S.rows[4].state)
    local dropped = R.logs[#R.logs]
    assert.equals("batch dropped", dropped.msg)
    assert.equals("b", dropped.fields.backend)
  end)

  it("resumes from its spill after a restart, with attempts and dedup keys kept, updates in one transaction", function()
    local L, R = fake_loop(), recorder()
    local S = memory_store()
    local B = fake_backend(L, function(c) c.reply(false, "down") end)
    local q = new(L, B, { wait = 60, wait_max = 60, trip = 100 }, { store = S, R = R })
    for i = 1, 3 do q:push(S:add(batch(i, "tsdb", "g"))) end
    q:push(S:add(batch(4, "other")))
    q:stop() -- the first of each group failed once; everything is still pending
    assert.equals(1, S.txs)
    assert.equals(1, S.rows[1].attempts)

    local B2 = fake_backend(L, function(c) c.reply(true) end)
    local q2 = new(L, B2, { wait = 60, wait_max = 60 }, { store = S, R = R })
    assert.equals(4, q2:resume())
    assert.equals("spill resumed", R.logs[#R.logs].msg)
    assert.equals("4", R.logs[#R.logs].fields.batches)
    L.advance(60)
    local keys = { tsdb = {}, other = {} }
    for _, c in ipairs(B2.calls) do
      table.insert(keys[c.conf.name], c.batch.samples .. ":" .. c.attempts)
      assert.equals("batch-" .. c.batch.samples, c.dedup_key)
    end
    assert.same({ "1:2", "2:1", "3:1" }, keys.tsdb) -- group g in order, the first on its second attempt
    assert.same({ "4:2" }, keys.other)
    q2:flush()
    assert.same({}, S:pending(10))
    for id = 1, 4 do assert.equals("sent", S.rows[id].state) end
  end)

  it("names nothing of notifications", function()
    local L, R = fake_loop(), recorder()
    local S = memory_store()
    local B = fake_backend(L, function(c) c.reply(false, "down", { permanent = c.batch.samples == 3 }) end)
    local q = new(L, B, { keep = 30, wait = 1, wait_max = 1, trip = 2, probe = 5, total = 3 }, { store = S, R = R })
    for i = 1, 5 do q:push(S:add(batch(i))) end
    L.advance(60)
    q:update_metrics()
    q:stop()
    local all = R.names()
    assert.is_true(#all > 20)
    for _, s in ipairs(all) do
      assert.is_nil(s:find("notification", 1, true), s)
      assert.is_nil(s:find("channel", 1, true), s)
      assert.is_nil(s:find("outbox", 1, true), s)
    end
  end)
end)

describe("agent.queue when the store cannot write", function()
  it("keeps the row updates, retries them, and logs the failure once and the recovery once", function()
    local L, R = fake_loop(), recorder()
    local S = memory_store()
    local tx = S.tx
    local failing = true
    function S:tx(fn)
      if failing then
        self.txs = self.txs + 1
        return nil, "store: database or disk is full"
      end
      return tx(self, fn)
    end
    local B = fake_backend(L, function(c) c.reply(true) end)
    local q = new(L, B, {}, { store = S, R = R })
    for i = 1, 3 do q:push(S:add(batch(i))) end
    L.advance(0.1) -- the first flush: fails
    for i = 4, 5 do q:push(S:add(batch(i))) end
    L.advance(5)   -- retried every second, still failing
    assert.is_true(S.txs >= 4)
    local function count(msg)
      local n = 0
      for _, l in ipairs(R.logs) do if l.msg == msg then n = n + 1 end end
      return n
    end
    assert.equals(1, count("spill update failed"))
    for i = 1, 5 do assert.is_nil(S.rows[i].state) end
    failing = false
    L.advance(1.5)
    for i = 1, 5 do assert.equals("sent", S.rows[i].state) end
    assert.equals(1, count("queue updates written again"))
    assert.equals(1, count("spill update failed"))
    local before = S.txs
    L.advance(10)  -- nothing left to write: no more transactions
    assert.equals(before, S.txs)
  end)

end)

describe("agent.queue: weights and long-lived groups", function()
  it("weighs items by their weight, tells on_retire why each left, and never drops the one just pushed", function()
    local L = fake_loop()
    local B = fake_backend(L) -- never answers
    local retired = {}
    local Kind = Queue.kind { label = "backend", settings = function() return { limit = 10 } end,
      on_retire = function(target, e, result) retired[#retired + 1] = target .. ":" .. e.dedup_key .. ":" .. result end }
    local q = Kind.new { now = L.now, timer = L.timer, resolve = function(n) return { name = n } end, send = B.send }
    local function w(key, n) return { target = "t", group = "g", dedup_key = key, weight = n } end
    q:push(w("a", 4)) -- in flight
    q:push(w("b", 4))
    q:push(w("c", 4)) -- 12 > 10: b goes (a is in flight)
    assert.same({ "t:b:dropped" }, retired)
    assert.equals(8, q.depth)
    q:push(w("huge", 30)) -- alone over the limit: c goes, huge waits above it
    assert.same({ "t:b:dropped", "t:c:dropped" }, retired)
    assert.equals(34, q.depth)
    B.calls[1].reply(true)
    assert.same({ "t:b:dropped", "t:c:dropped", "t:a:sent" }, retired)
    assert.equals(30, q.depth)
    B.calls[2].reply(false, "nope", { permanent = true })
    assert.same("t:huge:failed", retired[4])
    assert.equals(0, q.depth)
  end)

  it("keeps a long-lived group in order and within its limit after its head has moved far", function()
    -- regression: the group's items were appended at #items + 1, and once the delivered ones
    -- before the head were nil, LuaJIT's # could answer a border below the head: new items went
    -- where nothing reads them, were never sent nor trimmed, and the queue stopped for good
    local L = fake_loop()
    local B = fake_backend(L)
    local retired = {}
    local Kind = Queue.kind { label = "backend", settings = function() return { limit = 40 } end,
      on_retire = function(_, e, result) retired[#retired + 1] = e.dedup_key .. ":" .. result end }
    local q = Kind.new { now = L.now, timer = L.timer, resolve = function(n) return { name = n } end, send = B.send }
    local n = 0
    local function push()
      n = n + 1
      q:push { target = "t", group = "g", dedup_key = tostring(n), weight = 4 }
    end
    for _ = 1, 300 do
      push()
      push()
      B.calls[#B.calls].reply(true) -- one answer for two pushes: the buffer fills, the oldest go
    end
    assert.is_true(q.depth <= 40 + 4, "depth " .. q.depth)
    -- everything pushed left the queue or waits in it, and what was sent went in order
    local sent, last = 0, 0
    for _, r in ipairs(retired) do
      local k, why = r:match("^(%d+):(%a+)$")
      if why == "sent" then
        sent = sent + 1
        assert.is_true(tonumber(k) > last, "sent out of order at " .. k)
        last = tonumber(k)
      end
    end
    assert.equals(600, #retired + q.depth / 4)
    -- and it still delivers: answer everything that is asked from now on
    local before = sent
    for _ = 1, 20 do
      push()
      local c = B.calls[#B.calls]
      if c then c.reply(true) end
    end
    local after = 0
    for _, r in ipairs(retired) do if r:match(":sent$") then after = after + 1 end end
    assert.is_true(after >= before + 15, ("only %d more sent"):format(after - before))
  end)

  it("sends a fence's items together and never before an older fence has left, retries included", function()
    local L = fake_loop()
    local B = fake_backend(L)
    local Kind = Queue.kind { label = "backend", settings = function()
      return { max_in_flight = 4, backoff_initial = 1, backoff_max = 1, breaker_failures = 100 } end }
    local q = Kind.new { now = L.now, timer = L.timer, random = function() return 1 end,
      resolve = function(n) return { name = n } end, send = B.send }
    local function started()
      local out = {}
      for _, c in ipairs(B.calls) do out[#out + 1] = c.batch end
      return table.concat(out, " ")
    end
    for _, k in ipairs { "a", "b", "c" } do q:push { target = "t", payload = k, fence = 1 } end
    for _, k in ipairs { "d", "e" } do q:push { target = "t", payload = k, fence = 2 } end
    assert.equals("a b c", started()) -- a free slot, but d and e wait for fence 1
    B.calls[1].reply(true)
    B.calls[2].reply(false, "HTTP 503") -- b retries in 1 s
    assert.equals("a b c", started())
    B.calls[3].reply(true)
    assert.equals("a b c", started()) -- c is done, b waits for its retry: d and e still wait
    L.advance(1)
    assert.equals("a b c b", started())
    B.calls[4].reply(true)
    assert.equals("a b c b d e", started())
    -- a newer fence pushed while an older one is in flight waits too
    q:push { target = "t", payload = "f", fence = 3 }
    assert.equals("a b c b d e", started())
    B.calls[5].reply(true)
    B.calls[6].reply(true)
    assert.equals("a b c b d e f", started())
    assert.equals(1, q.depth)
  end)
end)
