-- SurrealDB over its HTTP API, the monitoring guide's database health example: GET /health,
-- then POST /sql with `SELECT time::now()` (Basic auth, namespace and database headers), the
-- JSON answer's statement status "OK".
local json = require "beagle.json"

local MAX_BODY = 1024 * 1024

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = {}
    for k = 1, 4 do
      local idx = math.floor(n / 64 ^ (4 - k)) % 64
      q[k] = B64:sub(idx + 1, idx + 1)
    end
    if not b then q[3], q[4] = "=", "="
    elseif not c then q[4] = "=" end
    out[#out + 1] = table.concat(q)
  end
  return table.concat(out)
end

local function short(s, max)
  s = tostring(s):gsub("[%c]", " ")
  if #s > max then s = s:sub(1, max) .. "..." end
  return s
end

-- headers(opt) -> the request headers of the SQL query
local function headers(opt)
  local h = { Accept = "application/json", ["Content-Type"] = "text/plain" }
  if opt.user then h.Authorization = "Basic " .. base64(opt.user .. ":" .. (opt.password or "")) end
  if opt.namespace then h["Surreal-NS"], h.NS = opt.namespace, opt.namespace end
  if opt.database then h["Surreal-DB"], h.DB = opt.database, opt.database end
  return h
end

-- parse_sql_response(status, body) -> result of the first statement | nil, err
local function parse_sql_response(status, body)
  local doc = json.decode(body or "")
  if status ~= 200 then
    local why = type(doc) == "table" and (doc.information or doc.description or doc.details) or nil
    if type(why) ~= "string" then why = (body or ""):match("^%s*(.-)%s*$") end
    return nil, ("HTTP %d%s"):format(status, why ~= "" and (": " .. short(why, 300)) or "")
  end
  if type(doc) ~= "table" then return nil, "the answer is not JSON" end
  local first = doc[1]
  if type(first) ~= "table" then return nil, "the answer holds no statement result" end
  if first.status ~= "OK" then
    local why = type(first.result) == "string" and first.result or first.detail or "no reason given"
    return nil, ("status %s: %s"):format(short(first.status or "missing", 20), short(why, 300))
  end
  return first.result
end

return beagle.check {
  name = "surrealdb",
  description = "SurrealDB: GET /health, then SELECT time::now() over the HTTP SQL endpoint with auth",
  options = {
    url = { "string", description = "base URL of the server, e.g. http://127.0.0.1:8000" },
    user = { "string", optional = true, description = "user for HTTP Basic authentication" },
    password = { "secret", optional = true, description = "password for HTTP Basic authentication" },
    namespace = { "string", optional = true, description = "namespace (sent as Surreal-NS and NS)" },
    database = { "string", optional = true, description = "database (sent as Surreal-DB and DB)" },
    insecure = { "boolean", default = false, description = "do not verify the TLS certificate (https://)" },
    slow = { "duration", default = "1s", description = "response time above which the check is degraded" },
  },
  base64 = base64,
  headers = headers,
  parse_sql_response = parse_sql_response,
  -- at load (and reload): what the option types cannot say
  validate = function(opt)
    if not opt.url:lower():match("^https?://[^/]") then
      return ("option url: %q is not an http:// or https:// URL"):format(opt.url)
    end
  end,
  run = function(opt, ctx)
    local base = opt.url:gsub("/+$", "")
    local t0 = ctx.now()
    local details = {}
    local function fail(msg)
      details.response_time = ctx.now() - t0
      return ctx.unhealthy(msg, details)
    end
    local res, err = ctx.http.get(base .. "/health", { insecure = opt.insecure, max_body = MAX_BODY })
    if not res then return fail("GET /health: " .. tostring(err)) end
    details.health_status = res.status
    if res.status ~= 200 then
      return fail(("GET /health: HTTP %d%s"):format(res.status,
        res.body ~= "" and (": " .. short(res.body, 200)) or ""))
    end
    res, err = ctx.http.request { method = "POST", url = base .. "/sql", body = "SELECT time::now() AS current_time;",
      headers = headers(opt), insecure = opt.insecure, max_body = MAX_BODY }
    if not res then return fail("POST /sql: " .. tostring(err)) end
    local result, perr = parse_sql_response(res.status, res.body)
    if not result then return fail("POST /sql: " .. perr) end
    if type(result) == "table" and type(result[1]) == "table" and type(result[1].current_time) == "string" then
      details.server_time = result[1].current_time
    end
    local elapsed = ctx.now() - t0
    details.response_time = elapsed
    if elapsed > opt.slow then
      return ctx.degraded(("Database responding slowly: %.2fs (slow = %gs)"):format(elapsed, opt.slow), details)
    end
    return ctx.healthy(("Database is healthy (%.3fs)"):format(elapsed), details)
  end,
}
