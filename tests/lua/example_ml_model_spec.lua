-- The example ml_model check (examples/plugins/checks/ml_model.lua), the guide's
-- custom_ml_model_health, with a fake ctx.http: a model that answers in time is healthy, a slow
-- one degraded (the guide's 1 s), a failure or an answer that is not a prediction unhealthy.
local beagle = require "beagle"
local json = require "beagle.json"
do -- what the sandbox gives a plugin's copy of beagle on first use
  local api = require("agent.metrics").plugin_api()
  for k in pairs(beagle.metric_keys) do beagle[k] = api[k] end
end

local function load_plugin()
  local chunk = assert(loadfile("examples/plugins/checks/ml_model.lua"))
  setfenv(chunk, setmetatable({ beagle = beagle }, { __index = _G }))
  return chunk()
end

-- answer(req) -> res | nil, err; the requests are kept in ctx.requests
local function run(options, answer)
  local p = load_plugin()
  local opts = assert(beagle.validate_options(p.options, options))
  local clock = 0
  local ctx = { name = "ml_model", state = {}, requests = {} }
  function ctx.now() return clock end
  ctx.http = {
    post = function(url, body, o)
      ctx.requests[#ctx.requests + 1] = { url = url, body = body, headers = o.headers }
      local res, err = answer(ctx.requests[#ctx.requests])
      clock = clock + (res and res.time or 2)
      return res, err
    end,
  }
  local function result(status)
    return function(msg, details) return { status = status, message = msg, details = details } end
  end
  ctx.healthy, ctx.degraded, ctx.unhealthy, ctx.unknown =
    result("healthy"), result("degraded"), result("unhealthy"), result("unknown")
  return p.run(opts, ctx), ctx
end

local URL = "http://127.0.0.1:8501/v1/models/m:predict"
local function model(time, body, status)
  return function() return { status = status or 200, time = time, headers = {}, body = body or '{"predictions": [[0.9, 0.1]]}' } end
end

describe("example ml_model check", function()
  it("is healthy when the model predicts in time, posting the inference request as JSON", function()
    local r, ctx = run({ url = URL, headers = { Authorization = "Bearer t" } }, model(0.123))
    assert.are.equal("healthy", r.status, r.message)
    assert.are.equal("Model answered 1 prediction in 0.123s", r.message)
    assert.are.equal(0.123, r.details.response_time)
    assert.are.equal(1, r.details.predictions)
    local req = ctx.requests[1]
    assert.are.equal(URL, req.url)
    assert.are.same({ instances = { { 1, 2, 3, 4 } } }, json.decode(req.body))
    assert.are.equal("application/json", req.headers["Content-Type"])
    assert.are.equal("Bearer t", req.headers.Authorization)
  end)

  it("is degraded above the latency threshold, with the guide's message", function()
    local r = run({ url = URL }, model(1.5))
    assert.are.equal("degraded", r.status)
    assert.are.equal("Model latency 1.50s exceeds threshold 1.00s", r.message)
    assert.are.equal(1.5, r.response_time or r.details.response_time)
    r = run({ url = URL, slow = "2s" }, model(1.5))
    assert.are.equal("healthy", r.status)
  end)

  it("is unhealthy when the request fails or the answer is not a prediction", function()
    local r = run({ url = URL }, function() return nil, "connect: connection refused" end)
    assert.are.equal("unhealthy", r.status)
    assert.are.equal("Model check failed: connect: connection refused", r.message)
    r = run({ url = URL }, model(0.1, '{"error": "model not loaded"}', 503))
    assert.are.equal("Model check failed: status 503", r.message)
    r = run({ url = URL }, model(0.1, "<html>"))
    assert.are.equal("Model check failed: the answer is not JSON", r.message)
    r = run({ url = URL }, model(0.1, '{"outputs": [1]}'))
    assert.are.equal('Model check failed: the answer has no "predictions" array', r.message)
    r = run({ url = URL }, model(0.1, '{"predictions": []}'))
    assert.are.equal('Model check failed: "predictions" is empty', r.message)
    r = run({ url = URL, count = 2 }, model(0.1))
    assert.are.equal('Model check failed: "predictions" has 1 items, expected 2', r.message)
    -- KServe v2 style: another field
    r = run({ url = URL, field = "outputs", input = '{"inputs": []}' }, model(0.1, '{"outputs": [{"data": [1]}]}'))
    assert.are.equal("healthy", r.status, r.message)
  end)

  it("is unknown for an input that is not JSON", function()
    local r = run({ url = URL, input = "{nope" }, model(0.1))
    assert.are.equal("unknown", r.status)
    assert.are.equal('option "input" is not a JSON object or array', r.message)
  end)
end)
