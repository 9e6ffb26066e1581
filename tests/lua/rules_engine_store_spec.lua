-- agent.rules.engine with a store across a restart, and test(): with the fake clock of
-- tests/rules_fixture.lua.
local F = require "rules_fixture"
local T0, Engine, rule, route, sample, harness = F.T0, F.Engine, F.rule, F.route, F.sample, F.harness

describe("agent.rules.engine", function()
  describe("restart with a store", function()
    it("keeps firing with its starts_at, resumes pending, and notifies nothing twice", function()
      local store = Engine.memory_store()
      local rules = { rule(), rule { name = "slow", duration = 300 } }
      local h = harness { store = store }
      h.e:set_rules(rules, { route() })
      h.eval(0, "high_cpu", { sample(90) })
      h.eval(120, "slow", { sample(90) })
      assert.equals(1, #h.sent)
      assert.equals(1, #store.notifications)
      -- kill -9: a new engine on the same store
      local h2 = harness { store = store }
      h2.at(180)
      h2.e:set_rules(rules, { route() })
      local a = h2.e:alerts()
      assert.equals(2, #a)
      assert.equals("firing", a[1].state)
      assert.equals(T0, a[1].starts_at)
      assert.equals("pending", a[2].state)
      assert.equals(T0 + 120, a[2].active_at)
      h2.eval(240, "high_cpu", { sample(90) })
      assert.equals(0, #h2.sent)
      h2.eval(420, "slow", { sample(90) }) -- 300 s after the pending began before the restart
      assert.equals("firing", h2.e:alerts()[2].state)
      assert.equals(1, #h2.sent)
      assert.equals("slow", h2.sent[1].alerts[1].name)
      -- and the restored log still holds the cooldown of high_cpu
      h2.eval(480, "high_cpu", { sample(50) })
      h2.eval(540, "high_cpu", { sample(90) })
      assert.equals(2, #h2.sent)
      assert.equals("resolved", h2.sent[2].status)
      assert.equals(1, h2.e.suppressed.cooldown)
    end)

    it("sends after a restart what was decided but not yet notified", function()
      local store = Engine.memory_store()
      local h = harness { store = store }
      h.e:set_rules({ rule() }, { route { group_wait = 30 } })
      h.eval(0, "high_cpu", { sample(90) })
      assert.equals(0, #h.sent)
      local h2 = harness { store = store }
      h2.at(20)
      h2.e:set_rules({ rule() }, { route { group_wait = 30 } })
      h2.tick(50)
      assert.equals(1, #h2.sent)
      assert.equals(T0, h2.sent[1].alerts[1].starts_at)
    end)

    it("owes a resolve across a restart", function()
      local store = Engine.memory_store()
      local h = harness { store = store }
      h.e:set_rules({ rule() }, { route { group_interval = 300 } })
      h.eval(0, "high_cpu", { sample(90) })
      h.eval(60, "high_cpu", { sample(50) }) -- resolved, resolve due at 300
      assert.equals(1, #h.sent)
      local h2 = harness { store = store }
      h2.at(100)
      h2.e:set_rules({ rule() }, { route { group_interval = 300 } })
      h2.tick(130)
      assert.equals(1, #h2.sent)
      assert.equals("resolved", h2.sent[1].status)
    end)

    it("logs each notification before delivering it", function()
      local store = Engine.memory_store()
      local logged_first = {}
      local h
      h = harness { store = store, notify = function(n)
        local last = store.notifications[#store.notifications]
        logged_first[#logged_first + 1] = last and last.dedup_key == n.dedup_key
        assert.equals("firing", store.instances[n.alerts[1].fingerprint].state)
      end }
      h.e:set_rules({ rule() }, { route() })
      h.eval(0, "high_cpu", { sample(90) })
      assert.same({ true }, logged_first)
    end)
  end)

  describe("test()", function()
    it("returns notifications marked test without changing anything", function()
      local store = Engine.memory_store()
      local h = harness { store = store }
      h.e:set_rules({ rule { duration = 300 } }, { route { channels = { "slack" } } })
      local ns, evaluated = h.e:test("high_cpu", { sample(90, { host = "a" }), sample(10, { host = "b" }) })
      assert.equals(1, #ns)
      assert.is_true(ns[1].test)
      assert.equals("slack", ns[1].channel)
      assert.equals(1, #ns[1].alerts)
      assert.equals("a", ns[1].alerts[1].labels.host)
      assert.is_true(ns[1].alerts[1].test)
      assert.equals("CPU {{ value }}", ns[1].alerts[1].annotations.message)
      assert.equals(2, #evaluated)
      assert.equals(0, #h.e:alerts { resolved = true })
      assert.equals(0, #h.sent)
      assert.same({}, store.instances)
      assert.equals(0, #store.notifications)
      assert.same({ cooldown = 0, hourly_limit = 0, silenced = 0, inhibited = 0 }, h.e.suppressed)
      -- on a firing instance too: its state and notification log stay as they were
      h.e:set_rules({ rule() }, { route { channels = { "slack" } } })
      h.eval(0, "high_cpu", { sample(90, { host = "a" }) })
      local before = h.e:alerts()
      ns = h.e:test("high_cpu", { sample(10, { host = "a" }) })
      assert.same({}, ns)
      assert.same(before, h.e:alerts())
      assert.is_nil(h.e:test("nope", {}))
    end)
  end)
end)
