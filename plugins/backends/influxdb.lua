-- InfluxDB: every sample as line protocol (core/export/encode_influx.c, escaping as the line
-- protocol reference says), POSTed to the v2 write API (/api/v2/write, org, bucket, a token)
-- or to 1.x's /write (database, retention policy, basic auth). The mapping is InfluxDB's own
-- "metric version 1" or "2" for Prometheus metrics, so that dashboards made for a scraped beagle
-- (Telegraf's prometheus input, InfluxDB's scraper) work on a pushed one. Points InfluxDB refuses
-- for good (400: a field type conflict, 401/403, 413) drop the batch; 429 and 5xx are retried,
-- after Retry-After when it is given.
local cu = require "beagle.channel_util"

local PRECISION_V1 = { ns = "n", us = "u", ms = "ms", s = "s" }

-- The write URL and the headers of an instance, or nil, why (a configuration that cannot work).
local function target(o)
  local base = o.url:gsub("/+$", "")
  local headers = { ["Content-Type"] = "text/plain; charset=utf-8" }
  if o.gzip then headers["Content-Encoding"] = "gzip" end
  if o.api == "v2" then
    if not o.bucket then return nil, 'api "v2" needs bucket (and org, unless the token implies it)' end
    local q = { "bucket=" .. cu.url_escape(o.bucket), "precision=" .. o.precision }
    if o.org then table.insert(q, 1, "org=" .. cu.url_escape(o.org)) end
    if o.token then headers.Authorization = "Token " .. o.token end
    return base .. "/api/v2/write?" .. table.concat(q, "&"), headers
  elseif o.api == "v1" then
    if not o.database then return nil, 'api "v1" needs database' end
    local q = { "db=" .. cu.url_escape(o.database) }
    if o.retention_policy then q[#q + 1] = "rp=" .. cu.url_escape(o.retention_policy) end
    q[#q + 1] = "precision=" .. PRECISION_V1[o.precision]
    if o.username then headers.Authorization = cu.basic_auth(o.username, o.password) end
    return base .. "/write?" .. table.concat(q, "&"), headers
  end
  return nil, ('api must be "v2" or "v1", not %q'):format(o.api)
end

return beagle.backend {
  name = "influxdb",
  description = "InfluxDB line protocol over HTTP: the v2 write API (org, bucket, token) or 1.x /write",
  options = {
    url = { "string", description = "base URL of InfluxDB, e.g. \"http://127.0.0.1:8086\"" },
    api = { "string", default = "v2",
      description = "\"v2\": POST /api/v2/write with org, bucket and token; \"v1\": POST /write with database" },
    org = { "string", optional = true, description = "v2: the organization's name" },
    bucket = { "string", optional = true, description = "v2: the bucket (required with api \"v2\")" },
    token = { "secret", optional = true, description = "v2: an API token, sent as Authorization: Token ..." },
    database = { "string", optional = true, description = "v1: the database (required with api \"v1\")" },
    retention_policy = { "string", optional = true, description = "v1: the retention policy (else the database's default)" },
    username = { "string", optional = true, description = "v1: user name for HTTP basic authentication" },
    password = { "secret", optional = true, description = "v1: password for HTTP basic authentication" },
    labels = { "table", default = {}, description = "tags added to every point (a series' own labels win)" },
    prefix = { "string", default = "",
      description = "put before every measurement (metric_version 1) or field name (metric_version 2)" },
    metric_version = { "integer", default = 1,
      description = "1: a measurement per metric (fields counter, gauge, or count, sum and the buckets); "
        .. "2: measurement \"prometheus\", a field per metric" },
    precision = { "string", default = "ns", description = "timestamp precision: ns, us, ms or s" },
    gzip = { "boolean", default = false, description = "send the body gzipped (Content-Encoding: gzip)" },
    request_timeout = { "duration", default = "10s", description = "deadline of each write request" },
  },
  send = function(batch, ctx)
    local o = ctx.options
    local url, headers = target(o)
    if not url then return nil, headers, { permanent = true } end
    if not PRECISION_V1[o.precision] then
      return nil, ("precision must be ns, us, ms or s, not %q"):format(o.precision), { permanent = true }
    end
    if o.metric_version ~= 1 and o.metric_version ~= 2 then
      return nil, "metric_version must be 1 or 2", { permanent = true }
    end
    local flavor = ("v%d,%s%s"):format(o.metric_version, o.precision, o.gzip and ",gzip" or "")
    local body, skipped = ctx.encode.influx(batch, { labels = o.labels, prefix = o.prefix, flavor = flavor })
    if not body then return nil, skipped, { permanent = true } end
    if skipped > 0 and not ctx.state.told_skipped then
      -- once per instance: what line protocol cannot carry is left out every interval
      ctx.state.told_skipped = true
      ctx.log.info("left out what line protocol cannot carry (NaN or infinite values, tag values ending in a backslash)",
        { backend = ctx.name, skipped = skipped })
    end
    if body == "" then return true end
    local res, err = ctx.http.post(url, body, { headers = headers, timeout = o.request_timeout })
    return ctx.response(res, err)
  end,
}
