-- The built-in channel plugins, each loaded as the sandbox would load it but with a fake ctx
-- that records what it sends: every field of every payload, the HMAC over the exact body, the
-- at-least-one rule of alertmanager, the email's structure and that labels cannot add headers.
-- And channel_util, whose response/iso8601 the sandbox hands out as ctx.response/ctx.iso8601.
-- The email and log channels and what every channel plugin shares are in channels_mail_spec.lua;
-- the fake ctx and samples in tests/channel_fixture.lua.
local beagle = require "beagle"
local json = require "beagle.json"
local cu = require "beagle.channel_util"
local F = require "channel_fixture"
local NOW, KNOWN_HMAC = F.NOW, F.KNOWN_HMAC
local load_plugin, send, status = F.load_plugin, F.send, F.status
local cpu_alert, disk_alert, notification = F.cpu_alert, F.disk_alert, F.notification

describe("channel_util", function()
  describe("response", function()
    local function r(code, headers, body) return { status = code, headers = headers or {}, body = body or "" } end

    it("accepts 2xx", function()
      assert.is_true(cu.response(r(200)))
      assert.is_true(cu.response(r(202)))
      assert.is_true(cu.response(r(204)))
    end)

    it("makes other 4xx permanent, with the first 200 bytes of the body on one line", function()
      local ok, err, info = cu.response(r(400, nil, "invalid routing key\r\n"))
      assert.is_nil(ok)
      assert.are.equal("HTTP 400: invalid routing key", err)
      assert.are.same({ permanent = true }, info)
      ok, err, info = cu.response(r(404, nil, ("x"):rep(300)))
      assert.is_nil(ok)
      assert.are.equal("HTTP 404: " .. ("x"):rep(200), err)
      assert.are.same({ permanent = true }, info)
      ok, err, info = cu.response(r(401))
      assert.is_nil(ok)
      assert.are.equal("HTTP 401", err)
      assert.is_true(info.permanent)
    end)

    it("does not cut a UTF-8 character in the body excerpt", function()
      local _, err = cu.response(r(400, nil, ("x"):rep(199) .. "é and more"))
      assert.are.equal("HTTP 400: " .. ("x"):rep(199), err)
    end)

    it("retries 408 and 5xx without a wait of their own", function()
      local ok, err, info = cu.response(r(408))
      assert.is_nil(ok)
      assert.are.equal("HTTP 408", err)
      assert.is_nil(info)
      ok, err, info = cu.response(r(500, nil, "boom"))
      assert.is_nil(ok)
      assert.are.equal("HTTP 500: boom", err)
      assert.is_nil(info)
      assert.is_nil((cu.response(r(502))))
    end)

    it("reads Retry-After on 429 and 503 as delta-seconds or an HTTP date", function()
      local _, ok, err, info
      ok, err, info = cu.response(r(429, { ["retry-after"] = "7" }, "slow down"), nil, NOW)
      assert.is_nil(ok)
      assert.are.equal("HTTP 429: slow down", err)
      assert.are.same({ retry_after = 7 }, info)
      -- NOW is 03:20:00.25: 03:20:30 is 29.75 s away, rounded up
      _, _, info = cu.response(r(429, { ["retry-after"] = "Fri, 28 Nov 2025 03:20:30 GMT" }), nil, NOW)
      assert.are.same({ retry_after = 30 }, info)
      _, _, info = cu.response(r(503, { ["retry-after"] = "Friday, 28-Nov-25 03:21:00 GMT" }), nil, NOW)
      assert.are.same({ retry_after = 60 }, info)
      _, _, info = cu.response(r(503, { ["retry-after"] = "Fri Nov 28 03:20:10 2025" }), nil, NOW)
      assert.are.same({ retry_after = 10 }, info)
      _, _, info = cu.response(r(503, { ["retry-after"] = " 120 " }), nil, NOW)
      assert.are.same({ retry_after = 120 }, info)
      -- a date in the past: go now
      _, _, info = cu.response(r(429, { ["retry-after"] = "Thu, 27 Nov 2025 00:00:00 GMT" }), nil, NOW)
      assert.are.same({ retry_after = 0 }, info)
    end)

    it("gives 429 and 503 an info table without retry_after when there is none to read", function()
      local _, ok, err, info
      ok, err, info = cu.response(r(503), nil, NOW)
      assert.is_nil(ok)
      assert.are.equal("HTTP 503", err)
      assert.are.same({}, info)
      _, _, info = cu.response(r(429, { ["retry-after"] = "soon" }), nil, NOW)
      assert.are.same({}, info)
      _, _, info = cu.response({ status = 429 }, nil, NOW) -- no headers at all
      assert.are.same({}, info)
    end)

    it("passes on the error when there is no response", function()
      local ok, err, info = cu.response(nil, "connection refused")
      assert.is_nil(ok)
      assert.are.equal("connection refused", err)
      assert.is_nil(info)
      assert.are.equal("no response", select(2, cu.response(nil, nil)))
    end)

    it("does not accept 1xx or 3xx, and retries them", function()
      local ok, err, info = cu.response(r(301, { location = "https://x" }))
      assert.is_nil(ok)
      assert.are.equal("HTTP 301", err)
      assert.is_nil(info)
    end)
  end)

  describe("encodings", function()
    it("base64 is RFC 4648's, in both alphabets", function()
      -- RFC 4648 section 10's vectors
      local v = { [""] = "", f = "Zg==", fo = "Zm8=", foo = "Zm9v", foob = "Zm9vYg==", fooba = "Zm9vYmE=",
        foobar = "Zm9vYmFy" }
      for plain, enc in pairs(v) do assert.equals(enc, cu.base64(plain)) end
      assert.equals("+/+/", cu.base64("\251\255\191"))
      assert.equals("-_-_", cu.base64("\251\255\191", true))
      assert.equals("Basic dXNlcjpwJmFzcw==", cu.basic_auth("user", "p&ass"))
      assert.equals("Basic dTo=", cu.basic_auth("u", nil))
    end)

    it("merge_headers lets a configured header replace ours whatever its case", function()
      local h = cu.merge_headers({ ["Content-Type"] = "a", ["User-Agent"] = "b" }, { ["content-type"] = "c", X = 5 })
      assert.same({ ["content-type"] = "c", ["User-Agent"] = "b", X = "5" }, h)
      assert.same({ A = "1" }, cu.merge_headers({ A = "1" }, nil))
    end)

    it("url_escape keeps only RFC 3986's unreserved characters", function()
      assert.equals("a-b_c.d~e", cu.url_escape("a-b_c.d~e"))
      assert.equals("a%2Fb%20c%3F%3D%26%25%C3%A9", cu.url_escape("a/b c?=&%é"))
    end)
  end)

  describe("dates", function()
    it("iso8601 has milliseconds and Z, rounded rather than truncated", function()
      assert.are.equal("2025-11-28T03:20:00.250Z", cu.iso8601(NOW))
      assert.are.equal("2025-11-28T03:15:00.000Z", cu.iso8601(1764299700))
      assert.are.equal("2000-02-29T00:00:00.000Z", cu.iso8601(951782400))
      assert.are.equal("1970-01-01T00:00:00.000Z", cu.iso8601(0))
      assert.are.equal("2099-12-31T23:59:59.999Z", cu.iso8601(4102444799.999))
      assert.are.equal("2025-11-28T03:20:00.200Z", cu.iso8601(1764300000.2))
      assert.are.equal("2025-11-28T03:20:01.000Z", cu.iso8601(1764300000.9999))
    end)

    it("rfc5322_date and parse_http_date agree with each other and the calendar", function()
      assert.are.equal("Fri, 28 Nov 2025 03:20:00 +0000", cu.rfc5322_date(NOW))
      assert.are.equal("Tue, 29 Feb 2000 00:00:00 +0000", cu.rfc5322_date(951782400))
      assert.are.equal(784111777, cu.parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"))
      assert.are.equal(784111777, cu.parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"))
      assert.are.equal(784111777, cu.parse_http_date("Sun Nov  6 08:49:37 1994"))
      assert.is_nil(cu.parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"))
      assert.is_nil(cu.parse_http_date("yesterday"))
    end)
  end)

  describe("notification helpers", function()
    it("severity_of is the highest severity among the alerts", function()
      assert.are.equal("critical", cu.severity_of(notification { cpu_alert(), disk_alert() }))
      assert.are.equal("warning", cu.severity_of(notification()))
      local a = cpu_alert()
      a.labels.severity = "info"
      local b = cpu_alert()
      b.labels.severity = "error"
      assert.are.equal("error", cu.severity_of(notification { a, b }))
      a.labels.severity = nil
      assert.are.equal("warning", cu.severity_of(notification { a }))
    end)

    it("title counts the alerts in the notification's status and names each rule once", function()
      assert.are.equal("[FIRING] high_cpu_usage", cu.title(notification()))
      assert.are.equal("[FIRING:2] high_cpu_usage", cu.title(notification { cpu_alert(), cpu_alert() }))
      assert.are.equal("[FIRING] high_cpu_usage, disk_full", cu.title(notification { cpu_alert(), disk_alert() }))
      assert.are.equal("[TEST] [RESOLVED] disk_full",
        cu.title(notification({ disk_alert() }, { status = "resolved", test = true })))
    end)

    it("expand fills the subject variables and leaves unknown ones as written", function()
      local n = notification { cpu_alert(), disk_alert() }
      assert.are.equal("FIRING 2 high_cpu_usage on web-1 (critical) {{ nope }} []",
        cu.expand("{{STATUS}} {{ count }} {{ name }} on {{ labels.host }} ({{ severity }}) {{ nope }} [{{ labels.x }}]", n))
    end)

    it("truncate cuts on a character boundary and marks the cut", function()
      assert.are.equal("abc", cu.truncate("abc", 3))
      assert.are.equal("ab...", cu.truncate("abcdefgh", 5))
      assert.are.equal("a...", cu.truncate("aééé", 5)) -- "aé..." would be 6 bytes
      assert.are.equal("aé...", cu.truncate("aééé", 6))
    end)

    it("message_of falls back to summary, description, then the name", function()
      local a = cpu_alert()
      assert.are.equal("CPU usage above 80% for 5 minutes", cu.message_of(a))
      a.annotations.message = nil
      assert.are.equal("cpu hot", cu.message_of(a))
      a.annotations = {}
      assert.are.equal("high_cpu_usage", cu.message_of(a))
    end)
  end)
end)

describe("webhook channel", function()
  local options = { url = "https://hooks.example.com/beagle", headers = { Authorization = "Bearer t0k" } }

  it("POSTs the guide's payload of the first alert, the notification, and every alert", function()
    local ctx, ok = send("webhook", notification { cpu_alert(), disk_alert() }, options)
    assert.is_true(ok)
    assert.are.equal(1, #ctx.requests)
    local req = ctx.requests[1]
    assert.are.equal("POST", req.method)
    assert.are.equal("https://hooks.example.com/beagle", req.url)
    local b = assert(json.decode(req.body))
    -- the guide's five fields
    assert.are.equal("high_cpu_usage", b.alert_name)
    assert.are.equal("warning", b.severity)
    assert.are.equal("CPU usage above 80% for 5 minutes", b.message)
    assert.are.equal("2025-11-28T03:15:00.000Z", b.timestamp)
    assert.are.same({ host = "web-1", team = "infra" }, b.tags)
    -- and around them
    assert.are.equal("firing", b.status)
    assert.are.same({ alertname = "high_cpu_usage", severity = "warning", host = "web-1", team = "infra" }, b.labels)
    assert.are.same({ message = "CPU usage above 80% for 5 minutes", summary = "cpu hot" }, b.annotations)
    assert.are.equal(93.5, b.value)
    assert.are.equal("2025-11-28T03:15:00.000Z", b.starts_at)
    assert.are.equal(json.null, b.ends_at)
    assert.are.equal("a1b2c3d4", b.fingerprint)
    assert.are.equal("9f2c0a1b", b.dedup_key)
    assert.are.equal(false, b.test)
    assert.are.equal("oncall", b.channel)
    assert.are.equal('0:{alertname="high_cpu_usage"}', b.group_key)
    assert.are.equal(2, #b.alerts)
    local first = b.alerts[1]
    for _, k in ipairs { "alert_name", "severity", "message", "timestamp", "labels", "starts_at", "fingerprint" } do
      assert.are.same(b[k], first[k], k)
    end
    local d = b.alerts[2]
    assert.are.same({
      alert_name = "disk_full", severity = "critical", message = "disk / at 97%",
      timestamp = "2025-11-28T03:21:40.000Z", -- a resolved alert's time is its end
      tags = { host = "db-1", component = "storage", group = "db", class = "disk" },
      status = "resolved",
      labels = { alertname = "disk_full", severity = "critical", host = "db-1", component = "storage",
        group = "db", class = "disk" },
      annotations = { message = "disk / at 97%" }, value = 97,
      starts_at = "2025-11-28T03:03:20.000Z", ends_at = "2025-11-28T03:21:40.000Z", fingerprint = "e5f6a7b8",
    }, d)
  end)

  it("sends the standard headers, the configured ones, and no signature without a secret", function()
    local ctx = send("webhook", notification(), options)
    assert.are.same({
      ["Content-Type"] = "application/json",
      ["User-Agent"] = "beagle/" .. beagle._VERSION,
      ["Idempotency-Key"] = "9f2c0a1b",
      Authorization = "Bearer t0k",
    }, ctx.requests[1].headers)
    assert.are.equal(0, #ctx.hmacs)
  end)

  it("signs the exact body with HMAC-SHA256 of the secret", function()
    local ctx = send("webhook", notification(), { url = "http://x/", secret = "s3cret" })
    local req = ctx.requests[1]
    assert.are.equal(1, #ctx.hmacs)
    assert.are.equal("s3cret", ctx.hmacs[1].key)
    assert.are.equal(req.body, ctx.hmacs[1].message)
    assert.are.equal("sha256=" .. KNOWN_HMAC, req.headers["X-Beagle-Signature"])
    assert.are.equal("1764300000", req.headers["X-Beagle-Timestamp"])
  end)

  it("lets a configured header replace a standard one whatever its case", function()
    local ctx = send("webhook", notification(), { url = "http://x/", headers = { ["content-type"] = "text/json" } })
    local h = ctx.requests[1].headers
    assert.is_nil(h["Content-Type"])
    assert.are.equal("text/json", h["content-type"])
  end)

  it("marks a test notification and an empty tag set as {}", function()
    local a = cpu_alert()
    a.labels = { alertname = "high_cpu_usage", severity = "warning" }
    local ctx = send("webhook", notification({ a }, { test = true }), { url = "http://x/" })
    assert.is_truthy(ctx.requests[1].body:find('"tags":{}', 1, true))
    assert.is_true(json.decode(ctx.requests[1].body).test)
  end)

  it("fails as the response says", function()
    local _, ok, err, info = send("webhook", notification(), { url = "http://x/" }, status(400, nil, "bad"))
    assert.is_nil(ok)
    assert.are.equal("HTTP 400: bad", err)
    assert.is_true(info.permanent)
    _, ok, _, info = send("webhook", notification(), { url = "http://x/" }, status(429, { ["retry-after"] = "7" }))
    assert.is_nil(ok)
    assert.are.equal(7, info.retry_after)
    _, ok, err = send("webhook", notification(), { url = "http://x/" }, function() return { err = "timeout" } end)
    assert.is_nil(ok)
    assert.are.equal("timeout", err)
  end)
end)

describe("slack channel", function()
  local url = "https://hooks.slack.com/services/T000/B000/XXXX"

  local function payload(n, options, answer)
    local o = { webhook_url = url }
    for k, v in pairs(options or {}) do o[k] = v end
    local ctx, ok = send("slack", n, o, answer)
    assert.is_true(ok)
    assert.are.equal(url, ctx.requests[1].url)
    assert.are.equal("application/json; charset=utf-8", ctx.requests[1].headers["Content-Type"])
    return assert(json.decode(ctx.requests[1].body))
  end

  it("sends text, a header and a section per alert, and a coloured attachment", function()
    local p = payload(notification { cpu_alert(), disk_alert() })
    assert.are.equal("[FIRING] high_cpu_usage, disk_full", p.text)
    assert.are.equal(4, #p.blocks)
    assert.are.same({ type = "header", text = { type = "plain_text", text = "FIRING: high_cpu_usage" } }, p.blocks[1])
    assert.are.same({
      type = "section",
      text = { type = "mrkdwn", text = "CPU usage above 80% for 5 minutes" },
      fields = {
        { type = "mrkdwn", text = "*Severity*\nwarning" },
        { type = "mrkdwn", text = "*Value*\n93.5" },
        { type = "mrkdwn", text = "*Labels*\n`host=web-1` `team=infra`" },
        { type = "mrkdwn", text = "*Since*\n2025-11-28T03:15:00.000Z" },
      },
    }, p.blocks[2])
    assert.are.equal("RESOLVED: disk_full", p.blocks[3].text.text)
    assert.are.equal("*Resolved*\n2025-11-28T03:21:40.000Z", p.blocks[4].fields[4].text)
    assert.are.equal(1, #p.attachments)
    local att = p.attachments[1]
    assert.are.equal("#d40e0d", att.color) -- the highest severity is critical
    assert.are.equal("[FIRING] high_cpu_usage, disk_full", att.fallback)
    assert.are.equal("FIRING, severity critical", att.text)
    assert.are.equal(1764300000, att.ts)
    assert.is_nil(p.channel)
    assert.is_nil(p.username)
  end)

  it("colours by severity, and green with RESOLVED once resolved", function()
    local colors = { critical = "#d40e0d", error = "#d40e0d", warning = "#f2a60c", info = "#439fe0",
      whatever = "#f2a60c" }
    for sev, color in pairs(colors) do
      local a = cpu_alert()
      a.labels.severity = sev
      assert.are.equal(color, payload(notification { a }).attachments[1].color, sev)
    end
    local r = disk_alert()
    local p = payload(notification({ r }, { status = "resolved" }))
    assert.are.equal("#2eb886", p.attachments[1].color)
    assert.are.equal("RESOLVED", p.attachments[1].text)
    assert.are.equal("[RESOLVED] disk_full", p.text)
    assert.are.equal("RESOLVED: disk_full", p.blocks[1].text.text)
  end)

  it("passes channel and username, and escapes Slack markup in alert text", function()
    local a = cpu_alert()
    a.annotations.message = "<!channel> & <http://evil|click>"
    a.labels.host = "<b>"
    local p = payload(notification { a }, { channel = "#ops", username = "beagle" })
    assert.are.equal("#ops", p.channel)
    assert.are.equal("beagle", p.username)
    assert.are.equal("&lt;!channel&gt; &amp; &lt;http://evil|click&gt;", p.blocks[2].text.text)
    assert.are.equal("*Labels*\n`host=&lt;b&gt;` `team=infra`", p.blocks[2].fields[3].text)
  end)

  it("stays within Slack's 50 blocks", function()
    local alerts = {}
    for i = 1, 30 do alerts[i] = cpu_alert() end
    local p = payload(notification(alerts))
    assert.are.equal(49, #p.blocks)
    assert.are.equal("context", p.blocks[49].type)
    assert.are.equal("and 6 more alerts", p.blocks[49].elements[1].text)
  end)

  it("fails permanently on Slack's 4xx answers", function()
    local _, ok, err, info = send("slack", notification(), { webhook_url = url }, status(404, nil, "no_service"))
    assert.is_nil(ok)
    assert.are.equal("HTTP 404: no_service", err)
    assert.is_true(info.permanent)
  end)
end)

describe("pagerduty channel", function()
  local accepted = status(202, nil, '{"status":"success","message":"Event processed"}')

  it("sends one Events API v2 event per alert, keyed by the fingerprint", function()
    local ctx, ok = send("pagerduty", notification { cpu_alert(), disk_alert() }, { routing_key = "R0UT1NG" }, accepted)
    assert.is_true(ok)
    assert.are.equal(2, #ctx.requests)
    for _, req in ipairs(ctx.requests) do
      assert.are.equal("https://events.pagerduty.com/v2/enqueue", req.url)
      assert.are.equal("application/json", req.headers["Content-Type"])
    end
    assert.are.same({
      routing_key = "R0UT1NG", event_action = "trigger", dedup_key = "a1b2c3d4", client = "beagle",
      payload = {
        summary = "CPU usage above 80% for 5 minutes", source = "web-1", severity = "warning",
        timestamp = "2025-11-28T03:15:00.000Z",
        custom_details = { alertname = "high_cpu_usage", severity = "warning", host = "web-1", team = "infra",
          message = "CPU usage above 80% for 5 minutes", summary = "cpu hot", value = 93.5 },
      },
    }, json.decode(ctx.requests[1].body))
    assert.are.same({
      routing_key = "R0UT1NG", event_action = "resolve", dedup_key = "e5f6a7b8", client = "beagle",
      payload = {
        summary = "disk / at 97%", source = "db-1", severity = "critical",
        timestamp = "2025-11-28T03:21:40.000Z", component = "storage", group = "db", class = "disk",
        custom_details = { alertname = "disk_full", severity = "critical", host = "db-1", component = "storage",
          group = "db", class = "disk", message = "disk / at 97%", value = 97 },
      },
    }, json.decode(ctx.requests[2].body))
  end)

  it("maps severities onto critical, error, warning and info (unknown: warning)", function()
    local map = { critical = "critical", error = "error", warning = "warning", info = "info", page = "warning",
      [""] = "warning" }
    for sev, want in pairs(map) do
      local a = cpu_alert()
      a.labels.severity = sev ~= "" and sev or nil
      local ctx = send("pagerduty", notification { a }, { routing_key = "k" }, accepted)
      assert.are.equal(want, json.decode(ctx.requests[1].body).payload.severity, sev)
    end
  end)

  it("uses the configured url and source, else the host label, else beagle", function()
    local ctx = send("pagerduty", notification(), { routing_key = "k", url = "http://127.0.0.1:9/enqueue",
      source = "prod-cluster" }, accepted)
    assert.are.equal("http://127.0.0.1:9/enqueue", ctx.requests[1].url)
    assert.are.equal("prod-cluster", json.decode(ctx.requests[1].body).payload.source)
    local a = cpu_alert()
    a.labels.host = nil
    ctx = send("pagerduty", notification { a }, { routing_key = "k" }, accepted)
    assert.are.equal("beagle", json.decode(ctx.requests[1].body).payload.source)
  end)

  it("keeps the summary within 1024 bytes", function()
    local a = cpu_alert()
    a.annotations.message = ("x"):rep(2000)
    local ctx = send("pagerduty", notification { a }, { routing_key = "k" }, accepted)
    local summary = json.decode(ctx.requests[1].body).payload.summary
    assert.are.equal(1024, #summary)
    assert.are.equal("...", summary:sub(-3))
  end)

  it("fails the notification when one event fails, and stops there", function()
    local alerts = { cpu_alert(), disk_alert(), cpu_alert() }
    local _, ctx, ok, err, info
    ctx, ok, err, info = send("pagerduty", notification(alerts), { routing_key = "k" }, function(_, i)
      if i == 2 then return { status = 429, headers = { ["retry-after"] = "5" } } end
      return { status = 202, body = "" }
    end)
    assert.is_nil(ok)
    assert.are.equal("event 2 of 3 (e5f6a7b8): HTTP 429", err)
    assert.are.same({ retry_after = 5 }, info)
    assert.are.equal(2, #ctx.requests)
    _, ok, err, info = send("pagerduty", notification(), { routing_key = "bad" },
      status(400, nil, '{"status":"invalid event","errors":["Invalid routing key"]}'))
    assert.is_nil(ok)
    assert.is_truthy(err:find("Invalid routing key", 1, true))
    assert.is_true(info.permanent)
  end)
end)

describe("alertmanager channel", function()
  local urls = { "http://am-1:9093", "http://am-2:9093/" }

  it("declares a resend of one minute", function()
    -- the constructor turns durations into seconds
    assert.are.equal(60, beagle.parse_duration(load_plugin("alertmanager").resend))
  end)

  it("POSTs one array of alerts to /api/v2/alerts of every Alertmanager", function()
    local n = notification { cpu_alert(), disk_alert() }
    local ctx, ok = send("alertmanager", n, { urls = urls, generator_url = "http://beagle:8001/alerts" })
    assert.is_true(ok)
    assert.are.equal(2, #ctx.requests)
    assert.are.equal("http://am-1:9093/api/v2/alerts", ctx.requests[1].url)
    assert.are.equal("http://am-2:9093/api/v2/alerts", ctx.requests[2].url)
    assert.are.equal(ctx.requests[1].body, ctx.requests[2].body)
    assert.are.equal(5, ctx.requests[1].timeout) -- request_timeout's default
    assert.are.equal("[", ctx.requests[1].body:sub(1, 1))
    assert.are.same({
      {
        labels = { alertname = "high_cpu_usage", severity = "warning", host = "web-1", team = "infra" },
        annotations = { message = "CPU usage above 80% for 5 minutes", summary = "cpu hot" },
        startsAt = "2025-11-28T03:15:00.000Z",
        endsAt = "2025-11-28T03:24:00.250Z", -- firing: now + 4 resends (4 minutes)
        generatorURL = "http://beagle:8001/alerts",
      },
      {
        labels = { alertname = "disk_full", severity = "critical", host = "db-1", component = "storage",
          group = "db", class = "disk" },
        annotations = { message = "disk / at 97%" },
        startsAt = "2025-11-28T03:03:20.000Z",
        endsAt = "2025-11-28T03:21:40.000Z", -- resolved: when it ended
        generatorURL = "http://beagle:8001/alerts",
      },
    }, json.decode(ctx.requests[1].body))
  end)

  it("makes annotations strings and omits generatorURL when not configured", function()
    local a = cpu_alert()
    a.annotations.runbook = 42
    local ctx = send("alertmanager", notification { a }, { urls = "http://am:9093", request_timeout = "2s" })
    assert.are.equal(2, ctx.requests[1].timeout)
    local got = json.decode(ctx.requests[1].body)[1]
    assert.are.equal("42", got.annotations.runbook)
    assert.is_nil(got.generatorURL)
  end)

  it("succeeds when at least one Alertmanager accepted, and logs the others", function()
    local ctx, ok = send("alertmanager", notification(), { urls = urls }, function(_, i)
      if i == 1 then return { err = "connection refused" } end
      return { status = 200 }
    end)
    assert.is_true(ok)
    assert.are.equal(2, #ctx.requests)
    assert.are.equal("warn", ctx.logs[1].level)
    assert.are.equal("http://am-1:9093: connection refused", ctx.logs[1].fields.failed)
  end)

  it("fails naming every Alertmanager when none accepted", function()
    local _, ok, err, info = send("alertmanager", notification(), { urls = urls }, function(_, i)
      if i == 1 then return { err = "connection refused" } end
      return { status = 500, body = "internal" }
    end)
    assert.is_nil(ok)
    assert.are.equal("no Alertmanager accepted the alerts: http://am-1:9093: connection refused; "
      .. "http://am-2:9093/: HTTP 500: internal", err)
    assert.are.same({}, info)
  end)

  it("is permanent only when all refused for good, and waits only when all asked to", function()
    local _, ok, _, info = send("alertmanager", notification(), { urls = urls }, status(400, nil, "bad alert"))
    assert.is_nil(ok)
    assert.are.same({ permanent = true }, info)
    _, ok, _, info = send("alertmanager", notification(), { urls = urls }, function(_, i)
      return { status = 429, headers = { ["retry-after"] = i == 1 and "7" or "3" } }
    end)
    assert.is_nil(ok)
    assert.are.same({ retry_after = 3 }, info)
    _, ok, _, info = send("alertmanager", notification(), { urls = urls }, function(_, i)
      if i == 1 then return { status = 400 } end
      return { status = 503, headers = { ["retry-after"] = "9" } }
    end)
    assert.is_nil(ok)
    assert.are.same({}, info)
  end)
end)
