-- The surrealdb check's pieces (plugins/checks/surrealdb.lua): the Basic auth header's base64,
-- the request headers, and the reading of SurrealDB's JSON answers, good, failed and hostile.
local D = require "db_support"

local P = D.load_plugin("surrealdb")

describe("surrealdb check: answers", function()
  it("encodes Basic credentials as RFC 4648 base64", function()
    assert.are.equal("", P.base64(""))
    assert.are.equal("Zg==", P.base64("f"))
    assert.are.equal("Zm8=", P.base64("fo"))
    assert.are.equal("Zm9v", P.base64("foo"))
    assert.are.equal("Zm9vYmFy", P.base64("foobar"))
    assert.are.equal("cm9vdDpzM2NyZXQ=", P.base64("root:s3cret"))
    assert.are.equal(D.b64encode("\0\255\128:\1x"), P.base64("\0\255\128:\1x"))
  end)

  it("sends the namespace and database under both header names, and auth only with a user", function()
    local h = P.headers { user = "root", password = "pw", namespace = "ns1", database = "db1" }
    assert.are.equal("Basic " .. P.base64("root:pw"), h.Authorization)
    assert.are.equal("ns1", h["Surreal-NS"])
    assert.are.equal("ns1", h.NS)
    assert.are.equal("db1", h["Surreal-DB"])
    assert.are.equal("db1", h.DB)
    assert.are.equal("application/json", h.Accept)
    h = P.headers {}
    assert.is_nil(h.Authorization)
    assert.is_nil(h.NS)
  end)

  it("reads the first statement's result", function()
    local r = P.parse_sql_response(200, '[{"result":[{"current_time":"2026-12-08T03:00:00Z"}],"status":"OK","time":"1ms"}]')
    assert.are.equal("2026-12-08T03:00:00Z", r[1].current_time)
  end)

  it("reports failed statements, HTTP errors and answers that are not SurrealDB's", function()
    local function fails(status, body)
      local r, err = P.parse_sql_response(status, body)
      assert.is_nil(r)
      return err
    end
    assert.are.equal("status ERR: Specify a namespace to use",
      fails(200, '[{"result":"Specify a namespace to use","status":"ERR","time":"1µs"}]'))
    assert.are.equal("HTTP 401: There was a problem with authentication",
      fails(401, '{"code":401,"details":"Authentication failed","information":"There was a problem with authentication"}'))
    assert.are.equal("HTTP 502: bad gateway", fails(502, "bad gateway\n"))
    assert.are.equal("HTTP 500", fails(500, ""))
    assert.are.equal("the answer is not JSON", fails(200, "<html>hello</html>"))
    assert.are.equal("the answer holds no statement result", fails(200, "[]"))
    assert.are.equal("the answer holds no statement result", fails(200, '{"status":"OK"}'))
    assert.are.equal("status missing: no reason given", fails(200, '[{"result":[]}]'))
    local long = fails(200, '[{"status":"ERR","result":"' .. ("x"):rep(5000) .. '"}]')
    assert.is_true(#long < 350, tostring(#long))
    assert.truthy(fails(400, ("\1"):rep(1000)):find("^HTTP 400: "))
  end)
end)
