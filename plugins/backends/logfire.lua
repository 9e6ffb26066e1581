-- Pydantic Logfire: the agent's spans and log records, OTLP/HTTP JSON, to Logfire's ingest API.
-- The same export as otlp_traces and otlp_logs (core/export/encode_otlp_json.c), preset for
-- Logfire: one instance sends both signals (a span batch to /v1/traces, a log batch to
-- /v1/logs), the write token goes as the Authorization header's whole value (Logfire's
-- alternative-clients guide: no "Bearer"), and the base URL is the region the token names
-- (pylf_v<n>_eu_... is the EU region, every other token the US one, as Logfire's own SDKs
-- decide). With the logfire_token setting (and logfire_enabled) the agent declares this backend
-- by itself from the settings. docs/plugins/logfire.md is its page.

local cu = require "beagle.channel_util"

local REGIONS = { us = "https://logfire-us.pydantic.dev", eu = "https://logfire-eu.pydantic.dev" }
local PATHS = { traces = "/v1/traces", logs = "/v1/logs" }
local REJECTED = { traces = "rejectedSpans", logs = "rejectedLogRecords" }

-- The base URL of a token's region: pylf_v<version>_<region>_<token>; US when it names none.
local function region_url(token)
  local region = token:match("^pylf_v%d+_(%l+)_%w+$")
  return REGIONS[region] or REGIONS.us
end

return beagle.backend {
  name = "logfire",
  description = "spans and log records to Pydantic Logfire (OTLP/HTTP JSON, the token's region)",
  signal = { "traces", "logs" },
  options = {
    token = { "secret", description = "a Logfire write token (the logfire_token setting)" },
    base_url = { "string", default = "",
      description = "Logfire's URL without the path (empty: the token's region, https://logfire-us.pydantic.dev or -eu)" },
    project = { "string", default = "", description = "the Logfire project, sent as the resource attribute logfire.project_name" },
    environment = { "string", default = "",
      description = "deployment.environment(.name) of the telemetry (empty: the logfire_environment setting)" },
    resource = { "table", default = {}, description = "more resource attributes, over the agent's" },
    headers = { "table", default = {}, description = "extra request headers, name = value" },
    gzip = { "boolean", default = true, description = "send the bodies gzipped" },
  },
  timeout = "10s",

  send = function(batch, ctx)
    local o, sig = ctx.options, ctx.signal
    local path = PATHS[sig]
    if not path then return nil, "logfire: a " .. tostring(sig) .. " batch", { permanent = true } end
    local resource = {}
    for k, v in pairs(ctx.resource or {}) do resource[k] = v end
    local env = o.environment ~= "" and o.environment or resource["deployment.environment"]
    if env then
      resource["deployment.environment"] = env
      resource["deployment.environment.name"] = env -- the name Logfire's environments read
    end
    if o.project ~= "" then resource["logfire.project_name"] = o.project end
    for k, v in pairs(o.resource) do resource[k] = tostring(v) end
    local opts = { resource = resource, flavor = o.gzip and "gzip" or nil }
    local body, err
    if sig == "traces" then body, err = ctx.encode.otlp_traces(batch, opts)
    else body, err = ctx.encode.otlp_logs(batch, opts) end
    if not body then return nil, err, { permanent = true } end
    if body == "" then return true end

    local base = o.base_url ~= "" and o.base_url or region_url(o.token)
    return cu.otlp_post(ctx, base:gsub("/+$", "") .. path, body, { gzip = o.gzip, headers = o.headers,
      auth = o.token, user_agent = "beagle/" .. beagle._VERSION, label = "logfire", rejected = REJECTED[sig],
      what = sig == "traces" and "spans" or "log records" })
  end,
}
