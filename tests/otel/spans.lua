-- What the trace specs share (trace_server_spec, trace_auto_spec, otel_node_spec): the OTLP
-- receiver of tests/receivers/otlp_receiver.js (which reads every body with OpenTelemetry's own
-- schema, npm @opentelemetry/otlp-transformer installed at test time outside the tree, as
-- backend_otlp_spec.lua does), the spans it received, and an agent config that exports every
-- span to it. `require "otel.spans"` (tests/ is on LUA_PATH).
local S = require "support"
local cjson = require "cjson"

local M = {}

M.transformer = S.otlp_transformer

-- An attribute list as { key = value } (ints as numbers, arrays as lists).
local function value_of(v)
  if v == nil then return nil end
  if v.stringValue ~= nil then return v.stringValue end
  if v.intValue ~= nil then return tonumber(v.intValue) end
  if v.doubleValue ~= nil then return v.doubleValue end
  if v.boolValue ~= nil then return v.boolValue end
  if v.arrayValue ~= nil then
    local t = {}
    for i, x in ipairs(v.arrayValue.values or {}) do t[i] = value_of(x) end
    return t
  end
  return nil
end

function M.attrs(list)
  local t = {}
  for _, a in ipairs(list or {}) do t[a.key] = value_of(a.value) end
  return t
end

-- receiver(root) -> r: url (/v1/traces), spans() (every span received, each with .attrs, .scope
-- and .resource), find(pred, timeout) -> the first span pred accepts, errors() (requests the
-- schema refused), stop().
function M.receiver(root)
  local r = S.otlp_receiver(root)
  r.url = r.base .. "/v1/traces"
  function r.spans()
    local t = {}
    for _, q in ipairs(r.requests()) do
      if q.status == 200 and q.path == "/v1/traces" then
        for _, rs in ipairs(q.body.resourceSpans or {}) do
          local res = M.attrs(rs.resource and rs.resource.attributes)
          for _, ss in ipairs(rs.scopeSpans or {}) do
            for _, sp in ipairs(ss.spans or {}) do
              sp.attrs, sp.scope, sp.resource = M.attrs(sp.attributes), ss.scope, res
              t[#t + 1] = sp
            end
          end
        end
      end
    end
    return t
  end
  function r.find(pred, timeout)
    return S.wait(function()
      for _, sp in ipairs(r.spans()) do
        if pred(sp) then return sp end
      end
    end, timeout or 10)
  end
  function r.errors()
    local t = {}
    for _, q in ipairs(r.requests()) do
      if q.error ~= cjson.null then t[#t + 1] = tostring(q.error) end
    end
    return t
  end
  return r
end

-- The config lines that export every span (sampling rate, default 1) to r quickly.
function M.config(r, rate)
  return ([[
settings { trace_sampling_rate = %s, trace_export_interval = "0.2s" }
backend "traces" { plugin = "otlp_traces", url = "%s" }
]]):format(tostring(rate or 1), r.url)
end

-- The response's traceparent header (raw headers from S.http), or nil.
function M.traceparent(headers)
  return (headers or ""):lower():match("\ntraceparent:%s*([%x%-]+)")
end

-- "00-<trace>-<span>-<flags>" -> trace, span, flags
function M.split(tp)
  return tp:match("^00%-(%x+)%-(%x+)%-(%x%x)$")
end

return M
