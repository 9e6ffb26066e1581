-- README.md's "Write a check" example, exactly as printed there, run by the real agent against a
-- local HTTP server that answers {"depth": 5}: a reader who copies it gets a working check.
local S = require "support"

-- The first ```lua block of the "## Write a check" section, and the file name its first line
-- gives (-- plugins/checks/<name>.lua).
local function readme_example()
  local readme = assert(S.read(S.src .. "/README.md"), "no README.md")
  local section = readme:match("\n## Write a check\n(.-)\n## ")
  assert(section, 'README.md has no "## Write a check" section')
  local code = section:match("```lua\n(.-\n)```")
  assert(code, 'no ```lua block in "## Write a check"')
  local file = code:match("^%-%- plugins/checks/([%w_]+%.lua)\n")
  assert(file, "the example's first line does not name its file (-- plugins/checks/<name>.lua)")
  return code, file
end

describe("README's Write a check example", function()
  local code, file = readme_example()
  local name = file:gsub("%.lua$", "")
  local sink, agent, plugins

  setup(function()
    sink = S.sink()
    sink.control { status = 200, body = '{"depth": 5}' }
    plugins = S.tmpdir()
    assert(os.execute(("mkdir -p %q"):format(plugins .. "/checks")) == 0)
    S.write(plugins .. "/checks/" .. file, code)
  end)

  teardown(function()
    if agent then agent:stop() end
    if sink then sink.stop() end
  end)

  it("parses the reply with the public JSON decoder", function()
    assert.is_truthy(code:find('require "beagle.json"', 1, true) or code:find("require%(\"beagle%.json\"%)"),
      "the example does not use beagle.json")
    assert.is_falsy(code:find('match%(\'"depth"'), "the example still matches the JSON with a pattern")
  end)

  it('reports healthy with "depth 5", and unhealthy above max', function()
    local url = sink.url .. "/queue"
    agent = S.start {
      plugins = plugins,
      config = S.calm_system .. ([[
check %q { plugin = %q, url = %q, interval = "1s" }
check "queue_small" { plugin = %q, url = %q, max = 3, retries = 0, interval = "1s" }
]]):format(name, name, url, name, url),
    }
    local ok = agent:wait_check(name, function(o) return (o.runs or 0) > 0 end, 10)
    assert.is_table(ok, agent:logtext())
    local o = agent:check(name)
    assert.are.equal("healthy", o.status, o.message)
    assert.are.equal("depth 5", o.message)
    assert.are.same({ depth = 5 }, o.details)

    local small = agent:wait_check("queue_small", function(x) return x.status == "unhealthy" end, 10)
    assert.is_table(small, agent:logtext())
    assert.are.equal("depth 5", small.message)
    assert.are.equal(5, small.details.depth)

    -- the requests reached our server, at the configured path
    local seen = 0
    for _, r in ipairs(sink.requests()) do
      if r.path == "/queue" and r.method == "GET" then seen = seen + 1 end
    end
    assert.is_true(seen >= 2, "the sink saw " .. seen .. " requests")
  end)

  it("reports unknown when the reply has no depth, through beagle check", function()
    sink.control { body = '{"size": 5}' }
    local cfg = S.tmpdir() .. "/beagle.lua"
    S.write(cfg, ("check %q { plugin = %q, url = %q, retries = 0 }\n"):format(name, name, sink.url .. "/queue"))
    local out, code_ = S.sh(("%q check -c %q --plugins %q %s"):format(S.bin, cfg, plugins, name))
    assert.are.equal(3, code_, out)
    assert.is_truthy(out:find(name .. ": unknown", 1, true), out)
    assert.is_truthy(out:find("no depth in the reply", 1, true), out)
    sink.control { body = '{"depth": 5}' }
    out, code_ = S.sh(("%q check -c %q --plugins %q %s"):format(S.bin, cfg, plugins, name))
    assert.are.equal(0, code_, out)
    assert.is_truthy(out:find(name .. ": healthy %(%d+ms%) depth 5\n"), out)
  end)
end)
