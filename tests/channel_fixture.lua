-- channel_fixture: what the channel plugin specs share (tests/lua/channels_spec.lua and
-- channels_mail_spec.lua): a plugin loaded as the sandbox would load it, a fake ctx that records
-- what it sends, and sample alerts and notifications.
local beagle = require "beagle"
local json = require "beagle.json"
local cu = require "beagle.channel_util"

local F = {}

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

F.NOW, F.KNOWN_HMAC = NOW, KNOWN_HMAC
F.load_plugin, F.fake_ctx, F.send, F.status = load_plugin, fake_ctx, send, status
F.cpu_alert, F.disk_alert, F.notification = cpu_alert, disk_alert, notification
return F
