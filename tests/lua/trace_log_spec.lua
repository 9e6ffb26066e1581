-- Log lines and spans (issue 16): once agent.trace has installed its hook (T.configure), a
-- line written while a span is current carries trace_id and span_id (logfmt and JSON), and
-- every line is recorded for the log exporters with the current ids and its scope (the plugin
-- that logged it, or "beagle"). Over the C core of BEAGLE_LIB; lines are caught with the
-- log's sink.
local ffi = require("ffi")
local T = require("agent.trace")
T.cdef_export() -- the views of finished spans and log records
local beagle = require("beagle")
local json = require("beagle.json")
local C, tracer = T.C, T.tracer

pcall(ffi.cdef, [[
void bg_log_kv_scope(int level, const char *msg, const char *const *kv, size_t nkv, const char *scope);
void bg_log_set_sink(void (*sink)(void *ud, const char *line, size_t len), void *ud);
int bg_log_set_format(const char *format);
int bg_log_set_level(const char *level);
]])

local lines = {}
local sink = ffi.cast("void (*)(void *, const char *, size_t)", function(_, p, n)
  lines[#lines + 1] = ffi.string(p, n)
end)

-- logs msg with fields {k, v, ...} on behalf of scope (nil: the agent)
local function log(level, msg, kv, scope)
  local arr = ffi.new("const char *[?]", #kv + 1)
  for i = 1, #kv do arr[i - 1] = kv[i] end
  C.bg_log_kv_scope(level, msg, arr, #kv / 2, scope)
end

local function hex(p, n)
  local t = {}
  for i = 0, n - 1 do t[#t + 1] = ("%02x"):format(p[i]) end
  return table.concat(t)
end

-- the records in the log buffer, oldest first
local function records()
  local out = {}
  local b = C.bg_trace_take_logs(tracer, 10000)
  if b == nil then return out end
  local v = ffi.new("bg_log_view")
  for i = 0, tonumber(C.bg_log_batch_len(b)) - 1 do
    C.bg_log_batch_view(b, i, v)
    local r = { body = ffi.string(v.body, v.body_len), scope = ffi.string(v.scope, v.scope_len),
      severity = v.severity, trace_id = hex(v.trace_id, 16), span_id = hex(v.span_id, 8), attrs = {} }
    for j = 0, v.nattrs - 1 do
      local a = v.attrs[j]
      r.attrs[ffi.string(a.key, a.klen)] = ffi.string(a.v.s, a.n)
    end
    out[#out + 1] = r
  end
  C.bg_log_batch_unref(b)
  return out
end

describe("log lines in spans", function()
  setup(function()
    T.configure { trace_sampling_rate = 1 }
    C.bg_tracer_set_recording(tracer, 1, 1)
    C.bg_log_set_sink(sink, nil)
    C.bg_log_set_level("info")
  end)
  teardown(function()
    C.bg_log_set_sink(nil, nil)
    C.bg_log_set_format("logfmt")
  end)
  before_each(function()
    lines = {}
    records()
  end)

  it("carry trace_id and span_id inside a span only (logfmt)", function()
    C.bg_log_set_format("logfmt")
    log(1, "outside", { "k", "v" })
    local tid, sid
    beagle.span("s", function(sp)
      tid, sid = sp:trace_id(), sp:span_id()
      log(1, "inside", { "k", "v" })
    end)
    log(1, "after", {})
    assert.are.equal(3, #lines)
    assert.is_nil(lines[1]:find("trace_id", 1, true))
    assert.matches(" k=v trace_id=" .. tid .. " span_id=" .. sid .. "\n$", lines[2])
    assert.is_nil(lines[3]:find("trace_id", 1, true))
  end)

  it("carry them as JSON fields", function()
    C.bg_log_set_format("json")
    local tid, sid
    beagle.span("s", function(sp)
      tid, sid = sp:trace_id(), sp:span_id()
      log(2, "inside", { "k", "v" })
    end)
    C.bg_log_set_format("logfmt")
    local o = json.decode(lines[1])
    assert.are.equal("inside", o.msg)
    assert.are.equal("v", o.k)
    assert.are.equal(tid, o.trace_id)
    assert.are.equal(sid, o.span_id)
  end)

  it("are recorded with the ids, the scope, the severity and the fields", function()
    local tid, sid
    log(3, "plain", { "a", "1" })
    beagle.span("s", function(sp)
      tid, sid = sp:trace_id(), sp:span_id()
      log(1, "from a plugin", { "plugin", "web.lua", "k", "v" }, "web.lua")
    end)
    log(0, "below the level", {})
    local r = records()
    assert.are.equal(2, #r)
    assert.are.same({ body = "plain", scope = "beagle", severity = 17, trace_id = ("0"):rep(32),
      span_id = ("0"):rep(16), attrs = { a = "1" } }, r[1])
    assert.are.same({ body = "from a plugin", scope = "web", severity = 9, trace_id = tid,
      span_id = sid, attrs = { plugin = "web.lua", k = "v" } }, r[2])
  end)

  it("are not recorded while no log exporter is configured, and still carry the ids", function()
    C.bg_tracer_set_recording(tracer, 1, 0)
    beagle.span("s", function(sp)
      log(1, "inside", {})
      assert.matches("span_id=" .. sp:span_id(), lines[1])
    end)
    C.bg_tracer_set_recording(tracer, 1, 1)
    assert.are.same({}, records())
  end)
end)
