-- Slack incoming webhook: `text` for the notification banner, a header and a section per
-- alert in `blocks`, and an attachment whose bar is coloured by severity (green once resolved).
local cu = require "beagle.channel_util"

local COLORS = {
  critical = "#d40e0d", error = "#d40e0d", warning = "#f2a60c", info = "#439fe0",
  resolved = "#2eb886",
}
-- Slack takes at most 50 blocks a message: 2 per alert, and one to say how many were left out.
local MAX_ALERTS = 24

-- mrkdwn treats &, < and > as markup (links, mentions): labels and messages are text
local function esc(s)
  return (tostring(s):gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"))
end

local function alert_blocks(ctx, a, n)
  local status = (a.status or n.status):upper()
  local labels = a.labels or {}
  local tags = cu.tags_of(a)
  local fields = {
    { type = "mrkdwn", text = "*Severity*\n" .. esc(labels.severity or "warning") },
    { type = "mrkdwn", text = "*Value*\n" .. esc(a.value == nil and "-" or cu.format_value(a.value)) },
  }
  if next(tags) then
    local parts = {}
    for _, k in ipairs(cu.sorted_keys(tags)) do parts[#parts + 1] = ("`%s=%s`"):format(esc(k), esc(tags[k])) end
    fields[#fields + 1] = { type = "mrkdwn", text = cu.truncate("*Labels*\n" .. table.concat(parts, " "), 2000) }
  end
  local when = status == "RESOLVED" and "*Resolved*\n" or "*Since*\n"
  fields[#fields + 1] = { type = "mrkdwn", text = when .. ctx.iso8601(cu.alert_time(a, n)) }
  return {
    type = "header",
    text = { type = "plain_text", text = cu.truncate(("%s: %s"):format(status, a.name or labels.alertname), 150) },
  }, {
    type = "section",
    text = { type = "mrkdwn", text = cu.truncate(esc(cu.message_of(a)), 3000) },
    fields = fields,
  }
end

return beagle.channel {
  name = "slack",
  description = "post to a Slack incoming webhook (blocks, colour by severity)",
  options = {
    webhook_url = { "secret", description = "incoming webhook URL (https://hooks.slack.com/services/...)" },
    channel = { "string", optional = true, description = "channel to post in, when the webhook allows it" },
    username = { "string", optional = true, description = "name to post as, when the webhook allows it" },
  },
  send = function(n, ctx)
    local o = ctx.options
    local title = cu.title(n)
    local severity = cu.severity_of(n)
    local blocks = {}
    for i, a in ipairs(n.alerts) do
      if i > MAX_ALERTS then
        blocks[#blocks + 1] = { type = "context",
          elements = { { type = "mrkdwn", text = ("and %d more alerts"):format(#n.alerts - MAX_ALERTS) } } }
        break
      end
      local header, section = alert_blocks(ctx, a, n)
      blocks[#blocks + 1] = header
      blocks[#blocks + 1] = section
    end
    local color = n.status == "resolved" and COLORS.resolved or COLORS[severity] or COLORS.warning
    local payload = {
      text = esc(title),
      blocks = blocks,
      attachments = { {
        color = color,
        fallback = title,
        text = n.status == "resolved" and "RESOLVED" or ("FIRING, severity %s"):format(esc(severity)),
        footer = ("beagle %s, channel %s"):format(beagle._VERSION, esc(n.channel or ctx.name or "")),
        ts = math.floor(n.created_at or ctx.time()),
      } },
      channel = o.channel,
      username = o.username,
    }
    local res, err = ctx.http.post(o.webhook_url, ctx.json.encode(payload), {
      headers = { ["Content-Type"] = "application/json; charset=utf-8" } })
    return ctx.response(res, err)
  end,
}
