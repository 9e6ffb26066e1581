-- `beagle rules replay FILE... --data DIR --since 7d`: evaluates rules against the history an
-- agent stored (its minute rollups in DIR/history.db) and prints when each alert would have
-- fired, resolved and notified — with grouping, cooldown and hourly limits applied — so that a
-- threshold can be tuned before it pages anyone.
local util = require "agent.util"
local dsl = require "agent.rules.dsl"
local Engine = require "agent.rules.engine"
local query = require "agent.query"
local settings = require "agent.settings"
local testing = require "agent.rules.testing"

local M = {}

local function labels_text(l)
  local parts = {}
  for _, k in ipairs(util.sorted_keys(l or {})) do
    if k ~= "alertname" then parts[#parts + 1] = ('%s="%s"'):format(k, tostring(l[k])) end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- run{ files, data_dir, since (seconds), step (seconds), now (epoch s, optional) } -> ok
function M.run(o, out)
  local merged, problems = testing.load_rule_files(o.files)
  if not merged then
    out:write(table.concat(problems, "\n"), "\n")
    return false
  end
  local q, err = query.open { data_dir = o.data_dir, raw = "1m" }
  if not q then
    out:write("cannot open the history in ", tostring(o.data_dir), ": ", tostring(err), "\n")
    return false
  end
  local stop = o.now or os.time()
  local start = stop - o.since
  local now = start
  local sent = 0
  local engine = Engine.new {
    now = function() return now end, settings = o.settings or settings.defaults(), match = dsl.match,
    notify = function(n)
      sent = sent + 1
      local names = {}
      for _, a in ipairs(n.alerts or {}) do names[#names + 1] = a.name .. labels_text(a.labels) end
      out:write(("%s  notify   %-8s %s  %s\n"):format(util.iso8601(now), n.status, n.channel, table.concat(names, " ")))
    end,
  }
  engine:set_rules(merged.alerts, merged.routes, merged.inhibits)
  engine:set_silences(merged.silences)
  local states, errors, fired = {}, {}, 0
  while now <= stop do
    q.at(math.floor(now * 1000))
    for _, r in ipairs(merged.alerts) do
      if r.enabled ~= false then
        local ok, samples = pcall(testing.evaluate_rule, r, merged.exprs, q)
        if ok then engine:evaluate(r.name, samples)
        else
          errors[r.name] = tostring(samples)
          engine:evaluate(r.name, nil, tostring(samples))
        end
      end
    end
    engine:tick()
    for _, a in ipairs(engine:alerts { resolved = true }) do
      if states[a.fingerprint] ~= a.state then
        if a.state == "firing" then fired = fired + 1 end
        if a.state ~= "pending" or states[a.fingerprint] == nil then
          out:write(("%s  %-8s %s%s  value %s\n"):format(util.iso8601(now), a.state, a.name, labels_text(a.labels),
            tostring(a.value)))
        end
        states[a.fingerprint] = a.state
      end
    end
    now = now + o.step
  end
  q.close()
  for name, e in pairs(errors) do out:write(("rule %s: evaluation failed: %s\n"):format(name, e)) end
  local held = {}
  for reason, n in pairs(engine.suppressed or {}) do
    if n > 0 then held[#held + 1] = ("%s %d"):format(reason, n) end
  end
  out:write(("%s to %s: %d firing episodes, %d notifications%s\n"):format(util.iso8601(start), util.iso8601(stop),
    fired, sent, #held > 0 and (", held back: " .. table.concat(held, ", ")) or ""))
  return true
end

return M
