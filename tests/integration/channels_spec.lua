-- Alert channels in a running agent, against receivers on loopback: the HTTP sink of
-- tests/http_sink.py (webhook, slack, pagerduty payloads, the HMAC signature, the dedup key,
-- outages, Retry-After), a real Alertmanager (Debian's prometheus-alertmanager) and the SMTP sink
-- of tests/smtp_sink.py.
local S = require "support"
local cjson = require "cjson"

local SECRET = "s3cret-hmac-key-0123"
local PD_KEY = "pd-routing-key-abcdef"

local function lower_headers(h)
  local out = {}
  for k, v in pairs(h or {}) do out[k:lower()] = v end
  return out
end

-- HMAC-SHA256 by Python's hmac module: an implementation that is not ours.
local function hmac_hex(key, body)
  local f = S.tmpname()
  S.write(f, body)
  local py = "import hmac,hashlib,sys; "
    .. "print(hmac.new(sys.argv[1].encode(), open(sys.argv[2],'rb').read(), hashlib.sha256).hexdigest())"
  local out = S.sh(("python3 -c %q %q %q"):format(py, key, f))
  os.remove(f)
  return (out:gsub("%s+$", ""))
end

local function rules_file(dir)
  S.write(dir .. "/channels.lua", [[
route { match = { alertname = "hooked" }, channels = { "hook" }, group_wait = "0s", group_interval = "0.2s", repeat_interval = "1h" }
route { match = { alertname = "paged" }, channels = { "pd", "chat" }, group_wait = "0s", group_interval = "0.2s", repeat_interval = "1h" }
route { match = { alertname = "to_am" }, channels = { "am" }, group_wait = "0s", group_interval = "0.2s", repeat_interval = "1h" }
route { match = { alertname = "mailed" }, channels = { "mail" }, group_wait = "0s", group_interval = "0.2s", repeat_interval = "1h" }
route { match = { alertname = "flaky" }, channels = { "flaky" }, group_by = { "alertname", "k" },
  group_wait = "0s", group_interval = "0.2s", repeat_interval = "1h" }
alert "hooked" { metric = "hook.value", condition = ">", threshold = 10, duration = "0s", every = "0.2s",
  severity = "critical", message = "hook value {{ value }}", tags = { team = "ops" } }
alert "paged" { metric = "pd.value", condition = ">", threshold = 10, duration = "0s", every = "0.2s",
  severity = "error", message = "paged value {{ value }}" }
alert "to_am" { metric = "am.value", condition = ">", threshold = 10, duration = "0s", every = "0.2s",
  severity = "warning", message = "am value {{ value }}", summary = "AM summary" }
alert "mailed" { metric = "mail.value", condition = ">", threshold = 10, duration = "0s", every = "0.2s",
  severity = "critical", message = "mail value {{ value }}" }
alert "flaky" { metric = "flaky.value", condition = ">", threshold = 10, duration = "0s", every = "0.2s",
  severity = "warning", message = "flaky {{ labels.k }}" }
route { match = { alertname = "chatted" }, channels = { "talk" }, group_wait = "0s", group_interval = "0.2s", repeat_interval = "1h" }
alert "chatted" { metric = "talk.value", condition = ">", threshold = 10, duration = "0s", every = "0.2s",
  severity = "warning", message = "talk {{ value }}" }
]])
end

-- A custom channel that logs its own secret through ctx.log: the agent's log must show ***.
local CHATTY = [[
return beagle.channel { name = "chatty",
  options = { token = { "secret", description = "a secret the plugin logs by mistake" } },
  send = function(n, ctx)
    ctx.log.warn("chatty sends " .. n.alerts[1].name .. " with " .. ctx.options.token,
      { token = ctx.options.token })
    return true
  end }
]]
local CHATTY_TOKEN = "tok-chatty-5150"

describe("alert channels", function()
  local sink, am, smtp, agent, rules, mailbox
  local am_port

  setup(function()
    sink = S.sink()
    -- Alertmanager, one node (no cluster), on a free port
    local a = S.alertmanager()
    am, am_port = a.svc, a.port
    -- SMTP sink
    mailbox = S.tmpdir() .. "/mail.jsonl"
    smtp = S.service(("exec python3 %q %q"):format(S.src .. "/tests/smtp_sink.py", mailbox))
    local smtp_port = S.wait(function() return tonumber(smtp.output():match("^(%d+)")) end, 10)
    assert(smtp_port, "smtp sink did not start: " .. smtp.output())

    rules = S.tmpdir()
    rules_file(rules)
    local secret_dir = S.tmpdir()
    S.write(secret_dir .. "/pd_key", PD_KEY .. "\n")
    local plugins = S.tmpdir()
    S.write(plugins .. "/chatty.lua", CHATTY)
    agent = S.start {
      plugins = plugins,
      env = { MONITORING_METRICS_COLLECTION_INTERVAL = "0.1", PD_KEY_FILE = secret_dir .. "/pd_key" },
      args = { "--rules", rules },
      config = S.calm_system .. ([[
notification_backoff_initial = "0.05s"
notification_backoff_max = "3s"
notification_breaker_probe = "0.6s"
notification_timeout = "2s"
channel "hook" { plugin = "webhook", url = "%s/hook", secret = "%s", headers = { ["X-Team"] = "ops" } }
channel "pd" { plugin = "pagerduty", url = "%s/pd", routing_key = secret_file(os.getenv("PD_KEY_FILE")) }
channel "chat" { plugin = "slack", webhook_url = "%s/slack" }
channel "am" { plugin = "alertmanager", urls = { "http://127.0.0.1:%d" } }
channel "mail" { plugin = "email", url = "smtp://127.0.0.1:%d", from = "beagle@example.test",
  to = { "oncall@example.test" }, username = "beagle", password = "mail-pass-xyz", starttls = false }
channel "flaky" { plugin = "webhook", url = "%s/flaky" }
channel "talk" { plugin = "chatty", token = "%s" }
]]):format(sink.url, SECRET, sink.url, sink.url, am_port, smtp_port, sink.url, CHATTY_TOKEN),
    }
  end)

  teardown(function()
    if agent then agent:stop() end
    if sink then sink.stop() end
    if am then am.stop() end
    if smtp then smtp.stop() end
  end)

  local function set(name, v, labels)
    local body = cjson.encode { name = name, type = "gauge", value = v, tags = labels }
    local st, b = agent:post("/metrics/custom", body, { "Content-Type: application/json" })
    assert(st == 200 or st == 201 or st == 202, b)
  end

  local function requests(path, pred)
    local out = {}
    for _, r in ipairs(sink.requests()) do
      if r.path == path then
        r.h = lower_headers(r.headers)
        r.json = S.json(r.body)
        if not pred or pred(r) then out[#out + 1] = r end
      end
    end
    return out
  end

  it("posts the webhook payload, signed, with the dedup key; and its resolve", function()
    set("hook.value", 50)
    local got = S.wait(function()
      local l = requests("/hook", function(r) return r.json and r.json.status == "firing" end)
      return l[1]
    end, 8)
    assert.is_truthy(got, agent:logtext())
    local b = got.json
    assert.are.equal("POST", got.method)
    assert.are.equal("hooked", b.alert_name)
    assert.are.equal("critical", b.severity)
    assert.are.equal("hook value 50", b.message)
    assert.are.equal("ops", b.tags.team)
    assert.are.equal("hooked", b.labels.alertname)
    assert.is_string(b.fingerprint)
    assert.is_string(b.starts_at)
    assert.is_truthy(b.timestamp:match("^%d%d%d%d%-%d%d%-%d%dT"))
    assert.is_truthy(got.h["content-type"]:find("application/json", 1, true))
    assert.are.equal("ops", got.h["x-team"])
    assert.are.equal(b.dedup_key, got.h["idempotency-key"])
    assert.are.equal("sha256=" .. hmac_hex(SECRET, got.body), got.h["x-beagle-signature"])

    set("hook.value", 1)
    local res = S.wait(function()
      return requests("/hook", function(r) return r.json and r.json.status == "resolved" end)[1]
    end, 8)
    assert.is_truthy(res, agent:logtext())
    assert.are.equal(b.fingerprint, res.json.fingerprint)
    assert.are_not.equal(b.dedup_key, res.json.dedup_key)
    assert.is_string(res.json.ends_at)
    assert.are.equal("sha256=" .. hmac_hex(SECRET, res.body), res.h["x-beagle-signature"])
  end)

  it("sends PagerDuty Events v2 and a Slack message for one alert", function()
    set("pd.value", 77)
    local ev = S.wait(function() return requests("/pd")[1] end, 8)
    assert.is_truthy(ev, agent:logtext())
    local e = ev.json
    assert.are.equal(PD_KEY, e.routing_key)
    assert.are.equal("trigger", e.event_action)
    assert.are.equal("error", e.payload.severity)
    assert.are.equal("paged value 77", e.payload.summary)
    assert.is_string(e.payload.timestamp)
    local slack = S.wait(function() return requests("/slack")[1] end, 8)
    assert.is_truthy(slack)
    assert.is_truthy(slack.json.text:find("paged", 1, true), slack.body)
    assert.is_table(slack.json.blocks)
    -- the dedup key is the alert's fingerprint, the same on the resolve
    set("pd.value", 0)
    local r = S.wait(function()
      return requests("/pd", function(x) return x.json and x.json.event_action == "resolve" end)[1]
    end, 8)
    assert.is_truthy(r)
    assert.are.equal(e.dedup_key, r.json.dedup_key)
  end)

  it("masks a secret that a channel's send logs through ctx.log", function()
    set("talk.value", 50)
    local line = S.wait(function() return agent:logtext():match("[^\n]*chatty sends chatted with[^\n]*") end, 8)
    assert.is_truthy(line, agent:logtext())
    assert.is_truthy(line:find("with ***", 1, true), line)
    assert.is_falsy(agent:logtext():find(CHATTY_TOKEN, 1, true))
  end)

  it("never shows a secret in /health/detailed, and reports each channel", function()
    local _, o, body = agent:get_json("/health/detailed")
    assert.is_falsy(body:find(SECRET, 1, true))
    assert.is_falsy(body:find(PD_KEY, 1, true))
    assert.is_falsy(body:find("mail-pass-xyz", 1, true))
    local by = {}
    for _, c in ipairs(o.channels) do by[c.name] = c end
    assert.are.equal("***", by.hook.options.secret)
    assert.are.equal("***", by.pd.options.routing_key)
    assert.are.equal("webhook", by.hook.plugin)
    assert.is_true(by.hook.sent >= 2)
    assert.are.equal("closed", by.hook.breaker)
    assert.is_truthy(by.log) -- the default channel, automatic
    -- the log never had them either
    local log = agent:logtext()
    assert.is_falsy(log:find(SECRET, 1, true))
    assert.is_falsy(log:find(PD_KEY, 1, true))
    local _, metrics = agent:get("/metrics")
    assert.is_truthy(metrics:find('beagle_notifications_total{channel="hook",result="sent"}', 1, true), metrics)
  end)

  it("reaches a real Alertmanager, and the alert leaves it on resolve", function()
    local function am_alerts()
      local st, body = S.http("GET", ("http://127.0.0.1:%d/api/v2/alerts"):format(am_port))
      if st ~= 200 then return {} end
      local out = {}
      for _, a in ipairs(S.json(body) or {}) do
        if a.labels.alertname == "to_am" then out[#out + 1] = a end
      end
      return out
    end
    set("am.value", 42)
    local a = S.wait(function() return am_alerts()[1] end, 10)
    assert.is_truthy(a, agent:logtext())
    assert.are.equal("warning", a.labels.severity)
    assert.are.equal("am value 42", a.annotations.message)
    assert.are.equal("AM summary", a.annotations.summary)
    assert.are.equal("active", a.status.state)
    set("am.value", 0)
    assert.is_truthy(S.wait(function() return #am_alerts() == 0 end, 10), cjson.encode(am_alerts()))
  end)

  it("sends an email through SMTP with authentication", function()
    set("mail.value", 99)
    local m = S.wait(function()
      local text = S.read(mailbox)
      return text and text ~= "" and S.json(text:match("[^\n]+"))
    end, 10)
    assert.is_truthy(m, agent:logtext())
    assert.is_truthy(m.from:find("beagle@example.test", 1, true))
    assert.is_truthy(cjson.encode(m.to):find("oncall@example.test", 1, true))
    assert.are.equal("beagle", m.auth_user)
    assert.are.equal("mail-pass-xyz", m.auth_password)
    assert.is_truthy(m.data:find("Subject: [FIRING", 1, true), m.data)
    assert.is_truthy(m.data:find("mail value 99", 1, true), m.data)
  end)

  it("rides out a receiver outage: backoff, the breaker, at most 4 in flight, all delivered after", function()
    -- 10 minutes at 1/100 scale: backoff 0.05 s .. 3 s, a probe every 0.6 s, 6 s down
    sink.control { status = 503, delay = 0.2 }
    for k = 1, 6 do set("flaky.value", 50, { k = tostring(k) }) end
    S.sleep(6)
    sink.control { status = 200, delay = 0.2 }
    local function delivered()
      local keys = {}
      for _, r in ipairs(requests("/flaky")) do
        if r.status == 200 then keys[r.h["idempotency-key"]] = true end
      end
      local n = 0
      for _ in pairs(keys) do n = n + 1 end
      return n
    end
    assert.is_truthy(S.wait(function() return delivered() >= 6 end, 15), agent:logtext())
    local per, events = {}, {}
    for _, r in ipairs(requests("/flaky")) do
      local key = r.h["idempotency-key"]
      per[key] = (per[key] or 0) + 1
      events[#events + 1] = { r.time, 1 }
      -- a request the client gave up on may have no answer time: it ended when we looked
      events[#events + 1] = { type(r.answered) == "number" and r.answered or S.now(), -1 }
    end
    local most = 0
    for _, n in pairs(per) do most = math.max(most, n) end
    assert.is_true(most <= 12, "attempts of one notification: " .. most)
    assert.is_true(most >= 3, "the outage should have cost retries: " .. most)
    table.sort(events, function(x, y) if x[1] ~= y[1] then return x[1] < y[1] end return x[2] < y[2] end)
    local open, peak = 0, 0
    for _, ev in ipairs(events) do
      open = open + ev[2]
      peak = math.max(peak, open)
    end
    assert.is_true(peak <= 4, "in flight at once: " .. peak)
    assert.is_true(peak >= 2, "deliveries should overlap: " .. peak)
  end)

  it("honours Retry-After", function()
    sink.control { status = 429, retry_after = "7", delay = 0 }
    set("flaky.value", 50, { k = "ra" })
    local first = S.wait(function()
      return requests("/flaky", function(r) return r.json and r.json.labels.k == "ra" end)[1]
    end, 8)
    assert.is_truthy(first, agent:logtext())
    sink.control { status = 200, delay = 0 }
    local second = S.wait(function()
      return requests("/flaky", function(r) return r.json and r.json.labels.k == "ra" end)[2]
    end, 12)
    assert.is_truthy(second, agent:logtext())
    local gap = second.time - first.time
    assert.is_true(gap >= 6.9 and gap < 9, "retried after " .. gap .. " s")
    assert.are.equal(first.h["idempotency-key"], second.h["idempotency-key"])
  end)
end)
