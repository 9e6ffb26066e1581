-- The logfire backend preset (plugins/backends/logfire.lua) in a running agent: declared by the
-- agent itself from the logfire_* settings (no backend block), pointed by logfire_base_url at the
-- receiver of tests/receivers/otlp_receiver.js, which reads every body with OpenTelemetry's
-- schema (as backend_otlp_traces_spec.lua does): spans to /v1/traces and log records to
-- /v1/logs from one instance, the token as the whole Authorization value (no "Bearer"), gzip,
-- the project and environment as resource attributes, the token masked. Without a base URL the
-- region comes from the token: the receiver then stands as the HTTPS proxy (https_proxy) and
-- records where each request was going, answering 403 before any tunnel, so nothing leaves the
-- machine.
local S = require "support"
local cjson = require "cjson"

local receiver = S.otlp_receiver

local function attrs(list)
  local t = {}
  for _, a in ipairs(list or {}) do t[a.key] = a.value.stringValue or a.value end
  return t
end

-- a check that makes a span and writes a log line inside it
local PLUGIN = [[
return beagle.check {
  name = "lf_maker", interval = "0.2s",
  options = { word = { "string", description = "a word" } },
  run = function(opts, ctx)
    beagle.span("lf work", { word = opts.word }, function()
      beagle.log.warn("lf line", { word = opts.word })
    end)
    return ctx.healthy("ok")
  end,
}
]]

local function plugin_dir()
  local d = S.tmpdir()
  S.sh(("mkdir -p %q/checks"):format(d))
  S.write(d .. "/checks/lf_maker.lua", PLUGIN)
  return d
end

local TOKEN = "pylf_v1_us_abcDEF123secretToken"
local EU_TOKEN = "pylf_v1_eu_xyz789secretToken"

describe("logfire backend", function()
  local r, agent, root, why
  setup(function() root, why = S.otlp_transformer() end)
  before_each(function() if root then r = receiver(root) end end)
  after_each(function()
    if agent then agent:stop() agent = nil end
    if r then r.stop() r = nil end
  end)

  it("declared from the settings: spans and logs to logfire_base_url with the token as Authorization", function()
    if not root then pending("skipped: " .. why) return end
    agent = S.start { plugins = plugin_dir(), config = S.calm_system .. ([[
settings { trace_sampling_rate = 1, trace_export_interval = "0.2s", logfire_token = "%s",
  logfire_project_name = "shop", logfire_environment = "staging", logfire_base_url = "%s",
  service_name = "edge" }
check "lf" { plugin = "lf_maker", word = "hello" }
]]):format(TOKEN, r.base) }
    local got = S.wait(function()
      local t, l
      for _, q in ipairs(r.requests()) do
        if q.path == "/v1/traces" then t = t or q end
        if q.path == "/v1/logs" then
          for _, rl in ipairs(q.body and q.body.resourceLogs or {}) do
            for _, sl in ipairs(rl.scopeLogs) do
              for _, x in ipairs(sl.logRecords) do
                if x.body.stringValue == "lf line" then l = l or { q = q, rec = x } end
              end
            end
          end
        end
      end
      return t and l and { t = t, l = l }
    end, 10)
    assert.truthy(got, "no spans and log line from one logfire instance")
    for _, q in ipairs(r.requests()) do
      assert.is_true(q.error == cjson.null, tostring(q.error))
      assert.equals(200, q.status)
      -- the token is the whole value: no "Bearer"
      assert.equals(TOKEN, q.authorization)
      assert.equals("gzip", q.encoding)
    end
    local res = attrs(got.t.body.resourceSpans[1].resource.attributes)
    assert.equals("edge", res["service.name"])
    assert.equals("staging", res["deployment.environment"])
    assert.equals("staging", res["deployment.environment.name"])
    assert.equals("shop", res["logfire.project_name"])
    local span
    for _, ss in ipairs(got.t.body.resourceSpans[1].scopeSpans) do
      for _, sp in ipairs(ss.spans) do if sp.name == "lf work" then span = sp end end
    end
    if not span then
      span = S.wait(function()
        for _, q in ipairs(r.requests()) do
          for _, ss in ipairs(q.path == "/v1/traces" and q.body.resourceSpans[1].scopeSpans or {}) do
            for _, sp in ipairs(ss.spans) do if sp.name == "lf work" then return sp end end
          end
        end
      end, 5)
    end
    assert.truthy(span, "the plugin's span")
    assert.equals(13, got.l.rec.severityNumber)
    assert.truthy(got.l.rec.traceId and #got.l.rec.traceId == 32)
    -- one backend, both signals; the token never shows
    local b = agent:backend("logfire")
    assert.equals("traces,logs", b.signal)
    assert.equals("logfire", b.plugin)
    local _, detailed = agent:get("/health/detailed")
    assert.is_nil(detailed:find(TOKEN, 1, true))
    assert.is_nil(agent:logtext():find(TOKEN, 1, true))
  end)

  it("no base URL: the token's region picks the host (seen through a proxy, nothing sent)", function()
    if not root then pending("skipped: " .. why) return end
    local proxy = ("http://127.0.0.1:%d"):format(r.port)
    for _, case in ipairs { { EU_TOKEN, "logfire-eu.pydantic.dev:443" }, { TOKEN, "logfire-us.pydantic.dev:443" },
      { "not-a-pylf-token", "logfire-us.pydantic.dev:443" } } do
      agent = S.start { plugins = plugin_dir(), env = { https_proxy = proxy, HTTPS_PROXY = proxy, no_proxy = "" },
        config = S.calm_system .. ([[
settings { trace_sampling_rate = 1, trace_export_interval = "0.2s", backend_backoff_initial = "0.05s",
  backend_backoff_max = "0.2s" }
check "lf" { plugin = "lf_maker", word = "x" }
backend "lf" { plugin = "logfire", token = "%s", gzip = false }
]]):format(case[1]) }
      local seen = S.wait(function()
        for _, q in ipairs(r.requests()) do
          if q.connect then return q.connect end
        end
      end, 10)
      assert.equals(case[2], seen)
      for _, q in ipairs(r.requests()) do
        if q.connect then assert.equals(case[2], q.connect) end
      end
      local b = agent:backend("lf")
      assert.truthy(b.state == "failing" or b.state == "paused", b.state)
      agent:stop()
      agent = nil
      r.stop()
      r = receiver(root)
      proxy = ("http://127.0.0.1:%d"):format(r.port)
    end
  end)

  it("a reload that sets logfire_token starts sending; one that clears it stops, and recording stops", function()
    if not root then pending("skipped: " .. why) return end
    local base = S.calm_system .. [[
check "lf" { plugin = "lf_maker", word = "r" }
]]
    agent = S.start { plugins = plugin_dir(), config = [[
settings { trace_sampling_rate = 1, trace_export_interval = "0.2s" }
]] .. base }
    assert.is_nil(agent:backend("logfire"))
    S.write(agent.config, ([[
settings { trace_sampling_rate = 1, trace_export_interval = "0.2s", logfire_token = "%s", logfire_base_url = "%s" }
]]):format(TOKEN, r.base) .. base)
    assert.equals(200, (agent:post("/-/reload", "")))
    assert.truthy(S.wait(function()
      for _, q in ipairs(r.requests()) do if q.path == "/v1/traces" and q.status == 200 then return true end end
    end, 10), "nothing sent after the reload")
    assert.equals("traces,logs", agent:backend("logfire").signal)
    S.write(agent.config, [[
settings { trace_sampling_rate = 1, trace_export_interval = "0.2s" }
]] .. base)
    assert.equals(200, (agent:post("/-/reload", "")))
    assert.is_nil(agent:backend("logfire"))
    local function sampled()
      local _, text = agent:get("/metrics")
      return tonumber(text:match("beagle_trace_spans_sampled_total (%d+)"))
    end
    S.sleep(0.5)
    local n = sampled()
    S.sleep(0.8)
    assert.equals(n, sampled()) -- nothing recorded without an exporter
  end)

  it("logfire_enabled = false keeps the token without sending", function()
    if not root then pending("skipped: " .. why) return end
    agent = S.start { plugins = plugin_dir(), config = S.calm_system .. ([[
settings { trace_sampling_rate = 1, trace_export_interval = "0.2s", logfire_token = "%s", logfire_enabled = false,
  logfire_base_url = "%s" }
check "lf" { plugin = "lf_maker", word = "x" }
]]):format(TOKEN, r.base) }
    assert.truthy(agent:wait_check("lf", function(o) return o.status == "healthy" end, 5))
    S.sleep(0.8)
    assert.same({}, r.requests())
    assert.is_nil(agent:backend("logfire"))
    local _, text = agent:get("/metrics")
    -- nothing recorded without an exporter
    assert.truthy(text:match("beagle_trace_spans_sampled_total 0"), "spans were recorded")
  end)
end)
