-- The example channel (examples/plugins/channels/custom_webhook.lua) with a fake ctx: it
-- posts the guide's five-field payload, one POST per alert, with the configured headers, and
-- reads the answer as raise_for_status would (through ctx.response).
local beagle = require "beagle"
local json = require "beagle.json"
local cu = require "beagle.channel_util"

local function load_plugin()
  local chunk = assert(loadfile("examples/plugins/channels/custom_webhook.lua"))
  setfenv(chunk, setmetatable({ beagle = beagle }, { __index = _G }))
  return chunk()
end

local function fake_ctx(options, answer)
  local p = load_plugin()
  local ctx = { name = "hooks", requests = {}, json = json, iso8601 = cu.iso8601 }
  ctx.options = assert(beagle.validate_options(p.options, options))
  ctx.response = function(res, err) return cu.response(res, err, 1764300000) end
  ctx.http = {
    post = function(url, body, opt)
      ctx.requests[#ctx.requests + 1] = { url = url, body = body, headers = opt.headers }
      local r = answer and answer(#ctx.requests) or { status = 200, body = "", headers = {} }
      if r.err then return nil, r.err end
      return r
    end,
  }
  return p, ctx
end

local function alert(name, status, over)
  local a = {
    name = name, fingerprint = name .. "-fp", status = status,
    labels = { alertname = name, severity = "warning", host = "web-1" },
    annotations = { message = name .. " is bad" },
    value = 93.5, starts_at = 1764299700, ends_at = status == "resolved" and 1764300100 or nil,
  }
  for k, v in pairs(over or {}) do a[k] = v end
  return a
end

local function notification(alerts)
  return { channel = "hooks", status = "firing", dedup_key = "9f2c", created_at = 1764300000, alerts = alerts }
end

local options = { webhook_url = "https://your-webhook.com/alerts", headers = { Authorization = "Bearer your-token" } }

describe("example custom_webhook channel", function()
  it("posts the guide's payload for each alert, with the configured headers", function()
    local p, ctx = fake_ctx(options)
    assert.is_true(p.send(notification { alert("high_cpu_usage", "firing"), alert("disk_full", "resolved") }, ctx))
    assert.are.equal(2, #ctx.requests)
    local req = ctx.requests[1]
    assert.are.equal("https://your-webhook.com/alerts", req.url)
    assert.are.same({ ["Content-Type"] = "application/json", Authorization = "Bearer your-token" }, req.headers)
    assert.are.same({
      alert_name = "high_cpu_usage", severity = "warning", message = "high_cpu_usage is bad",
      timestamp = "2025-11-28T03:15:00.000Z", tags = { host = "web-1" },
    }, json.decode(req.body))
    local resolved = json.decode(ctx.requests[2].body)
    assert.are.equal("disk_full", resolved.alert_name)
    assert.are.equal("2025-11-28T03:21:40.000Z", resolved.timestamp)
  end)

  it("falls back to the alert name when there is no message", function()
    local p, ctx = fake_ctx(options)
    assert.is_true(p.send(notification { alert("quiet", "firing", { annotations = {} }) }, ctx))
    assert.are.equal("quiet", json.decode(ctx.requests[1].body).message)
  end)

  it("fails like raise_for_status: permanent on 4xx, retried on 5xx, after Retry-After on 429", function()
    local p, ctx = fake_ctx(options, function() return { status = 401, body = "unauthorized", headers = {} } end)
    local ok, err, info = p.send(notification { alert("a", "firing"), alert("b", "firing") }, ctx)
    assert.is_nil(ok)
    assert.are.equal("HTTP 401: unauthorized", err)
    assert.are.same({ permanent = true }, info)
    assert.are.equal(1, #ctx.requests) -- stops at the first failure
    p, ctx = fake_ctx(options, function(i)
      if i == 2 then return { status = 503, body = "", headers = {} } end
      return { status = 200, body = "", headers = {} }
    end)
    ok, err, info = p.send(notification { alert("a", "firing"), alert("b", "firing") }, ctx)
    assert.is_nil(ok)
    assert.are.equal("HTTP 503", err)
    assert.are.same({}, info)
    p, ctx = fake_ctx(options, function() return { status = 429, body = "", headers = { ["retry-after"] = "30" } } end)
    ok, err, info = p.send(notification { alert("a", "firing") }, ctx)
    assert.is_nil(ok)
    assert.are.equal("HTTP 429", err)
    assert.are.same({ retry_after = 30 }, info)
    p, ctx = fake_ctx(options, function() return { err = "connection refused" } end)
    ok, err = p.send(notification { alert("a", "firing") }, ctx)
    assert.is_nil(ok)
    assert.are.equal("connection refused", err)
  end)

  it("needs a webhook_url; headers default to none", function()
    local p = load_plugin()
    assert.is_nil(beagle.validate_options(p.options, {}))
    assert.are.same({}, assert(beagle.validate_options(p.options, { webhook_url = "http://x" })).headers)
  end)
end)
