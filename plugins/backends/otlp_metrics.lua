-- OTLP/HTTP JSON to an OpenTelemetry Collector (or any OTLP receiver: Grafana Alloy, Mimir's and
-- Prometheus' OTLP endpoints...): counters as cumulative monotonic sums, gauges as gauges,
-- histograms as explicit-bucket histograms. The request is written in C
-- (core/export/encode_otlp.c, the protobuf JSON mapping OTLP specifies); this file adds the HTTP
-- and reads the answer as OTLP/HTTP says a client must. docs/plugins/otlp_metrics.md is its page.

local cu = require "beagle.channel_util"

-- OTLP/HTTP: only these are retryable; every other failure must not be retried
local RETRY = { [429] = true, [502] = true, [503] = true, [504] = true }

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

    local headers = { ["Content-Type"] = "application/json", ["User-Agent"] = "beagle/" .. beagle._VERSION }
    if o.gzip then headers["Content-Encoding"] = "gzip" end
    -- configured headers replace ours of the same name, whatever its case
    cu.merge_headers(headers, o.headers)
    local res, err = ctx.http.post(o.url, body, { headers = headers })
    if not res then return nil, "otlp: " .. tostring(err) end
    if res.status >= 200 and res.status < 300 then
      -- a partial success is final: the receiver says which points it rejected and why, and a
      -- client must not send them again
      local ok, doc = pcall(ctx.json.decode, res.body or "")
      local ps = ok and type(doc) == "table" and doc.partialSuccess
      if type(ps) == "table" and (tonumber(ps.rejectedDataPoints) or 0) > 0 then
        ctx.log.warn("otlp receiver rejected data points", { rejected = tostring(ps.rejectedDataPoints),
          error = tostring(ps.errorMessage or ""):sub(1, 300) })
      end
      return true
    end
    if RETRY[res.status] then
      local _, why, info = ctx.response(res, err) -- Retry-After, when the receiver sent one
      return nil, "otlp: " .. tostring(why), info
    end
    local _, why = ctx.response(res, err)
    return nil, "otlp: " .. tostring(why), { permanent = true }
  end,
}
