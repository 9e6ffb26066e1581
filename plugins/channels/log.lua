-- The default channel: one structured log line per notification (warn while firing, info once
-- resolved). It cannot fail, so a notification always leaves a trace.
local cu = require "beagle.channel_util"

return beagle.channel {
  name = "log",
  description = "write each notification as one structured log line (the default channel)",
  options = {},
  send = function(n, ctx)
    local log = n.status == "firing" and ctx.log.warn or ctx.log.info
    log(n.test and "test notification" or "alert notification", {
      channel = n.channel or ctx.name,
      status = n.status,
      alerts = table.concat(cu.names(n), ","),
      count = #n.alerts,
      severity = cu.severity_of(n),
      group = n.group_key,
      dedup_key = n.dedup_key,
    })
    return true
  end,
}
