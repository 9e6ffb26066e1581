-- beagle.rules.engine and beagle.rules.policy with a fake clock: nothing sleeps, every step sets
-- the time and calls evaluate/tick explicitly.
-- The engine with a store (restart, restore) and test() are in rules_engine_store_spec.lua; the
-- harness in tests/rules_fixture.lua.
local F = require "rules_fixture"
local T0, Engine, rule, route, sample, harness = F.T0, F.Engine, F.rule, F.route, F.sample, F.harness

describe("agent.rules.engine", function()
  it("evaluates columns (values + shared label tables) as it evaluates sample lists", function()
    local function run(columns)
      local h = harness()
      h.e:set_rules({ rule { duration = 60 } }, { route() })
      local labs = { { host = "a" }, { host = "b" } }
      local steps = { { 90, 10 }, { 95, 10 }, { 95, 10 }, { 10, 95 }, { 10, 95 }, { 10, 10 }, { 10, 10 } }
      for k, vs in ipairs(steps) do
        h.t = T0 + 60 * (k - 1)
        if columns then
          local vals = require("ffi").new("double[2]", vs)
          h.e:evaluate_columns("high_cpu", 2, vals, labs)
        else
          h.e:evaluate("high_cpu", { { labels = labs[1], value = vs[1] }, { labels = labs[2], value = vs[2] } })
        end
        h.e:tick()
      end
      local out = {}
      for _, n in ipairs(h.sent) do
        for _, a in ipairs(n.alerts) do out[#out + 1] = n.status .. ":" .. a.labels.host .. ":" .. a.status end
      end
      return out, h.e:alerts({ resolved = true })
    end
    local sent_l, alerts_l = run(false)
    local sent_c, alerts_c = run(true)
    assert.same(sent_l, sent_c)
    assert.same(alerts_l, alerts_c)
    -- a fires and resolves, b fires and resolves
    assert.same({ "firing:a:firing", "resolved:a:resolved", "firing:b:firing", "resolved:b:resolved" }, sent_l)
  end)

  describe("fingerprint", function()
    it("is the same in C and in Lua", function()
      local s = ""
      for i = 0, 600 do
        s = s .. string.char(i % 256)
        if i % 37 == 0 then assert.equals(Engine.fnv1a64_lua(s), Engine.fnv1a64(s)) end
      end
      assert.are_not.equal(Engine.fnv1a64_lua, Engine.fnv1a64) -- the C one is in use here
    end)

    it("is FNV-1a 64 over the sorted label string", function()
      assert.equals("cbf29ce484222325", Engine.fnv1a64(""))
      assert.equals("af63dc4c8601ec8c", Engine.fnv1a64("a"))
      assert.equals("85944171f73967e8", Engine.fnv1a64("foobar"))
      local a = Engine.fingerprint({ alertname = "x", host = "a", severity = "warning" })
      local b = Engine.fingerprint({ severity = "warning", host = "a", alertname = "x" })
      assert.equals(a, b)
      assert.matches("^%x+$", a)
      assert.equals(16, #a)
      assert.equals(Engine.fnv1a64("alertname\0x\0host\0a\0severity\0warning\0"), a)
      assert.not_equals(a, Engine.fingerprint({ alertname = "x", host = "b", severity = "warning" }))
    end)

    it("sorts the labels bytewise, small sets and large ones alike", function()
      assert.equals("", Engine.canonical({}))
      assert.equals("A\0" .. "1\0" .. "a\0" .. "2\0" .. "ab\0" .. "x\0" .. "b\0" .. "3\0",
        Engine.canonical({ b = "3", ab = "x", a = 2, A = "1" }))
      local big, want = {}, {}
      for i = 40, 1, -1 do big[("k%02d"):format(i)] = i end
      for i = 1, 40 do want[i] = ("k%02d\0%d\0"):format(i, i) end
      assert.equals(table.concat(want), Engine.canonical(big))
    end)
  end)

  describe("local matcher", function()
    it("does exact, !v, glob and ~pattern, a missing label reading \"\"", function()
      local m = Engine.local_match
      local l = { host = "batch-7", env = "prod" }
      assert.is_true(m({ host = "batch-7" }, l))
      assert.is_false(m({ host = "batch" }, l))
      assert.is_true(m({ host = "batch-*" }, l))
      assert.is_false(m({ host = "web-*" }, l))
      assert.is_true(m({ host = "!web-1" }, l))
      assert.is_false(m({ env = "!prod" }, l))
      assert.is_true(m({ host = "~batch%-%d+" }, l))
      assert.is_false(m({ host = "~batch" }, l))
      assert.is_true(m({ zone = "" }, l))
      assert.is_true(m({ zone = "!eu" }, l))
      assert.is_true(m({}, l))
    end)
  end)

  describe("states", function()
    it("inactive -> pending -> firing after the duration -> resolved -> dropped after 15 min", function()
      local h = harness()
      h.e:set_rules({ rule { duration = 300 } })
      h.eval(0, "high_cpu", { sample(90) })
      local a = h.one()
      assert.equals("pending", a.state)
      assert.equals(T0, a.active_at)
      assert.is_nil(a.starts_at)
      assert.equals(90, a.value)
      assert.equals("high_cpu", a.labels.alertname)
      assert.equals("warning", a.labels.severity)
      assert.equals("a", a.labels.host)
      h.eval(240, "high_cpu", { sample(95) })
      assert.equals("pending", h.one().state)
      assert.equals(0, #h.sent)
      h.eval(300, "high_cpu", { sample(95) })
      a = h.one()
      assert.equals("firing", a.state)
      assert.equals(T0, a.active_at)
      assert.equals(T0 + 300, a.starts_at)
      assert.equals("firing", h.e:rule_state("high_cpu").state)
      h.eval(360, "high_cpu", { sample(50) })
      a = h.one()
      assert.equals("resolved", a.state)
      assert.equals(T0 + 360, a.ends_at)
      assert.equals(0, #h.e:alerts())
      assert.equals("inactive", h.e:rule_state("high_cpu").state)
      h.tick(360 + 899)
      assert.equals(1, #h.e:alerts { resolved = true })
      h.tick(360 + 900)
      assert.equals(0, #h.e:alerts { resolved = true })
    end)

    it("fires in the first evaluation with duration 0", function()
      local h = harness()
      h.e:set_rules({ rule { duration = 0 } })
      h.eval(0, "high_cpu", { sample(81) })
      local a = h.one()
      assert.equals("firing", a.state)
      assert.equals(T0, a.active_at)
      assert.equals(T0, a.starts_at)
    end)

    it("forgets a pending instance whose condition clears, without notifying", function()
      local h = harness()
      h.e:set_rules({ rule { duration = 300 } }, { route() })
      h.eval(0, "high_cpu", { sample(90) })
      h.eval(60, "high_cpu", { sample(70) })
      assert.equals(0, #h.e:alerts { resolved = true })
      h.eval(120, "high_cpu", { sample(90) })
      assert.equals(T0 + 120, h.one().active_at)
      h.eval(400, "high_cpu", { sample(90) })
      assert.equals("pending", h.one().state)
      h.eval(420, "high_cpu", { sample(90) })
      assert.equals("firing", h.one().state)
      assert.equals(1, #h.sent)
      assert.equals("firing", h.sent[1].status)
    end)

    it("tests every condition against the threshold", function()
      local cases = {
        { ">", 80, 81, 80 }, { "<", 10, 9, 10 }, { ">=", 80, 80, 79 }, { "<=", 10, 10, 11 },
        { "==", 1, 1, 2 }, { "!=", 0, 1, 0 },
      }
      for _, c in ipairs(cases) do
        local h = harness()
        h.e:set_rules({ rule { condition = c[1], threshold = c[2] } })
        h.eval(0, "high_cpu", { sample(c[4]) })
        assert.equals(0, #h.e:alerts(), c[1] .. " must not hold for " .. c[4])
        h.eval(60, "high_cpu", { sample(c[3]) })
        assert.equals(1, #h.e:alerts(), c[1] .. " must hold for " .. c[3])
      end
    end)

    it("treats an anomaly rule's score like an alert with >", function()
      local h = harness()
      h.e:set_rules({ rule { kind = "anomaly", name = "latency_outlier", condition = nil, threshold = 3.5,
        method = "zscore", window = 3600, min_samples = 30 } })
      h.eval(0, "latency_outlier", { sample(2.0) })
      assert.equals(0, #h.e:alerts())
      h.eval(60, "latency_outlier", { sample(4.1) })
      assert.equals("firing", h.one().state)
    end)

    it("keeps firing for keep_firing_for after the condition clears", function()
      local h = harness()
      h.e:set_rules({ rule { keep_firing_for = 300 } })
      h.eval(0, "high_cpu", { sample(90) })
      h.eval(60, "high_cpu", { sample(50) })
      assert.equals("firing", h.one().state)
      h.eval(120, "high_cpu", { sample(90) }) -- true again: the wait starts over
      h.eval(180, "high_cpu", { sample(50) })
      h.eval(420, "high_cpu", { sample(50) })
      assert.equals("firing", h.one().state)
      h.eval(480, "high_cpu", { sample(50) })
      local a = h.one()
      assert.equals("resolved", a.state)
      assert.equals(T0 + 480, a.ends_at)
      assert.equals(T0, a.starts_at)
    end)

    it("resolves at clear_threshold, not threshold, once firing (hysteresis)", function()
      local h = harness()
      h.e:set_rules({ rule { threshold = 80, clear_threshold = 70 } })
      h.eval(0, "high_cpu", { sample(75) })
      assert.equals(0, #h.e:alerts())
      h.eval(60, "high_cpu", { sample(85) })
      assert.equals("firing", h.one().state)
      h.eval(120, "high_cpu", { sample(75) })
      assert.equals("firing", h.one().state)
      h.eval(180, "high_cpu", { sample(70.5) })
      assert.equals("firing", h.one().state)
      h.eval(240, "high_cpu", { sample(70) })
      assert.equals("resolved", h.one().state)
      h.eval(300, "high_cpu", { sample(75) }) -- below threshold: stays resolved
      assert.equals("resolved", h.one().state)
    end)

    it("treats a vanished series as false, and an evaluation error as no change", function()
      local h = harness()
      h.e:set_rules({ rule { keep_firing_for = 120 } })
      h.eval(0, "high_cpu", { sample(90, { host = "a" }), sample(95, { host = "b" }) })
      assert.equals(2, #h.e:alerts())
      h.eval(60, "high_cpu", nil, "query failed: boom")
      assert.equals(2, #h.e:alerts())
      local rs = h.e:rule_state("high_cpu")
      assert.equals("query failed: boom", rs.last_error)
      assert.equals(T0 + 60, rs.last_eval)
      assert.equals(2, rs.instances)
      h.eval(120, "high_cpu", { sample(90, { host = "a" }) })
      assert.is_nil(h.e:rule_state("high_cpu").last_error)
      h.eval(240, "high_cpu", { sample(90, { host = "a" }) })
      local a = h.e:alerts { resolved = true }
      assert.equals("firing", a[1].state == "firing" and a[2].state == "resolved" and "firing" or "wrong")
      for _, x in ipairs(a) do
        if x.labels.host == "b" then assert.equals("resolved", x.state) else assert.equals("firing", x.state) end
      end
    end)

    it("keeps rule labels and renders annotations with the injected render", function()
      local seen
      local h = harness { render = function(t, ctx)
        seen = ctx
        return (t:gsub("{{ value }}", tostring(ctx.value)):gsub("{{ labels.host }}", ctx.labels.host))
      end }
      h.e:set_rules({ rule { labels = { team = "ops" }, severity = "critical", duration = 300,
        message = "CPU {{ value }} on {{ labels.host }}", summary = "s {{ value }}" } })
      h.eval(0, "high_cpu", { sample(91) })
      local a = h.one()
      assert.equals("ops", a.labels.team)
      assert.equals("critical", a.labels.severity)
      assert.equals("CPU 91 on a", a.annotations.message)
      assert.equals("s 91", a.annotations.summary)
      assert.is_nil(a.annotations.description)
      assert.same({ value = 91, threshold = 80, duration = 300, name = "high_cpu", severity = "critical",
        labels = seen.labels }, seen)
      assert.equals("a", seen.labels.host)
    end)
  end)

  describe("notifications", function()
    it("a series flapping every evaluation with keep_firing_for = 5m notifies at most twice", function()
      local function run(keep, routes, cooldown)
        local h = harness()
        h.e:set_rules({ rule { keep_firing_for = keep, cooldown = cooldown } }, routes)
        local t = 0
        for i = 1, 100 do
          h.eval(t, "high_cpu", { sample(i % 2 == 1 and 90 or 70) })
          t = t + 60
        end
        for _ = 1, 10 do -- then it stays low until resolved and the resolve is sent
          h.eval(t, "high_cpu", { sample(70) })
          t = t + 60
        end
        return h
      end
      -- with the implicit route (30s / 5m / 4h) and with one that sends at once, every minute
      for _, routes in ipairs { {}, { route() } } do
        local h = run(300, routes)
        assert.equals(2, #h.sent)
        assert.is_true(#h.sent <= 2)
        assert.equals("firing", h.sent[1].status)
        assert.equals("resolved", h.sent[2].status)
        assert.equals(T0, h.sent[2].alerts[1].starts_at)
      end
      -- without keep_firing_for the same series flaps: 50 firing episodes, each either sent or
      -- counted as suppressed. No cooldown: 10 firings an hour (+ their resolves) get through.
      local raw = run(0, { route() }, 0)
      assert.equals(40, #raw.sent)
      assert.equals(30, raw.e.suppressed.hourly_limit)
      -- the default 15 min cooldown: one firing every 16 min (+ its resolve)
      local cooled = run(0, { route() })
      assert.equals(14, #cooled.sent)
      assert.equals(43, cooled.e.suppressed.cooldown)
    end)

    it("group_wait collects alerts into one notification, then group_interval, then repeat", function()
      local h = harness()
      h.e:set_rules({ rule() }, { route { group_wait = 30, group_interval = 300, repeat_interval = 3600 } })
      h.eval(0, "high_cpu", { sample(90, { host = "a" }) })
      h.eval(10, "high_cpu", { sample(90, { host = "a" }), sample(91, { host = "b" }) })
      h.eval(20, "high_cpu", { sample(90, { host = "a" }), sample(91, { host = "b" }), sample(92, { host = "c" }) })
      h.tick(29)
      assert.equals(0, #h.sent)
      h.tick(30)
      assert.equals(1, #h.sent)
      local n = h.sent[1]
      assert.equals(3, #n.alerts)
      assert.equals("log", n.channel)
      assert.equals("firing", n.status)
      assert.is_false(n.test)
      assert.equals('1:{alertname="high_cpu"}', n.group_key)
      assert.equals(16, #n.dedup_key)
      -- a fourth alert waits for the group_interval (30 + 300)
      local four = { sample(90, { host = "a" }), sample(91, { host = "b" }), sample(92, { host = "c" }),
        sample(93, { host = "d" }) }
      h.eval(40, "high_cpu", four)
      h.tick(329)
      assert.equals(1, #h.sent)
      h.tick(330)
      assert.equals(2, #h.sent)
      assert.equals(1, #h.sent[2].alerts)
      assert.equals("d", h.sent[2].alerts[1].labels.host)
      -- unchanged: nothing until repeat_interval, checked at group_interval ticks
      for t = 390, 3600, 60 do h.eval(t, "high_cpu", four) end
      assert.equals(2, #h.sent)
      h.eval(3630, "high_cpu", four)
      assert.equals(3, #h.sent)
      assert.equals(3, #h.sent[3].alerts) -- a, b, c: notified at 30, repeated an hour later
      h.eval(3930, "high_cpu", four)
      assert.equals(4, #h.sent)
      assert.equals("d", h.sent[4].alerts[1].labels.host)
    end)

    it("orders one flush's notifications by group key, then channel", function()
      local h = harness()
      h.e:set_rules({ rule { channels = { "zeta", "alpha" } } }, { route { group_by = { "alertname", "host" } } })
      local hosts = { "q", "c", "x", "a", "m", "h", "t", "b" }
      local samples = {}
      for i, host in ipairs(hosts) do samples[i] = sample(90, { host = host }) end
      h.eval(0, "high_cpu", samples)
      assert.equals(2 * #hosts, #h.sent)
      table.sort(hosts)
      for i, host in ipairs(hosts) do
        for j, ch in ipairs { "alpha", "zeta" } do
          local n = h.sent[2 * (i - 1) + j]
          assert.equals(ch, n.channel)
          assert.equals(host, n.alerts[1].labels.host)
        end
      end
      local before = #h.sent
      h.eval(60, "high_cpu", samples) -- a steady firing state: nothing due, nothing sent
      assert.equals(before, #h.sent)
    end)

    it("evaluate alone delivers what it decided when group_wait is 0; timers wait for tick", function()
      local h = harness()
      h.e:set_rules({ rule() }, { route { repeat_interval = 60 } })
      h.t = T0
      h.e:evaluate("high_cpu", { sample(90) })
      assert.equals(1, #h.sent)
      h.t = T0 + 3600
      h.e:evaluate("high_cpu", { sample(90) }) -- the repeat is a timer: tick's job
      assert.equals(1, #h.sent)
      assert.equals(1, h.e:tick())
      assert.equals(2, #h.sent)
    end)

    it("sends a resolve notification when firing alerts of a group resolve", function()
      local h = harness()
      h.e:set_rules({ rule() }, { route() })
      h.eval(0, "high_cpu", { sample(90, { host = "a" }), sample(90, { host = "b" }) })
      assert.equals(1, #h.sent)
      h.eval(60, "high_cpu", { sample(50, { host = "a" }), sample(90, { host = "b" }) })
      assert.equals(2, #h.sent)
      local n = h.sent[2]
      assert.equals("resolved", n.status)
      assert.equals(1, #n.alerts)
      assert.equals("resolved", n.alerts[1].status)
      assert.equals("a", n.alerts[1].labels.host)
      assert.equals(T0 + 60, n.alerts[1].ends_at)
      h.eval(120, "high_cpu", {}) -- b vanished: resolved too
      assert.equals(3, #h.sent)
      assert.equals("b", h.sent[3].alerts[1].labels.host)
      h.tick(600)
      assert.equals(3, #h.sent)
    end)

    it("holds a re-firing alert for the cooldown, never a resolve", function()
      local h = harness()
      h.e:set_rules({ rule() }, { route() })
      h.eval(0, "high_cpu", { sample(90) })
      h.eval(60, "high_cpu", { sample(50) })
      assert.equals(2, #h.sent)
      assert.equals("resolved", h.sent[2].status)
      h.eval(120, "high_cpu", { sample(90) })
      assert.equals(2, #h.sent)
      assert.equals(1, h.e.suppressed.cooldown)
      for t = 180, 840, 60 do h.eval(t, "high_cpu", { sample(90) }) end
      assert.equals(2, #h.sent)
      assert.equals(1, h.e.suppressed.cooldown) -- counted once, not at every retry
      h.eval(900, "high_cpu", { sample(90) }) -- 15 min after the first firing notification
      assert.equals(3, #h.sent)
      assert.equals("firing", h.sent[3].status)
      h.eval(960, "high_cpu", { sample(50) }) -- the resolve right after it is not held
      assert.equals(4, #h.sent)
      assert.equals("resolved", h.sent[4].status)
    end)

    it("applies the per-rule cooldown over the settings", function()
      local h = harness()
      h.e:set_rules({ rule { cooldown = 100 } }, { route() })
      h.eval(0, "high_cpu", { sample(90) })
      h.eval(60, "high_cpu", { sample(50) })
      assert.equals(2, #h.sent)
      h.eval(70, "high_cpu", { sample(90) })
      assert.equals(2, #h.sent)
      assert.equals(1, h.e.suppressed.cooldown)
      h.eval(130, "high_cpu", { sample(90) }) -- the settings' 15 min would still hold it
      assert.equals(3, #h.sent)
      assert.equals(1, h.e.suppressed.cooldown)
    end)

    it("caps notifications per alert and channel in a sliding hour", function()
      local h = harness()
      h.e:set_rules({ rule { cooldown = 0 } }, { route { repeat_interval = 60, max_notifications_per_hour = 10 } })
      for t = 0, 3540, 60 do h.eval(t, "high_cpu", { sample(90) }) end
      assert.equals(10, #h.sent)
      assert.equals(T0 + 540, h.sent[10].created_at)
      assert.equals(50, h.e.suppressed.hourly_limit) -- each held repeat counts
      h.eval(3600, "high_cpu", { sample(90) }) -- the one at T0 has left the hour
      assert.equals(11, #h.sent)
      h.eval(3660, "high_cpu", { sample(50) }) -- a resolve is never held by the limit
      assert.equals(12, #h.sent)
      assert.equals("resolved", h.sent[12].status)
    end)

    it("skips a group that owes nothing until its repeat, and still sends repeats, resolves and lapsed silences on time", function()
      local h = harness { settings = { alert_cooldown_minutes = 0, alert_max_notifications_per_hour = 100 } }
      h.e:set_rules({ rule() }, { route { group_by = { "alertname", "host" }, group_interval = 1, repeat_interval = 60 } })
      local both = { sample(90, { host = "a" }), sample(90, { host = "b" }) }
      h.eval(0, "high_cpu", both)
      assert.equals(2, #h.sent)
      h.eval(1, "high_cpu", both) -- the flush that finds nothing owed marks the groups idle
      local idle = 0
      for _, g in pairs(h.e.groups) do
        if g.idle_until then
          idle = idle + 1
          assert.equals(T0 + 60, g.idle_until)
        end
      end
      assert.equals(2, idle)
      -- b resolves while its group is idle: the resolve goes out in that evaluation
      h.eval(10, "high_cpu", { sample(90, { host = "a" }), sample(50, { host = "b" }) })
      assert.equals(3, #h.sent)
      assert.equals("resolved", h.sent[3].status)
      assert.equals("b", h.sent[3].alerts[1].labels.host)
      -- a is silenced from 30 to 90: its repeat at 60 is withheld, and sent when the silence lapses
      h.e:set_silences({ { id = "s", matchers = { host = "a" }, starts = T0 + 30, ends = T0 + 90 } })
      for t = 11, 89 do h.eval(t, "high_cpu", { sample(90, { host = "a" }) }) end
      assert.equals(3, #h.sent)
      assert.equals(1, h.e.suppressed.silenced)
      h.eval(90, "high_cpu", { sample(90, { host = "a" }) })
      assert.equals(4, #h.sent)
      assert.equals("a", h.sent[4].alerts[1].labels.host)
      assert.equals("firing", h.sent[4].status)
      -- and then the next repeat an interval later, not before
      for t = 91, 149 do h.eval(t, "high_cpu", { sample(90, { host = "a" }) }) end
      assert.equals(4, #h.sent)
      h.eval(150, "high_cpu", { sample(90, { host = "a" }) })
      assert.equals(5, #h.sent)
    end)

    it("does not notify a silenced alert until the silence ends", function()
      local h = harness()
      h.e:set_rules({ rule() }, { route() })
      h.e:set_silences({ { id = "s1", matchers = { alertname = "high_cpu", host = "batch-*" },
        starts = T0, ends = T0 + 600, comment = "batch window" } })
      h.eval(0, "high_cpu", { sample(90, { host = "batch-1" }), sample(90, { host = "web-1" }) })
      assert.equals(1, #h.sent)
      assert.equals("web-1", h.sent[1].alerts[1].labels.host)
      assert.equals(1, h.e.suppressed.silenced)
      for t = 60, 540, 60 do h.eval(t, "high_cpu", { sample(90, { host = "batch-1" }), sample(90, { host = "web-1" }) }) end
      assert.equals(1, #h.sent)
      assert.equals(1, h.e.suppressed.silenced)
      h.eval(600, "high_cpu", { sample(90, { host = "batch-1" }), sample(90, { host = "web-1" }) })
      assert.equals(2, #h.sent)
      assert.equals("batch-1", h.sent[2].alerts[1].labels.host)
    end)

    it("inhibits targets whose equal labels match a firing source", function()
      local h = harness()
      h.e:set_rules({ rule { name = "host_down", severity = "critical", condition = "==", threshold = 0 },
        rule { name = "high_cpu", severity = "warning" } }, { route { group_by = { "host" } } },
        { { source = { severity = "critical" }, target = { severity = "warning" }, equal = { "host" } } })
      h.eval(0, "host_down", { sample(0, { host = "a" }) })
      assert.equals(1, #h.sent)
      h.eval(10, "high_cpu", { sample(90, { host = "a" }), sample(90, { host = "b" }) })
      assert.equals(2, #h.sent) -- b: a new group, sent at once
      assert.equals("b", h.sent[2].alerts[1].labels.host)
      h.tick(60) -- a's group ticks: high_cpu on a is held by host_down on a
      assert.equals(2, #h.sent)
      assert.equals(1, h.e.suppressed.inhibited)
      h.eval(120, "host_down", { sample(1, { host = "a" }) }) -- the source resolves
      assert.equals(3, #h.sent)
      local last = h.sent[3]
      assert.equals("firing", last.status)
      assert.equals(2, #last.alerts)
      local st = {}
      for _, x in ipairs(last.alerts) do st[x.name] = x.status .. "@" .. x.labels.host end
      assert.same({ host_down = "resolved@a", high_cpu = "firing@a" }, st)
      assert.equals(1, h.e.suppressed.inhibited)
    end)

    it("routes by first match, rule channels override, no routes means the rule's or log", function()
      local h = harness()
      h.e:set_rules({ rule { name = "crit", severity = "critical" }, rule { name = "warn" },
        rule { name = "own", channels = { "slack", "email" } } },
        { route { match = { severity = "critical" }, channels = { "pagerduty" } },
          route { match = { severity = "~crit.*" }, channels = { "never" } },
          route { channels = { "team" } } })
      h.eval(0, "crit", { sample(90) })
      h.eval(0, "warn", { sample(90) })
      h.eval(0, "own", { sample(90) })
      local got = {}
      for _, n in ipairs(h.sent) do got[#got + 1] = n.alerts[1].name .. ">" .. n.channel end
      table.sort(got)
      assert.same({ "crit>pagerduty", "own>email", "own>slack", "warn>team" }, got)
      local h2 = harness()
      h2.e:set_rules({ rule { name = "plain" }, rule { name = "own", channels = { "ops" } } })
      h2.eval(0, "plain", { sample(90) })
      h2.eval(0, "own", { sample(90) })
      h2.tick(30) -- implicit route: group_wait 30
      got = {}
      for _, n in ipairs(h2.sent) do got[#got + 1] = n.alerts[1].name .. ">" .. n.channel end
      table.sort(got)
      assert.same({ "own>ops", "plain>log" }, got)
    end)
  end)

  describe("set_rules", function()
    it("keeps the state of unchanged instances and resolves those of removed rules", function()
      local h = harness()
      h.e:set_rules({ rule(), rule { name = "disk", duration = 600 } }, { route() })
      h.eval(0, "high_cpu", { sample(90) })
      h.eval(0, "disk", { sample(90) })
      assert.equals(1, #h.sent)
      local fp = h.e:alerts()[2].fingerprint
      -- reload: a threshold change keeps the identity, disk is removed
      h.at(100)
      assert.is_true(h.e:set_rules({ rule { threshold = 85 }, rule { name = "mem" } }, { route() }))
      local a = h.e:alerts()
      assert.equals(1, #a)
      assert.equals(fp, a[1].fingerprint)
      assert.equals(T0, a[1].starts_at)
      assert.equals(1, #h.sent) -- disk was pending: dropped silently
      h.eval(160, "high_cpu", { sample(90) })
      assert.equals(1, #h.sent) -- still the same firing alert: nothing new
      -- reload without high_cpu: its firing instance resolves and says so
      h.at(200)
      h.e:set_rules({ rule { name = "mem" } }, { route() })
      assert.equals(2, #h.sent)
      assert.equals("resolved", h.sent[2].status)
      assert.equals(T0 + 200, h.sent[2].alerts[1].ends_at)
      assert.is_nil(h.e:rule_state("high_cpu"))
      assert.is_nil(h.e:evaluate("high_cpu", {}))
    end)

    it("resolves an instance whose static labels or severity changed", function()
      local h = harness()
      h.e:set_rules({ rule() }, { route() })
      h.eval(0, "high_cpu", { sample(90) })
      h.at(60)
      h.e:set_rules({ rule { severity = "critical" } }, { route() })
      assert.equals(2, #h.sent)
      assert.equals("resolved", h.sent[2].status)
      h.eval(120, "high_cpu", { sample(90) })
      assert.equals(3, #h.sent)
      assert.equals("critical", h.sent[3].alerts[1].labels.severity)
    end)

    it("refuses duplicate names and changes nothing", function()
      local h = harness()
      h.e:set_rules({ rule() })
      local ok, err = h.e:set_rules({ rule { name = "x" }, rule { name = "x" } })
      assert.is_nil(ok)
      assert.matches("duplicate", err)
      assert.is_table(h.e:rule_state("high_cpu"))
    end)
  end)

end)
