-- The http check's pure parts: the expected status set, the JSON path syntax of expect_json and
-- the checks of a decoded body against it.
local json = require "beagle.json"
local F = require "check_fixture"
local load_plugin, opts = F.load_check, F.opts

describe("http check", function()
  local P = load_plugin("http")

  describe("expect_status", function()
    it("takes one status, a list, and classes", function()
      local s = assert(P.status_set({ 200 }))
      assert.are.equal("200", s.text)
      assert.is_true(s.codes[200])
      s = assert(P.status_set({ 200, 204, "3xx" }))
      assert.are.equal("one of 200, 204, 3xx", s.text)
      assert.is_true(s.classes[3])
      assert.is_nil(s.codes[301])
      s = assert(P.status_set({ "201" }))
      assert.is_true(s.codes[201])
    end)

    it("names the bad item", function()
      local s, err = P.status_set({ 200, 99 })
      assert.is_nil(s)
      assert.are.equal('option expect_status: item 2 (99) is not a status 100..599 or a class such as "2xx"', err)
      assert.matches("item 1 %(6xx%)", select(2, P.status_set({ "6xx" })))
      assert.matches("item 1 %(200.5%)", select(2, P.status_set({ 200.5 })))
      assert.are.equal("option expect_status: the list is empty", select(2, P.status_set({})))
    end)
  end)

  describe("JSON paths", function()
    it("parses keys, indexes from 0 and quoted keys", function()
      assert.are.same({ "data", "status" }, P.parse_path("data.status"))
      assert.are.same({ "data", "status" }, P.parse_path("$.data.status"))
      assert.are.same({ "data", "status" }, P.parse_path(".data.status"))
      assert.are.same({ "items", { index = 0 }, "name" }, P.parse_path("items[0].name"))
      assert.are.same({ { index = 2 } }, P.parse_path("[2]"))
      assert.are.same({ "a.b", "c" }, P.parse_path('["a.b"].c'))
      assert.are.same({ "x-y", "z" }, P.parse_path("x-y.z"))
    end)

    it("rejects malformed ones, saying where", function()
      assert.matches("bad %[ at 6", select(2, P.parse_path("items[x]")))
      assert.matches("empty key at 6", select(2, P.parse_path("data..x")))
      assert.matches("empty key", select(2, P.parse_path("data.")))
      assert.matches("non%-empty string", select(2, P.parse_path("")))
      assert.matches("non%-empty string", select(2, P.parse_path(3)))
      assert.matches("names no field", select(2, P.parse_path("$")))
      assert.matches("expected %. or %[", select(2, P.parse_path('["a"]b')))
    end)

    it("finds values, and where a path stops", function()
      local doc = json.decode('{"data":{"status":"ok","items":[{"n":1},{"n":2}],"on":true,"none":null}}')
      assert.are.equal("ok", P.json_at(doc, P.parse_path("data.status")))
      assert.are.equal(2, P.json_at(doc, P.parse_path("data.items[1].n")))
      assert.are.equal(true, P.json_at(doc, P.parse_path("data.on")))
      assert.are.equal(json.null, P.json_at(doc, P.parse_path("data.none")))
      assert.is_nil(P.json_at(doc, P.parse_path("data.items[2].n")))
      assert.are.same({ nil, 3 }, { P.json_at(doc, P.parse_path("data.status.x")) })
    end)
  end)

  describe("expect_json", function()
    local body = '{"data":{"status":"ok","count":3,"up":true,"list":[10,20],"nothing":null}}'
    it("holds when every field has its value", function()
      assert.is_nil(P.check_json({ ["data.status"] = "ok", ["data.count"] = 3, ["data.up"] = true,
        ["data.list[1]"] = 20, ["data.nothing"] = "*" }, body, json))
    end)
    it("says which field differs, is missing, or that the body is not JSON", function()
      assert.are.equal('json data.status is "ok", expected "degraded"',
        P.check_json({ ["data.status"] = "degraded" }, body, json))
      assert.are.equal('json data.count is 3, expected "3"', P.check_json({ ["data.count"] = "3" }, body, json))
      assert.are.equal("json data.list is an object or array, expected 1", P.check_json({ ["data.list"] = 1 }, body, json))
      assert.are.equal("json data.nothing is null, expected 1", P.check_json({ ["data.nothing"] = 1 }, body, json))
      assert.are.equal("json data.gone: no such field", P.check_json({ ["data.gone"] = "*" }, body, json))
      assert.matches("^body is not JSON: ", P.check_json({ a = 1 }, "<html>", json))
      assert.matches("^option expect_json: bad %[", P.check_json({ ["a[x]"] = 1 }, body, json))
    end)
  end)
end)

describe("tls_cert check", function()
  local P = load_plugin("tls_cert")
  it("counts days and levels them", function()
    assert.are.equal(2, P.days_left(1000 + 2 * 86400, 1000))
    assert.are.equal(-0.5, P.days_left(1000, 1000 + 43200))
    assert.are.equal("healthy", P.level(30, 30, 7))
    assert.are.equal("degraded", P.level(29.9, 30, 7))
    assert.are.equal("unhealthy", P.level(6.9, 30, 7))
    assert.are.equal("unhealthy", P.level(-1, 30, 7))
  end)
end)

describe("http and tls_cert checks: validate, at load", function()
  it("accepts the defaults and refuses what the option types cannot say, naming the option", function()
    local P = load_plugin("http")
    local u = { url = "http://x/" }
    assert.is_nil(P.validate(opts(P, u)))
    assert.is_nil(P.validate(opts(P, { url = "http://x/", expect_status = { "2xx", 301 },
      expect_json = { ["data.items[0].id"] = 1 }, client_cert = "/c.pem", client_key = "/k.pem" })))
    for _, case in ipairs {
      { { expect_status = {} }, "option expect_status: the list is empty" },
      { { expect_status = { 200, 99 } }, "option expect_status: item 2 (99)" },
      { { max_redirects = 51 }, "option max_redirects: 51 is outside 0..50" },
      { { url = "ftp://x/" }, 'option url: "ftp://x/" is not an http:// or https:// URL' },
      { { url = "x" }, 'option url: "x" is not an http:// or https:// URL' },
      { { max_redirects = -1 }, "option max_redirects: -1 is outside 0..50" },
      { { max_body = 0 }, "option max_body: 0 is not a number of bytes >= 1" },
      { { client_key = "/k.pem" }, "option client_key: given without client_cert" },
      { { expect_json = { ["a..b"] = 1 } }, "option expect_json: empty key at 3" },
      { { expect_json = { "x" } }, "option expect_json: a path must be a non-empty string" },
    } do
      case[1].url = case[1].url or u.url
      local err = P.validate(opts(P, case[1]))
      assert.is_string(err, case[2])
      assert.are.equal(1, select(2, err:gsub("^" .. case[2]:gsub("%p", "%%%0"), "")), err)
    end
  end)

  it("tls_cert: a port 1..65535, critical_days not above warn_days", function()
    local P = load_plugin("tls_cert")
    assert.is_nil(P.validate(opts(P, { host = "h" })))
    assert.is_nil(P.validate(opts(P, { host = "h", warn_days = 7, critical_days = 7 })))
    assert.are.equal("option port: 0 is not a TCP port (1..65535)", P.validate(opts(P, { host = "h", port = 0 })))
    assert.are.equal("option critical_days: 10 is above warn_days (5)",
      P.validate(opts(P, { host = "h", warn_days = 5, critical_days = 10 })))
  end)
end)
