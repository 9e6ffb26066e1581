-- Alert state across restarts (issue 14 §1): an alert whose value stays above its threshold
-- stays firing through kill -9 and SIGTERM, with both orders of alert_evaluation_interval and
-- metrics_collection_interval, in beagle and in a real Alertmanager (Debian's
-- prometheus-alertmanager): never resolved, the same startsAt after each restart. The value
-- comes back a few evaluations after each start, as from a client that reports late (StatsD
-- every 10 s, a slow check): until then history has no sample of it.
local S = require "support"
local epoch = S.epoch
local cjson = require "cjson"

local NAME = "restart_hot"

-- Alertmanager's own view of our alert: what GET /api/v2/alerts lists (active ones only).
local function am_alert(am)
  local st, body = S.http("GET", am.url .. "/api/v2/alerts")
  if st ~= 200 then return nil end
  for _, a in ipairs(S.json(body) or {}) do
    if a.labels.alertname == NAME then return a end
  end
end

describe("alerts across restarts", function()
  local am, sink
  setup(function()
    am = S.alertmanager()
    sink = S.sink()
  end)
  teardown(function()
    if sink then sink.stop() end
    if am then am.svc.stop() end
  end)

  -- what the sink got: alerts posted to the alertmanager channel (its second URL) and the hook
  local function posted()
    local am_alerts, hook_alerts = {}, {}
    for _, r in ipairs(sink.requests()) do
      local body = S.json(r.body)
      if r.path == "/am/api/v2/alerts" then
        for _, a in ipairs(body or {}) do
          if a.labels.alertname == NAME then a.received = r.time; am_alerts[#am_alerts + 1] = a end
        end
      elseif r.path == "/hook" then
        for _, a in ipairs(body and body.alerts or {}) do
          if a.labels.alertname == NAME then a.received = r.time; hook_alerts[#hook_alerts + 1] = a end
        end
      end
    end
    return am_alerts, hook_alerts
  end

  local function scenario(signal, eval, collect)
    sink.reset()
    local rules = S.tmpdir()
    S.write(rules .. "/restart.lua", ([[
route { match = { alertname = "%s" }, channels = { "am", "hook" }, group_wait = "0s", group_interval = "1s",
  repeat_interval = "1h" }
alert "%s" { metric = "restart.value", condition = ">", threshold = 10, duration = "0s",
  severity = "warning", message = "value {{ value }}" }
]]):format(NAME, NAME))
    local data = S.tmpdir() .. "/data"
    local config = S.calm_system .. ([[
notification_backoff_initial = "0.1s"
notification_backoff_max = "1s"
channel "am" { plugin = "alertmanager", urls = { "%s", "%s/am" } }
channel "hook" { plugin = "webhook", url = "%s/hook" }
]]):format(am.url, sink.url, sink.url)
    local env = { MONITORING_ALERT_EVALUATION_INTERVAL = tostring(eval),
      MONITORING_METRICS_COLLECTION_INTERVAL = tostring(collect) }
    local function start() return S.start { config = config, env = env, args = { "--rules", rules, "--data", data } } end
    local agent = start()
    local function set(v)
      local st, b = agent:post("/metrics/custom", cjson.encode { name = "restart.value", type = "gauge", value = v },
        { "Content-Type: application/json" })
      assert(st == 200 or st == 201 or st == 202, b)
    end
    local function ours()
      local _, o = agent:get_json("/alerts")
      for _, a in ipairs(o and o.alerts or {}) do
        if a.name == NAME then return a end
      end
    end

    set(42)
    local first = S.wait(function() local a = ours() return a and a.state == "firing" and a end, 20)
    assert.is_truthy(first, agent:logtext())
    local starts = first.startsAt
    local in_am = S.wait(function() return am_alert(am) end, 20)
    assert.is_truthy(in_am, agent:logtext())
    assert.near(epoch(starts), epoch(in_am.startsAt), 0.01)

    for round = 1, 2 do
      if signal == "KILL" then
        agent:signal("KILL")
        assert.is_truthy(S.wait(function() return not agent:alive() end, 10))
        agent.pid = nil
      else
        assert.is_true(agent:stop(15), "the agent did not stop on SIGTERM")
      end
      local gone_at = S.now()
      agent = start()
      -- the value is still above the threshold, but beagle hears of it only a few evaluations
      -- after its start: until then the alert is what the store says, firing since `starts`
      local late = S.now() + 2.5 * math.max(eval, collect)
      while S.now() < late do
        local a = ours()
        local where = ("%s, round %d, %.1fs after the restart"):format(signal, round, S.now() - gone_at)
        assert.is_truthy(a, "the alert is gone: " .. where .. "\n" .. agent:logtext())
        assert.are.equal("firing", a.state, where)
        assert.are.equal(starts, a.startsAt, where)
        local in_view = am_alert(am)
        assert.is_truthy(in_view, "gone from Alertmanager: " .. where)
        assert.near(epoch(starts), epoch(in_view.startsAt), 0.01)
        S.sleep(0.2)
      end
      set(42)
      -- once an evaluation has seen it, Alertmanager gets it again, with its first startsAt
      local again = S.wait(function()
        local list = posted()
        for _, a in ipairs(list) do
          if a.received > gone_at then return a end
        end
      end, 20)
      assert.is_truthy(again, ("%s round %d: nothing re-sent to Alertmanager after the restart\n%s")
        :format(signal, round, agent:logtext()))
      assert.near(epoch(starts), epoch(again.startsAt), 0.01)
      -- a few more evaluations with the value in history: still the same episode
      S.sleep(2 * eval)
      local a = ours()
      assert.is_truthy(a)
      assert.are.equal(starts, a.startsAt)
    end

    -- nothing resolved, nothing from another episode, while the value was above the threshold
    local am_list, hook_list = posted()
    assert.is_true(#am_list >= 3)
    for _, a in ipairs(am_list) do
      assert.near(epoch(starts), epoch(a.startsAt), 0.01, cjson.encode(a))
      assert.is_true(epoch(a.endsAt) > a.received + 60, "resolved in Alertmanager: " .. cjson.encode(a))
    end
    for _, a in ipairs(hook_list) do
      assert.are.equal("firing", a.status, cjson.encode(a))
      assert.near(epoch(starts), epoch(a.starts_at), 0.01)
    end

    -- and when the value does drop, the resolve reaches Alertmanager at once, with both times
    set(0)
    assert.is_truthy(S.wait(function() return am_alert(am) == nil end, 15), cjson.encode(am_alert(am) or {}))
    local resolved = S.wait(function()
      local _, hooks = posted()
      for _, h in ipairs(hooks) do if h.status == "resolved" then return h end end
    end, 15)
    assert.is_truthy(resolved, agent:logtext())
    assert.is_string(resolved.starts_at)
    assert.is_string(resolved.ends_at)
    assert.near(epoch(starts), epoch(resolved.starts_at), 0.01)
    agent:stop()
  end

  it("kill -9, evaluation 1s, collection 1s", function() scenario("KILL", 1, 1) end)
  it("kill -9, evaluation 2s, collection 3s", function() scenario("KILL", 2, 3) end)
  it("SIGTERM, evaluation 1s, collection 1s", function() scenario("TERM", 1, 1) end)
  it("SIGTERM, evaluation 2s, collection 3s", function() scenario("TERM", 2, 3) end)
end)
