-- Datadog's v2 series API (POST /api/v2/series with DD-API-KEY): counters as counts (or rates)
-- of their increase since the previous collection, gauges as gauges, histograms as .count,
-- .sum and .bucket counts like Datadog's own OpenMetrics integration. The JSON is written in C
-- (core/export/encode_datadog.c); this file adds the HTTP and reads Datadog's answer.
-- docs/plugins/datadog.md is its page.
local cu = require "beagle.channel_util"

return beagle.backend {
  name = "datadog",
  description = "Datadog's v2 series API: counts or rates, gauges, histogram counts",
  options = {
    api_key = { "secret", description = "the Datadog API key (DD-API-KEY)" },
    site = { "string", default = "datadoghq.com",
      description = "your Datadog site: datadoghq.com, us3.datadoghq.com, us5.datadoghq.com, datadoghq.eu, "
        .. "ap1.datadoghq.com, ddog-gov.com" },
    url = { "string", optional = true,
      description = "the full series URL instead of https://api.<site>/api/v2/series (a proxy, a test receiver)" },
    counters_as = { "string", default = "count",
      description = "\"count\" (the increase over the interval) or \"rate\" (the increase per second)" },
    prefix = { "string", optional = true, description = "put before every metric name, separator included, e.g. \"beagle.\"" },
    tags = { "table", default = {},
      description = "tags added to every series, e.g. { env = \"prod\" }; a series' own label of the same name wins" },
    host = { "string", optional = true, description = "the host the series belong to (a host resource); none when unset" },
    gzip = { "boolean", default = true, description = "send the body gzipped (Content-Encoding: gzip)" },
    headers = { "table", default = {}, description = "extra request headers, name = value" },
  },
  timeout = "30s",

  send = function(batch, ctx)
    local o = ctx.options
    if o.counters_as ~= "count" and o.counters_as ~= "rate" then
      return nil, "datadog: counters_as must be \"count\" or \"rate\"", { permanent = true }
    end
    local body, skipped = ctx.encode.datadog(batch, { flavor = o.counters_as .. (o.gzip and ",gzip" or ""),
      prefix = o.prefix, labels = o.tags, resource = o.host and { host = o.host } or nil })
    if not body then return nil, skipped, { permanent = true } end
    if body == "" then return true end -- only series seen for the first time, or NaN

    local headers = {
      ["Content-Type"] = "application/json",
      ["DD-API-KEY"] = o.api_key,
      ["User-Agent"] = "beagle/" .. beagle._VERSION,
    }
    if o.gzip then headers["Content-Encoding"] = "gzip" end
    -- configured headers replace ours of the same name, whatever its case
    cu.merge_headers(headers, o.headers)
    local url = o.url or ("https://api.%s/api/v2/series"):format(o.site)
    local res, err = ctx.http.post(url, body, { headers = headers })
    -- 202 Accepted; 403 (a wrong key), 400 and 413 will never be taken: refused for good;
    -- 408, 429 and 5xx are retried (after Retry-After when Datadog sends one)
    local ok, why, info = ctx.response(res, err)
    if not ok then return nil, "datadog: " .. tostring(why), info end
    -- a 202 may still list problems with some series: logged, not retried
    local doc = res.body and res.body ~= "" and select(2, pcall(ctx.json.decode, res.body))
    if type(doc) == "table" and type(doc.errors) == "table" and #doc.errors > 0 then
      ctx.log.warn("datadog accepted the series with errors", { errors = tostring(doc.errors[1]):sub(1, 300),
        count = tostring(#doc.errors) })
    end
    return true
  end,
}
