-- Microbenchmark of the metrics FFI paths (issue 3). Run from the repo root, pinned to a core:
--   BEAGLE_LIB=build/libbeagle_core.so LUA_PATH="lua/?.lua;;" taskset -c 1 luajit bench/metrics_ffi.lua [N] [REPS] [ONLY]
-- ONLY, a Lua pattern, runs only the measurements whose key matches it: with REPS 1, the
-- difference of two runs' instruction counts under callgrind over the difference of their N is
-- instructions per operation, which this noisy machine keeps steady where seconds are not:
--   valgrind --tool=callgrind --callgrind-out-file=/dev/null luajit bench/metrics_ffi.lua 1e6 1 '^lua_inc_plugin$'
-- (and again with 2e6; each run does N/10 warm-up plus N).
-- bench/metrics.sh runs it next to bench/metrics_c_bench.c (the plain-C denominators) and
-- computes the ratios.
--
-- Two modes:
--   JIT     the loop is ordinary Lua, compiled by LuaJIT (as the library and rules run);
--   plugin  the loop is a chunk loaded with load(), jit.off(chunk, true) and a count hook
--           every 1000 VM instructions (debug.sethook(fn, "", 1000)), which is how the agent
--           runs plugin code (lua/agent/sandbox.lua, core/script/script.c), with the handles and
--           functions of metrics.plugin_api(), which is what plugins get. The agent's hook is a
--           C function; here it is a Lua function that counts, so the hook share is a bit
--           higher than in the agent.
-- Every measurement: a warm-up of n/10, then REPS runs of n iterations (os.clock, CPU time);
-- the output is tab-separated lines  key  median  min  ns/op  description.
local metrics = require("agent.metrics")
local N = tonumber(arg and arg[1]) or 2e7
local REPS = tonumber(arg and arg[2]) or 5
local ONLY = arg and arg[3]

local function median(v)
  table.sort(v)
  local k = #v
  if k % 2 == 1 then return v[(k + 1) / 2] end
  return (v[k / 2] + v[k / 2 + 1]) / 2
end

local function bench(key, desc, n, fn, ...)
  if ONLY and not key:find(ONLY) then return end
  n = math.floor(n)
  fn(math.floor(n / 10), ...) -- warm-up: lets the loop get compiled
  local v = {}
  for r = 1, REPS do
    local t0 = os.clock()
    fn(n, ...)
    v[r] = (os.clock() - t0) / n * 1e9
  end
  local med = median(v)
  io.write(("%s\t%.3f\t%.3f\tns/op\t%s\n"):format(key, med, v[1], desc))
  io.flush()
end

local keep -- results kept alive so no loop is dead code

-- ---- JIT-compiled Lua ---------------------------------------------------------------------
local c = metrics.counter("bench.handle_inc")
bench("lua_inc_jit", "handle c:inc(), an FFI field write (JIT)", N, function(n)
  for _ = 1, n do c:inc() end
end)

local t = { x = 0 }
bench("lua_table_jit", "Lua table field t.x = t.x + 1 (JIT)", N, function(n)
  for _ = 1, n do t.x = t.x + 1 end
end)

local g = metrics.gauge("bench.gauge")
bench("lua_gauge_set_jit", "handle g:set(i) (JIT)", N, function(n)
  for i = 1, n do g:set(i) end
end)

-- Every histogram carries the quantile sketch, so these include its update.
local h = metrics.histogram("bench.latency_seconds") -- 11 default buckets
bench("lua_observe11_jit", "handle h:observe(v), 11 default buckets + sketch (JIT)", N / 2, function(n)
  for i = 1, n do h:observe((i % 1000) * 0.001) end
end)

local h16 = metrics.histogram("bench.b16_seconds", { buckets = { .001, .002, .005, .01, .02,
  .05, .1, .2, .3, .4, .5, .6, .7, .8, .9, 1 } })
bench("lua_observe16_jit", "handle h:observe(v), 16 buckets + sketch (JIT)", N / 2, function(n)
  for i = 1, n do h16:observe((i % 1000) * 0.001) end
end)

local many = {}
for i = 1, 40 do many[i] = i * 0.025 end
local hb = metrics.histogram("bench.wide_seconds", { buckets = many })
bench("lua_observe40_jit", "handle h:observe(v), 40 buckets (binary search) + sketch (JIT)", N / 2,
  function(n)
    for i = 1, n do hb:observe((i % 1000) * 0.001) end
  end)

bench("lua_quantile", "h:quantile(0.99) (sketch walk, not a hot path)", N / 1000, function(n)
  for _ = 1, n do keep = h:quantile(0.99) end
end)

local tags = { endpoint = "/optimize", method = "POST" }
bench("lua_incname_reused_jit", "increment_counter(name, 1, tags), same 2-tag table reused (JIT)",
  N / 2, function(n)
    local inc = metrics.increment_counter
    for _ = 1, n do inc("bench.requests", 1, tags) end
  end)

bench("lua_incname_literal_jit",
  "increment_counter(name, 1, {endpoint=..., method=...}), fresh literal per call (JIT)", N / 4,
  function(n)
    local inc = metrics.increment_counter
    for _ = 1, n do inc("bench.requests", 1, { endpoint = "/optimize", method = "POST" }) end
  end)

bench("lua_literal_only_jit", "baseline: build the {two tags} literal only (JIT)", N / 4, function(n)
  for _ = 1, n do keep = { endpoint = "/optimize", method = "POST" } end
end)

bench("lua_incname_notags_jit", "increment_counter(name) no tags (JIT)", N, function(n)
  local inc = metrics.increment_counter
  for _ = 1, n do inc("bench.plain") end
end)

bench("lua_record_jit", "record_histogram(name, v, {1 tag} reused) (JIT)", N / 2, function(n)
  local rec = metrics.record_histogram
  local tg = { endpoint = "/health" }
  for i = 1, n do rec("bench.response_time", (i % 100) * 0.001, tg) end
end)

bench("lua_timer_jit", "timer(name, tags):stop() (two clock reads + observe) (JIT)", N / 20,
  function(n)
    local timer = metrics.timer
    local tg = { table = "t" }
    for _ = 1, n do timer("bench.query", tg):stop() end
  end)

-- ---- plugin mode: chunk with the JIT off, count hook every 1000 instructions -------------
local function plugin_chunk(src)
  local chunk = assert(load(src, "=bench_plugin"))
  jit.off(chunk, true)
  return chunk()
end

local p_inc = plugin_chunk [[
  return function(n, c) for _ = 1, n do c:inc() end end
]]
local p_table = plugin_chunk [[
  return function(n, t) for _ = 1, n do t.x = t.x + 1 end end
]]
local p_name_reused = plugin_chunk [[
  return function(n, inc, tags) for _ = 1, n do inc("bench.requests", 1, tags) end end
]]
local p_name_literal = plugin_chunk [[
  return function(n, inc)
    for _ = 1, n do inc("bench.requests", 1, { endpoint = "/optimize", method = "POST" }) end
  end
]]
local p_observe = plugin_chunk [[
  return function(n, h) for i = 1, n do h:observe((i % 1000) * 0.001) end end
]]

-- What a plugin is given (the module itself before plugin_api existed).
local api = metrics.plugin_api and metrics.plugin_api() or metrics
local pc = api.counter("bench.handle_inc")
local ph16 = api.histogram("bench.b16_seconds")

local hooks = 0
debug.sethook(function() hooks = hooks + 1 end, "", 1000)
bench("lua_inc_plugin", "handle c:inc() (plugin: jit.off(chunk, true) + count hook 1000)", N / 10,
  p_inc, pc)
bench("lua_table_plugin", "Lua table field t.x = t.x + 1 (plugin mode)", N / 10, p_table, t)
bench("lua_incname_reused_plugin", "increment_counter(name, 1, tags), same table (plugin mode)",
  N / 20, p_name_reused, api.increment_counter, tags)
bench("lua_incname_literal_plugin",
  "increment_counter(name, 1, {two tags}), fresh literal (plugin mode)", N / 20, p_name_literal,
  api.increment_counter)
bench("lua_observe16_plugin", "handle h:observe(v), 16 buckets + sketch (plugin mode)", N / 20,
  p_observe, ph16)
debug.sethook()
io.stderr:write(("(count hook fired %d times; c = %.0f; t.x = %d; %s)\n"):format(hooks, c:value(),
  t.x, tostring(keep)))
