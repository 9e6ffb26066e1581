-- OTLP/HTTP JSON spans to an OpenTelemetry Collector (or any OTLP receiver: Jaeger, Tempo,
-- Honeycomb, Grafana Alloy...): every span the agent and its plugins record (beagle.span, the
-- automatic spans of HTTP requests, checks, rules and deliveries), taken from the tracer's buffer
-- every trace_export_interval. The request is written in C (core/export/encode_otlp_json.c, the
-- protobuf JSON mapping OTLP specifies); this file adds the HTTP and reads the answer as
-- OTLP/HTTP says a client must. docs/plugins/otlp_traces.md is its page.

local cu = require "beagle.channel_util"

-- OTLP/HTTP: only these are retryable; every other failure must not be retried
local RETRY = { [429] = true, [502] = true, [503] = true, [504] = true }

return beagle.backend {
  name = "otlp_traces",
  description = "OTLP/HTTP JSON spans to an OpenTelemetry Collector",
  signal = "traces",
  options = {
    url = { "string", default = "http://127.0.0.1:4318/v1/traces", description = "the receiver's OTLP/HTTP traces URL" },
    resource = { "table", default = {},
      description = "resource attributes over the agent's (service.name, service.version, deployment.environment, "
        .. "host.name from the settings), e.g. { [\"service.namespace\"] = \"shop\" }" },
    headers = { "table", default = {}, description = "extra request headers, name = value (an Authorization, a tenant)" },
    gzip = { "boolean", default = false, description = "send the body gzipped (Content-Encoding: gzip)" },
  },
  timeout = "10s", -- the OpenTelemetry SDKs' default export timeout

  send = function(batch, ctx)
    local o = ctx.options
    local resource = {}
    for k, v in pairs(ctx.resource or {}) do resource[k] = v end
    for k, v in pairs(o.resource) do resource[k] = tostring(v) end
    local body, err = ctx.encode.otlp_traces(batch, { resource = resource, flavor = o.gzip and "gzip" or nil })
    if not body then return nil, err, { permanent = true } end
    if body == "" then return true end

    local headers = { ["Content-Type"] = "application/json", ["User-Agent"] = "beagle/" .. beagle._VERSION }
    if o.gzip then headers["Content-Encoding"] = "gzip" end
    cu.merge_headers(headers, o.headers)
    local res, herr = ctx.http.post(o.url, body, { headers = headers })
    if not res then return nil, "otlp: " .. tostring(herr) end
    if res.status >= 200 and res.status < 300 then
      -- a partial success is final: the receiver says how many spans it rejected and why, and a
      -- client must not send them again
      local ok, doc = pcall(ctx.json.decode, res.body or "")
      local ps = ok and type(doc) == "table" and doc.partialSuccess
      if type(ps) == "table" and (tonumber(ps.rejectedSpans) or 0) > 0 then
        ctx.log.warn("otlp receiver rejected spans", { rejected = tostring(ps.rejectedSpans),
          error = tostring(ps.errorMessage or ""):sub(1, 300) })
      end
      return true
    end
    local _, why, info = ctx.response(res, herr)
    if RETRY[res.status] then return nil, "otlp: " .. tostring(why), info end
    return nil, "otlp: " .. tostring(why), { permanent = true }
  end,
}
