-- The email channel (its MIME structure, that labels cannot add headers) and the log channel,
-- loaded as the sandbox would load them with the fake ctx of tests/channel_fixture.lua; and
-- what every channel plugin shares.
local beagle = require "beagle"
local cu = require "beagle.channel_util"
local F = require "channel_fixture"
local load_plugin, send = F.load_plugin, F.send
local cpu_alert, disk_alert, notification = F.cpu_alert, F.disk_alert, F.notification

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
