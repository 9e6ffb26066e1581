-- rules_fixture: what the engine specs share (tests/lua/rules_engine_spec.lua and
-- rules_engine_store_spec.lua): a rule, a route and a sample with defaults, and a harness with a
-- fake clock: nothing sleeps, every step sets the time and calls evaluate/tick explicitly.
local Engine = require("agent.rules.engine")

local T0 = 1700000000

local function rule(o)
  local r = { kind = "alert", name = "high_cpu", file = "rules/x.lua", line = 1, enabled = true,
    metric = "system.cpu.percent", condition = ">", threshold = 80, duration = 0, keep_firing_for = 0,
    severity = "warning", message = "CPU {{ value }}", labels = {} }
  for k, v in pairs(o or {}) do r[k] = v end
  return r
end

-- a route that notifies at once and then every minute, unless told otherwise
local function route(o)
  local r = { group_by = { "alertname" }, group_wait = 0, group_interval = 60, repeat_interval = 14400 }
  for k, v in pairs(o or {}) do r[k] = v end
  return r
end

local function sample(value, labels)
  return { labels = labels or { host = "a" }, value = value }
end

local function harness(opts)
  opts = opts or {}
  local h = { t = T0, sent = {} }
  h.e = Engine.new {
    now = function() return h.t end,
    settings = opts.settings or { alert_cooldown_minutes = 15, alert_max_notifications_per_hour = 10 },
    store = opts.store,
    render = opts.render,
    notify = opts.notify or function(n) h.sent[#h.sent + 1] = n end,
  }
  function h.at(dt) h.t = T0 + dt end
  -- as in the agent, where tick() runs every second: evaluate, then the group timers
  function h.eval(dt, name, samples, err)
    h.t = T0 + dt
    local ok, e = h.e:evaluate(name, samples, err)
    h.e:tick()
    return ok, e
  end
  function h.tick(dt)
    h.t = T0 + dt
    return h.e:tick()
  end
  function h.one()
    local a = h.e:alerts({ resolved = true })
    if #a ~= 1 then error(("expected 1 alert, got %d"):format(#a), 2) end
    return a[1]
  end
  return h
end

return { T0 = T0, Engine = Engine, rule = rule, route = route, sample = sample, harness = harness }
