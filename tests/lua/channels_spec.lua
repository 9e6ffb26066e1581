-- The built-in channel plugins, each loaded as the sandbox would load it but with a fake ctx
-- that records what it sends: every field of every payload, the HMAC over the exact body, the
-- at-least-one rule of alertmanager, the email's structure and that labels cannot add headers.
-- And channel_util, whose response/iso8601 the sandbox hands out as ctx.response/ctx.iso8601.
local beagle = require "beagle"
local json = require "beagle.json"
local cu = require "beagle.channel_util"

local NOW = 1764300000.25 -- 2025-11-28T03:20:00.250Z
local KNOWN_HMAC = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"

local function load_plugin(name)
  local chunk = assert(loadfile("plugins/channels/" .. name .. ".lua"))
  setfenv(chunk, setmetatable({ beagle = beagle }, { __index = _G }))
  return chunk()
end

-- answer(req, i) -> { status, body, headers } | { err = "..." }; default 200.
local function fake_ctx(p, options, answer, mail_result)
  local ctx = { name = "oncall", requests = {}, mails = {}, logs = {}, hmacs = {} }
  ctx.options = assert(beagle.validate_options(p.options, options or {}))
  ctx.time = function() return NOW end
  ctx.now = function() return 1000 end
  ctx.json = json
  ctx.iso8601 = cu.iso8601
  ctx.response = function(res, err) return cu.response(res, err, NOW) end
  -- the real one is C: this one records what it was asked to sign
  ctx.hmac_sha256 = function(key, message)
    ctx.hmacs[#ctx.hmacs + 1] = { key = key, message = message }
    return KNOWN_HMAC
  end
  local function respond(req)
    ctx.requests[#ctx.requests + 1] = req
    local r = answer and answer(req, #ctx.requests) or { status = 200, body = "ok", headers = {} }
    if r.err then return nil, r.err end
    r.headers = r.headers or {}
    return r
  end
  ctx.http = {
    post = function(url, body, opt)
      opt = opt or {}
      return respond { method = "POST", url = url, body = body, headers = opt.headers, timeout = opt.timeout }
    end,
    request = function(req) return respond(req) end,
  }
  ctx.mail = function(m)
    ctx.mails[#ctx.mails + 1] = m
    if mail_result then return mail_result(m) end
    return true
  end
  local function logger(level)
    return function(msg, fields) ctx.logs[#ctx.logs + 1] = { level = level, msg = msg, fields = fields } end
  end
  ctx.log = { info = logger("info"), warn = logger("warn"), error = logger("error") }
  return ctx
end

local function cpu_alert()
  return {
    name = "high_cpu_usage", fingerprint = "a1b2c3d4", status = "firing",
    labels = { alertname = "high_cpu_usage", severity = "warning", host = "web-1", team = "infra" },
    annotations = { message = "CPU usage above 80% for 5 minutes", summary = "cpu hot" },
    value = 93.5, starts_at = 1764299700, active_at = 1764299400,
  }
end

local function disk_alert()
  return {
    name = "disk_full", fingerprint = "e5f6a7b8", status = "resolved",
    labels = { alertname = "disk_full", severity = "critical", host = "db-1", component = "storage",
      group = "db", class = "disk" },
    annotations = { message = "disk / at 97%" },
    value = 97, starts_at = 1764299000, ends_at = 1764300100,
  }
end

local function notification(alerts, over)
  local n = {
    id = 42, channel = "oncall", status = "firing", group_key = '0:{alertname="high_cpu_usage"}',
    dedup_key = "9f2c0a1b", test = false, resend = false, created_at = NOW, attempt = 1,
    alerts = alerts or { cpu_alert() },
  }
  for k, v in pairs(over or {}) do n[k] = v end
  return n
end

local function send(name, n, options, answer, mail_result)
  local p = load_plugin(name)
  local ctx = fake_ctx(p, options, answer, mail_result)
  local ok, err, info = p.send(n, ctx)
  return ctx, ok, err, info, p
end

local function status(code, headers, body)
  return function() return { status = code, headers = headers or {}, body = body or "" } end
end

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

describe("email channel", function()
  local options = { url = "smtp://mail.example.com:587", from = "beagle <alerts@example.com>",
    to = { "ops@example.com", "Ops Lead <lead@example.com>" }, username = "alerts", password = "pw" }

  -- the message split into its header block (unfolded) and its MIME parts, decoded
  local function unqp(s)
    return (s:gsub("=\r\n", ""):gsub("=(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
  end
  local function parse(msg)
    local head, body = msg:match("^(.-)\r\n\r\n(.*)$")
    local headers, order = {}, {}
    for line in (head:gsub("\r\n[ \t]", " ") .. "\r\n"):gmatch("(.-)\r\n") do
      local k, v = line:match("^([%w%-]+): (.*)$")
      assert.is_truthy(k, "not a header line: " .. line)
      headers[k:lower()] = v
      order[#order + 1] = k
    end
    local boundary = headers["content-type"]:match('boundary="([^"]+)"')
    -- split at the delimiter lines: preamble, the parts, then "--" of the close delimiter
    local parts, segs, rest = {}, {}, "\r\n" .. body
    while true do
      local i, j = rest:find("\r\n--" .. boundary, 1, true)
      if not i then break end
      segs[#segs + 1], rest = rest:sub(1, i - 1), rest:sub(j + 1)
    end
    assert.are.equal("--\r\n", rest)
    for k = 2, #segs do
      local ph, pb = segs[k]:match("^\r\n(.-)\r\n\r\n(.*)$")
      parts[#parts + 1] = { head = ph, text = unqp(pb) }
    end
    return { head = head, headers = headers, order = order, body = body, boundary = boundary, parts = parts }
  end

  it("hands ctx.mail the server, the envelope and the credentials", function()
    local _, ctx, ok
    ctx, ok = send("email", notification(), options)
    assert.is_true(ok)
    local m = ctx.mails[1]
    assert.are.equal("smtp://mail.example.com:587", m.url)
    assert.are.equal("alerts@example.com", m.from)
    assert.are.same({ "ops@example.com", "lead@example.com" }, m.to)
    assert.are.equal("alerts", m.username)
    assert.are.equal("pw", m.password)
    assert.is_true(m.starttls)
    _, ok = send("email", notification(), { url = "smtps://mail:465", from = "a@b.c", to = "d@e.f", starttls = false })
    assert.is_true(ok)
  end)

  it("builds an RFC 5322 multipart/alternative message with CRLF line ends", function()
    local ctx = send("email", notification { cpu_alert(), disk_alert() }, options)
    local msg = ctx.mails[1].message
    assert.is_nil(msg:find("[^\r]\n"), "a bare LF")
    assert.is_nil(msg:find("\r[^\n]"), "a bare CR")
    for line in msg:gmatch("(.-)\r\n") do assert.is_true(#line <= 998) end
    local m = parse(msg)
    assert.are.equal("Fri, 28 Nov 2025 03:20:00 +0000", m.headers.date)
    assert.are.equal("beagle <alerts@example.com>", m.headers.from)
    assert.are.equal("ops@example.com, Ops Lead <lead@example.com>", m.headers.to)
    assert.are.equal("[FIRING] high_cpu_usage, disk_full", m.headers.subject)
    assert.are.equal("<9f2c0a1b@example.com>", m.headers["message-id"])
    assert.are.equal("1.0", m.headers["mime-version"])
    assert.are.equal('multipart/alternative; boundary="=_beagle_9f2c0a1b"', m.headers["content-type"])
    assert.are.equal("auto-generated", m.headers["auto-submitted"])
    assert.is_truthy(m.body:find("\r\n%-%-=_beagle_9f2c0a1b%-%-\r\n$"))
    assert.are.equal(2, #m.parts)
    assert.are.equal("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable",
      m.parts[1].head)
    assert.are.equal("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable",
      m.parts[2].head)
    local text = m.parts[1].text
    for _, want in ipairs { "[FIRING] high_cpu_usage, disk_full", "FIRING: high_cpu_usage",
      "CPU usage above 80% for 5 minutes", "Value: 93.5", "Since: 2025-11-28T03:15:00.000Z",
      "Labels: host=web-1, team=infra", "Summary: cpu hot", "RESOLVED: disk_full",
      "Resolved: 2025-11-28T03:21:40.000Z", "notification 9f2c0a1b" } do
      assert.is_truthy(text:find(want, 1, true), want)
    end
    local html = m.parts[2].text
    assert.is_truthy(html:find("<h3>FIRING: high_cpu_usage</h3>", 1, true))
    assert.is_truthy(html:find("<p>CPU usage above 80% for 5 minutes</p>", 1, true))
    assert.is_truthy(html:find('<h2 style="color:#d40e0d">', 1, true))
    -- quoted-printable keeps lines short
    for line in m.body:gmatch("(.-)\r\n") do assert.is_true(#line <= 76, line) end
  end)

  it("says RESOLVED in the subject of a resolved notification, and uses a subject template", function()
    local ctx = send("email", notification({ disk_alert() }, { status = "resolved" }), options)
    assert.are.equal("[RESOLVED] disk_full", parse(ctx.mails[1].message).headers.subject)
    local o = { subject = "{{ STATUS }} {{ name }} on {{ labels.host }}" }
    for k, v in pairs(options) do o[k] = o[k] or v end
    ctx = send("email", notification(), o)
    assert.are.equal("FIRING high_cpu_usage on web-1", parse(ctx.mails[1].message).headers.subject)
  end)

  it("lets no label add a header or a MIME part", function()
    local a = cpu_alert()
    a.name = "x\r\nBcc: victim@example.org"
    a.labels.host = "web-1\r\nBcc: x@evil.example\r\n\r\n--=_beagle_9f2c0a1b\r\nContent-Type: text/evil"
    a.annotations.message = "line1\nBcc: y@evil.example\r\n--=_beagle_9f2c0a1b--"
    local o = { subject = "{{ name }} {{ labels.host }}" }
    for k, v in pairs(options) do o[k] = o[k] or v end
    local ctx, ok = send("email", notification { a }, o)
    assert.is_true(ok)
    local msg = ctx.mails[1].message
    local m = parse(msg) -- asserts every header line is "Name: value" or a continuation
    for _, k in ipairs(m.order) do assert.are_not.equal("bcc", k:lower()) end
    assert.are.same({ "Date", "From", "To", "Subject", "Message-ID", "MIME-Version", "Content-Type",
      "Auto-Submitted", "X-Beagle-Status" }, m.order)
    assert.is_nil(m.head:find("\r\nBcc", 1, true))
    assert.are.equal("x Bcc: victim@example.org web-1 Bcc: x@evil.example --=_beagle_9f2c0a1b Content-Type: text/evil",
      m.headers.subject)
    -- the boundary appears only as the three delimiters
    local n = 0
    for line in msg:gmatch("(.-)\r\n") do
      if line:find("=_beagle_", 1, true) and line:sub(1, 2) == "--" then n = n + 1 end
    end
    assert.are.equal(3, n)
    assert.are.equal(2, #m.parts)
    assert.is_truthy(m.parts[1].text:find("Bcc: y@evil.example", 1, true)) -- in the body, as text
  end)

  it("encodes a subject that is not ASCII as RFC 2047 words", function()
    local a = cpu_alert()
    a.name = ("température élevée "):rep(4)
    local ctx = send("email", notification { a }, options)
    local m = parse(ctx.mails[1].message)
    local words = {}
    for w in m.headers.subject:gmatch("=%?UTF%-8%?B%?([%w%+/=]+)%?=") do words[#words + 1] = w end
    assert.is_true(#words >= 2)
    for line in ctx.mails[1].message:gmatch("(.-)\r\n") do
      if line:find("=?UTF-8?B?", 1, true) then assert.is_true(#line <= 90, line) end
    end
    local decoded = {}
    for _, w in ipairs(words) do decoded[#decoded + 1] = assert(io.popen("printf '%s' '" .. w .. "' | base64 -d")):read("*a") end
    assert.are.equal("[FIRING] " .. cu.one_line(a.name), table.concat(decoded))
  end)

  it("refuses what cannot be a message, for good", function()
    local bad = {
      { url = "http://mail", from = "a@b.c", to = "d@e.f" },
      { url = "smtp://mail", from = "not an address", to = "d@e.f" },
      { url = "smtp://mail", from = "a@b.c", to = { "d@e.f\r\nBcc: x@y.z" } },
      { url = "smtp://mail", from = "a@b.c", to = {} },
    }
    for _, o in ipairs(bad) do
      local ctx, ok, err, info = send("email", notification(), o)
      assert.is_nil(ok)
      assert.is_string(err)
      assert.is_true(info.permanent)
      assert.are.equal(0, #ctx.mails)
    end
  end)

  it("passes on what ctx.mail says", function()
    local _, ok, err = send("email", notification(), options, nil, function() return nil, "421 try later" end)
    assert.is_nil(ok)
    assert.are.equal("421 try later", err)
  end)
end)

describe("log channel", function()
  it("writes one warn line for a firing notification and succeeds", function()
    local ctx, ok = send("log", notification { cpu_alert(), cpu_alert(), disk_alert() })
    assert.is_true(ok)
    assert.are.equal(1, #ctx.logs)
    assert.are.same({ level = "warn", msg = "alert notification", fields = {
      channel = "oncall", status = "firing", alerts = "high_cpu_usage,disk_full", count = 3,
      severity = "critical", group = '0:{alertname="high_cpu_usage"}', dedup_key = "9f2c0a1b",
    } }, ctx.logs[1])
  end)

  it("writes info for a resolved one, and says when it is a test", function()
    local ctx, ok = send("log", notification({ disk_alert() }, { status = "resolved" }))
    assert.is_true(ok)
    assert.are.equal("info", ctx.logs[1].level)
    assert.are.equal("resolved", ctx.logs[1].fields.status)
    ctx = send("log", notification(nil, { test = true }))
    assert.are.equal("test notification", ctx.logs[1].msg)
  end)
end)

describe("every channel plugin", function()
  local required = {
    webhook = { url = "http://x/" }, slack = { webhook_url = "http://x/" }, pagerduty = { routing_key = "k" },
    alertmanager = { urls = "http://x" }, email = { url = "smtp://x", from = "a@b.c", to = "d@e.f" }, log = {},
  }
  for name, opts in pairs(required) do
    it(name .. " validates with its required options and describes each option", function()
      local p = load_plugin(name)
      assert.are.equal("channel", beagle.is_plugin(p))
      assert.are.equal(name, p.name)
      assert.is_truthy(beagle.validate_options(p.options, opts))
      for oname, o in pairs(p.options) do assert.is_string(o.description, oname) end
    end)
  end

  it("keeps secrets in options of type secret", function()
    assert.are.equal("secret", load_plugin("webhook").options.secret.type)
    assert.are.equal("secret", load_plugin("slack").options.webhook_url.type)
    assert.are.equal("secret", load_plugin("pagerduty").options.routing_key.type)
    assert.are.equal("secret", load_plugin("email").options.password.type)
  end)

  it("never puts a secret's value in a validation error", function()
    local p = load_plugin("pagerduty")
    local opts, err = beagle.validate_options(p.options, { routing_key = 4242424242 })
    assert.is_nil(opts)
    assert.is_truthy(err:find("routing_key", 1, true), err)
    assert.is_falsy(err:find("4242424242", 1, true), err)
    assert.is_truthy(err:find("***", 1, true), err)
  end)
end)
