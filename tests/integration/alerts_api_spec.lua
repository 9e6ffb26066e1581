-- The /alerts write API (issue 14 §1): POST creates and never replaces (409; PUT replaces),
-- names in paths are percent-decoded, names are at most 256 bytes, and POST /alerts/test sees a
-- value written a moment ago.
local S = require "support"

describe("the /alerts write API", function()
  local agent, rdir
  setup(function()
    rdir = S.tmpdir()
    S.write(rdir .. "/file.lua", 'alert "from_file" { metric = "x", condition = ">", threshold = 1 }\n')
    -- history samples every 15 s (the default): a test must not wait for it
    agent = S.start { config = S.calm_system, args = { "--rules", rdir } }
  end)
  teardown(function() if agent then agent:stop() end end)

  local function rule(name)
    local _, o = agent:get_json("/alerts/rules")
    for _, r in ipairs(o.rules) do if r.name == name then return r end end
  end

  local function put(path, body) return S.http("PUT", agent.url .. path, body) end
  local function delete(path) return S.http("DELETE", agent.url .. path) end

  it("answers 409 to a POST of a name that exists, and PUT replaces it", function()
    local st, body = agent:post("/alerts/rules", '{"name":"dup","metric":"m","condition":">","threshold":1}')
    assert.are.equal(201, st, body)
    st, body = agent:post("/alerts/rules", '{"name":"dup","metric":"m","condition":">","threshold":2}')
    assert.are.equal(409, st, body)
    assert.is_truthy(S.json(body).error:find("PUT", 1, true), body)
    assert.are.equal(1, rule("dup").threshold)
    st, body = put("/alerts/rules/dup", '{"metric":"m","condition":">","threshold":3}')
    assert.are.equal(200, st, body)
    assert.are.equal(3, rule("dup").threshold)
    -- a file's rule is the file's: neither POST nor PUT takes its name
    st = agent:post("/alerts/rules", '{"name":"from_file","metric":"m","condition":">","threshold":2}')
    assert.are.equal(409, st)
    st = put("/alerts/rules/from_file", '{"metric":"m","condition":">","threshold":2}')
    assert.are.equal(409, st)
  end)

  it("refuses a PUT whose body names another rule", function()
    local st, body = put("/alerts/rules/dup", '{"name":"other","metric":"m","condition":">","threshold":3}')
    assert.are.equal(400, st, body)
  end)

  it("keeps the previous rule when a PUT does not validate", function()
    local st, body = put("/alerts/rules/dup", '{"metric":"m","condition":"bigger","threshold":9}')
    assert.are.equal(400, st, body)
    assert.are.equal(3, rule("dup").threshold)
  end)

  it("percent-decodes names in paths: a rule named 'a b' can be deleted", function()
    local st, body = agent:post("/alerts/rules", '{"name":"a b","metric":"m","condition":">","threshold":1}')
    assert.are.equal(201, st, body)
    assert.is_truthy(rule("a b"))
    st, body = delete("/alerts/rules/a%20b")
    assert.are.equal(200, st, body)
    assert.is_nil(rule("a b"))
    st, body = delete("/alerts/rules/a%zz")
    assert.are.equal(400, st, body)
  end)

  it("refuses names over 256 bytes", function()
    local long = ("n"):rep(257)
    local st, body = agent:post("/alerts/rules", ('{"name":"%s","metric":"m","condition":">","threshold":1}'):format(long))
    assert.are.equal(400, st, body)
    assert.is_truthy(S.json(body).error:find("256", 1, true), body)
    assert.is_nil(rule(long))
    local ok = agent:post("/alerts/rules", ('{"name":"%s","metric":"m","condition":">","threshold":1}'):format(("n"):rep(256)))
    assert.are.equal(201, ok)
  end)

  it("tests a rule against a value written a moment ago", function()
    local st, body = agent:post("/alerts/rules", '{"name":"fresh","metric":"fresh.value","condition":">","threshold":5}')
    assert.are.equal(201, st, body)
    st, body = agent:post("/metrics/custom", '{"name":"fresh.value","type":"gauge","value":42}')
    assert.are.equal(200, st, body)
    st, body = agent:post("/alerts/test/fresh", "")
    assert.are.equal(200, st, body)
    local o = S.json(body)
    assert.are.equal(1, #o.samples, body)
    assert.are.equal(42, o.samples[1].value, body)
    assert.are.equal(1, o.notifications, body)
  end)

  it("reports an alert name declared in two rule files in /alerts/rules", function()
    S.write(rdir .. "/again.lua", 'alert "from_file" { metric = "y", condition = ">", threshold = 7 }\n')
    local shown = S.wait(function()
      local _, o = agent:get_json("/alerts/rules")
      for _, r in ipairs(o.rules) do
        if r.file_error and r.file_error:find('"from_file" is also declared in', 1, true) then return r end
      end
    end, 5)
    assert.is_truthy(shown, agent:logtext())
    -- the new file is the one in error; the loaded one keeps its rule
    assert.are.equal(rdir .. "/again.lua", shown.file)
    assert.is_truthy(shown.file_error:find(rdir .. "/file.lua:1", 1, true), shown.file_error)
    assert.are.equal(1, rule("from_file").threshold)
    -- an API write in the meantime reloads only its own file: the refusal stays on view
    local st, body = agent:post("/alerts/rules", '{"name":"meanwhile","metric":"m","condition":">","threshold":1}')
    assert.are.equal(201, st, body)
    local _, o = agent:get_json("/alerts/rules")
    local still
    for _, r in ipairs(o.rules) do
      if r.file == rdir .. "/again.lua" and r.file_error then still = r end
    end
    assert.is_truthy(still, body)
    os.remove(rdir .. "/again.lua")
  end)
end)

describe("beagle rules check", function()
  it("reports an alert name declared in two files as an error", function()
    local d = S.tmpdir()
    S.write(d .. "/a.lua", 'alert "same" { metric = "m", condition = ">", threshold = 1 }\n')
    S.write(d .. "/b.lua", '\nalert "same" { metric = "m", condition = ">", threshold = 2 }\n')
    local out, code = S.sh(("%q rules check %q %q"):format(S.bin, d .. "/a.lua", d .. "/b.lua"))
    assert.are.equal(1, code, out)
    assert.is_truthy(out:find(d .. "/b.lua:2: alert \"same\": also declared in " .. d .. "/a.lua:1", 1, true), out)
  end)
end)
