-- agent.router's route templates: what names a request's server span ("GET /health/{name}")
-- and fills http.route, made from each pattern or given with the route.
local router = require "agent.router"

describe("router templates", function()
  it("are made from the patterns the services use", function()
    local cases = {
      ["^/alerts/?$"] = "/alerts",
      ["^/alerts/rules/([^/]+)$"] = "/alerts/rules/{name}",
      ["^/alerts/silences/([^/]+)$"] = "/alerts/silences/{name}",
      ["^/health/([^/]+)$"] = "/health/{name}",
      ["^/health/detailed$"] = "/health/detailed",
      ["^/%-/reload$"] = "/-/reload",
      ["^/metrics/performance$"] = "/metrics/performance",
      ["^/$"] = "/",
      ["^/a/([^/]+)/b/([^/]+)$"] = "/a/{name}/b/{name}",
    }
    for pattern, want in pairs(cases) do
      assert.equals(want, router.template(pattern), pattern)
    end
  end)

  it("come back as the fifth result of handle, for every outcome but no route", function()
    local r = router.new {
      { { "GET", "^/things/([^/]+)$", function(_, cap) return 200, "text/plain", "got " .. cap end },
        { "POST", "^/things/?$", function() return 201, "text/plain", "made", "X-A: 1\r\n" end },
        { "GET", "^/given$", function() return 200, "text/plain", "g" end, "/given/{custom}" } },
    }
    local _
    local st, ct, body, extra, route = r:handle { method = "GET", path = "/things/7" }
    assert.same({ 200, "text/plain", "got 7", nil, "/things/{name}" }, { st, ct, body, extra, route })
    st, _, _, extra, route = r:handle { method = "POST", path = "/things" }
    assert.same({ 201, "X-A: 1\r\n", "/things" }, { st, extra, route })
    -- a method the path does not serve: 405, the route is still known
    st, _, _, extra, route = r:handle { method = "DELETE", path = "/things/7" }
    assert.equals(405, st)
    assert.equals("Allow: GET\r\n", extra)
    assert.equals("/things/{name}", route)
    -- HEAD is served as GET
    st, _, _, _, route = r:handle { method = "HEAD", path = "/things/7" }
    assert.same({ 200, "/things/{name}" }, { st, route })
    -- a template given with the route wins
    _, _, _, _, route = r:handle { method = "GET", path = "/given" }
    assert.equals("/given/{custom}", route)
    -- no route: no template
    st, _, _, _, route = r:handle { method = "GET", path = "/nothing" }
    assert.equals(404, st)
    assert.is_nil(route)
  end)
end)
