-- Prometheus Alertmanager: POST /api/v2/alerts to every Alertmanager of a cluster, the way
-- Prometheus's notifier does. Alertmanager groups, waits and repeats by itself, so beagle sends to
-- this channel directly: a firing alert at the evaluation where it fires, its resolve at the one
-- where it resolves (no route timers, cooldown or hourly limit: agent.rules.policy), and the
-- firing ones again every minute (`resend`). A firing alert's endsAt is four resends ahead, as in
-- Prometheus (4 x max(evaluation interval, resend delay)): while beagle runs the alert never
-- expires, and if beagle dies Alertmanager resolves it by itself a few minutes later.
local cu = require "beagle.channel_util"

local RESEND = "1m"
local RESEND_S = beagle.parse_duration(RESEND)
local BATCH = 64

local function alert(ctx, a, n, now)
  local status = a.status or n.status
  local labels = cu.strings(a.labels)
  labels.alertname = labels.alertname or tostring(a.name)
  local starts = a.starts_at or a.active_at or n.created_at or now
  local ends = status == "resolved" and (a.ends_at or now)
    or now + 4 * math.max(RESEND_S, tonumber(a.eval_interval) or 0)
  return {
    labels = labels,
    annotations = cu.strings(a.annotations),
    startsAt = ctx.iso8601(starts),
    endsAt = ctx.iso8601(ends),
    generatorURL = ctx.options.generator_url,
  }
end

return beagle.channel {
  name = "alertmanager",
  description = "push alerts to Prometheus Alertmanager (API v2), to every instance of a cluster",
  options = {
    urls = { "list", description = "base URLs of the Alertmanagers, e.g. \"http://127.0.0.1:9093\"" },
    generator_url = { "string", optional = true, description = "generatorURL of every alert (a link back)" },
    request_timeout = { "duration", default = "5s",
      description = "deadline of the request to each Alertmanager (the instance's timeout bounds them all)" },
  },
  resend = RESEND,
  send = function(n, ctx)
    local o = ctx.options
    local now = ctx.time()
    -- at most BATCH alerts a request, as Prometheus: a re-send holds every firing alert
    local bodies = {}
    for first = 1, #n.alerts, BATCH do
      local list = {}
      for i = first, math.min(first + BATCH - 1, #n.alerts) do list[#list + 1] = alert(ctx, n.alerts[i], n, now) end
      bodies[#bodies + 1] = ctx.json.encode(ctx.json.array(list))
    end
    -- Alertmanagers of a cluster gossip what they receive: one that accepts is enough. All are
    -- tried anyway so that each has the alert even while the gossip is partitioned.
    local accepted, failed, infos = 0, {}, {}
    for _, base in ipairs(o.urls) do
      local url = tostring(base):gsub("/+$", "") .. "/api/v2/alerts"
      local ok, why, info = true, nil, nil
      for _, body in ipairs(bodies) do
        -- a bound of its own, so that one unreachable Alertmanager does not use up the run's deadline
        local res, err = ctx.http.post(url, body, { headers = { ["Content-Type"] = "application/json" },
          timeout = o.request_timeout })
        ok, why, info = ctx.response(res, err)
        if not ok then break end
      end
      if ok then
        accepted = accepted + 1
      else
        failed[#failed + 1] = ("%s: %s"):format(base, why)
        infos[#infos + 1] = info or {}
      end
    end
    if accepted > 0 then
      if #failed > 0 then
        ctx.log.warn("some Alertmanagers did not accept the alerts", { channel = n.channel,
          failed = table.concat(failed, "; "), dedup_key = n.dedup_key })
      end
      return true
    end
    if #failed == 0 then return nil, "no Alertmanager URL configured", { permanent = true } end
    -- permanent only if every one refused for good; wait only if every one asked to
    local permanent, retry_after = true, nil
    for _, info in ipairs(infos) do
      permanent = permanent and info.permanent == true
      if info.retry_after == nil then retry_after = false
      elseif retry_after ~= false then retry_after = math.min(retry_after or math.huge, info.retry_after) end
    end
    return nil, ("no Alertmanager accepted the alerts: %s"):format(table.concat(failed, "; ")),
      { permanent = permanent or nil, retry_after = retry_after or nil }
  end,
}
