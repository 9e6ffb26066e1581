-- Alert-rule evaluation benchmark (issue 4), parts (a) and (b) of bench/rules_bench.sh.
-- Run from the repo root, pinned to one core:
--   BEAGLE_LIB=build/libbeagle_core.so LUA_PATH="lua/?.lua;;" taskset -c 1 luajit bench/rules_bench.lua [RULES] [PER] [REPS]
--
-- RULES threshold rules (default 10,000), rule i: alert "bench_r<i>" { metric = "bench.m<i>",
-- condition = ">", threshold = T, message = "bench.m<i> on {{ labels.instance }} is {{ value }}" },
-- loaded through beagle.rules.dsl from generated source (as the agent does), fed to
-- beagle.rules.engine with the manager's template renderer. Each metric has PER series
-- (default 10, labels { instance = "h<j>" }), value (i * PER + j) % 100, so that
--   quiet    T = 1e9   no series is above the threshold;
--   1% above T = 98.5  exactly the series with value 99 (1 in 100) are above.
-- bench/rules_bench.sh gives Prometheus the same series and the same thresholds.
--
-- (a) engine alone: Engine:evaluate(name, samples) for every rule, samples pre-built (label
--     tables reused across rounds, so the engine's fingerprint cache hits);
-- (b) query + engine: samples = q.last_all(metric) from a history (agent.query.open) holding
--     RULES x PER series, then Engine:evaluate: the work __eval_rule + manager:evaluate do
--     minus the state crossing (s:call, measured in the agent by rules_bench.sh).
-- One round = every rule evaluated once. Each measurement: one warm-up round, then REPS rounds,
-- os.clock (CPU time), a full GC before each round (its garbage collection inside the round
-- is counted). Output: tab-separated lines  key  median_s  min_s  series_evals_per_s  description.
local RULES = tonumber(arg and arg[1]) or 10000
local PER = tonumber(arg and arg[2]) or 10
local REPS = tonumber(arg and arg[3]) or 5
local SERIES = RULES * PER

local dsl = require("agent.rules.dsl")
local Engine = require("agent.rules.engine")
local template = require("agent.rules.template")
local query = require("agent.query")

local function median(v)
  local s = {}
  for i, x in ipairs(v) do s[i] = x end
  table.sort(s)
  local k = #s
  if k % 2 == 1 then return s[(k + 1) / 2] end
  return (s[k / 2] + s[k / 2 + 1]) / 2
end

local function out(key, times, desc)
  local med = median(times)
  io.write(("%s\t%.6f\t%.6f\t%.0f\t%s\n"):format(key, med, math.min(unpack(times)), SERIES / med, desc))
  io.flush()
end

local function rules_source(threshold)
  local parts = {}
  for i = 1, RULES do
    parts[i] = ('alert "bench_r%d" { metric = "bench.m%d", condition = ">", threshold = %s, '
      .. 'message = "bench.m%d on {{ labels.instance }} is {{ value }}" }\n'):format(i, i, threshold, i)
  end
  return table.concat(parts)
end

local function load_rules(threshold)
  local src = rules_source(threshold)
  local t0 = os.clock()
  local set, problems = dsl.load("bench_rules.lua", src)
  local dt = os.clock() - t0
  if not set then error("rules did not load: " .. table.concat(problems, "\n")) end
  assert(#set.alerts == RULES, "rules loaded: " .. #set.alerts)
  return set, dt
end

local T = 1.8e9
local function now() return T end

local function new_engine(set)
  local e = Engine.new { now = now, match = dsl.match,
    settings = { alert_cooldown_minutes = 15, alert_max_notifications_per_hour = 10 },
    render = function(text, ctx) return template.render(text, ctx) or text end,
    notify = function() end }
  assert(e:set_rules(set.alerts, set.routes, set.inhibits))
  return e
end

local function value(i, j) return (i * PER + j) % 100 end

-- pre-built samples, one list per rule
local names, metrics, samples = {}, {}, {}
for i = 1, RULES do
  names[i], metrics[i] = "bench_r" .. i, "bench.m" .. i
  local l = {}
  for j = 0, PER - 1 do l[j + 1] = { labels = { instance = "h" .. j }, value = value(i, j) } end
  samples[i] = l
end

local quiet_set, load_quiet = load_rules("1e9")
local fire_set, load_fire = load_rules("98.5")
io.write(("load\t%.6f\t%.6f\t%.0f\tdsl.load of %d generated rules (quiet; 1%% file %.3f s), rules/s in col 4\n")
  :format(load_quiet, load_quiet, RULES / load_quiet, RULES, load_fire))

-- one round of (a): every rule, pre-built samples
local function round_engine(e)
  for i = 1, RULES do e:evaluate(names[i], samples[i]) end
end

local function timed(fn, ...)
  collectgarbage()
  local t0 = os.clock()
  fn(...)
  return os.clock() - t0
end

local function bench(key, desc, setup, fn)
  local state = setup()
  fn(state) -- warm-up round
  T = T + 10
  local v = {}
  for r = 1, REPS do
    state = setup(state)
    v[r] = timed(fn, state)
    T = T + 10
  end
  out(key, v, desc)
  return state
end

local function firing_count(e)
  local n = 0
  for _, inst in pairs(e.instances) do if inst.state == "firing" then n = n + 1 end end
  return n
end

-- (a) quiet
bench("a_quiet", "engine alone, quiet round (no series above the threshold)",
  function(s) return s or new_engine(quiet_set) end, round_engine)
-- (a) 1% above, steady: the same 1% stay above round after round (firing stays firing)
local e_fire = bench("a_fire_steady", "engine alone, 1% of series above the threshold, already firing (steady state)",
  function(s) return s or new_engine(fire_set) end, round_engine)
local nfiring = firing_count(e_fire)
-- (a) 1% above, first round: inactive -> firing for the 1% (instances, fingerprints, templates,
-- grouping), on a fresh engine each round (set_rules not timed)
bench("a_fire_first", "engine alone, 1% above, first round (1,000 instances go inactive -> firing)",
  function() return new_engine(fire_set) end, round_engine)
-- the engine's own floor: evaluate with an empty sample list (per-rule overhead alone)
local empty = {}
bench("a_rule_overhead", "engine alone, every rule with an empty sample list (per-rule cost, no series)",
  function(s) return s or new_engine(quiet_set) end,
  function(e) for i = 1, RULES do e:evaluate(names[i], empty) end end)

-- (b) the history
local q = assert(query.open { raw = "1h" })
local t_fill = os.clock()
local TS0 = 1.8e12
for i = 1, RULES do
  for j = 0, PER - 1 do
    local key = ('bench_m%d{instance="h%d"}'):format(i, j)
    for k = 0, 3 do assert(q.append(key, TS0 + k * 15000, value(i, j)), key) end
  end
end
t_fill = os.clock() - t_fill
q.flush()
io.write(("fill\t%.6f\t%.6f\t%.0f\thistory filled with %d series x 4 samples (q.append), samples/s in col 4\n")
  :format(t_fill, t_fill, SERIES * 4 / t_fill, SERIES))

local got = q.last_all("bench.m1")
assert(#got == PER, "last_all returned " .. #got .. " series")

-- the query alone
bench("b_query", "q.last_all(metric) for every rule, no engine (history -> Lua sample lists)",
  function() return true end,
  function() for i = 1, RULES do local _ = q.last_all(metrics[i]) end end)

local function round_full(e)
  for i = 1, RULES do e:evaluate(names[i], q.last_all(metrics[i])) end
end
bench("b_quiet", "q.last_all + engine, quiet round", function(s) return s or new_engine(quiet_set) end, round_full)
bench("b_fire_steady", "q.last_all + engine, 1% above, already firing",
  function(s) return s or new_engine(fire_set) end, round_full)

-- as the agent does it for declarative rules (rules/manager.lua): one query object with shared
-- label tables, history -> columns (ids, values) -> Engine:evaluate_columns; nothing allocated
-- for a quiet series, and the engine's fingerprint cache hits
local qs = query.new(q.history, { shared_labels = true })
local function round_columns(e)
  for i = 1, RULES do e:evaluate_columns(names[i], qs.last_columns(metrics[i])) end
end
bench("b_shared_query", "q.last_columns for every rule, no engine (history -> value array + shared labels)",
  function() return true end, function() for i = 1, RULES do local _ = qs.last_columns(metrics[i]) end end)
bench("b_shared_quiet", "q.last_columns + evaluate_columns, quiet round (the agent's path for declarative rules)",
  function(s) return s or new_engine(quiet_set) end, round_columns)
bench("b_shared_fire", "q.last_columns + evaluate_columns, 1% above, already firing",
  function(s) return s or new_engine(fire_set) end, round_columns)

-- as __eval_rule does it in the rule file's state: a query object per evaluation
-- (require("agent.query").new()), the rule looked up by a scan of the file's rule list, the
-- { samples = ... } wrapper; the s:call crossing itself (copy in and out of the state) is not here.
local function find_rule(set, name)
  for _, r in ipairs(set.alerts) do if r.name == name then return r end end
end
local function round_sandbox_like(st)
  local e, set = st.e, st.set
  for i = 1, RULES do
    local r = find_rule(set, names[i])
    local qq = query.new(q.history)
    local res = { samples = qq.last_all(r.metric, r.matchers) }
    e:evaluate(names[i], res.samples)
  end
end
bench("b_sandbox_like_quiet", ("as __eval_rule: query.new() + rule scan + last_all + engine, quiet, %d rules in one file"):format(RULES),
  function(s) return s or { e = new_engine(quiet_set), set = quiet_set } end, round_sandbox_like)
io.write(("check\tfiring instances in the steady 1%% engine: %d of %d series\n"):format(nfiring, SERIES))
q.close()
