-- PagerDuty Events API v2: one event per alert, keyed by the alert's fingerprint, so that
-- PagerDuty opens one incident per alert and resolves that one when it resolves.
local cu = require "beagle.channel_util"

local SEVERITIES = { critical = "critical", error = "error", warning = "warning", info = "info" }

local function event(ctx, a, n)
  local o = ctx.options
  local labels = a.labels or {}
  local details = {}
  -- flat, so that PagerDuty's incident page lists them; an annotation wins over a label
  for k, v in pairs(labels) do details[k] = tostring(v) end
  for k, v in pairs(a.annotations or {}) do details[k] = tostring(v) end
  if a.value ~= nil then details.value = a.value end
  local status = a.status or n.status
  return {
    routing_key = o.routing_key,
    event_action = status == "resolved" and "resolve" or "trigger",
    dedup_key = tostring(a.fingerprint),
    client = "beagle",
    payload = {
      summary = cu.truncate(cu.message_of(a), 1024),
      source = o.source or labels.host or "beagle",
      severity = SEVERITIES[labels.severity] or "warning",
      timestamp = ctx.iso8601(cu.alert_time(a, n)),
      component = labels.component,
      group = labels.group,
      class = labels.class,
      custom_details = details,
    },
  }
end

return beagle.channel {
  name = "pagerduty",
  description = "trigger and resolve PagerDuty incidents (Events API v2), one per alert",
  options = {
    routing_key = { "secret", description = "integration key of the PagerDuty service (Events API v2)" },
    url = { "string", default = "https://events.pagerduty.com/v2/enqueue", description = "Events API endpoint" },
    source = { "string", optional = true,
      description = "payload.source: the affected system (default: the alert's host label, else \"beagle\")" },
  },
  send = function(n, ctx)
    local o = ctx.options
    -- every event or none: a failure stops here and the whole set is sent again, which
    -- PagerDuty absorbs because the dedup_key of each event is the same
    for i, a in ipairs(n.alerts) do
      local res, err = ctx.http.post(o.url, ctx.json.encode(event(ctx, a, n)), {
        headers = { ["Content-Type"] = "application/json" } })
      local ok, why, info = ctx.response(res, err)
      if not ok then
        return nil, ("event %d of %d (%s): %s"):format(i, #n.alerts, tostring(a.fingerprint), why), info
      end
    end
    return true
  end,
}
