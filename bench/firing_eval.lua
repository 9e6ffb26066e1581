-- One mass firing through the rules engine and the real store, for instruction counts (callgrind
-- is stable where seconds on this shared VM are not): N alerts (20000) of one rule fire in one
-- evaluation, each its own group and notification, as in bench/notify_bench.sh's throughput pass
-- (route group_by { "alertname", "k" }, group_wait 0). What it covers: the engine's step, the
-- policy (routing, grouping, dedup keys), and the store's transaction (instance rows, outbox rows,
-- notification_alerts rows); not the query, the enqueue or the delivery.
--   D=$(mktemp -d) BEAGLE_LIB=build-bench/libbeagle_core.so LUA_PATH="lua/?.lua;;" \
--     valgrind --tool=callgrind --callgrind-out-file=/dev/null luajit bench/firing_eval.lua [N] [setup]
-- "setup" stops before the firing evaluation: per alert = (Collected(N) - Collected(N setup)) / N.
-- "tick" adds ten engine ticks a second apart, in which every group is due and none has anything
-- to send (the steady firing state): per tick = (Collected(N tick) - Collected(N)) / 10.
-- Without valgrind it prints the evaluation's CPU time.
local Engine = require("agent.rules.engine")
local Store = require("agent.rules.store")
local template = require("agent.rules.template")
local N = tonumber(arg[1] or 20000)
local setup_only, then_tick = arg[2] == "setup", arg[2] == "tick"
local st = assert(Store.open(assert(os.getenv("D"), "set D to an empty directory") .. "/state.db", {}))
local t = 1795844638.25
local sent = 0
local e = Engine.new {
  now = function() return t end,
  settings = { alert_cooldown_minutes = 0, alert_max_notifications_per_hour = 100000 },
  store = st,
  render = function(text, ctx) return template.render(text, ctx) or text end, -- as the agent's
  notify = function() sent = sent + 1 end,
}
e:set_rules({ { kind = "alert", name = "tput", file = "rules/t.lua", line = 1, enabled = true,
  metric = "tput.value", condition = ">", threshold = 10, duration = 0, keep_firing_for = 0,
  severity = "warning", message = "tput: {{ value }} > 10", labels = {} } },
  { { match = { alertname = "tput" }, channels = { "sink" }, group_by = { "alertname", "k" },
    group_wait = 0, group_interval = 0.1, repeat_interval = 3600 } })
local samples = {}
for i = 1, N do samples[i] = { labels = { k = tostring(i) }, value = 50 } end
if setup_only then return end
local c0 = os.clock()
e:evaluate("tput", samples)
local c1 = os.clock()
assert(sent == N, ("%d notifications, expected %d"):format(sent, N))
if then_tick then
  local c2 = os.clock()
  for _ = 1, 10 do
    t = t + 1
    e:tick()
  end
  io.write(("steady tick over %d groups: %.3f s CPU\n"):format(N, (os.clock() - c2) / 10))
  assert(sent == N, "the steady tick sent something")
end
io.write(("firing evaluation of %d alerts: %.3f s CPU, %.1f us per alert\n"):format(N, c1 - c0, (c1 - c0) / N * 1e6))
