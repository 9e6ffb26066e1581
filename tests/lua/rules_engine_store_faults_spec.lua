-- The alert engine when its store cannot commit (issue 14 §2): nothing is notified whose row
-- did not commit; the instances and notifications of that step are written again at the next
-- one and only then delivered, in order, with the ids of their rows.
local Engine = require("agent.rules.engine")

local T0 = 1700000000

local function rule(o)
  local r = { kind = "alert", name = "high_cpu", file = "rules/x.lua", line = 1, enabled = true,
    metric = "system.cpu.percent", condition = ">", threshold = 80, duration = 0, keep_firing_for = 0,
    severity = "warning", message = "CPU", labels = {} }
  for k, v in pairs(o or {}) do r[k] = v end
  return r
end

local ROUTE = { group_by = { "alertname", "host" }, group_wait = 0, group_interval = 1, repeat_interval = 14400 }

-- memory_store with a switch that fails every write, with or without tx
local function failing_store(with_tx)
  local st = Engine.memory_store()
  st.fail = true
  local save, log = st.save_instances, st.log_notification
  function st.save_instances(self, list)
    if self.fail then return nil, "store: database or disk is full" end
    return save(self, list)
  end
  function st.log_notification(self, n)
    if self.fail then return nil, "store: database or disk is full" end
    return log(self, n)
  end
  if with_tx then
    -- all or nothing, as the SQLite store: a failure inside leaves no row
    function st.tx(self, fn)
      local n = #self.notifications
      local ok, res = pcall(fn)
      if not ok then
        for i = #self.notifications, n + 1, -1 do self.notifications[i] = nil end
        return nil, tostring(res)
      end
      return res
    end
  end
  return st
end

for _, with_tx in ipairs { true, false } do
  describe("agent.rules.engine with a store that cannot write" .. (with_tx and " (tx)" or ""), function()
    it("notifies nothing uncommitted, writes it again at the next step, then delivers it in order", function()
      local store = failing_store(with_tx)
      local t, sent = T0, {}
      local e = Engine.new {
        now = function() return t end,
        settings = { alert_cooldown_minutes = 0, alert_max_notifications_per_hour = 100 },
        store = store,
        notify = function(n) sent[#sent + 1] = n end,
      }
      e:set_rules({ rule() }, { ROUTE })
      e:evaluate("high_cpu", { { labels = { host = "a" }, value = 90 } })
      e:tick()
      t = T0 + 2
      e:evaluate("high_cpu", { { labels = { host = "a" }, value = 90 }, { labels = { host = "b" }, value = 95 } })
      e:tick()
      assert.equals(0, #sent)
      assert.equals(0, #store.notifications)
      assert.is_true(e.store_errors >= 2)
      -- the store works again: the held notifications go out, oldest first, each with its row
      store.fail = false
      t = T0 + 3
      e:tick()
      assert.equals(2, #sent)
      assert.equals(2, #store.notifications)
      assert.equals("a", sent[1].alerts[1].labels.host)
      assert.equals("b", sent[2].alerts[1].labels.host)
      for _, n in ipairs(sent) do assert.is_number(n.id) end
      -- and the alert states are in the store too
      local n = 0
      for _ in pairs(store.instances) do n = n + 1 end
      assert.equals(2, n)
      -- nothing is sent twice
      t = T0 + 5
      e:tick()
      assert.equals(2, #sent)
    end)
  end)
end

describe("agent.rules.engine holding notifications for a store that stays down", function()
  it("keeps the newest 1,000, and counts and logs (once an episode) the ones it drops", function()
    local store = failing_store(true)
    local t, sent, logs = T0, {}, {}
    local e = Engine.new {
      now = function() return t end,
      settings = { alert_cooldown_minutes = 0, alert_max_notifications_per_hour = 100000 },
      store = store,
      notify = function(n) sent[#sent + 1] = n end,
      log = function(level, msg, f) logs[#logs + 1] = { level = level, msg = msg, f = f } end,
    }
    e:set_rules({ rule() }, { ROUTE })
    local function fire(from, to)
      local samples = {}
      for i = from, to do samples[#samples + 1] = { labels = { host = "h" .. i }, value = 90 } end
      e:evaluate("high_cpu", samples)
      e:tick()
    end
    local function drops()
      local n = 0
      for _, l in ipairs(logs) do if l.msg:find("notifications dropped", 1, true) then n = n + 1 end end
      return n
    end
    fire(1, 1005)
    assert.equals(0, #sent)
    assert.equals(5, e.suppressed.store_unavailable)
    assert.equals(1, drops())
    assert.equals("5", logs[#logs].f.dropped)
    t = T0 + 2
    fire(1, 1008) -- three more alerts fire: three more of the oldest go, with no second line
    assert.equals(8, e.suppressed.store_unavailable)
    assert.equals(1, drops())
    store.fail = false
    t = T0 + 3
    e:tick()
    assert.equals(1000, #sent)
    local hosts = {}
    for _, n in ipairs(sent) do hosts[n.alerts[1].labels.host] = true end
    local distinct = 0
    for _ in pairs(hosts) do distinct = distinct + 1 end
    assert.equals(1000, distinct)
    -- a new episode logs again
    store.fail = true
    t = T0 + 4
    fire(1009, 2010)
    assert.equals(2, drops())
  end)
end)
