-- Prometheus remote write 1.0: each batch as one snappy-compressed protobuf WriteRequest, POSTed
-- to a Prometheus with --web.enable-remote-write-receiver, Mimir, Thanos Receive,
-- VictoriaMetrics, Cortex or any other remote write receiver. The encoding is in C
-- (core/export/encode_remote_write.c: series named and labelled the way Prometheus names what it
-- scrapes); this file adds the HTTP around it and reads the answer the way Prometheus' own
-- remote write client does. docs/plugins/remote_write.md is its page.
local cu = require "beagle.channel_util"

return beagle.backend {
  name = "remote_write",
  description = "Prometheus remote write 1.0 (protobuf + snappy) to Prometheus, Mimir, Thanos, VictoriaMetrics...",
  options = {
    url = { "string", description = "the receiver's remote write URL, e.g. http://prometheus:9090/api/v1/write" },
    external_labels = { "table", default = {},
      description = "labels added to every series that does not have one of the same name, e.g. { cluster = \"eu-1\" }" },
    prefix = { "string", optional = true, description = "put before every metric name, e.g. \"beagle_\"" },
    username = { "string", optional = true, description = "HTTP basic auth user" },
    password = { "secret", optional = true, description = "HTTP basic auth password" },
    bearer_token = { "secret", optional = true,
      description = "sent as Authorization: Bearer and the token (not with username/password)" },
    headers = { "table", default = {},
      description = "extra request headers, name = value (X-Scope-OrgID for Mimir or Cortex tenants)" },
  },
  timeout = "30s", -- Prometheus' remote_timeout
  batch_size = 2000, -- Prometheus' max_samples_per_send since 2.45

  send = function(batch, ctx)
    local o = ctx.options
    if batch:size() == 0 then return true end
    if o.bearer_token and (o.username or o.password) then
      return nil, "remote_write: set bearer_token or username/password, not both"
    end
    local body, skipped = ctx.encode.remote_write(batch, { labels = o.external_labels, prefix = o.prefix })
    -- a bad external label or prefix fails every batch alike: the buffer keeps them, the
    -- state says why, and a fixed config sends them
    if not body then return nil, skipped end

    local headers = {
      ["Content-Encoding"] = "snappy",
      ["Content-Type"] = "application/x-protobuf",
      ["X-Prometheus-Remote-Write-Version"] = "0.1.0",
      ["User-Agent"] = "beagle/" .. beagle._VERSION,
    }
    if o.bearer_token then
      headers["Authorization"] = "Bearer " .. o.bearer_token
    elseif o.username or o.password then
      headers["Authorization"] = cu.basic_auth(o.username, o.password)
    end
    -- configured headers replace ours of the same name, whatever its case
    cu.merge_headers(headers, o.headers)

    -- no timeout of our own: the instance's `timeout` is the send's deadline
    local res, err = ctx.http.post(o.url, body, { headers = headers })
    local ok, why, info = ctx.response(res, err)
    if ok then return true end
    -- as Prometheus' client: a 5xx or 429 is retried (after Retry-After when given), any other
    -- 4xx means the receiver will never take this batch (bad data, too old, unauthorised)
    local status = res and tonumber(res.status)
    if status and (status >= 500 or status == 429) then
      local h = type(res.headers) == "table" and res.headers or {}
      return nil, why, { retry_after = cu.retry_after(h["retry-after"], ctx.time()) }
    elseif status and status >= 400 then
      return nil, why, { permanent = true }
    end
    return nil, why, info
  end,
}
