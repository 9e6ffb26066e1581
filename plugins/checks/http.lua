-- An HTTP endpoint answers as expected (status, body, JSON fields), in time. Timings of each
-- phase from curl (dns, connect, tls, first_byte, total) go into the details and as gauges
-- check.http.<phase>_seconds{check} (one metric per phase: a metric holds 2,000 series at most).

-- expect_status's items -> a set: { [200] = true, classes = { [2] = true } } | nil, err
-- (an integer 100..599, or "2xx" for a class).
local function status_set(list)
  local set, names = { codes = {}, classes = {} }, {}
  if #list == 0 then return nil, "option expect_status: the list is empty" end
  for i, v in ipairs(list) do
    local class = type(v) == "string" and v:match("^([1-5])[xX][xX]$")
    local code = tonumber(v)
    if class then
      set.classes[tonumber(class)] = true
      names[#names + 1] = class .. "xx"
    elseif code and code % 1 == 0 and code >= 100 and code <= 599 then
      set.codes[code] = true
      names[#names + 1] = ("%d"):format(code)
    else
      return nil, ("option expect_status: item %d (%s) is not a status 100..599 or a class such as \"2xx\"")
        :format(i, tostring(v))
    end
  end
  set.text = #names == 1 and names[1] or "one of " .. table.concat(names, ", ")
  return set
end

local function status_ok(set, status)
  return set.codes[status] or set.classes[math.floor(status / 100)] or false
end

-- A JSON path "data.items[0].name" (a leading "$." or "." is allowed; ["a.b"] quotes a key)
-- -> list of steps: strings (object keys) and { index = n } (array elements, from 0) | nil, err.
local function parse_path(path)
  if type(path) ~= "string" or path == "" then return nil, "a path must be a non-empty string" end
  local steps, i, n = {}, 1, #path
  if path:sub(1, 1) == "$" then i = 2 end
  local first = true
  while i <= n do
    local c = path:sub(i, i)
    if c == "[" then
      local num, after = path:match("^%[(%d+)%]()", i)
      if num then
        steps[#steps + 1] = { index = tonumber(num) }
        i = after
      else
        local key, after2 = path:match('^%["([^"]*)"%]()', i)
        if not key then return nil, ("bad [ at %d in %q (use [0] or [\"key\"])"):format(i, path) end
        steps[#steps + 1] = key
        i = after2
      end
    else
      if c == "." then i = i + 1
      elseif not first then return nil, ("expected . or [ at %d in %q"):format(i, path) end
      local key, after = path:match("^([^%.%[]+)()", i)
      if not key then return nil, ("empty key at %d in %q"):format(i, path) end
      steps[#steps + 1] = key
      i = after
    end
    first = false
  end
  if #steps == 0 then return nil, ("%q names no field"):format(path) end
  return steps
end

-- The value at steps in a decoded document -> value | nil, where it stopped
local function json_at(doc, steps)
  local v = doc
  for k, s in ipairs(steps) do
    if type(v) ~= "table" then return nil, k end
    if type(s) == "table" then v = v[s.index + 1] else v = v[s] end
    if v == nil then return nil, k end
  end
  return v
end

local function show(v)
  if type(v) == "string" then return ("%q"):format(v) end
  if type(v) == "table" then return "an object or array" end
  if type(v) == "userdata" then return "null" end
  return tostring(v)
end

-- The expectations of expect_json, checked against a body: nil when all hold, else why.
local function check_json(expect, body, json)
  local doc, err = json.decode(body)
  if doc == nil then return "body is not JSON: " .. tostring(err) end
  local paths = {}
  for p in pairs(expect) do paths[#paths + 1] = p end
  table.sort(paths, function(a, b) return tostring(a) < tostring(b) end)
  for _, p in ipairs(paths) do
    local want = expect[p]
    local steps, perr = parse_path(p)
    if not steps then return "option expect_json: " .. perr end
    local got = json_at(doc, steps)
    if got == nil then return ("json %s: no such field"):format(p) end
    if want ~= "*" and (type(want) ~= type(got) or want ~= got) then -- "*": present, any value
      return ("json %s is %s, expected %s"):format(p, show(got), show(want))
    end
  end
end

local PHASES = { "dns", "connect", "tls", "first_byte", "total" }

return beagle.check {
  name = "http",
  description = "request a URL and expect a status, body or JSON fields within a time",
  options = {
    url = { "string", description = "URL to request" },
    method = { "string", default = "GET", description = "HTTP method" },
    headers = { "table", optional = true, description = "request headers, name = value" },
    body = { "string", optional = true, description = "request body (sent with any method)" },
    expect_status = { "list", default = 200,
      description = "status, or list of statuses or classes (\"2xx\"), that count as healthy" },
    expect_body = { "string", optional = true, description = "Lua pattern the body must match" },
    expect_body_contains = { "string", optional = true, description = "text the body must contain (plain, no pattern)" },
    expect_json = { "table", optional = true,
      description = "JSON path -> value the decoded body must hold, { [\"data.status\"] = \"ok\" }" },
    slow = { "duration", default = "1s", description = "response time above which the check is degraded" },
    insecure = { "boolean", default = false, description = "skip TLS certificate verification" },
    ca_file = { "string", optional = true, description = "PEM file of the CA certificates to verify the server with" },
    client_cert = { "string", optional = true, description = "PEM file of the client certificate (mutual TLS)" },
    client_key = { "string", optional = true, description = "PEM file of the client certificate's key" },
    follow = { "boolean", default = true, description = "follow redirects (the last answer is judged)" },
    max_redirects = { "integer", default = 10, description = "redirects followed at most; more is unhealthy" },
    max_body = { "integer", default = 262144,
      description = "bytes of response body read at most; a longer body is unhealthy" },
    metrics = { "boolean", default = true, description = "record the phase times as gauges check.http.<phase>_seconds{check}" },
  },
  status_set = status_set, parse_path = parse_path, json_at = json_at, check_json = check_json,
  -- at load (and reload): what the option types cannot say
  validate = function(opt)
    if not opt.url:lower():match("^https?://[^/]") then
      return ("option url: %q is not an http:// or https:// URL"):format(opt.url)
    end
    local set, serr = status_set(opt.expect_status)
    if not set then return serr end
    if opt.max_redirects < 0 or opt.max_redirects > 50 then
      return ("option max_redirects: %d is outside 0..50"):format(opt.max_redirects)
    end
    if opt.max_body < 1 then return ("option max_body: %d is not a number of bytes >= 1"):format(opt.max_body) end
    if opt.client_key and not opt.client_cert then return "option client_key: given without client_cert" end
    if opt.expect_json then
      local paths = {}
      for p in pairs(opt.expect_json) do paths[#paths + 1] = p end
      table.sort(paths, function(a, b) return tostring(a) < tostring(b) end)
      for _, p in ipairs(paths) do
        local steps, perr = parse_path(p)
        if not steps then return "option expect_json: " .. perr end
      end
    end
  end,
  run = function(opt, ctx)
    local set = assert(status_set(opt.expect_status)) -- validate refused any other at load
    local res, err = ctx.http.request {
      url = opt.url, method = opt.method, headers = opt.headers, body = opt.body,
      insecure = opt.insecure, follow = opt.follow, max_redirects = opt.follow and opt.max_redirects or nil,
      ca_file = opt.ca_file, client_cert = opt.client_cert, client_key = opt.client_key,
      max_body = opt.max_body,
    }
    if not res then return ctx.unhealthy(err) end
    local details = { status = res.status, time = res.time, bytes = #res.body, redirects = res.redirects,
      url = res.url }
    local t = res.timings
    if type(t) == "table" then
      for _, p in ipairs(PHASES) do
        details[p .. "_time"] = t[p]
        if opt.metrics and type(t[p]) == "number" then
          pcall(beagle.set_gauge, "check.http." .. p .. "_seconds", t[p], { check = ctx.name })
        end
      end
    end
    if not status_ok(set, res.status) then
      return ctx.unhealthy(("status %d, expected %s"):format(res.status, set.text), details)
    end
    if opt.expect_body_contains and not res.body:find(opt.expect_body_contains, 1, true) then
      return ctx.unhealthy(("body does not contain %q"):format(opt.expect_body_contains), details)
    end
    if opt.expect_body and not res.body:find(opt.expect_body) then
      return ctx.unhealthy(("body does not match %q"):format(opt.expect_body), details)
    end
    if opt.expect_json then
      local why = check_json(opt.expect_json, res.body, require "beagle.json")
      if why then return ctx.unhealthy(why, details) end
    end
    if res.time > opt.slow then
      return ctx.degraded(("slow: %.3fs"):format(res.time), details)
    end
    return ctx.healthy(("status %d in %.3fs"):format(res.status, res.time), details)
  end,
}
