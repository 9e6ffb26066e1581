-- Example drop-in channel: the guide's CustomWebhookChannel in beagle form. Copy it into a
-- `--plugins DIR/channels/` directory, then declare an instance in beagle.lua:
--
--   channel "hooks" { plugin = "custom_webhook", webhook_url = "https://your-webhook.com/alerts",
--                     headers = { Authorization = env "HOOK_AUTH" } }
return beagle.channel {
  name = "custom_webhook",
  description = "POST the guide's alert payload (alert_name, severity, message, timestamp, tags) to a URL",
  options = {
    webhook_url = { "string", description = "URL to POST to" },
    headers = { "table", default = {}, description = "request headers, e.g. { Authorization = \"Bearer ...\" }" },
  },
  -- n is the notification (n.alerts: one or more alerts), ctx the channel's toolbox
  send = function(n, ctx)
    -- the guide sends one alert per call: one POST per alert of the notification
    for _, alert in ipairs(n.alerts) do
      local tags = {} -- the guide's tags: the labels a rule or series added
      for k, v in pairs(alert.labels) do
        if k ~= "alertname" and k ~= "severity" then tags[k] = v end
      end
      local payload = {
        alert_name = alert.name,
        severity = alert.labels.severity,
        message = alert.annotations.message or alert.name,
        timestamp = ctx.iso8601(alert.ends_at or alert.starts_at), -- when it fired, or resolved
        tags = tags,
      }
      local headers = { ["Content-Type"] = "application/json" }
      for k, v in pairs(ctx.options.headers) do headers[k] = v end
      local res, err = ctx.http.post(ctx.options.webhook_url, ctx.json.encode(payload), { headers = headers })
      -- raise_for_status(): ctx.response turns the answer into true, or nil and why, plus
      -- whether to retry (5xx, 429 after Retry-After) or give up (other 4xx). Returning the
      -- failure makes beagle send the whole notification again later, alerts already
      -- posted included: receivers should tolerate a repeat.
      local ok, why, info = ctx.response(res, err)
      if not ok then return nil, why, info end
    end
    return true
  end,
}
