-- The Lua side of the HTTP router: one dispatcher over the routes the services own
-- (`svc:routes()` -> { { method, pattern, handler(req, capture)[, template] }, ... }), the JSON
-- error shape every route answers with, and the rule for write routes (auth). The hot routes
-- (/health, /health/ready, /health/live, /metrics) are answered in C and never reach here.
-- Each route has a template after OpenTelemetry's http.route ("/health/{name}"), given or made
-- from its pattern, which the C server names the request's span with (`GET /health/{name}`).
local util = require "agent.util"
local json = require "beagle.json"

local M = {}
M.__index = M

-- status, content type, body of the error every route answers with.
function M.err_json(status, msg, extra)
  local o = extra or {}
  o.error, o.status = msg, status
  return status, "application/json", json.encode(o)
end

-- Compares in time independent of where the first difference is.
local function same(a, b)
  if #a ~= #b then return false end
  local diff = 0
  for i = 1, #a do diff = bit.bor(diff, bit.bxor(a:byte(i), b:byte(i))) end
  return diff == 0
end

-- A write is allowed with the api_token as a Bearer token, or from loopback when no token is
-- set. The scheme is case-insensitive and whitespace around the credentials is ignored (RFC
-- 9110 11.1); a request with two Authorization headers is refused whatever they hold, as is
-- one that repeats a credential in one header ("Bearer a, Bearer b"). Returns true, or false,
-- http status, why.
function M.authorized(settings, req)
  local rep = req.repeated
  if rep and rep.authorization then
    return false, 400, "more than one Authorization header: send exactly one"
  end
  local token = settings.api_token
  if token ~= "" then
    local h = req.headers["authorization"] or ""
    local scheme, cred = h:match("^[ \t]*(%S+)[ \t]+(.-)[ \t]*$")
    if not scheme or scheme:lower() ~= "bearer" or not same(cred, token) then
      return false, 401, "a valid Authorization: Bearer token is required"
    end
    return true
  end
  if not req.loopback then
    return false, 403, "writes are accepted from loopback clients only when no api_token is set"
  end
  return true
end

-- The route template of a pattern: anchors and optional trailing slashes dropped, escapes
-- undone, each capture "{name}" ("^/alerts/rules/([^/]+)$" -> "/alerts/rules/{name}").
function M.template(pattern)
  local t = pattern:gsub("^%^", ""):gsub("%$$", ""):gsub("/%?$", "")
  t = t:gsub("%b()", "{name}"):gsub("%%(%p)", "%1")
  return t == "" and "/" or t
end

-- new({ route list, ... }): patterns keep the order they first appear in; a pattern's methods
-- are merged, so a 405 names every method any service serves on that path.
function M.new(lists)
  local self = setmetatable({ entries = {} }, M)
  local by_pattern = {}
  for _, list in ipairs(lists) do
    for _, r in ipairs(list) do
      local method, pattern, handler = r[1], r[2], r[3]
      local e = by_pattern[pattern]
      if not e then
        e = { pattern = pattern, methods = {}, template = r[4] or M.template(pattern) }
        by_pattern[pattern] = e
        self.entries[#self.entries + 1] = e
      end
      if e.methods[method] then error(("route %s %s is served twice"):format(method, pattern)) end
      e.methods[method] = handler
    end
  end
  return self
end

-- The first route whose pattern matches answers; HEAD is served as GET. Returns status,
-- content type, body, extra header lines or nil, the route's template or nil (no route); the
-- body with every secret redacted (util.redact).
function M:handle(req)
  local st, ct, body, extra, template = self:dispatch(req)
  if type(body) == "string" then body = util.redact(body) end
  return st, ct, body, extra, template
end

function M:dispatch(req)
  for _, e in ipairs(self.entries) do
    local caps = { req.path:match(e.pattern) }
    if caps[1] ~= nil or req.path:match(e.pattern) then
      local method = req.method == "HEAD" and "GET" or req.method
      local h = e.methods[method]
      if not h then
        local allow = util.sorted_keys(e.methods)
        local st, ct, body = M.err_json(405, ("method %s is not allowed on %s"):format(req.method, req.path),
          { allow = json.array(allow) })
        return st, ct, body, "Allow: " .. table.concat(allow, ", ") .. "\r\n", e.template
      end
      local st, ct, body, extra = h(req, caps[1] ~= req.path and caps[1] or nil)
      return st, ct, body, extra, e.template
    end
  end
  return M.err_json(404, ("no route for %s"):format(req.path))
end

return M
