-- A JSON POST to a URL: the guide's payload of the notification's first alert, the
-- notification around it, and every alert in the same shape. Signed with HMAC-SHA256 when a
-- secret is set, so the receiver can tell the POST came from us and was not altered.
local cu = require "beagle.channel_util"

return beagle.channel {
  name = "webhook",
  description = "POST the notification as JSON to a URL, optionally signed (HMAC-SHA256)",
  options = {
    url = { "string", description = "URL to POST to" },
    headers = { "table", default = {}, description = "extra request headers, name = value" },
    secret = { "secret", optional = true,
      description = "HMAC-SHA256 key: X-Beagle-Signature: sha256=<hex of the body's HMAC>" },
  },
  send = function(n, ctx)
    local o = ctx.options
    local alerts = {}
    for i, a in ipairs(n.alerts) do alerts[i] = cu.alert_payload(ctx, a, n) end
    -- the first alert's payload at the top level (a copy: alerts[1] keeps its own status)
    local body = cu.copy(alerts[1], 6)
    -- the notification's status, not the first alert's: a firing group may start with a resolve
    body.status = n.status
    body.dedup_key = n.dedup_key
    body.test = n.test == true
    body.channel = n.channel
    body.group_key = n.group_key
    body.alerts = ctx.json.array(alerts)
    local json = ctx.json.encode(body)

    local headers = {
      ["Content-Type"] = "application/json",
      ["User-Agent"] = "beagle/" .. beagle._VERSION,
      ["Idempotency-Key"] = n.dedup_key,
    }
    -- configured headers replace ours of the same name, whatever its case
    cu.merge_headers(headers, o.headers)
    if o.secret then
      -- the receiver recomputes HMAC-SHA256(secret, raw body) and compares in constant time
      headers["X-Beagle-Signature"] = "sha256=" .. ctx.hmac_sha256(o.secret, json)
      headers["X-Beagle-Timestamp"] = ("%d"):format(ctx.time())
    end
    -- no timeout of our own: the instance's `timeout` is the run's deadline, and requests stop there
    local res, err = ctx.http.post(o.url, json, { headers = headers })
    return ctx.response(res, err)
  end,
}
