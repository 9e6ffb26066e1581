-- OTLP/HTTP JSON to an OpenTelemetry Collector (or any OTLP receiver: Grafana Alloy, Mimir's and
-- Prometheus' OTLP endpoints...): counters as cumulative monotonic sums, gauges as gauges,
-- histograms as explicit-bucket histograms. The request is written in C
-- (core/export/encode_otlp.c, the protobuf JSON mapping OTLP specifies); this file adds the HTTP
-- and reads the answer as OTLP/HTTP says a client must. docs/plugins/otlp_metrics.md is its page.

local cu = require "beagle.channel_util"

-- OTLP/HTTP: only these are retryable; every other failure must not be retried

return beagle.backend {
  name = "otlp_metrics",
  description = "OTLP/HTTP JSON to an OpenTelemetry Collector: cumulative sums, gauges, histograms",
  options = {
    url = { "string", default = "http://127.0.0.1:4318/v1/metrics", description = "the receiver's OTLP/HTTP metrics URL" },
    resource = { "table", default = {},
      description = "resource attributes, e.g. { [\"service.name\"] = \"api\", [\"host.name\"] = \"web-1\" } "
        .. "(service.name defaults to beagle)" },
    labels = { "table", default = {}, description = "attributes added to every data point; a series' own label of the same name wins" },
    prefix = { "string", optional = true, description = "put before every metric name, e.g. \"beagle.\"" },
    headers = { "table", default = {}, description = "extra request headers, name = value (an Authorization, a tenant)" },
    gzip = { "boolean", default = false, description = "send the body gzipped (Content-Encoding: gzip)" },
  },
  timeout = "10s", -- the OpenTelemetry SDKs' default export timeout

  send = function(batch, ctx)
    local o = ctx.options
    local body, skipped = ctx.encode.otlp(batch, { resource = o.resource, labels = o.labels, prefix = o.prefix,
      flavor = o.gzip and "gzip" or nil })
    if not body then return nil, skipped, { permanent = true } end
    if body == "" then return true end -- nothing but NaN or infinite values

    return cu.otlp_post(ctx, o.url, body, { gzip = o.gzip, headers = o.headers,
      user_agent = "beagle/" .. beagle._VERSION, rejected = "rejectedDataPoints", what = "data points" })
  end,
}
