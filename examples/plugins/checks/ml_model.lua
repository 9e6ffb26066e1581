-- Example drop-in check: the guide's custom_ml_model_health. A small inference request to a
-- model-serving endpoint (TensorFlow Serving / KServe v1 style: POST {"instances": [...]},
-- answer {"predictions": [...]}): degraded when the model answers slower than `slow` (the
-- guide's 1 s), unhealthy when the request fails or the answer is not a prediction.
local json = require "beagle.json"

-- The answer's shape: a JSON object whose `field` is a non-empty array (or, with `count`, one of
-- that many items). Returns the array's length, or nil, why.
local function predictions(body, field, count)
  local ok, doc = pcall(json.decode, body)
  if not ok or type(doc) ~= "table" then return nil, "the answer is not JSON" end
  local p = doc[field]
  if type(p) ~= "table" then return nil, ("the answer has no %q array"):format(field) end
  local n = #p
  if n == 0 then return nil, ("%q is empty"):format(field) end
  if count and n ~= count then return nil, ("%q has %d items, expected %d"):format(field, n, count) end
  return n
end

return beagle.check {
  name = "ml_model",
  description = "a model-serving endpoint answers a small inference request with predictions, in time",
  options = {
    url = { "string", description = "the model's predict URL, e.g. http://127.0.0.1:8501/v1/models/m:predict" },
    input = { "string", default = '{"instances": [[1.0, 2.0, 3.0, 4.0]]}',
      description = "the JSON request body (a small inference request)" },
    field = { "string", default = "predictions", description = "the answer's field that must be a non-empty array" },
    count = { "integer", optional = true, description = "how many predictions the answer must have (default: any)" },
    slow = { "duration", default = "1s", description = "latency above which the model is degraded" },
    headers = { "table", optional = true, description = "request headers, name = value (e.g. Authorization)" },
  },
  run = function(opt, ctx)
    local ok, req = pcall(json.decode, opt.input)
    if not ok or type(req) ~= "table" then return ctx.unknown("option \"input\" is not a JSON object or array") end
    local headers = { ["Content-Type"] = "application/json", Accept = "application/json" }
    for k, v in pairs(opt.headers or {}) do headers[k] = v end
    local started = ctx.now()
    local res, err = ctx.http.post(opt.url, opt.input, { headers = headers })
    local latency = res and res.time or ctx.now() - started
    local details = { response_time = latency, url = opt.url }
    beagle.set_gauge("ml_model.response_time_seconds", latency, { model = ctx.name })
    if not res then return ctx.unhealthy("Model check failed: " .. tostring(err), details) end
    details.status = res.status
    if res.status ~= 200 then
      return ctx.unhealthy(("Model check failed: status %d"):format(res.status), details)
    end
    local n, why = predictions(res.body, opt.field, opt.count)
    if not n then return ctx.unhealthy("Model check failed: " .. why, details) end
    details.predictions = n
    if latency > opt.slow then
      return ctx.degraded(("Model latency %.2fs exceeds threshold %.2fs"):format(latency, opt.slow), details)
    end
    return ctx.healthy(("Model answered %d prediction%s in %.3fs"):format(n, n == 1 and "" or "s", latency), details)
  end,
}
