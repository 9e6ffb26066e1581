-- plugins/channels/alertmanager.lua with a fake ctx: the endsAt of what it posts, as
-- Prometheus's notifier sets it (4 x max(evaluation interval, resend delay of 1m)).
local beagle = require "beagle"
local json = require "beagle.json"
local cu = require "beagle.channel_util"

local NOW = 1764300000

local function load_plugin()
  local chunk = assert(loadfile("plugins/channels/alertmanager.lua"))
  setfenv(chunk, setmetatable({ beagle = beagle }, { __index = _G }))
  return chunk()
end

local function send(alerts, all)
  local p = load_plugin()
  local posted = {}
  local ctx = { name = "am", json = json, iso8601 = cu.iso8601, time = function() return NOW end,
    log = { warn = function() end } }
  ctx.options = assert(beagle.validate_options(p.options, { urls = { "http://am.test:9093" } }))
  ctx.response = function(res, err) return cu.response(res, err, NOW) end
  ctx.http = { post = function(url, body)
    posted[#posted + 1] = { url = url, body = json.decode(body) }
    return { status = 200, body = "", headers = {} }
  end }
  assert.is_true(p.send({ channel = "am", status = "firing", alerts = alerts, created_at = NOW }, ctx))
  if all then return posted end
  return posted[1].body
end

local function alert(status, over)
  local a = { name = "hot", fingerprint = "fp", status = status, labels = { alertname = "hot", severity = "warning" },
    annotations = { message = "hot" }, value = 42, starts_at = NOW - 100,
    ends_at = status == "resolved" and NOW - 5 or nil }
  for k, v in pairs(over or {}) do a[k] = v end
  return a
end

describe("the alertmanager channel", function()
  it("keeps a firing alert valid for four resends, or four evaluation intervals when those are longer", function()
    local body = send { alert("firing", { eval_interval = 15 }), alert("firing", { fingerprint = "fp2", eval_interval = 120 }) }
    assert.equals(cu.iso8601(NOW - 100), body[1].startsAt)
    assert.equals(cu.iso8601(NOW + 240), body[1].endsAt)
    assert.equals(cu.iso8601(NOW + 480), body[2].endsAt)
  end)

  it("posts at most 64 alerts a request, as Prometheus does", function()
    local many = {}
    for i = 1, 130 do many[i] = alert("firing", { fingerprint = "fp" .. i, labels = { alertname = "hot", i = tostring(i) } }) end
    local posts = send(many, true)
    assert.equals(3, #posts)
    assert.equals(64, #posts[1].body)
    assert.equals(64, #posts[2].body)
    assert.equals(2, #posts[3].body)
    assert.equals("130", posts[3].body[2].labels.i)
  end)

  it("sends a resolved alert with the time it resolved", function()
    local body = send { alert("resolved", { eval_interval = 15 }) }
    assert.equals(cu.iso8601(NOW - 100), body[1].startsAt)
    assert.equals(cu.iso8601(NOW - 5), body[1].endsAt)
  end)
end)
