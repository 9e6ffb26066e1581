-- Secrets stay secret, auth is exact (issue 14 §4): option values of type secret and credentials
-- inside URLs (userinfo, query keys) are redacted in every route, log line and error; two
-- Authorization headers answer 400, the scheme is case-insensitive and whitespace is ignored;
-- the built-in rules can be switched off.
local S = require "support"

local KEY = "Sekr3tWebhookKey"
local PASS = "UserinfoPa55"
local TOKEN = "CheckT0kenValue"

-- a check whose message and details carry its secret option and a URL with credentials
local LEAKY = ([[
return beagle.check {
  name = "leaky",
  interval = "1h",
  options = { token = { "secret", default = "%s" } },
  run = function(opt, ctx)
    beagle.log.warn("calling https://bob:%s@example.com/?token=" .. opt.token, { token = opt.token })
    return ctx.unhealthy("failed with " .. opt.token .. " at https://bob:%s@example.com/x?api_key=%s&page=2",
      { url = "https://example.com/hook?key=%s" })
  end,
}
]]):format(TOKEN, PASS, PASS, KEY, KEY)

describe("secrets", function()
  local agent, plugins
  setup(function()
    plugins = S.tmpdir()
    S.write(plugins .. "/leaky.lua", LEAKY)
    agent = S.start { plugins = plugins, env = { MONITORING_API_TOKEN = "the-api-token-1234" },
      config = S.calm_system .. ([[
channel "hook" { plugin = "webhook", url = "http://alice:%s@127.0.0.1:9/hook?key=%s&team=ops" }
]]):format(PASS, KEY) }
    assert.is_truthy(agent:wait_check("leaky", function(c) return c.status == "unhealthy" end, 10), agent:logtext())
  end)
  teardown(function() if agent then agent:stop() end end)

  local function clean(where, text)
    for _, s in ipairs { KEY, PASS, TOKEN, "the-api-token-1234" } do
      assert.is_falsy(text:find(s, 1, true), where .. " shows " .. s .. ":\n" .. text)
    end
  end

  it("are redacted in every route", function()
    for _, path in ipairs { "/health", "/health/detailed", "/health/leaky", "/alerts/rules" } do
      local st, body = agent:get(path)
      assert.is_true(st == 200 or st == 503, path .. ": " .. st)
      clean(path, body)
    end
    -- and what is left is still useful: the host, the path and the other query keys
    local _, d = agent:get("/health/detailed")
    assert.is_truthy(d:find("127.0.0.1:9/hook?key=***&team=ops", 1, true), d)
    assert.is_truthy(d:find("https://***@example.com/x?api_key=***&page=2", 1, true), d)
  end)

  it("are redacted in the log and in reload errors", function()
    -- a reload refused for a bad value next to a secret: the error must not carry it
    S.write(agent.config, S.calm_system .. ([[
channel "hook" { plugin = "webhook", url = "http://alice:%s@127.0.0.1:9/hook?key=%s", timeout = "soon" }
]]):format(PASS, KEY))
    local st, body = agent:post("/-/reload", "", { "Authorization: Bearer the-api-token-1234" })
    assert.are.equal(422, st, body)
    clean("the reload's answer", body)
    assert.is_truthy(S.wait(function() return agent:logtext():find("reload refused", 1, true) end, 5))
    clean("the log", agent:logtext())
    -- the plugin's own log line is there, redacted
    assert.is_truthy(agent:logtext():find("calling https://***@example.com/?token=***", 1, true), agent:logtext())
  end)
end)

describe("secrets in the command line's output", function()
  it("are redacted in a start-up error and in beagle check's lines", function()
    local dir = S.tmpdir()
    local plugins = S.tmpdir()
    S.write(plugins .. "/leaky.lua", LEAKY)
    S.write(dir .. "/bad.lua", ([[
check "api" { plugin = "http", url = "http://127.0.0.1:1/", slow = "http://bob:%s@x/?key=%s" }
]]):format(PASS, KEY))
    local out, code = S.sh(("%q run --listen 127.0.0.1:0 --statsd off --data %q -c %q"):format(S.bin, dir .. "/data",
      dir .. "/bad.lua"))
    assert.are.equal(1, code, out)
    assert.is_truthy(out:find('option "slow"', 1, true), out)
    for _, sec in ipairs { PASS, KEY } do assert.is_falsy(out:find(sec, 1, true), out) end
    S.write(dir .. "/ok.lua", S.calm_system)
    out, code = S.sh(("%q check -c %q --plugins %q leaky"):format(S.bin, dir .. "/ok.lua", plugins))
    assert.are.equal(2, code, out)
    assert.is_truthy(out:find("leaky: unhealthy", 1, true), out)
    for _, sec in ipairs { PASS, KEY, TOKEN } do assert.is_falsy(out:find(sec, 1, true), out) end
  end)
end)

describe("write auth", function()
  local agent
  setup(function()
    agent = S.start { config = S.calm_system, env = { MONITORING_API_TOKEN = "tok-5678-abcd" } }
  end)
  teardown(function() if agent then agent:stop() end end)

  local function reload(headers) return (agent:post("/-/reload", "", headers)) end

  it("answers 400 to two Authorization headers, whatever they hold", function()
    assert.are.equal(400, reload { "Authorization: Bearer wrong", "Authorization: Bearer tok-5678-abcd" })
    assert.are.equal(400, reload { "Authorization: Bearer tok-5678-abcd", "Authorization: Bearer tok-5678-abcd" })
  end)

  it("takes the scheme in any case and ignores surrounding whitespace", function()
    assert.are.equal(200, reload { "Authorization: Bearer tok-5678-abcd" })
    assert.are.equal(200, reload { "Authorization: bearer tok-5678-abcd" })
    assert.are.equal(200, reload { "Authorization: BEARER    tok-5678-abcd   " })
    assert.are.equal(200, reload { "Authorization:    Bearer tok-5678-abcd" })
  end)

  it("refuses anything else", function()
    assert.are.equal(401, reload())
    assert.are.equal(401, reload { "Authorization: Bearer tok-5678-abc" })
    assert.are.equal(401, reload { "Authorization: Basic tok-5678-abcd" })
    assert.are.equal(401, reload { "Authorization: Bearertok-5678-abcd" })
    assert.are.equal(401, reload { "Authorization: Bearer tok-5678-abcd extra" })
  end)
end)

describe("builtin_rules", function()
  local function names(agent)
    local _, o = agent:get_json("/alerts/rules")
    local out = {}
    for _, r in ipairs(o.rules) do if r.name then out[r.name] = true end end
    return out
  end

  it("loads the built-in rules with --rules by default, and only --rules when false", function()
    local rdir = S.tmpdir()
    S.write(rdir .. "/mine.lua", 'alert "mine" { metric = "m", condition = ">", threshold = 1 }\n')
    local a = S.start { config = S.calm_system, args = { "--rules", rdir } }
    local both = names(a)
    a:stop()
    assert.is_true(both.mine)
    assert.is_true(both.high_cpu_usage)
    local b = S.start { config = S.calm_system .. "builtin_rules = false\n", args = { "--rules", rdir } }
    local only = names(b)
    b:stop()
    assert.is_true(only.mine)
    assert.is_nil(only.high_cpu_usage)
  end)

  it("is what --help says", function()
    local out = S.sh(("%q run --help"):format(S.bin))
    assert.is_truthy(out:find("builtin_rules = false", 1, true), out)
  end)
end)

describe("settings that do nothing yet", function()
  local NOT_YET = { "performance_sampling_rate", "enable_profiling" }

  it("say so in docs/configuration.md", function()
    local doc = S.read(S.src .. "/docs/configuration.md")
    for _, name in ipairs(NOT_YET) do
      local row = doc:match("\n(| `" .. name .. "` |[^\n]*)")
      assert.is_truthy(row, name)
      assert.is_truthy(row:find("not yet", 1, true), row)
    end
  end)

  it("say so in the log when set", function()
    local a = S.start { config = S.calm_system .. "performance_sampling_rate = 0.5\n" }
    local log = a:logtext()
    a:stop()
    local said
    for line in log:gmatch("[^\n]+") do
      if line:find('msg="setting has no effect yet"', 1, true) and line:find("setting=performance_sampling_rate", 1, true) then
        said = line
      end
    end
    assert.is_truthy(said, log)
  end)
end)
