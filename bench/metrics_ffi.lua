-- Microbenchmark of the metrics FFI paths. Run from the repo root:
--   BEAGLE_LIB=build/libbeagle_core.so LUA_PATH="lua/?.lua;;" luajit bench/metrics_ffi.lua
-- The plain-C denominators (the same add through a function pointer, observe, and the
-- /metrics render of 100,000 series) come from bench/metrics_c_bench.sh; with
-- METRICS_C_BENCH=path/to/metrics_c_bench this script runs it and prints the ratios.
local metrics = require("beagle.metrics")
local N = tonumber(arg and arg[1]) or 2e7

local results = {}

local function bench(label, n, fn)
  fn(n / 100) -- warm up: let the loop get compiled
  local t0 = os.clock()
  fn(n)
  local dt = os.clock() - t0
  results[label] = dt / n * 1e9
  print(("%-52s %8.2f ns/op"):format(label, dt / n * 1e9))
end

local c = metrics.counter("bench.handle_inc")
bench("handle c:inc() (JIT)", N, function(n)
  for _ = 1, n do c:inc() end
end)

local t = { x = 0 }
local keep_q
bench("Lua table field t.x = t.x + 1 (JIT)", N, function(n)
  for _ = 1, n do t.x = t.x + 1 end
end)

local g = metrics.gauge("bench.gauge")
bench("handle g:set(i) (JIT)", N, function(n)
  for i = 1, n do g:set(i) end
end)

-- Every histogram carries the quantile sketch, so these include its update.
local h = metrics.histogram("bench.latency_seconds") -- 11 default buckets
bench("handle h:observe(v), 11 buckets + sketch (JIT)", N, function(n)
  for i = 1, n do h:observe((i % 1000) * 0.001) end
end)

local h16 = metrics.histogram("bench.b16_seconds", { buckets = { .001, .002, .005, .01, .02,
  .05, .1, .2, .3, .4, .5, .6, .7, .8, .9, 1 } })
bench("handle h:observe(v), 16 buckets + sketch (JIT)", N, function(n)
  for i = 1, n do h16:observe((i % 1000) * 0.001) end
end)

bench("h:quantile(0.99) (sketch walk, not a hot path)", N / 1000, function(n)
  for _ = 1, n do keep_q = h:quantile(0.99) end
end)

local many = {}
for i = 1, 40 do many[i] = i * 0.025 end
local hb = metrics.histogram("bench.wide_seconds", { buckets = many })
bench("handle h:observe(v), 40 buckets, binary (JIT)", N, function(n)
  for i = 1, n do hb:observe((i % 1000) * 0.001) end
end)

local tags = { endpoint = "/optimize", method = "POST" }
bench("increment_counter(name, 1, tags) same tags table", N, function(n)
  local inc = metrics.increment_counter
  for _ = 1, n do inc("bench.requests", 1, tags) end
end)

bench("increment_counter(name, 1, {two tags literal})", N / 4, function(n)
  local inc = metrics.increment_counter
  for _ = 1, n do inc("bench.requests", 1, { endpoint = "/optimize", method = "POST" }) end
end)

local keep
bench("baseline: build {two tags literal} only", N / 4, function(n)
  for _ = 1, n do keep = { endpoint = "/optimize", method = "POST" } end
end)

bench("increment_counter(name) no tags", N, function(n)
  local inc = metrics.increment_counter
  for _ = 1, n do inc("bench.plain") end
end)

bench("record_histogram(name, v, tags)", N, function(n)
  local rec = metrics.record_histogram
  local tg = { endpoint = "/health" }
  for i = 1, n do rec("bench.response_time", (i % 100) * 0.001, tg) end
end)

bench("timer():stop() (two clock reads + observe)", N / 10, function(n)
  local timer = metrics.timer
  local tg = { table = "t" }
  for _ = 1, n do timer("bench.query", tg):stop() end
end)

-- Plugin code runs with the JIT off for its own chunk and an instruction-count hook.
local function interp_inc(n)
  for _ = 1, n do c:inc() end
end
jit.off(interp_inc)
local hooks = 0
debug.sethook(function() hooks = hooks + 1 end, "", 1000)
bench("handle c:inc() (jit.off + count hook 1000)", N / 10, interp_inc)
local function interp_inc_name(n)
  local inc = metrics.increment_counter
  for _ = 1, n do inc("bench.requests", 1, tags) end
end
jit.off(interp_inc_name)
bench("increment_counter w/ tags (jit.off + hook)", N / 10, interp_inc_name)
debug.sethook()
print(("(count hook fired %d times; c = %.0f; %s; p99 %.4f)"):format(hooks, c:value(), keep.method,
  keep_q))

-- Ratios against plain C, when the C bench is at hand (bench/metrics_c_bench.sh builds it).
local cbin = os.getenv("METRICS_C_BENCH")
if cbin and cbin ~= "" then
  local p = io.popen(cbin .. " 2>&1")
  local out = p:read("*a")
  p:close()
  io.write(out)
  local cadd = tonumber(out:match("C: bg_counter_add via function pointer%s+([%d.]+)"))
  local cobs = tonumber(out:match("C: bg_histogram_observe, 11 buckets %+ sketch%s+([%d.]+)"))
  local inc, tbl = results["handle c:inc() (JIT)"], results["Lua table field t.x = t.x + 1 (JIT)"]
  if cadd and cadd > 0 then
    print(("ratio FFI c:inc() / plain C add:                    %8.2f x"):format(inc / cadd))
    print(("ratio FFI c:inc() / Lua table field add:            %8.2f x"):format(inc / tbl))
  end
  if cobs and cobs > 0 then
    print(("ratio FFI h:observe / plain C observe (11 + sketch): %7.2f x"):format(
      results["handle h:observe(v), 11 buckets + sketch (JIT)"] / cobs))
  end
end
