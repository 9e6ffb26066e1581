-- The server span of every HTTP request (core/net/http_server_respond.c), seen from outside: the
-- response's traceparent header on every route (those answered in C too), the caller's
-- traceparent continued (same trace, the caller's span as parent, a span id of its own), a
-- malformed one ignored (a new trace), the sampled flag respected both ways, and what the
-- exported span says (name after the route template, OpenTelemetry's HTTP attributes, error
-- status for a 5xx), read back through the otlp_traces backend by the OTLP receiver.
local S = require "support"
local O = require "otel.spans"

local CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
local CALLER_SPAN = "00f067aa0ba902b7"

local function get(agent, path, tp, extra)
  local h = {}
  if tp then h[#h + 1] = "traceparent: " .. tp end
  for _, x in ipairs(extra or {}) do h[#h + 1] = x end
  local st, body, head = agent:get(path, h)
  local rtp = O.traceparent(head)
  assert.truthy(rtp, ("no traceparent in the response to %s:\n%s"):format(path, head))
  local trace, span, flags = O.split(rtp)
  assert.truthy(trace and #trace == 32 and #span == 16, rtp)
  assert.is_not.equal(("0"):rep(32), trace)
  assert.is_not.equal(("0"):rep(16), span)
  return { status = st, body = body, trace = trace, span = span, flags = flags, head = head }
end

-- a fresh caller context, so that runs of the spec never see each other's spans
local function caller(flags)
  local t = {}
  for i = 1, 16 do t[i] = ("%02x"):format(math.random(0, 255)) end
  local trace = table.concat(t)
  local span = trace:sub(1, 16)
  return ("00-%s-%s-%s"):format(trace, span, flags or "01"), trace, span
end

describe("server spans", function()
  local root, why, r, agent
  setup(function()
    math.randomseed(os.time() + S.now() * 1000)
    root, why = O.transformer()
  end)
  after_each(function()
    if agent then agent:stop() agent = nil end
    if r then r.stop() r = nil end
  end)

  it("every response carries a traceparent, also from the routes answered in C", function()
    agent = S.start { config = S.calm_system .. 'settings { trace_sampling_rate = 0 }\n' }
    local seen = {}
    for _, path in ipairs { "/health", "/health/live", "/health/ready", "/metrics", "/alerts", "/health/system",
      "/nowhere" } do
      local x = get(agent, path)
      assert.equals("00", x.flags, path .. ": rate 0 samples nothing new")
      assert.is_nil(seen[x.span], "one span id per request")
      seen[x.span] = true
    end
    -- HEAD on a static route too
    local st, _, head = S.http("HEAD", agent.url .. "/health")
    assert.equals(200, st)
    assert.truthy(O.traceparent(head))
  end)

  it("continues the caller's context on C and Lua routes, and keeps its sampled flag", function()
    agent = S.start { config = S.calm_system .. 'settings { trace_sampling_rate = 0 }\n' }
    for _, path in ipairs { "/health", "/metrics", "/alerts", "/health/system" } do
      for _, flags in ipairs { "01", "00" } do
        local tp, trace, span = caller(flags)
        local x = get(agent, path, tp)
        assert.equals(trace, x.trace, path)
        assert.is_not.equal(span, x.span, path .. ": the server span has an id of its own")
        assert.equals(flags, x.flags, path .. ": the caller's decision is kept")
      end
    end
    -- a tracestate without a traceparent changes nothing
    local x = get(agent, "/alerts", nil, { "tracestate: congo=t61rcWkgMzE" })
    assert.equals("00", x.flags)
  end)

  it("is current while Lua answers: the handler's log lines carry its ids", function()
    agent = S.start { config = S.calm_system }
    local tp, trace = caller("00")
    local st, _, head = S.http("POST", agent.url .. "/-/reload", "", { "traceparent: " .. tp })
    assert.equals(200, st)
    local _, span = O.split(O.traceparent(head))
    local line = S.wait(function() return agent:logtext():match("[^\n]*msg=reloading[^\n]*") end, 5)
    assert.truthy(line, "no reloading line")
    assert.truthy(line:find("trace_id=" .. trace, 1, true), line)
    assert.truthy(line:find("span_id=" .. span, 1, true), line)
    -- outside the request, the agent's lines carry no ids of it
    for l in agent:logtext():gmatch("[^\n]+") do
      if l:find('msg="beagle started"', 1, true) then assert.falsy(l:find("trace_id=", 1, true), l) end
    end
  end)

  it("ignores a malformed traceparent: a new trace", function()
    agent = S.start { config = S.calm_system .. 'settings { trace_sampling_rate = 1 }\n' }
    local bad = {
      ("00-%s-%s-01"):format(CALLER_TRACE:upper(), CALLER_SPAN), -- upper-case hex
      ("ff-%s-%s-01"):format(CALLER_TRACE, CALLER_SPAN),         -- version ff
      ("00-%s-%s-01"):format(("0"):rep(32), CALLER_SPAN),        -- zero trace id
      ("00-%s-%s-01"):format(CALLER_TRACE, ("0"):rep(16)),       -- zero span id
      ("00-%s-%s-01"):format(CALLER_TRACE:sub(2), CALLER_SPAN),  -- short trace id
      ("00-%s-%s-1"):format(CALLER_TRACE, CALLER_SPAN),          -- short flags
      ("00-%s-%s-01-extra"):format(CALLER_TRACE, CALLER_SPAN),   -- version 00 with more
      ("00_%s_%s_01"):format(CALLER_TRACE, CALLER_SPAN),         -- wrong separators
      "nonsense",
    }
    for _, path in ipairs { "/health", "/alerts" } do
      for _, tp in ipairs(bad) do
        local x = get(agent, path, tp)
        assert.is_not.equal(CALLER_TRACE, x.trace, ("%s %s was continued"):format(path, tp))
        assert.equals("01", x.flags, "a new root sampled at rate 1")
      end
    end
  end)

  it("exports the server span: the caller's parent, the route's name, HTTP attributes, 5xx an error", function()
    if not root then pending("skipped: " .. why) return end
    r = O.receiver(root)
    agent = S.start { config = S.calm_system .. O.config(r, 0)
      .. 'check "down" { plugin = "tcp", port = 1, critical = true, retries = 0, interval = "1s" }\n' }
    -- a Lua route with a template
    local tp, trace, span = caller("01")
    local x = get(agent, "/health/system", tp, { "User-Agent: trace-spec/1" })
    assert.equals(200, x.status)
    local sp = r.find(function(s) return s.spanId == x.span end)
    assert.truthy(sp, "the server span was not exported")
    assert.equals(trace, sp.traceId)
    assert.equals(span, sp.parentSpanId)
    assert.equals(2, sp.kind) -- SERVER
    assert.equals("GET /health/{name}", sp.name)
    assert.equals("beagle", sp.scope.name)
    local a = sp.attrs
    assert.equals("GET", a["http.request.method"])
    assert.equals("/health/{name}", a["http.route"])
    assert.equals("/health/system", a["url.path"])
    assert.equals(200, a["http.response.status_code"])
    assert.equals("127.0.0.1", a["client.address"])
    assert.equals("127.0.0.1", a["network.peer.address"])
    assert.equals(agent.port, a["server.port"])
    assert.equals("trace-spec/1", a["user_agent.original"])
    assert.is_true(tonumber(sp.startTimeUnixNano) <= tonumber(sp.endTimeUnixNano))
    assert.is_true(sp.status == nil or (sp.status.code or 0) ~= 2, "a 200 is no error")

    -- a route answered in C: its path is its template
    tp, trace, span = caller("01")
    x = get(agent, "/health", tp)
    sp = r.find(function(s) return s.spanId == x.span end)
    assert.truthy(sp, "the span of GET /health was not exported")
    assert.equals(trace, sp.traceId)
    assert.equals(span, sp.parentSpanId)
    assert.equals("GET /health", sp.name)
    assert.equals("/health", sp.attrs["http.route"])

    -- /health/ready answers 503 (in C) while a critical check is down: status error
    assert.truthy(S.wait(function() return agent:get("/health/ready") == 503 end, 10), "never 503")
    tp = caller("01")
    x = get(agent, "/health/ready", tp)
    assert.equals(503, x.status)
    sp = r.find(function(s) return s.spanId == x.span end)
    assert.truthy(sp, "the span of the 503 was not exported")
    assert.equals("GET /health/ready", sp.name)
    assert.equals(2, sp.status and sp.status.code)
    assert.equals(503, sp.attrs["http.response.status_code"])
    assert.equals("503", sp.attrs["error.type"])

    -- no route: the method alone, and a 404 is not the server's error
    x = get(agent, "/nowhere", (caller("01")))
    sp = r.find(function(s) return s.spanId == x.span end)
    assert.truthy(sp)
    assert.equals("GET", sp.name)
    assert.is_nil(sp.attrs["http.route"])
    assert.is_true(sp.status == nil or sp.status.code == nil or sp.status.code == 0)

    -- an unsampled caller is not recorded (rate 0 here: nothing new is sampled either); the
    -- sampled request after it arrives, so the first had its chance
    local utp, utrace = caller("00")
    local u = get(agent, "/alerts", utp)
    assert.equals("00", u.flags)
    tp = caller("01")
    x = get(agent, "/alerts", tp)
    assert.truthy(r.find(function(s) return s.spanId == x.span end), "the sampled one was not exported")
    for _, s in ipairs(r.spans()) do
      assert.is_not.equal(utrace, s.traceId, "an unsampled request was exported")
    end
    assert.same({}, r.errors())
  end)
end)
