-- The alertmanager channel behaves like Prometheus's notifier (issue 14 §1), against a real
-- Alertmanager (Debian's prometheus-alertmanager): Alertmanager groups by itself, so the channel
-- gets a firing alert within an evaluation or two (not after the default route's 30 s
-- group_wait) and its resolve at once (not a 5 min group_interval later, by when Alertmanager
-- had expired the alert itself), with no cooldown in front of it. Other channels keep the route:
-- the webhook here waits out group_wait, and a re-fire within its cooldown is held and logged once.
local S = require "support"
local epoch = S.epoch
local cjson = require "cjson"

describe("the alertmanager channel", function()
  local am, sink, agent

  setup(function()
    am = S.alertmanager()
    sink = S.sink()
    local rules = S.tmpdir()
    -- no route for "paced": the default route (group_wait 30 s, group_interval 5 m)
    S.write(rules .. "/am.lua", [[
alert "paced" { metric = "paced.value", condition = ">", threshold = 10, duration = "0s",
  severity = "warning", message = "paced {{ value }}", channels = { "am", "hook" } }
route { match = { alertname = "flap" }, channels = { "am", "hook" }, group_wait = "0s", group_interval = "0.3s",
  repeat_interval = "1h", cooldown = "1h" }
alert "flap" { metric = "flap.value", condition = ">", threshold = 10, duration = "0s",
  severity = "warning", message = "flap {{ value }}" }
]])
    agent = S.start {
      env = { MONITORING_ALERT_EVALUATION_INTERVAL = "1", MONITORING_METRICS_COLLECTION_INTERVAL = "0.5" },
      args = { "--rules", rules },
      config = S.calm_system .. ([[
notification_backoff_initial = "0.1s"
notification_backoff_max = "1s"
channel "am" { plugin = "alertmanager", urls = { "%s", "%s/am" } }
channel "hook" { plugin = "webhook", url = "%s/hook" }
]]):format(am.url, sink.url, sink.url),
    }
  end)

  teardown(function()
    if agent then agent:stop() end
    if sink then sink.stop() end
    if am then am.svc.stop() end
  end)

  local function set(name, v)
    local st, b = agent:post("/metrics/custom", cjson.encode { name = name, type = "gauge", value = v },
      { "Content-Type: application/json" })
    assert(st == 200 or st == 201 or st == 202, b)
  end

  -- Alertmanager's view: the active alert named `name`, or nil
  local function in_am(name)
    local st, body = S.http("GET", am.url .. "/api/v2/alerts")
    if st ~= 200 then return nil end
    for _, a in ipairs(S.json(body) or {}) do
      if a.labels.alertname == name then return a end
    end
  end

  -- alerts named `name` the sink got on path ("/am/api/v2/alerts" or "/hook"), each with `received`
  local function got(path, name)
    local out = {}
    for _, r in ipairs(sink.requests()) do
      if r.path == path then
        local body = S.json(r.body)
        local list = path == "/hook" and body and body.alerts or body
        for _, a in ipairs(list or {}) do
          if a.labels.alertname == name then
            a.received = r.time
            out[#out + 1] = a
          end
        end
      end
    end
    return out
  end

  it("fires within a couple of evaluations and resolves at once, while the webhook keeps group_wait", function()
    local t0 = S.now()
    set("paced.value", 42)
    local a = S.wait(function() return in_am("paced") end, 12)
    assert.is_truthy(a, ("not in Alertmanager %.1fs after the value: %s"):format(S.now() - t0, agent:logtext()))
    local seen_at = S.now()
    assert.are.equal("active", a.status.state)
    -- Alertmanager keeps it for four resends (4 x max(evaluation interval 1 s, resend 1 min))
    local ahead = epoch(a.endsAt) - seen_at
    assert.is_true(ahead > 200 and ahead <= 241, ("endsAt %s is %.1fs ahead"):format(a.endsAt, ahead))
    local posts = got("/am/api/v2/alerts", "paced")
    assert.are.equal(1, #posts)
    assert.are.equal(a.startsAt:sub(1, 19), posts[1].startsAt:sub(1, 19))
    -- the webhook goes by the default route: nothing before its 30 s group_wait
    assert.are.equal(0, #got("/hook", "paced"))

    local t1 = S.now()
    set("paced.value", 0)
    assert.is_truthy(S.wait(function() return in_am("paced") == nil end, 12),
      ("still active in Alertmanager %.1fs after the value dropped: %s"):format(S.now() - t1, cjson.encode(in_am("paced") or {})))
    posts = got("/am/api/v2/alerts", "paced")
    local last = posts[#posts]
    assert.are.equal(posts[1].startsAt, last.startsAt)
    -- the resolve carries the time it resolved: already past when it arrives
    assert.is_true(epoch(last.endsAt) <= last.received + 0.01, cjson.encode(last))
    assert.is_true(epoch(last.endsAt) >= t1 - 1, cjson.encode(last))
  end)

  it("has no cooldown; a webhook re-fire within its cooldown is held, and logged once", function()
    set("flap.value", 42)
    assert.is_truthy(S.wait(function() return #got("/hook", "flap") == 1 and in_am("flap") end, 12), agent:logtext())
    set("flap.value", 0)
    assert.is_truthy(S.wait(function() return #got("/hook", "flap") == 2 and in_am("flap") == nil end, 12), agent:logtext())
    local t2 = S.now()
    set("flap.value", 43)
    -- Alertmanager hears of the new episode at once, with its own startsAt
    local again = S.wait(function()
      local list = got("/am/api/v2/alerts", "flap")
      local last = list[#list]
      return last and epoch(last.endsAt) > last.received + 60 and last.received > t2 and last
    end, 12)
    assert.is_truthy(again, agent:logtext())
    assert.is_true(epoch(again.startsAt) >= t2 - 1)
    assert.is_truthy(S.wait(function() return in_am("flap") end, 12))
    -- the webhook's cooldown (1 h) holds it through several group flushes (every 0.3 s), logged once
    S.sleep(3)
    assert.are.equal(2, #got("/hook", "flap"))
    local log = agent:logtext()
    local n = 0
    for line in log:gmatch("[^\n]+") do
      if line:find("held back by cooldown", 1, true) and line:find("flap", 1, true) then
        n = n + 1
        assert.is_truthy(line:find("hook", 1, true), line)
      end
    end
    assert.are.equal(1, n, log)
  end)
end)
