-- util.redact, util.url_decode and util.problem, and the router's auth rule (issue 14 §1, §4).
local util = require "agent.util"
local router = require "agent.router"

describe("util.redact", function()
  after_each(function() util.set_secrets("spec", {}) end)

  it("hides URL userinfo and credential query values, keeps the rest", function()
    assert.are.equal("https://***@h.example/p?key=***&team=ops#x",
      util.redact("https://user:pw@h.example/p?key=abc123&team=ops#x"))
    assert.are.equal('{"u":"http://***@127.0.0.1:9/a?api_key=***&Token=***"}',
      util.redact('{"u":"http://alice@127.0.0.1:9/a?api_key=k1&Token=t2"}'))
    assert.are.equal("GET /x?page=2&sort=name", util.redact("GET /x?page=2&sort=name"))
    assert.are.equal("mailto:a@b.c and a@b.c", util.redact("mailto:a@b.c and a@b.c"))
  end)

  it("hides every registered secret, the longest first, and not the too-short ones", function()
    util.set_secrets("spec", { "hunter22", "hunter2222", "abc" })
    assert.are.equal("*** then *** then abc", util.redact("hunter2222 then hunter22 then abc"))
    util.set_secrets("spec", {})
    assert.are.equal("hunter22", util.redact("hunter22"))
  end)

  it("keeps each owner's list until that owner replaces it", function()
    util.set_secrets("spec", { "first-secret" })
    util.set_secrets("other", { "second-secret" })
    assert.are.equal("*** ***", util.redact("first-secret second-secret"))
    util.set_secrets("other", {})
    assert.are.equal("*** second-secret", util.redact("first-secret second-secret"))
  end)
end)

describe("util.url_decode", function()
  it("decodes percent escapes, keeps +, refuses a stray %", function()
    assert.are.equal("a b/c", util.url_decode("a%20b%2Fc"))
    assert.are.equal("a+b", util.url_decode("a+b"))
    assert.is_nil(util.url_decode("a%2"))
    assert.is_nil(util.url_decode("100%"))
    assert.is_nil(util.url_decode("%zz"))
  end)
end)

describe("util.problem", function()
  it("splits file:line: message, and restores a file name Lua shortened", function()
    assert.are.same({ file = "/etc/b.lua", line = 3, message = "bad" }, util.problem("/etc/b.lua:3: bad"))
    assert.are.same({ file = "/a/very/long/dir/beagle.lua", line = 7, message = "x" },
      util.problem("...ong/dir/beagle.lua:7: x", "/a/very/long/dir/beagle.lua"))
    assert.are.same({ file = "f.lua", message = "no line here" }, util.problem("no line here", "f.lua"))
  end)
end)

describe("router.authorized", function()
  local s = { api_token = "tok-1234" }
  local function auth(h, repeated, loopback)
    local ok, st = router.authorized(s, { headers = { authorization = h }, repeated = repeated, loopback = loopback })
    return ok and 200 or st
  end

  it("accepts the Bearer token in any case, whitespace around it ignored", function()
    assert.are.equal(200, auth("Bearer tok-1234"))
    assert.are.equal(200, auth("bearer tok-1234"))
    assert.are.equal(200, auth("  BeArEr   tok-1234  "))
    assert.are.equal(200, auth("Bearer\ttok-1234"))
  end)

  it("refuses another token, scheme or shape with 401", function()
    assert.are.equal(401, auth(nil))
    assert.are.equal(401, auth("Bearer tok-123"))
    assert.are.equal(401, auth("Bearer tok-12345"))
    assert.are.equal(401, auth("Basic tok-1234"))
    assert.are.equal(401, auth("Bearertok-1234"))
    assert.are.equal(401, auth("Bearer tok-1234, Bearer tok-1234"))
  end)

  it("refuses two Authorization headers with 400, token or not", function()
    assert.are.equal(400, auth("Bearer x, Bearer tok-1234", { authorization = true }))
    local ok, st = router.authorized({ api_token = "" }, { headers = {}, repeated = { authorization = true },
      loopback = true })
    assert.is_false(ok)
    assert.are.equal(400, st)
  end)
end)
