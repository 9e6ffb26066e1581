-- Spans in a real agent (issue 16): a check plugin's beagle.span follows its run across a
-- ctx.http wait, log lines written inside the span carry its trace and span ids, two runs at
-- once never see each other's span, and the request the plugin makes carries a traceparent
-- that is a child of the span (a CLIENT span of its own), unless the plugin set one itself.
local S = require "support"
local cjson = require "cjson"

-- The logfmt fields of a line (values unquoted; enough for the ids and tags checked here).
local function fields(line)
  local f = {}
  for k, v in line:gmatch('([%w_%.]+)=("[^"]*"|[^ ]*)') do
    f[k] = v:gsub('^"(.*)"$', "%1")
  end
  for k, v in line:gmatch('([%w_%.]+)=([^ "]*)') do
    if f[k] == nil or f[k] == "" then f[k] = v end
  end
  return f
end

-- The log lines with msg=m, as field tables.
local function lines_with(log, m)
  local out = {}
  for line in log:gmatch("[^\n]+") do
    local f = fields(line)
    if f.msg == m then out[#out + 1] = f end
  end
  return out
end

local PLUGIN = [[
return beagle.check { name = "traced", interval = "1h", timeout = "10s", retries = 0,
  options = { url = "string", tag = "string", own = { "string", default = "" }, state = { "string", default = "" },
    query = { "string", default = "" } },
  run = function(opt, ctx)
    return beagle.span("outer", { tag = opt.tag }, function(sp)
      beagle.log.info("before", { tag = opt.tag, want_trace = sp:trace_id(), want_span = sp:span_id() })
      local headers = { ["X-Tag"] = opt.tag }
      if opt.own ~= "" then headers.traceparent = opt.own end
      if opt.state ~= "" then headers.tracestate = opt.state end
      -- a small max_body: five runs of this state at once each reserve what they may receive
      -- of the state's memory, 16 MiB by default, and the fifth would be left 1 byte
      local r, err = ctx.http.get(opt.url .. "/" .. opt.tag .. opt.query, { headers = headers, max_body = 4096 })
      beagle.log.info("after", { tag = opt.tag, want_trace = sp:trace_id(), want_span = sp:span_id(),
        status = r and tostring(r.status) or err })
      return ctx.healthy("ok", { trace = sp:trace_id(), span = sp:span_id() })
    end)
  end }
]]

describe("spans in plugin runs", function()
  local sink, agent

  setup(function()
    sink = S.sink()
    -- both runs wait on their request at the same time
    sink.control { delay = 0.6 }
    local dir = S.tmpdir()
    S.write(dir .. "/traced.lua", PLUGIN)
    local own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    agent = S.start { plugins = dir, config = S.calm_system .. ([[
settings { trace_sampling_rate = 1, trace_export_interval = "0.2s" }
check "a" { plugin = "traced", url = %q, tag = "a" }
check "b" { plugin = "traced", url = %q, tag = "b" }
check "own" { plugin = "traced", url = %q, tag = "own", own = %q }
check "cred" { plugin = "traced", url = %q, tag = "cred", query = "?api_key=s3cret&page=2&flag#top" }
check "st" { plugin = "traced", url = %q, tag = "st", state = "vendor=own" }
backend "traces" { plugin = "otlp_traces", url = %q }
]]):format(sink.url, sink.url, sink.url, own, sink.url:gsub("//", "//u:s3cret@"), sink.url,
  sink.url .. "/v1/traces") }
    for _, n in ipairs { "a", "b", "own", "cred", "st" } do
      assert(agent:wait_check(n, function(o) return o.status == "healthy" end, 10),
        "check " .. n .. " did not finish:\n" .. agent:logtext())
    end
  end)

  teardown(function()
    if agent then agent:stop() end
    if sink then sink.stop() end
  end)

  it("log lines inside a span carry its ids, before and after a wait, run by run", function()
    local log = agent:logtext()
    local seen = {}
    for _, m in ipairs { "before", "after" } do
      for _, f in ipairs(lines_with(log, m)) do
        assert.is_truthy(f.want_trace and #f.want_trace == 32, "no span ids in: " .. m)
        assert.are.equal(f.want_trace, f.trace_id)
        assert.are.equal(f.want_span, f.span_id)
        seen[f.tag] = seen[f.tag] or {}
        seen[f.tag][m] = f
      end
    end
    for _, tag in ipairs { "a", "b", "own", "cred", "st" } do
      assert.is_truthy(seen[tag] and seen[tag].before and seen[tag].after, "lines of " .. tag)
      assert.are.equal("200", seen[tag].after.status, "the request of " .. tag)
      -- the same span before and after the wait
      assert.are.equal(seen[tag].before.span_id, seen[tag].after.span_id)
    end
    -- two runs at once: each its own trace (no context of its caller here: new roots)
    assert.are_not.equal(seen.a.after.trace_id, seen.b.after.trace_id)
    assert.are_not.equal(seen.a.after.span_id, seen.b.after.span_id)
  end)

  it("the two runs waited at the same time", function()
    local reqs = sink.requests()
    local t = {}
    for _, r in ipairs(reqs) do t[r.path] = r end
    assert.is_truthy(t["/a"] and t["/b"])
    -- each arrived before the other was answered
    assert.is_true(t["/a"].time < t["/b"].answered and t["/b"].time < t["/a"].answered)
  end)

  it("each request carries a traceparent: a child of the run's span, in its trace", function()
    local log = agent:logtext()
    local span_of = {}
    for _, f in ipairs(lines_with(log, "after")) do span_of[f.tag] = f end
    for _, r in ipairs(sink.requests()) do
      local tag = r.path:sub(2)
      if tag == "a" or tag == "b" then
        local tp = r.headers.traceparent
        assert.is_string(tp)
        local trace, parent, flags = tp:match("^00%-(%x+)%-(%x+)%-(%x%x)$")
        assert.are.equal(span_of[tag].trace_id, trace)
        assert.are.equal(16, #parent)
        -- the CLIENT span's own id, not the plugin's span
        assert.are_not.equal(span_of[tag].span_id, parent)
        assert.are.equal("01", flags)
      end
    end
  end)

  it("a traceparent the plugin set is sent as it is, and only it", function()
    for _, r in ipairs(sink.requests()) do
      if r.path == "/own" then
        assert.are.equal("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", r.headers.traceparent)
        assert.is_nil(r.headers.tracestate)
        return
      end
    end
    error("no request for /own")
  end)

  it("exported (otlp_traces): the plugin's span, and the request's CLIENT span under it with the HTTP attributes", function()
    local spans
    local want = {}
    for _, f in ipairs(lines_with(agent:logtext(), "after")) do want[f.tag] = f end
    local function find(pred)
      for _, sp in ipairs(spans) do if pred(sp) then return sp end end
    end
    local function attrs(sp)
      local t = {}
      for _, a in ipairs(sp.attributes or {}) do
        local v = a.value
        t[a.key] = v.stringValue or (v.intValue and tonumber(v.intValue)) or v.boolValue or v.doubleValue
      end
      return t
    end
    local outer, client
    assert.is_truthy(S.wait(function()
      spans = {}
      for _, r in ipairs(sink.requests()) do
        if r.path == "/v1/traces" then
          for _, rs in ipairs(cjson.decode(r.body).resourceSpans) do
            for _, ss in ipairs(rs.scopeSpans) do
              for _, sp in ipairs(ss.spans) do sp.scope = ss.scope.name spans[#spans + 1] = sp end
            end
          end
        end
      end
      outer = find(function(sp) return sp.spanId == want.a.span_id end)
      client = outer and find(function(sp) return sp.parentSpanId == outer.spanId and sp.kind == 3 end)
      return client and find(function(sp) return sp.kind == 3 and (attrs(sp)["url.full"] or ""):find("/cred?", 1, true) end)
    end, 10), "no exported client span")
    assert.are.equal("outer", outer.name)
    assert.are.equal(want.a.trace_id, outer.traceId)
    assert.are.equal("a", attrs(outer).tag)
    assert.are.equal("traced", outer.scope)
    assert.are.equal("traced", client.scope) -- one scope per plugin, its requests' spans too
    assert.are.equal("GET", client.name)
    assert.are.equal(outer.traceId, client.traceId)
    local ca = attrs(client)
    assert.are.equal("GET", ca["http.request.method"])
    assert.are.equal(sink.url .. "/a", ca["url.full"])
    assert.are.equal("127.0.0.1", ca["server.address"])
    assert.are.equal(sink.port, ca["server.port"])
    assert.are.equal(200, ca["http.response.status_code"])
    -- credentials in a URL are not exported: neither its userinfo nor its query's values
    local cred = find(function(sp) return sp.kind == 3 and (attrs(sp)["url.full"] or ""):find("/cred?", 1, true) end)
    assert.are.equal(sink.url:gsub("//", "//REDACTED:REDACTED@") .. "/cred?api_key=REDACTED&page=REDACTED&flag",
      attrs(cred)["url.full"])
    -- the request carried the CLIENT span's id
    for _, r in ipairs(sink.requests()) do
      if r.path == "/a" then
        assert.are.equal(("00-%s-%s-01"):format(client.traceId, client.spanId), r.headers.traceparent)
      end
    end
  end)

  it("a tracestate the plugin set is sent as it is, once, beside the span's traceparent", function()
    for _, r in ipairs(sink.requests()) do
      if r.path == "/st" then
        assert.are.equal("vendor=own", r.headers.tracestate)
        assert.matches("^00%-%x+%-%x+%-01$", r.headers.traceparent)
        return
      end
    end
    error("no request for /st")
  end)

  it("the result's ids are the span's", function()
    local a = agent:check("a")
    local f = lines_with(agent:logtext(), "after")
    local want
    for _, x in ipairs(f) do if x.tag == "a" then want = x end end
    assert.are.equal(want.trace_id, a.details.trace)
    assert.are.equal(want.span_id, a.details.span)
  end)
end)

-- A run killed while it waits inside a span (its fn never returns) and a trace_operation span
-- never finished: the agent goes on, and at exit nothing is leaked (every span is ended when
-- its state closes). Under LeakSanitizer when BEAGLE_LSAN_BIN is there.
local LSAN = os.getenv("BEAGLE_LSAN_BIN")
describe("spans left open", function()
  local sink, agent

  teardown(function()
    if agent then agent:stop() end
    if sink then sink.stop() end
  end)

  it("by a run that timed out while it waited end with its state, without a leak", function()
    sink = S.sink()
    local dir = S.tmpdir()
    S.write(dir .. "/stuck.lua", [[
return beagle.check { name = "stuck", interval = "1h", timeout = "0.3s", retries = 0,
  options = { url = "string" },
  run = function(opt, ctx)
    ctx.state.kept = beagle.trace_operation("kept open")
    beagle.trace_operation("dropped")
    return beagle.span("waits", function()
      ctx.http.get(opt.url .. "/fast")
      ctx.sleep(5) -- the run's deadline ends it here: this fn never returns
      return ctx.healthy()
    end)
  end }
]])
    local bin = S.bin
    if LSAN and LSAN ~= "" then S.bin = LSAN end
    local ok, a = pcall(S.start, { plugins = dir, config = S.calm_system .. ([[
settings { trace_sampling_rate = 1 }
check "stuck" { plugin = "stuck", url = %q }
]]):format(sink.url) })
    S.bin = bin
    assert(ok, a)
    agent = a
    local o = agent:wait_check("stuck", function(c) return c.status == "unhealthy" end, 10)
    assert.is_truthy(o, select(3, agent:get_json("/health/stuck")))
    assert.matches("timeout", o.message)
    -- still serving, and the next span of another run is fine
    assert.are.equal(200, (agent:get("/health/live")))
    assert.is_true(agent:stop())
    agent = nil
    local log = S.read(a.log) or ""
    if log:find("LeakSanitizer has encountered a fatal error", 1, true) then
      pending("LeakSanitizer cannot run here")
      return
    end
    assert.is_nil(log:find("LeakSanitizer", 1, true), log)
    assert.is_nil(log:find("AddressSanitizer", 1, true), log)
  end)
end)
