-- beagle.span & co. (issue 16): the plugins' span API of agent.trace over the C tracer of
-- BEAGLE_LIB. Spans are read back from the tracer's buffer as the exporters read them
-- (bg_trace_take_spans, bg_span_batch_view): nesting, attributes of every type, events,
-- errors inside spans, instrument, the no-op span of an unsampled trace, and misuse.
local ffi = require("ffi")
local T = require("agent.trace")
T.cdef_export() -- the views of finished spans and log records
local beagle = require("beagle")
local C, tracer = T.C, T.tracer

local function hex(p, n)
  local t = {}
  for i = 0, n - 1 do t[#t + 1] = ("%02x"):format(p[i]) end
  return table.concat(t)
end

local function attr_value(a)
  if a.type == 1 then return ffi.string(a.v.s, a.n)
  elseif a.type == 2 then return a.v.b ~= 0
  elseif a.type == 3 then return tonumber(a.v.i), "int"
  elseif a.type == 4 then return a.v.d, "double"
  elseif a.type == 5 then
    local out = { kind = nil }
    for i = 0, a.n - 1 do
      local v, k = attr_value(a.v.a[i])
      out[#out + 1] = v
      out.kind = k or type(v)
    end
    return out
  end
end

local function attrs_of(p, n)
  local t, kinds = {}, {}
  for i = 0, n - 1 do
    local k = ffi.string(p[i].key, p[i].klen)
    t[k], kinds[k] = attr_value(p[i])
  end
  return t, kinds
end

-- The finished spans in the buffer, oldest first, as tables.
local function drain()
  local out = {}
  local b = C.bg_trace_take_spans(tracer, 100000)
  if b == nil then return out end
  local v = ffi.new("bg_span_view")
  for i = 0, tonumber(C.bg_span_batch_len(b)) - 1 do
    C.bg_span_batch_view(b, i, v)
    local s = {
      name = ffi.string(v.name, v.name_len), trace_id = hex(v.ctx.trace_id, 16),
      span_id = hex(v.ctx.span_id, 8), parent = hex(v.parent_span_id, 8), kind = v.kind,
      status = v.status, status_msg = v.status_msg ~= nil and ffi.string(v.status_msg, v.status_len) or nil,
      scope = ffi.string(v.scope, v.scope_len), events = {},
    }
    s.attrs, s.kinds = attrs_of(v.attrs, v.nattrs)
    for j = 0, v.nevents - 1 do
      local e = v.events[j]
      s.events[#s.events + 1] = { name = ffi.string(e.name, e.name_len), attrs = attrs_of(e.attrs, e.nattrs) }
    end
    out[#out + 1] = s
  end
  C.bg_span_batch_unref(b)
  return out
end

local function by_name(spans)
  local t = {}
  for _, s in ipairs(spans) do t[s.name] = s end
  return t
end

local function stats()
  local st = ffi.new("bg_tracer_stats")
  C.bg_tracer_stats_get(tracer, st)
  return st
end

-- Makes ctx (a traceparent, or nil for none) the current context for fn's call.
local function with_current(tp, fn)
  local c = ffi.new("bg_span_ctx")
  if tp then assert(C.bg_traceparent_parse(tp, #tp, c) == 0) end
  local prev = ffi.new("bg_span_ctx")
  C.bg_trace_swap(tracer, c, prev)
  T.sync() -- as script.c does when a run's slice starts
  local ok, e = pcall(fn)
  C.bg_trace_restore(tracer, prev)
  T.sync()
  if not ok then error(e, 0) end
end

local UNSAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
local SAMPLED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

describe("beagle.span", function()
  setup(function()
    T.configure { trace_sampling_rate = 1 }
    C.bg_tracer_set_recording(tracer, 1, 1)
  end)
  before_each(function() drain() end)

  it("nests: a child of the current span, the parent current again after, fn's results back", function()
    assert.is_nil(T.trace_id())
    local outer_id, inner_id
    local a, b, c = beagle.span("outer", { k = "v" }, function(outer)
      outer_id = outer:span_id()
      assert.are.equal(outer_id, T.span_id())
      local x, y = beagle.span("inner", function(inner)
        inner_id = inner:span_id()
        assert.are.equal(inner_id, T.span_id())
        assert.are.equal(outer:trace_id(), inner:trace_id())
        return 1, nil
      end)
      assert.are.equal(outer_id, T.span_id())
      return x, y, "three"
    end)
    assert.is_nil(T.trace_id())
    assert.are.same({ 1, nil, "three" }, { a, b, c })
    local s = by_name(drain())
    assert.are.equal(outer_id, s.outer.span_id)
    assert.are.equal(inner_id, s.inner.span_id)
    assert.are.equal(s.outer.span_id, s.inner.parent)
    assert.are.equal(s.outer.trace_id, s.inner.trace_id)
    assert.are.equal(("0"):rep(16), s.outer.parent)
    assert.are.equal(1, s.outer.kind) -- internal
    assert.are.equal(0, s.outer.status)
    assert.are.equal("v", s.outer.attrs.k)
  end)

  it("continues the current context: a remote parent's trace", function()
    with_current(SAMPLED, function()
      beagle.span("child", function() end)
    end)
    local s = by_name(drain()).child
    assert.are.equal("4bf92f3577b34da6a3ce929d0e0e4736", s.trace_id)
    assert.are.equal("00f067aa0ba902b7", s.parent)
  end)

  it("takes attributes of every type: string, int, double, boolean and arrays of each", function()
    beagle.span("typed", { s = "x", i = 42, neg = -7, d = 1.5, big = 2 ^ 53, nan = 0 / 0, t = true, f = false },
      function(sp)
        sp:set_attribute("as", { "a", "b" })
        sp:set_attribute("ai", { 1, 2, 3 })
        sp:set_attribute("ad", { 1, 2.5 })
        sp:set_attribute("ab", { true, false })
        sp:set_attribute("empty", {})
        sp:set_attribute("s", "replaced")
        sp:set_attributes { more = 1 }
      end)
    local s = by_name(drain()).typed
    local a, k = s.attrs, s.kinds
    assert.are.equal("replaced", a.s)
    assert.are.equal(42, a.i) assert.are.equal("int", k.i)
    assert.are.equal(-7, a.neg) assert.are.equal("int", k.neg)
    assert.are.equal(1.5, a.d) assert.are.equal("double", k.d)
    assert.are.equal(2 ^ 53, a.big) assert.are.equal("int", k.big)
    assert.is_true(a.nan ~= a.nan) assert.are.equal("double", k.nan)
    assert.is_true(a.t) assert.is_false(a.f)
    assert.are.same({ "a", "b", kind = "string" }, a.as)
    assert.are.same({ 1, 2, 3, kind = "int" }, a.ai)
    assert.are.same({ 1, 2.5, kind = "double" }, a.ad)
    assert.are.same({ true, false, kind = "boolean" }, a.ab)
    assert.are.same({}, a.empty)
    assert.are.equal(1, a.more)
  end)

  it("records events with attributes, and a status", function()
    beagle.span("ev", function(sp)
      sp:add_event("cache miss", { key = "k1", n = 3, hit = false, ratio = 0.5 })
      sp:add_event("plain")
      sp:set_status("ok")
    end)
    local s = by_name(drain()).ev
    assert.are.equal(2, #s.events)
    assert.are.equal("cache miss", s.events[1].name)
    assert.are.same({ key = "k1", n = 3, hit = false, ratio = 0.5 }, s.events[1].attrs)
    assert.are.equal("plain", s.events[2].name)
    assert.are.equal(1, s.status)
  end)

  it("an error inside ends the span with status error and an exception event, and is raised again as it was", function()
    local obj = { type = "ValueError", message = "bad value" }
    local ok, e = pcall(beagle.span, "fails", function()
      beagle.span("deeper", function() error(obj) end)
    end)
    assert.is_false(ok)
    assert.is_true(rawequal(obj, e)) -- the very error object
    local s = by_name(drain())
    for _, name in ipairs { "fails", "deeper" } do
      assert.are.equal(2, s[name].status)
      local ex = s[name].events[1]
      assert.are.equal("exception", ex.name)
      assert.are.equal("ValueError", ex.attrs["exception.type"])
      assert.are.equal("bad value", ex.attrs["exception.message"])
      assert.matches("stack traceback", ex.attrs["exception.stacktrace"])
    end
    -- a string error: its text, with where it was raised
    ok, e = pcall(beagle.span, "str", function() error("boom") end)
    assert.is_false(ok)
    assert.matches("trace_api_spec.lua:%d+: boom$", e)
    local x = by_name(drain()).str
    assert.are.equal(2, x.status)
    assert.matches("boom", x.status_msg)
    assert.are.equal("error", x.events[1].attrs["exception.type"])
    assert.matches("trace_api_spec.lua", x.events[1].attrs["exception.stacktrace"])
    -- and the current context is back to none
    assert.is_nil(T.trace_id())
  end)

  it("span:record_exception without raising", function()
    beagle.span("rec", function(sp) sp:record_exception("soft failure") end)
    local s = by_name(drain()).rec
    assert.are.equal("soft failure", s.events[1].attrs["exception.message"])
    assert.are.equal(0, s.status)
  end)

  it("trace_operation without fn: a span current until finish", function()
    local op = beagle.trace_operation("op", { step = 1 })
    assert.are.equal(op:span_id(), T.span_id())
    beagle.span("under", function() end)
    op:finish()
    assert.is_nil(T.span_id())
    local s = by_name(drain())
    assert.are.equal(s.op.span_id, s.under.parent)
    assert.are.equal(1, s.op.attrs.step)
    -- with fn, as span
    assert.are.equal(7, beagle.trace_operation("op2", {}, function() return 7 end))
    assert.are.equal(9, beagle.trace_optimization("opt_1", function(sp) return sp and 9 end))
    local t = by_name(drain())
    assert.is_truthy(t.op2)
    assert.are.equal("opt_1", t.optimization_run.attrs.optimization_id)
  end)

  it("instrument: a span per call, arguments and results passed through, errors raised", function()
    local add = beagle.instrument("add", function(a, b) return a + b, "sum" end)
    assert.are.same({ 5, "sum" }, { add(2, 3) })
    assert.are.same({ 9, "sum" }, { add(4, 5) })
    local bad = beagle.instrument("bad")(function() error("no", 0) end)
    local ok, e = pcall(bad)
    assert.is_false(ok)
    assert.are.equal("no", e)
    local spans = drain()
    local n = 0
    for _, s in ipairs(spans) do if s.name == "add" then n = n + 1 end end
    assert.are.equal(2, n)
    assert.are.equal(2, by_name(spans).bad.status)
  end)

  it("in a trace that is not sampled: one shared no-op span, no C span at all", function()
    with_current(UNSAMPLED, function()
      local before = tonumber(stats().started)
      local seen = {}
      local r = beagle.span("nothing", { a = 1 }, function(sp)
        seen[#seen + 1] = sp
        sp:set_attribute("x", 1):add_event("e", { k = 1 }):set_status("error", "m")
        sp:record_exception("e")
        -- its ids are the context's (what a request would carry)
        assert.are.equal("4bf92f3577b34da6a3ce929d0e0e4736", sp:trace_id())
        assert.are.equal("00f067aa0ba902b7", sp:span_id())
        assert.is_false(sp:is_recording())
        beagle.span("nested", function(sp2) seen[#seen + 1] = sp2 end)
        sp:finish()
        return "r"
      end)
      assert.are.equal("r", r)
      assert.is_true(rawequal(seen[1], seen[2]))
      assert.is_true(rawequal(seen[1], T.NOOP))
      local inst = beagle.instrument("i", function() return 1 end)
      assert.are.equal(1, inst())
      assert.is_true(rawequal(T.NOOP, beagle.trace_operation("o")))
      assert.are.equal(before, tonumber(stats().started))
    end)
    assert.are.same({}, drain())
  end)

  it("a root that sampling leaves out is a real span whose children are the no-op", function()
    T.configure { trace_sampling_rate = 0 }
    local started = tonumber(stats().started)
    beagle.span("root", function(sp)
      assert.is_false(sp:is_recording())
      assert.is_truthy(sp:trace_id())
      beagle.span("child", function(c) assert.is_true(rawequal(T.NOOP, c)) end)
    end)
    T.configure { trace_sampling_rate = 1 }
    assert.are.equal(started + 1, tonumber(stats().started))
    assert.are.same({}, drain())
  end)

  it("the unsampled mirror after a span ends: never true where C would sample", function()
    -- what beagle.span sets without asking C must agree with the tracer's real context
    local function mirror_ok()
      local u = T._unsampled()
      T.sync()
      -- false where true would be right only costs a call into C; true where false is right
      -- would drop spans
      return not (u and not T._unsampled()), u
    end
    with_current(nil, function() -- and back to no context after
      local left
      beagle.span("sampled", function()
        -- a span left open inside fn is still current when fn's span ends
        left = beagle.trace_operation("left open")
      end)
      assert.is_true(mirror_ok())
      assert.is_false(T._unsampled())
      assert.are.equal(left:span_id(), T.span_id())
      left:finish()
    end)
    assert.is_nil(T.span_id())
    T.configure { trace_sampling_rate = 0 }
    local inner
    beagle.span("root", function()
      inner = T._unsampled() -- the unsampled root is current: its children are the no-op
    end)
    T.configure { trace_sampling_rate = 1 }
    assert.is_true(inner)
    local ok, u = mirror_ok()
    assert.is_true(ok)
    assert.is_false(u)
    with_current(UNSAMPLED, function()
      assert.is_true(T._unsampled())
      beagle.span("noop", function() end)
      assert.is_true(T._unsampled()) -- the no-op path leaves it as it was
    end)
    drain()
  end)

  it("configure: a reload's config over the settings, unless the environment set them", function()
    local function sampled_root()
      local rec
      beagle.span("root", function(sp) rec = sp:is_recording() end)
      drain()
      return rec
    end
    T.configure({ trace_sampling_rate = 1 }, { settings = { trace_sampling_rate = { value = 0 } } })
    assert.is_false(sampled_root())
    T.configure({ trace_sampling_rate = 0 }, { settings = { trace_sampling_rate = { value = 1 } } })
    assert.is_true(sampled_root())
    T.configure({ trace_sampling_rate = 0 }, { settings = {} })
    assert.is_false(sampled_root())
    T.configure { trace_sampling_rate = 1 }
    assert.is_true(sampled_root())
  end)

  it("attributes past the first two are checked before the span and all set", function()
    drain()
    local attrs = { a = 1, b = "two", c = true, d = 4.5, e = { 1, 2 }, f = "six" }
    beagle.span("many", attrs, function() end)
    local s = by_name(drain()).many
    assert.are.same({ a = 1, b = "two", c = true, d = 4.5, e = { 1, 2, kind = "int" }, f = "six" }, s.attrs)
    local open = T._open_count()
    for _, bad in ipairs { "c", "e", "f" } do
      local t = { a = 1, b = 2, c = 3, d = 4, e = 5, f = 6 }
      t[bad] = print
      local ok, e = pcall(beagle.span, "bad", t, function() end)
      assert.is_false(ok)
      assert.matches("attribute \"" .. bad .. "\": a string, number, boolean or array expected, got function", e)
      ok, e = pcall(beagle.trace_operation, "bad", t)
      assert.is_false(ok)
      assert.matches("attribute \"" .. bad .. "\"", e)
    end
    assert.are.equal(open, T._open_count())
    assert.are.same({}, drain())
  end)

  it("misuse raises a clear error and never reaches C memory", function()
    local kept
    beagle.span("k", function(sp) kept = sp end)
    for _, m in ipairs { "set_attribute", "add_event", "record_exception", "set_status", "trace_id",
      "span_id", "finish" } do
      local ok, e = pcall(kept[m], kept, "k", 1)
      assert.is_false(ok, m)
      assert.matches("span has ended", e)
    end
    local ok, e = pcall(kept.set_attribute, {}, "k", 1)
    assert.is_false(ok)
    assert.matches("bad self to 'span:set_attribute' %(a span expected, got table", e)
    ok, e = pcall(kept.trace_id, ffi.new("bg_span_ctx"))
    assert.is_false(ok)
    assert.matches("got cdata", e)
    -- a span object whose address a plugin rewrote is no span
    beagle.span("forged", function(sp)
      beagle.span("other", function(other)
        rawset(sp, 1, rawget(other, 1))
        local ok2, e2 = pcall(sp.set_attribute, sp, "k", 1)
        assert.is_false(ok2)
        assert.matches("a span expected", e2)
        rawset(sp, 1, 12345)
        ok2, e2 = pcall(sp.trace_id, sp)
        assert.is_false(ok2)
        assert.matches("a span expected", e2)
      end)
    end)
    -- an ended span's slot is reused by the next span: its old object, even given the number
    -- back, is no span, nor is a table naming the slot of a span whose fn takes no argument
    local first, slot
    beagle.span("a", function(sp) first, slot = sp, rawget(sp, 1) end)
    beagle.span("b", function(sp)
      assert.are.equal(slot, rawget(sp, 1)) -- the same slot: the test means what it says
      rawset(first, 1, slot)
      local ok2, e2 = pcall(first.set_attribute, first, "k", 1)
      assert.is_false(ok2)
      assert.matches("a span expected", e2)
      assert.are.equal(sp, sp:set_attribute("k", 1))
      beagle.span("bare", function()
        for i = 1, slot + 2 do
          local ok3, e3 = pcall(sp.finish, { i })
          assert.is_false(ok3)
          assert.matches("a span expected", e3)
        end
      end)
    end)
    beagle.span("args", function(sp)
      for _, bad in ipairs {
        { "set_attribute", 1, 1, "bad argument #1 to 'span:set_attribute' %(string expected" },
        { "set_attribute", "k", print, "got function" },
        { "set_attribute", "k", { 1, "a" }, "one type" },
        { "set_attribute", "k", { a = 1 }, "a list" },
        { "set_attribute", "k", nil, "got nil" },
        { "add_event", nil, nil, "bad argument #1 to 'span:add_event'" },
        { "add_event", "e", "x", "bad argument #2 to 'span:add_event'" },
        { "set_status", "maybe", nil, "bad argument #1 to 'span:set_status'" },
      } do
        local ok2, e2 = pcall(sp[bad[1]], sp, bad[2], bad[3])
        assert.is_false(ok2, bad[1])
        assert.matches(bad[4], e2)
      end
      -- an array whose metatable would run the plugin's code between the checks and the copy into
      -- C (ending the span there, or answering an item twice with strings of different lengths:
      -- a write into an ended record, a read past a string) is refused before any of it runs
      local ran = false
      local hostile = setmetatable({ "a", nil, "c" }, { __index = function()
        ran = true
        sp:finish()
        return "b"
      end })
      local ok2, e2 = pcall(sp.set_attribute, sp, "k", hostile)
      assert.is_false(ok2)
      assert.matches("plain table", e2)
      ok2, e2 = pcall(beagle.span, "inner", { k = hostile }, function() end)
      assert.is_false(ok2)
      assert.matches("plain table", e2)
      assert.is_false(ran)
      assert.are.equal(sp, sp:set_attribute("still", "open"))
    end)
    for _, call in ipairs {
      { beagle.span, { 1, nil, function() end }, "^[^:]*trace_api_spec.lua:%d+: bad argument #1 to 'beagle.span'" },
      { beagle.span, { "n", 5, function() end }, "^[^:]*trace_api_spec.lua:%d+: bad argument #2 to 'beagle.span'" },
      { beagle.span, { "n", {}, "nofn" }, "bad argument #3 to 'beagle.span'" },
      { beagle.span, { "n", { k = print }, function() end }, "attribute \"k\"" },
      { beagle.instrument, { "n", 3 }, "bad argument #2 to 'beagle.instrument'" },
      { beagle.trace_operation, { {} }, "bad argument #1 to 'beagle.trace_operation'" },
    } do
      local ok2, e2 = pcall(call[1], unpack(call[2]))
      assert.is_false(ok2)
      assert.matches(call[3], e2)
    end
    -- nothing was left open or current
    assert.is_nil(T.trace_id())
  end)

  it("a state holds at most T.MAX_OPEN spans open at once: past it, a clear error", function()
    local held = {}
    for i = 1, T.MAX_OPEN do held[i] = beagle.trace_operation("held") end
    local ok, e = pcall(beagle.trace_operation, "one too many")
    assert.is_false(ok)
    assert.matches("too many spans open at once", e)
    ok, e = pcall(beagle.span, "one too many", function() end)
    assert.is_false(ok)
    assert.matches("too many spans open at once", e)
    held[T.MAX_OPEN]:finish() -- room again
    local sp = beagle.trace_operation("fits")
    sp:finish()
    for i = T.MAX_OPEN - 1, 1, -1 do held[i]:finish() end
    assert.is_nil(T.trace_id())
    drain()
  end)

  it("a span nobody ends is ended by the collector, with status error", function()
    do
      local op = beagle.trace_operation("abandoned")
      assert.is_truthy(op:span_id())
      -- as a cancelled run leaves it: its context is dropped with the run
      local prev = ffi.new("bg_span_ctx")
      C.bg_trace_swap(tracer, nil, prev)
      C.bg_span_ctx_clear(prev)
      T.sync()
    end
    collectgarbage()
    collectgarbage()
    -- found by the sweep of a later span (every 256)
    for _ = 1, 256 do beagle.span("later", function() end) end
    local s = by_name(drain()).abandoned
    assert.is_truthy(s)
    assert.are.equal(2, s.status)
    assert.are.equal("span not ended", s.status_msg)
  end)

  it("an fn that takes no span: the same span without an object, results and errors as ever", function()
    local a, b = beagle.span("bare", { k = 1 }, function() return "x", "y" end)
    assert.are.same({ "x", "y" }, { a, b })
    local ok, e = pcall(beagle.span, "bare_err", function() error("bad", 0) end)
    assert.is_false(ok)
    assert.are.equal("bad", e)
    local outer
    beagle.span("outer", function(o)
      outer = o:span_id()
      beagle.span("bare_child", function() end)
    end)
    local s = by_name(drain())
    assert.are.equal(1, s.bare.attrs.k)
    assert.are.equal(0, s.bare.status)
    assert.are.equal(2, s.bare_err.status)
    assert.are.equal("bad", s.bare_err.events[1].attrs["exception.message"])
    assert.are.equal(outer, s.bare_child.parent)
    assert.is_nil(T.trace_id())
  end)

  it("a span without an object is ended once the run it was begun in is gone", function()
    local M = debug.getregistry()["bg.trace"]
    do
      -- a run (script.c puts its coroutine in the mirror) waiting inside the span, then dropped
      local co = coroutine.create(function() beagle.span("orphan", function() coroutine.yield() end) end)
      M.co = co
      assert.is_true(coroutine.resume(co))
      M.co = false
      local prev = ffi.new("bg_span_ctx")
      C.bg_trace_swap(tracer, nil, prev)
      C.bg_span_ctx_clear(prev)
      T.sync()
    end
    collectgarbage()
    collectgarbage()
    for _ = 1, 256 do beagle.span("later", function() end) end
    local s = by_name(drain()).orphan
    assert.is_truthy(s)
    assert.are.equal(2, s.status)
    assert.are.equal("span not ended", s.status_msg)
  end)

  it("what the API reaches holds no ffi, cdata or C function", function()
    local api = T.plugin_api()
    local forbidden = { [ffi] = "ffi", [C] = "clib", [T] = "agent.trace" }
    local bad, seen = {}, {}
    local function visit(v, path)
      local t = type(v)
      if t == "cdata" or t == "userdata" then bad[#bad + 1] = path .. " is " .. t return end
      if t ~= "table" or seen[v] then return end
      seen[v] = true
      if forbidden[v] then bad[#bad + 1] = path .. " is " .. forbidden[v] return end
      for k, x in pairs(v) do visit(k, path .. "[key]") visit(x, path .. "." .. tostring(k)) end
      local mt = getmetatable(v)
      if mt then visit(mt, path .. "<mt>") end
    end
    visit(api, "api")
    beagle.span("walk", function(sp) visit(sp, "span") end)
    visit(T.NOOP, "noop")
    assert.are.same({}, bad)
    -- a span's metatable is closed
    beagle.span("mt", function(sp) assert.is_false(getmetatable(sp)) end)
  end)
end)
