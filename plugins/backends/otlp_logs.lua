-- OTLP/HTTP JSON log records to an OpenTelemetry Collector (or any OTLP receiver: Loki's OTLP
-- endpoint, Elastic, SigNoz...): the agent's own log lines and every plugin's beagle.log.* call,
-- each with the trace and span ids of the span it was written in, taken from the tracer's buffer
-- every trace_export_interval. The request is written in C (core/export/encode_otlp_json.c);
-- this file adds the HTTP and reads the answer as OTLP/HTTP says a client must.
-- docs/plugins/otlp_logs.md is its page.

local cu = require "beagle.channel_util"

-- OTLP/HTTP: only these are retryable; every other failure must not be retried

return beagle.backend {
  name = "otlp_logs",
  description = "OTLP/HTTP JSON log records to an OpenTelemetry Collector",
  signal = "logs",
  options = {
    url = { "string", default = "http://127.0.0.1:4318/v1/logs", description = "the receiver's OTLP/HTTP logs URL" },
    resource = { "table", default = {},
      description = "resource attributes over the agent's (service.name, service.version, deployment.environment, "
        .. "host.name from the settings)" },
    headers = { "table", default = {}, description = "extra request headers, name = value (an Authorization, a tenant)" },
    gzip = { "boolean", default = false, description = "send the body gzipped (Content-Encoding: gzip)" },
  },
  timeout = "10s",

  send = function(batch, ctx)
    local o = ctx.options
    local resource = {}
    for k, v in pairs(ctx.resource or {}) do resource[k] = v end
    for k, v in pairs(o.resource) do resource[k] = tostring(v) end
    local body, err = ctx.encode.otlp_logs(batch, { resource = resource, flavor = o.gzip and "gzip" or nil })
    if not body then return nil, err, { permanent = true } end
    if body == "" then return true end

    return cu.otlp_post(ctx, o.url, body, { gzip = o.gzip, headers = o.headers,
      user_agent = "beagle/" .. beagle._VERSION, rejected = "rejectedLogRecords", what = "log records" })
  end,
}
