-- OTLP/HTTP JSON spans to an OpenTelemetry Collector (or any OTLP receiver: Jaeger, Tempo,
-- Honeycomb, Grafana Alloy...): every span the agent and its plugins record (beagle.span, the
-- automatic spans of HTTP requests, checks, rules and deliveries), taken from the tracer's buffer
-- every trace_export_interval. The request is written in C (core/export/encode_otlp_json.c, the
-- protobuf JSON mapping OTLP specifies); this file adds the HTTP and reads the answer as
-- OTLP/HTTP says a client must. docs/plugins/otlp_traces.md is its page.

local cu = require "beagle.channel_util"

-- OTLP/HTTP: only these are retryable; every other failure must not be retried

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

    return cu.otlp_post(ctx, o.url, body, { gzip = o.gzip, headers = o.headers,
      user_agent = "beagle/" .. beagle._VERSION, rejected = "rejectedSpans", what = "spans" })
  end,
}
