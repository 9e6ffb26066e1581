-- Alert state across a restart and the channels that group by themselves (issue 14 §1), on the
-- engine with a fake clock and its in-memory store: a restart is a new Engine over the same store.
local Engine = require("agent.rules.engine")

local T0 = 1700000000

local function rule(o)
  local r = { kind = "alert", name = "hot", file = "rules/x.lua", line = 1, enabled = true,
    metric = "v", condition = ">", threshold = 10, duration = 0, keep_firing_for = 0,
    severity = "warning", message = "v {{ value }}", labels = {}, every = 1 }
  for k, v in pairs(o or {}) do r[k] = v end
  return r
end

local function sample(value) return { labels = { host = "a" }, value = value } end

-- h.start(dt) makes a fresh engine over h.store at T0 + dt (a start or a restart); `direct`
-- names the channels that group by themselves; h.logs collects what the engine logs.
local function harness(o)
  o = o or {}
  local h = { t = T0, sent = {}, logs = {}, store = Engine.memory_store() }
  function h.start(dt, rules, routes)
    h.t = T0 + (dt or 0)
    h.e = Engine.new {
      now = function() return h.t end, store = h.store,
      settings = { alert_cooldown_minutes = 15, alert_max_notifications_per_hour = 10, alert_evaluation_interval = 1,
        metrics_collection_interval = o.collect or 1 },
      notify = function(n) h.sent[#h.sent + 1] = n end,
      direct = function(ch) return (o.direct or {})[ch] == true end,
      log = function(level, msg, fields) h.logs[#h.logs + 1] = { level = level, msg = msg, fields = fields } end,
    }
    h.e:set_rules(rules or { rule() }, routes or o.routes or
      { { channels = { "hook" }, group_by = { "alertname" }, group_wait = 0, group_interval = 60, repeat_interval = 14400 } })
  end
  function h.eval(dt, samples)
    h.t = T0 + dt
    assert(h.e:evaluate("hot", samples))
    h.e:tick()
  end
  function h.tick(dt)
    h.t = T0 + dt
    h.e:tick()
  end
  -- every alert of every notification to `ch` since index `from`, with its notification's status
  function h.alerts(ch, from)
    local out = {}
    for i = from or 1, #h.sent do
      local n = h.sent[i]
      if n.channel == ch then
        for _, a in ipairs(n.alerts) do out[#out + 1] = a end
      end
    end
    return out
  end
  function h.state()
    local a = h.e:alerts()
    return a[1] and a[1].state or "none", a[1]
  end
  return h
end

describe("a restart", function()
  it("keeps a firing alert firing while its series has no sample yet, with its startsAt", function()
    local h = harness()
    h.start(0)
    h.eval(1, { sample(42) })
    local state, a = h.state()
    assert.equals("firing", state)
    local starts = a.starts_at
    assert.equals(1, #h.alerts("hook"))
    -- kill -9 and start again 5 s later: the first evaluations see no data at all
    local before = #h.sent
    h.start(5)
    h.eval(6, {})
    h.eval(7, {})
    state, a = h.state()
    assert.equals("firing", state)
    assert.equals(starts, a.starts_at)
    -- then the data: still firing, same episode, nothing sent (the hook had it already)
    h.eval(8, { sample(43) })
    state, a = h.state()
    assert.equals("firing", state)
    assert.equals(starts, a.starts_at)
    assert.equals(before, #h.sent)
  end)

  it("resolves a restored alert on the first evaluation that sees its value clear it", function()
    local h = harness()
    h.start(0)
    h.eval(1, { sample(42) })
    local starts = h.e:alerts()[1].starts_at
    h.start(5)
    h.eval(6, {})
    assert.equals("firing", (h.state()))
    h.eval(7, { sample(1) })
    assert.equals("none", (h.state()))
    h.tick(65) -- the restored group's next flush: grid 5 + 60
    local res = h.alerts("hook")
    assert.equals("resolved", res[#res].status)
    assert.equals(starts, res[#res].starts_at)
    assert.equals(T0 + 7, res[#res].ends_at)
  end)

  it("resolves a restored alert whose series never comes back once the grace has passed", function()
    local h = harness()
    h.start(0)
    h.eval(1, { sample(42) })
    h.start(10)
    h.eval(11, {})
    h.eval(300, {})
    assert.equals("firing", (h.state()))
    h.eval(311, {})
    assert.equals("none", (h.state()))
  end)

  it("waits longer for an anomaly rule, whose score needs min_samples samples of history", function()
    local h = harness { collect = 10 }
    local r = { rule { kind = "anomaly", method = "mad", min_samples = 60, window = 3600 } }
    h.start(0, r)
    h.eval(1, { sample(42) })
    h.start(10, r)
    h.eval(400, {})
    assert.equals("firing", (h.state()))
    h.eval(625, {}) -- past (60 + 1) x 10 s after the restart at 10
    assert.equals("none", (h.state()))
  end)

  it("keeps a restored pending alert waiting out its duration", function()
    local h = harness()
    h.start(0, { rule { duration = 30 } })
    h.eval(1, { sample(42) })
    assert.equals("pending", (h.state()))
    h.start(5, { rule { duration = 30 } })
    h.eval(6, {})
    assert.equals("pending", (h.state()))
    h.eval(31, { sample(42) })
    local state, a = h.state()
    assert.equals("firing", state)
    assert.equals(T0 + 1, a.active_at)
  end)

  it("still resolves an alert whose series goes away while the agent runs", function()
    local h = harness()
    h.start(0)
    h.eval(1, { sample(42) })
    h.eval(2, {})
    assert.equals("none", (h.state()))
  end)
end)

describe("a resolved notification", function()
  it("carries starts_at and ends_at even when the alert is pending again before its group flushes", function()
    local h = harness { routes = { { channels = { "hook" }, group_by = { "alertname" }, group_wait = 0,
      group_interval = 60, repeat_interval = 14400 } } }
    h.start(0, { rule { duration = 30 } })
    h.eval(1, { sample(42) })
    h.eval(31, { sample(42) })
    assert.equals("firing", (h.state()))
    local starts = h.e:alerts()[1].starts_at
    h.eval(40, { sample(1) })  -- resolved; the group flushes at 91
    h.eval(50, { sample(42) }) -- pending again
    assert.equals("pending", (h.state()))
    local _, a = h.state()
    assert.is_nil(a.starts_at) -- the public view of a pending alert has no startsAt
    h.tick(91)
    local res = h.alerts("hook")
    local last = res[#res]
    assert.equals("resolved", last.status)
    assert.equals(starts, last.starts_at)
    assert.equals(T0 + 40, last.ends_at)
    for _, x in ipairs(res) do
      assert.is_number(x.starts_at)
      if x.status == "resolved" then assert.is_number(x.ends_at) end
    end
  end)
end)

describe("a direct channel (one that groups by itself, like Alertmanager)", function()
  local routes = { { channels = { "am", "hook" }, group_by = { "alertname" }, group_wait = 30,
    group_interval = 300, repeat_interval = 14400, cooldown = 900 } }

  it("gets the firing at once and the resolve at once, the others after group_wait and group_interval", function()
    local h = harness { direct = { am = true }, routes = routes }
    h.start(0)
    h.eval(1, { sample(42) })
    local am = h.alerts("am")
    assert.equals(1, #am)
    assert.equals("firing", am[1].status)
    assert.equals(1, am[1].eval_interval)
    assert.equals(0, #h.alerts("hook"))
    h.eval(31, { sample(42) })
    assert.equals(1, #h.alerts("hook"))
    h.eval(40, { sample(1) })
    am = h.alerts("am")
    assert.equals(2, #am)
    assert.equals("resolved", am[2].status)
    assert.equals(T0 + 1, am[2].starts_at)
    assert.equals(T0 + 40, am[2].ends_at)
    assert.equals(1, #h.alerts("hook")) -- the hook's resolve waits for the group interval
    h.tick(331)
    assert.equals(2, #h.alerts("hook"))
    assert.equals(2, #h.alerts("am"))
  end)

  it("has no cooldown: a re-fire goes out at once there, while the other channel holds it and logs it once", function()
    local h = harness { direct = { am = true }, routes = routes }
    h.start(0)
    h.eval(1, { sample(42) })
    h.eval(31, { sample(42) })
    h.eval(40, { sample(1) })
    h.tick(331)
    h.eval(400, { sample(42) }) -- fires again within the hook's cooldown (900 s from 31)
    local am = h.alerts("am")
    assert.equals(3, #am)
    assert.equals("firing", am[3].status)
    assert.equals(T0 + 400, am[3].starts_at)
    for dt = 430, 900, 30 do h.tick(dt) end
    assert.equals(2, #h.alerts("hook"))
    local held = 0
    for _, l in ipairs(h.logs) do
      if l.msg:find("cooldown", 1, true) then
        held = held + 1
        assert.equals("hook", l.fields.channel)
      end
    end
    assert.equals(1, held)
    assert.equals(1, h.e.suppressed.cooldown)
    h.tick(1030) -- the first flush past the cooldown (431 + 900; flushes at 430 + k x 300)
    assert.equals(3, #h.alerts("hook"))
  end)

  it("gets a restored firing alert again once an evaluation sees it, with its first startsAt", function()
    local h = harness { direct = { am = true }, routes = routes }
    h.start(0)
    h.eval(1, { sample(42) })
    local from = #h.sent + 1
    h.start(20)
    h.eval(21, {})
    assert.equals(0, #h.alerts("am", from))
    h.eval(22, { sample(42) })
    local am = h.alerts("am", from)
    assert.equals(1, #am)
    assert.equals("firing", am[1].status)
    assert.equals(T0 + 1, am[1].starts_at)
    h.eval(23, { sample(42) })
    assert.equals(1, #h.alerts("am", from))
  end)

  it("gets a mass firing in batches of 64 alerts", function()
    local h = harness { direct = { am = true }, routes = routes }
    h.start(0)
    local samples = {}
    for i = 1, 100 do samples[i] = { labels = { host = "h" .. i }, value = 42 } end
    h.eval(1, samples)
    local batches, n = 0, 0
    for _, x in ipairs(h.sent) do
      if x.channel == "am" then
        batches = batches + 1
        n = n + #x.alerts
        assert.is_true(#x.alerts <= 64)
        assert.equals("direct", x.group_key)
      end
    end
    assert.equals(2, batches)
    assert.equals(100, n)
  end)

  it("holds a silenced firing alert and sends it when the silence ends", function()
    local h = harness { direct = { am = true }, routes = routes }
    h.start(0)
    h.e:set_silences { { matchers = { alertname = "hot" }, starts = T0, ends = T0 + 10 } }
    h.eval(1, { sample(42) })
    assert.equals(0, #h.alerts("am"))
    h.eval(5, { sample(42) })
    assert.equals(0, #h.alerts("am"))
    h.eval(11, { sample(42) })
    assert.equals(1, #h.alerts("am"))
  end)
end)
