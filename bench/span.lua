-- Microbenchmark of a span from Lua (issue 16: start + end with two attributes, target
-- <= 150 ns sampled into the buffer and <= 20 ns not sampled). Run from the repo root, pinned:
--   BEAGLE_LIB=build/libbeagle_core.so LUA_PATH="lua/?.lua;lua/?/init.lua;;" taskset -c 1 luajit bench/span.lua [N] [REPS] [ONLY]
-- ONLY, a Lua pattern, runs only the measurements whose key matches it. Instruction counts
-- (steadier than seconds on a shared machine): two callgrind runs with REPS 1 and different N,
--   valgrind --tool=callgrind --callgrind-out-file=/dev/null luajit bench/span.lua 1e5 1 '^sampled_jit$'
-- (and 2e5; each run does N/10 warm-up plus N): the difference over the difference of N.
--
-- As bench/metrics_ffi.lua, two modes:
--   JIT     the loop is ordinary Lua, compiled by LuaJIT: a library (or compiled code) calling
--           beagle.span;
--   plugin  the loop is a chunk loaded with load() and jit.off(chunk, true), run under a count
--           hook every 1000 instructions, which is how the agent runs plugin code: the plugin's
--           own loop is interpreted, the library functions it calls (beagle.span & co., from
--           agent.trace's plugin_api) may be compiled.
-- "sampled": trace_sampling_rate 1 and recording on (an exporter configured), so every span is
-- kept: its name, two attributes, times, ids go into the span buffer, which the loop drains
-- every 1024 spans (bg_trace_take_spans + unref: the records go back to the pool), included in
-- the time. "unsampled": the current context is a trace whose flags say not sampled (1 % of
-- roots by default), where beagle.span hands fn the shared no-op span.
-- Compiled code inlines the no-op path whole (a field load and fn's body): with fn's body
-- empty, as here, nothing is left of the call (0.3 ns is the loop). Plugin mode is what a
-- plugin pays: its chunk is interpreted, and each call from the library back into it (fn)
-- ends the compiled trace, so most of the library runs in the interpreter too.
-- Output: tab-separated lines  key  median  min  ns/op  description.
local ffi = require("ffi")
local T = require("agent.trace")
T.cdef_export() -- the views of finished spans and log records
local C, tracer = T.C, T.tracer
local api = T.plugin_api()
local span, instrument = api.span, api.instrument

local N = tonumber(arg and arg[1]) or 2e6
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
  io.write(("%s\t%.1f\t%.1f\tns/op\t%s\n"):format(key, med, v[1], desc))
  io.flush()
end

local function drain()
  local b = C.bg_trace_take_spans(tracer, 100000)
  if b ~= nil then C.bg_span_batch_unref(b) end
end

T.configure { trace_sampling_rate = 1 }
C.bg_tracer_set_recording(tracer, 1, 0)

-- the context the unsampled runs are in
local function set_current(tp)
  local c = ffi.new("bg_span_ctx")
  if tp then assert(C.bg_traceparent_parse(tp, #tp, c) == 0) end
  local prev = ffi.new("bg_span_ctx")
  C.bg_trace_swap(tracer, c, prev)
  C.bg_span_ctx_clear(prev)
  T.sync() -- as core/script does when a run's slice starts
end
local UNSAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"

local ATTRS = { generation = 12, algorithm = "nsga2" }
local function body(sp) return sp end
local function body0() return 1 end -- takes no span: beagle.span makes it no object
local function body_set(sp)
  sp:set_attribute("generation", 12)
  sp:set_attribute("algorithm", "nsga2")
end

-- ---- JIT -----------------------------------------------------------------------------------
set_current(nil)
bench("sampled_jit", "span(name, {2 attrs}, fn) sampled, recorded (JIT)", N, function(n)
  for i = 1, n do
    span("step", ATTRS, body)
    if i % 1024 == 0 then drain() end
  end
  drain()
end)
bench("sampled_noarg_jit", "span(name, {2 attrs}, function() ... end) sampled, fn takes no span (JIT)", N,
  function(n)
    for i = 1, n do
      span("step", ATTRS, body0)
      if i % 1024 == 0 then drain() end
    end
    drain()
  end)
bench("sampled_literal_jit", "span(name, {generation = i, algorithm = s}, fn) fresh table, sampled (JIT)", N,
  function(n)
    for i = 1, n do
      span("step", { generation = i, algorithm = "nsga2" }, body)
      if i % 1024 == 0 then drain() end
    end
    drain()
  end)
bench("sampled_setattr_jit", "span(name, fn) + 2 sp:set_attribute in fn, sampled (JIT)", N, function(n)
  for i = 1, n do
    span("step", nil, body_set)
    if i % 1024 == 0 then drain() end
  end
  drain()
end)
local traced = instrument("step", body)
bench("instrument_jit", "an instrument()ed function's call, sampled, no attributes (JIT)", N, function(n)
  for i = 1, n do
    traced(i)
    if i % 1024 == 0 then drain() end
  end
  drain()
end)
bench("agent_start_jit", "agent side: T.start + 2 T.set + T.finish, sampled (JIT)", N, function(n)
  local start, set, finish = T.start, T.set, T.finish
  for i = 1, n do
    local s = start("step", "internal", nil, "bench")
    set(s, "generation", i)
    set(s, "algorithm", "nsga2")
    finish(s)
    if i % 1024 == 0 then drain() end
  end
  drain()
end)
C.bg_tracer_set_recording(tracer, 0, 0)
bench("sampled_norec_jit", "span(name, {2 attrs}, fn) sampled, no exporter: not recorded (JIT)", N, function(n)
  for _ = 1, n do span("step", ATTRS, body) end
end)
C.bg_tracer_set_recording(tracer, 1, 0)

set_current(UNSAMPLED)
bench("unsampled_jit", "span(name, {2 attrs}, fn) in an unsampled trace: the no-op span (JIT)", N * 5, function(n)
  for _ = 1, n do span("step", ATTRS, body) end
end)
bench("unsampled_setattr_jit", "span(name, fn) + 2 sp:set_attribute, unsampled (JIT)", N * 5, function(n)
  for _ = 1, n do span("step", nil, body_set) end
end)
set_current(nil)

-- ---- plugin mode ---------------------------------------------------------------------------
local function plugin_chunk(src)
  local chunk = assert(load(src, "=bench_plugin"))
  jit.off(chunk, true)
  return chunk()
end
local p_span = plugin_chunk [[
  return function(n, span, drain)
    local attrs = { generation = 12, algorithm = "nsga2" }
    local function body(sp) return sp end
local function body0() return 1 end -- takes no span: beagle.span makes it no object
    for i = 1, n do
      span("step", attrs, body)
      if i % 1024 == 0 then drain() end
    end
    drain()
  end
]]
local p_noarg = plugin_chunk [[
  return function(n, span, drain)
    local attrs = { generation = 12, algorithm = "nsga2" }
    local function body() return 1 end
    for i = 1, n do
      span("step", attrs, body)
      if i % 1024 == 0 then drain() end
    end
    drain()
  end
]]
local p_literal = plugin_chunk [[
  return function(n, span, drain)
    local function body(sp) return sp end
local function body0() return 1 end -- takes no span: beagle.span makes it no object
    for i = 1, n do
      span("step", { generation = i, algorithm = "nsga2" }, body)
      if i % 1024 == 0 then drain() end
    end
    drain()
  end
]]
local p_setattr = plugin_chunk [[
  return function(n, span, drain)
    local function body(sp)
      sp:set_attribute("generation", 12)
      sp:set_attribute("algorithm", "nsga2")
    end
    for i = 1, n do
      span("step", nil, body)
      if i % 1024 == 0 then drain() end
    end
    drain()
  end
]]
local p_loop = plugin_chunk [[
  return function(n) local x = 0 for i = 1, n do x = x + i end return x end
]]

local hooks = 0
debug.sethook(function() hooks = hooks + 1 end, "", 1000)
bench("loop_plugin", "an empty loop iteration (plugin mode): the floor", N * 5, p_loop)
bench("sampled_plugin", "span(name, {2 attrs}, fn) sampled, recorded (plugin mode)", N / 2, p_span, span, drain)
bench("sampled_noarg_plugin", "span(name, {2 attrs}, function() ... end) sampled, fn takes no span (plugin mode)",
  N / 2, p_noarg, span, drain)
bench("sampled_literal_plugin", "span(name, {fresh 2 attrs}, fn) sampled (plugin mode)", N / 2, p_literal,
  span, drain)
bench("sampled_setattr_plugin", "span(name, fn) + 2 sp:set_attribute, sampled (plugin mode)", N / 2, p_setattr,
  span, drain)
set_current(UNSAMPLED)
local nodrain = function() end
bench("unsampled_plugin", "span(name, {2 attrs}, fn) unsampled: no-op span (plugin mode)", N, p_span, span, nodrain)
-- the floor under unsampled_plugin: a library function that only calls fn, without a check
local NOOP = T.NOOP
local function bare_call(_, _, fn) return fn(NOOP) end
bench("floor_plugin", "f(name, {2 attrs}, fn) where f only calls fn(x): the floor of any beagle.span (plugin mode)",
  N, p_span, bare_call, nodrain)
bench("unsampled_literal_plugin", "span(name, {fresh 2 attrs}, fn) unsampled (plugin mode)", N, p_literal, span,
  nodrain)
bench("unsampled_setattr_plugin", "span(name, fn) + 2 sp:set_attribute, unsampled (plugin mode)", N, p_setattr,
  span, nodrain)
set_current(nil)
debug.sethook()
io.write(("# hooks fired: %d\n"):format(hooks))
