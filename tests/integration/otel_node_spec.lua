-- Interop with a real OpenTelemetry client: tests/otel/client.js, a Node.js program instrumented
-- by OpenTelemetry's own SDK (npm @opentelemetry/sdk-trace-node 1.30.1 with
-- @opentelemetry/instrumentation-http 0.57.2 and @opentelemetry/api 1.9.0, versions of one
-- release that work together, installed at test time into a directory outside the tree,
-- BEAGLE_OTEL_NODE_DIR, default /tmp/beagle-npm-otel-node), calls beagle's HTTP API. The
-- instrumentation injects the traceparent of its CLIENT span; beagle's server span, exported by
-- the otlp_traces backend to the OTLP receiver (which reads it with OpenTelemetry's schema), must
-- have the client's trace id and the client span's id as its parent, on routes answered in C
-- and in Lua. beagle samples nothing by itself here (rate 0): the client's decision is kept.
local S = require "support"
local O = require "otel.spans"
local cjson = require "cjson"

local CLIENT = S.src .. "/tests/otel/client.js"
local DIR = os.getenv("BEAGLE_OTEL_NODE_DIR") or "/tmp/beagle-npm-otel-node"
local PACKAGES = "@opentelemetry/sdk-trace-node@1.30.1 @opentelemetry/sdk-trace-base@1.30.1 "
  .. "@opentelemetry/instrumentation-http@0.57.2 @opentelemetry/instrumentation@0.57.2 @opentelemetry/api@1.9.0"
local MARK = DIR .. "/node_modules/@opentelemetry/instrumentation-http/package.json"

-- the SDK, installed if needed; nil and why when npm cannot get it
local function sdk()
  local function ready()
    local p = S.read(MARK)
    return p and p:find('"version": "0.57.2"', 1, true)
  end
  if ready() then return DIR end
  local out, code = S.sh(("command -v node >/dev/null && command -v npm >/dev/null && mkdir -p %q && "
    .. "timeout 300 npm install --prefix %q --no-audit --no-fund --silent %s 2>&1"):format(DIR, DIR, PACKAGES))
  if ready() then return DIR end
  return nil, ("npm could not install the OpenTelemetry Node.js SDK (exit %s): %s"):format(tostring(code), out)
end

describe("an OpenTelemetry-instrumented Node.js client", function()
  local root, dir, why, r, agent
  setup(function()
    root, why = O.transformer()
    if root then dir, why = sdk() end
  end)
  after_each(function()
    if agent then agent:stop() agent = nil end
    if r then r.stop() r = nil end
  end)

  it("calls beagle, whose exported server span continues the client's trace under its span", function()
    if not (root and dir) then pending("skipped: " .. why) return end
    r = O.receiver(root)
    agent = S.start { config = S.calm_system .. O.config(r, 0) }
    local paths = { "/health", "/metrics", "/health/system", "/alerts" }
    local urls = {}
    for i, p in ipairs(paths) do urls[i] = ("%q"):format(agent.url .. p) end
    local out, code = S.sh(("node %q %q %s 2>&1"):format(CLIENT, dir, table.concat(urls, " ")))
    assert.equals(0, code, out)
    local n = 0
    for line in out:gmatch("[^\n]+") do
      n = n + 1
      local res = cjson.decode(line)
      local client = res.client
      assert.truthy(client, "the SDK made no CLIENT span: " .. line)
      assert.equals(200, res.status, line)
      assert.equals(2, client.kind) -- SpanKind.CLIENT in the API's numbering
      assert.equals(res.root.spanId, client.parentSpanId)
      -- the response names beagle's span, in the client's trace
      local trace, span, flags = O.split(assert(res.traceparent, "no traceparent in the response: " .. line))
      assert.equals(client.traceId, trace)
      assert.equals("01", flags, "the client sampled it, so does beagle")
      -- and that span was exported with the client span as its parent
      local sp = r.find(function(s) return s.spanId == span end)
      assert.truthy(sp, "beagle's server span for " .. res.url .. " was not exported")
      assert.equals(client.traceId, sp.traceId)
      assert.equals(client.spanId, sp.parentSpanId)
      assert.equals(2, sp.kind) -- SERVER in OTLP's numbering
      assert.equals("GET", sp.attrs["http.request.method"])
      assert.equals(200, sp.attrs["http.response.status_code"])
      assert.truthy(res.url:find(sp.attrs["url.path"], 1, true))
    end
    assert.equals(#paths, n, out)
    -- names after the route, whether C or Lua answered
    local names = {}
    for _, s in ipairs(r.spans()) do if s.kind == 2 then names[s.name] = true end end
    for _, want in ipairs { "GET /health", "GET /metrics", "GET /health/{name}", "GET /alerts" } do
      assert.truthy(names[want], "no server span named " .. want)
    end
    assert.same({}, r.errors())
  end)
end)
