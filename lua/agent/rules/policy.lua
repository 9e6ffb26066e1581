-- agent.rules.policy: who hears about an alert instance and when, after Alertmanager. Owned by
-- the engine (agent.rules.engine): every function takes the engine `e` and reads its rules,
-- routes, inhibits, silences, instances; it owns e.groups and e.log. Pure: no I/O, time is `now`.
--
-- Routing: the first route whose `match` matches the instance labels (a route without `match`
-- matches everything); with none matching, the implicit default route (group_by = { "alertname" },
-- 30s / 5m / 4h). Channels: the rule's `channels`, else the route's, else { "log" }.
--
-- Grouping: group key = "<route index>:{label="value",...}" over the route's group_by ("..." groups
-- by every label). A new group is flushed group_wait after its creation, then every
-- group_interval (on a fixed grid from the first flush). At a flush, per alert and per channel:
--   firing   due when never notified there, when the last notification there was a resolve, or
--            when the last one is repeat_interval old. A due alert is then withheld when it is
--            silenced, inhibited, within cooldown of the last firing notification on that channel,
--            or at max_notifications_per_hour firing notifications on that channel in the last
--            3600 s (sliding). A withheld alert stays due and is retried at each flush, so it is
--            sent when the silence ends or the cooldown passes.
--   resolved due on every channel whose last notification was firing; never withheld (not by
--            cooldown, the hourly limit, silences nor inhibitions: a page that was sent is always
--            closed), and not counted toward the hourly limit. Then it leaves the group.
-- One notification per channel per flush holds the due alerts for that channel; its status is
-- "firing" when any of them fires.
--
-- Suppression counts (e.suppressed[reason]) count notifications that would have been sent: one
-- per alert, channel and firing episode (starts_at), and again each repeat_interval while it stays
-- withheld; retries at later flushes of the same withheld notification are not counted again. A
-- re-fire held back by a cooldown is also logged (e.logger), once per alert, channel and episode.
--
-- Direct channels (e.direct(channel) is true: the channels whose plugin re-sends, Alertmanager)
-- group, wait and repeat by themselves, as Alertmanager does behind Prometheus. They are left out
-- of the groups above: an alert goes to them at the evaluation where it fires and its resolve
-- at the evaluation where it resolves, with no group_wait, group_interval, repeat_interval,
-- cooldown or hourly limit (silences and inhibitions still apply, to the firing). A firing
-- alert restored after a restart goes to them again at the first evaluation that sees it; the
-- periodic re-sends in between are the delivery's (agent.delivery, the plugin's `resend`).
local M = {}

local HOUR = 3600
local IMPLICIT = { group_by = { "alertname" }, group_wait = 30, group_interval = 300, repeat_interval = 14400 }
local ROUTE_DEFAULTS = { group_wait = 30, group_interval = 300, repeat_interval = 14400 }

M.IMPLICIT_ROUTE = IMPLICIT

local function rt(route, k)
  return tonumber(route[k]) or ROUTE_DEFAULTS[k]
end

local function sorted_keys(t)
  local k1 = next(t)
  if k1 == nil then return {} end
  if next(t, k1) == nil then return { k1 } end -- most groups hold one alert
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks)
  return ks
end

function M.route_for(e, labels)
  for i, r in ipairs(e.routes) do
    if r.match == nil or e.match(r.match, labels) then return r, i end
  end
  return IMPLICIT, 0
end

function M.channels_for(rule, route)
  return rule and rule.channels or route.channels or { "log" }
end

-- cooldown seconds and hourly maximum: rule, then route, then settings.
function M.limits(e, rule, route)
  rule = rule or {}
  local s = e.settings
  local cooldown = rule.cooldown or route.cooldown or (tonumber(s.alert_cooldown_minutes) or 15) * 60
  local maxh = rule.max_notifications_per_hour or route.max_notifications_per_hour
    or tonumber(s.alert_max_notifications_per_hour) or 10
  return cooldown, maxh
end

function M.group_key(idx, route, labels)
  local parts, by = {}, route.group_by or {}
  if by[1] == "..." then by = sorted_keys(labels) end
  for _, k in ipairs(by) do parts[#parts + 1] = ("%s=%q"):format(k, labels[k] or "") end
  return idx .. ":{" .. table.concat(parts, ",") .. "}"
end

-- The notification log: e.log[fingerprint][channel] = { last_at, last_status, last_firing_at,
-- firing = { times within the last hour }, withheld = { at, reason } | nil }.
local function entry(e, fp, ch)
  local per = e.log[fp]
  if not per then per = {}; e.log[fp] = per end
  local ent = per[ch]
  if not ent then ent = { firing = {} }; per[ch] = ent end
  return ent
end

function M.record(e, fp, ch, status, at)
  local ent = entry(e, fp, ch)
  if ent.last_at and at < ent.last_at then return end
  ent.last_at, ent.last_status, ent.withheld = at, status, nil
  if status == "firing" then
    ent.last_firing_at = at
    ent.firing[#ent.firing + 1] = at
  end
end

local function hourly(ent, now)
  local f, drop = ent.firing, 0
  while f[drop + 1] and f[drop + 1] <= now - HOUR do drop = drop + 1 end
  if drop > 0 then
    for i = 1, #f do f[i] = f[i + drop] end
  end
  return #f
end

local function needs_resolve(e, inst)
  for ch, ent in pairs(e.log[inst.fingerprint] or {}) do
    if ent.last_status == "firing" and not e.direct(ch) then return true end
  end
  return false
end

function M.silenced(e, labels, now)
  for _, s in ipairs(e.silences) do
    if (s.starts == nil or now >= s.starts) and (s.ends == nil or now < s.ends)
      and e.match(s.matchers or {}, labels) then
      return true
    end
  end
  return false
end

-- Inhibited when a firing instance (not itself) matches an inhibit's source, the instance
-- matches its target, and every `equal` label has the same value on both (absent = "").
function M.inhibited(e, inst)
  for _, rule in ipairs(e.inhibits) do
    if e.match(rule.target or {}, inst.labels) then
      for fp, src in pairs(e.instances) do
        if fp ~= inst.fingerprint and src.state == "firing" and e.match(rule.source or {}, src.labels) then
          local same = true
          for _, l in ipairs(rule.equal or {}) do
            if (src.labels[l] or "") ~= (inst.labels[l] or "") then same = false; break end
          end
          if same then return true end
        end
      end
    end
  end
  return false
end

-- Puts a firing instance into its group, or a resolved one whose resolve is still owed. `pool`
-- (from regroup) holds the previous groups so that a group whose key survives keeps its timers.
function M.place(e, inst, now, pool)
  -- its state changed (that is when the engine calls this): its group may owe something now,
  -- and the direct channels hear of it at once
  e.direct_due[inst.fingerprint] = inst
  local cur = inst.group and e.groups[inst.group]
  if cur then cur.idle_until = nil end
  if inst.state ~= "firing" and (inst.group or not needs_resolve(e, inst)) then return end
  local route, idx = M.route_for(e, inst.labels)
  local key = M.group_key(idx, route, inst.labels)
  if inst.group == key then return end
  local old = inst.group and e.groups[inst.group]
  if old then
    old.alerts[inst.fingerprint] = nil
    if next(old.alerts) == nil then e.groups[inst.group] = nil end
  end
  local g = e.groups[key]
  if not g then
    g = pool and pool[key]
    if g then
      pool[key] = nil
      g.alerts, g.route, g.route_idx = {}, route, idx
    else
      g = { key = key, route = route, route_idx = idx, alerts = {}, created_at = now,
        next_flush = now + rt(route, "group_wait") }
    end
    e.groups[key] = g
  end
  g.alerts[inst.fingerprint] = inst
  g.idle_until = nil
  if old then old.idle_until = nil end
  inst.group = key
  e.touched[key] = true
end

-- After set_rules: routes may have changed, so every grouped or groupable instance is placed again.
function M.regroup(e, now)
  local pool, cand = e.groups, {}
  for _, g in pairs(pool) do
    for fp, inst in pairs(g.alerts) do cand[fp] = inst end
  end
  for fp, inst in pairs(e.instances) do cand[fp] = inst end
  e.groups = {}
  for _, fp in ipairs(sorted_keys(cand)) do
    local inst = cand[fp]
    inst.group = nil
    M.place(e, inst, now, pool)
  end
end

local function withhold(e, inst, ch, reason, now, repeat_interval, cooldown)
  local ent = entry(e, inst.fingerprint, ch)
  local w = ent.withheld
  local episode = not w or w.starts_at ~= inst.starts_at
  if episode or now - w.at >= repeat_interval then
    ent.withheld = { at = now, reason = reason, starts_at = inst.starts_at }
    e.suppressed[reason] = (e.suppressed[reason] or 0) + 1
  end
  if episode and reason == "cooldown" then
    -- a page that does not go out is news: once per episode, not on every retry
    pcall(e.logger, 2, "alert re-fire held back by cooldown", { alert = inst.name, fingerprint = inst.fingerprint,
      channel = ch, cooldown = tostring(cooldown), last_sent = tostring(ent.last_firing_at),
      retry_from = tostring((ent.last_firing_at or now) + (cooldown or 0)) })
  end
end

local function reason_for(e, inst, ent, now, cooldown, maxh)
  if M.silenced(e, inst.labels, now) then return "silenced" end
  if M.inhibited(e, inst) then return "inhibited" end
  if ent and ent.last_firing_at and now - ent.last_firing_at < cooldown then return "cooldown" end
  if ent and hourly(ent, now) >= maxh then return "hourly_limit" end
  return nil
end

local NONE = {}

-- Appends inst to by_ch[ch], creating by_ch on the first: most flushes add nothing.
local function add(by_ch, ch, inst)
  by_ch = by_ch or {}
  local l = by_ch[ch]
  if not l then l = {}; by_ch[ch] = l end
  l[#l + 1] = inst
  return by_ch
end

-- What one alert of a group owes each channel; returns by_ch.
local function consider(e, g, fp, now, ri, by_ch)
  local inst = g.alerts[fp]
  if inst.state == "firing" then
    local rule = e.rules[inst.name]
    local cooldown, maxh = M.limits(e, rule, g.route)
    local chans = M.channels_for(rule, g.route)
    for i = 1, #chans do
      local ch = chans[i]
      local ent = e.log[fp] and e.log[fp][ch]
      if (not ent or ent.last_status ~= "firing" or now - ent.last_at >= ri) and not e.direct(ch) then
        local reason = reason_for(e, inst, ent, now, cooldown, maxh)
        if reason then withhold(e, inst, ch, reason, now, ri, cooldown) else by_ch = add(by_ch, ch, inst) end
      end
    end
  else
    for ch, ent in pairs(e.log[fp] or {}) do
      if ent.last_status == "firing" and not e.direct(ch) then by_ch = add(by_ch, ch, inst) end
    end
  end
  return by_ch
end

-- A group that owed nothing: every alert firing and already sent to each of its channels (none
-- withheld, none resolving). Nothing but a change to the group or to one of its alerts (M.place
-- and the engine's mark clear this) or time reaching the first repeat can make it owe
-- something, so until then the tick skips it: 20,000 firing groups cost a full tick ~40 ms a
-- second without this. nil: it may owe something now.
local function idle_until(e, g, ri)
  local t = math.huge
  for fp, inst in pairs(g.alerts) do
    if inst.state ~= "firing" then return nil end
    local per = e.log[fp]
    local chans = M.channels_for(e.rules[inst.name], g.route)
    for i = 1, #chans do
      if not e.direct(chans[i]) then
        local ent = per and per[chans[i]]
        if not ent or ent.last_status ~= "firing" then return nil end
        if ent.last_at + ri < t then t = ent.last_at + ri end
      end
    end
  end
  -- math.huge: only direct channels, nothing to wait for but a change
  return t
end

-- One notification to channel `ch` of group `key` holding `insts`, recorded as sent now. The
-- alerts are e.snapshot copies, or e.copy ones (with eval_interval) with `full`.
local function notification(e, ch, key, insts, now, full)
  local alerts, status, ids = {}, "resolved", {}
  local copy = full and e.copy or e.snapshot
  for i, inst in ipairs(insts) do
    local st = inst.state == "firing" and "firing" or "resolved"
    if st == "firing" then status = "firing" end
    local c = copy(inst)
    c.status = st
    alerts[i] = c
    ids[i] = inst.fingerprint .. ":" .. st
    M.record(e, inst.fingerprint, ch, st, now)
    inst.last_notified[ch] = now
    e.dirty[inst.fingerprint] = inst
  end
  -- the flush time in whole milliseconds (flushes of a group are at least 1 ms apart): writing
  -- the float itself cost more than the rest of the key
  return { channel = ch, status = status, group_key = key, test = false, alerts = alerts,
    created_at = now, dedup_key = e.hash(ch .. "\0" .. key .. "\0" .. table.concat(ids, ",") .. "\0"
      .. ("%d"):format(math.floor(now * 1000 + 0.5))) }
end

-- Runs once per due group on every tick, so the common case (one alert, nothing owed) takes no
-- inner loop and allocates nothing: an inner loop here kept the tick's trace from compiling.
local function flush_group(e, g, now, out)
  local ri = rt(g.route, "repeat_interval")
  local by_ch
  local k1 = next(g.alerts)
  if k1 ~= nil and next(g.alerts, k1) == nil then
    by_ch = consider(e, g, k1, now, ri, nil)
  else
    for _, fp in ipairs(sorted_keys(g.alerts)) do by_ch = consider(e, g, fp, now, ri, by_ch) end
  end
  for _, ch in ipairs(by_ch and sorted_keys(by_ch) or NONE) do
    out[#out + 1] = notification(e, ch, g.key, by_ch[ch], now)
  end
  if k1 ~= nil and next(g.alerts, k1) == nil then
    local inst = g.alerts[k1]
    if inst.state ~= "firing" then
      g.alerts[k1] = nil
      inst.group = nil
    end
  else
    for fp, inst in pairs(g.alerts) do
      if inst.state ~= "firing" then
        g.alerts[fp] = nil
        inst.group = nil
      end
    end
  end
  g.last_flush = now
  if not by_ch then g.idle_until = idle_until(e, g, ri) end
  -- the first group_interval boundary after now, without a loop
  local gi = math.max(rt(g.route, "group_interval"), 1e-3)
  local nf = g.next_flush + gi
  if nf <= now then nf = nf + (math.floor((now - nf) / gi) + 1) * gi end
  if nf <= now then nf = nf + gi end -- rounding
  g.next_flush = nf
  if next(g.alerts) == nil then e.groups[g.key] = nil end
end

-- Flushes the groups in `keys` (a set; default every group) that are due at `now`, appending the
-- notifications to `out` ordered by group key (each group's own are in channel order). The due
-- groups are flushed in table order and only the keys of those that produced something are
-- sorted: a tick runs over every group each second, and in a steady firing state (nothing new,
-- nothing to repeat) no group produces anything, so sorting 20,000 due keys there was 3% of a
-- mass firing's CPU for nothing.
function M.flush(e, now, out, keys)
  local n0 = #out
  local made, spans -- keys of the groups that produced notifications; key -> { first, last }
  for key in pairs(keys or e.groups) do
    local g = e.groups[key]
    if g and now >= g.next_flush and not (g.idle_until and now < g.idle_until) then
      local before = #out
      flush_group(e, g, now, out) -- may remove e.groups[key]: allowed while traversing
      if #out > before then
        if not made then made, spans = {}, {} end
        made[#made + 1] = key
        spans[key] = { before + 1, #out }
      end
    end
  end
  if not made or #made < 2 then return end
  table.sort(made)
  local mine = {}
  for i = n0 + 1, #out do mine[i - n0] = out[i] end
  local k = n0
  for _, key in ipairs(made) do
    local sp = spans[key]
    for i = sp[1], sp[2] do
      k = k + 1
      out[k] = mine[i - n0]
    end
  end
end

local function by_fingerprint(a, b) return a.fingerprint < b.fingerprint end

M.DIRECT_BATCH = 64

-- A firing instance seen again after a restart: its direct channels get it once more.
function M.resend_direct(e, inst)
  inst.direct_resend = true
  e.direct_due[inst.fingerprint] = inst
end

-- The direct channels' part (see the top): every instance whose state changed since the last
-- step (or that a silence or inhibition holds back) against each direct channel of its
-- routing. Appends one notification per channel and DIRECT_BATCH alerts (64, Prometheus's batch
-- to Alertmanager), in channel order; their group_key is "direct", so the outbox keeps a resolve
-- behind its firing.
function M.flush_direct(e, now, out)
  local due = e.direct_due
  if next(due) == nil then return end
  local by_ch
  -- in table order (clearing entries while traversing is allowed): only what goes out is sorted,
  -- and in a mass firing without direct channels nothing does
  for fp, inst in pairs(due) do
    local held = false
    local rule = e.rules[inst.name]
    -- the group's route when it has one: routing again costs a match per route
    local g = inst.group and e.groups[inst.group]
    local route = g and g.route or M.route_for(e, inst.labels)
    local chans = M.channels_for(rule, route)
    local per = e.log[fp]
    for i = 1, #chans do
      local ch = chans[i]
      if e.direct(ch) then
        local ent = per and per[ch]
        if inst.state == "firing" then
          if not ent or ent.last_status ~= "firing" or inst.direct_resend then
            local reason = M.silenced(e, inst.labels, now) and "silenced" or M.inhibited(e, inst) and "inhibited" or nil
            if reason then
              held = true
              withhold(e, inst, ch, reason, now, rt(route, "repeat_interval"))
            else
              by_ch = add(by_ch, ch, inst)
            end
          end
        elseif ent and ent.last_status == "firing" then
          by_ch = add(by_ch, ch, inst)
        end
      end
    end
    inst.direct_resend = nil
    -- a held one is looked at again at each step until it goes out or stops firing
    if not (held and inst.state == "firing") then due[fp] = nil end
  end
  for _, ch in ipairs(by_ch and sorted_keys(by_ch) or NONE) do
    local list = by_ch[ch]
    if #list > 1 then table.sort(list, by_fingerprint) end
    if #list <= M.DIRECT_BATCH then
      out[#out + 1] = notification(e, ch, "direct", list, now, true)
    else
      for i = 1, #list, M.DIRECT_BATCH do
        out[#out + 1] = notification(e, ch, "direct", { unpack(list, i, math.min(i + M.DIRECT_BATCH - 1, #list)) },
          now, true)
      end
    end
  end
end

-- Forgets log entries that can no longer matter: no live instance and older than a day.
function M.prune_log(e, now)
  for fp, per in pairs(e.log) do
    if not e.instances[fp] then
      local newest = 0
      for _, ent in pairs(per) do newest = math.max(newest, ent.last_at or 0) end
      if now - newest > 86400 then e.log[fp] = nil end
    end
  end
end

-- Test notifications: one per channel with every alert whose condition holds now, as if firing.
function M.test_notifications(e, rule, alerts, now)
  local by_ch, order = {}, {}
  for _, a in ipairs(alerts) do
    local route, idx = M.route_for(e, a.labels)
    for _, ch in ipairs(M.channels_for(rule, route)) do
      if not by_ch[ch] then
        by_ch[ch] = { channel = ch, status = "firing", group_key = M.group_key(idx, route, a.labels),
          test = true, alerts = {}, created_at = now }
        order[#order + 1] = ch
      end
      local l = by_ch[ch].alerts
      l[#l + 1] = a
    end
  end
  local out = {}
  for _, ch in ipairs(order) do
    local n = by_ch[ch]
    local ids = {}
    for i, a in ipairs(n.alerts) do ids[i] = a.fingerprint end
    n.dedup_key = e.hash("test\0" .. ch .. "\0" .. table.concat(ids, ","))
    out[#out + 1] = n
  end
  return out
end

return M
