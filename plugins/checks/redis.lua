-- Redis speaks RESP over ctx.tcp: AUTH when a password is set, PING -> PONG, and INFO when
-- fields of it are asked for (details and gauges). No client library.

local proto = require "beagle.proto"

local MAX_LINE = 64 * 1024 -- a simple string, error or length line longer than this is refused
local MAX_BULK = 1024 * 1024 -- a bulk string (INFO answers with some kilobytes) at most this long
local MAX_TOTAL = 2 * 1024 * 1024 -- bytes read in one session, at most
local MAX_DEPTH = 8 -- nested arrays (none of our commands answers with one)
local MAX_ELEMENTS = 1024

-- command{ "AUTH", "user", "pass" } -> RESP array of bulk strings
local function command(args)
  local out = { ("*%d\r\n"):format(#args) }
  for _, a in ipairs(args) do
    a = tostring(a)
    out[#out + 1] = ("$%d\r\n%s\r\n"):format(#a, a)
  end
  return table.concat(out)
end

-- at most 40 bytes of s, for a message: control bytes, quotes and backslashes as \xNN
local function printable(s)
  return (s:sub(1, 40):gsub(".", function(c)
    local b = c:byte()
    if b < 32 or b > 126 or c == '"' or c == "\\" then return ("\\x%02x"):format(b) end
  end))
end

-- parse_reply(buf, pos, depth) -> value, next position | nil (more bytes needed) | nil, nil, err.
-- value: { type = "+"|"-"|":"|"$"|"*", value = string|number|nil (a null)|{ values } }.
local function parse_reply(buf, pos, depth)
  pos, depth = pos or 1, depth or 0
  if #buf < pos then return nil end
  local t = buf:sub(pos, pos)
  local eol = buf:find("\r\n", pos + 1, true)
  if not eol then
    if #buf - pos > MAX_LINE then return nil, nil, ("a reply line longer than %d bytes"):format(MAX_LINE) end
    if not t:match("^[%+%-:%$%*]$") then
      return nil, nil, ("unexpected reply \"%s\" (not Redis?)"):format(printable(buf:sub(pos)))
    end
    return nil
  end
  if eol - pos > MAX_LINE then return nil, nil, ("a reply line longer than %d bytes"):format(MAX_LINE) end
  local line = buf:sub(pos + 1, eol - 1)
  local after = eol + 2
  if t == "+" or t == "-" then return { type = t, value = line }, after end
  if t == ":" then
    local n = tonumber(line:match("^%-?%d+$"))
    if not n then return nil, nil, ("malformed integer reply \"%s\""):format(printable(line)) end
    return { type = t, value = n }, after
  end
  if t == "$" or t == "*" then
    local n = tonumber(line:match("^%-?%d+$"))
    if not n or n < -1 then return nil, nil, ("malformed length \"%s\""):format(printable(line)) end
    if n == -1 then return { type = t }, after end
    if t == "$" then
      if n > MAX_BULK then return nil, nil, ("a bulk reply of %d bytes exceeds the %d-byte limit"):format(n, MAX_BULK) end
      if #buf < after + n + 1 then return nil end
      if buf:sub(after + n, after + n + 1) ~= "\r\n" then return nil, nil, "bulk reply not ended by CRLF" end
      return { type = t, value = buf:sub(after, after + n - 1) }, after + n + 2
    end
    if n > MAX_ELEMENTS then return nil, nil, ("an array of %d elements exceeds the limit of %d"):format(n, MAX_ELEMENTS) end
    if depth >= MAX_DEPTH then return nil, nil, "arrays nested too deep" end
    local items, p = {}, after
    for i = 1, n do
      local v, nxt, err = parse_reply(buf, p, depth + 1)
      if not v then return nil, nil, err end
      items[i], p = v, nxt
    end
    return { type = t, value = items }, p
  end
  return nil, nil, ("unexpected reply \"%s\" (not Redis?)"):format(printable(buf:sub(pos)))
end

-- parse_info(text) -> { field = value (a number when it is one) }
local function parse_info(text)
  local out = {}
  for line in text:gmatch("[^\r\n]+") do
    if line:sub(1, 1) ~= "#" then
      local k, v = line:match("^([^:]+):(.*)$")
      if k then out[k] = tonumber(v) or v end
    end
  end
  return out
end

local function reader(conn)
  return proto.reader(conn, function(buf)
    local v, nxt, err = parse_reply(buf, 1)
    if v then return v, nxt - 1 end
    return nil, nil, err
  end, MAX_TOTAL, "reply")
end

-- session(conn, opt) -> ok, message, details, info (the INFO fields asked for, or nil)
local function session(conn, opt)
  local details = {}
  local rd = reader(conn)
  local function fail(msg) return false, msg, details end
  local function call(args)
    local ok, err = conn:write(command(args))
    if not ok then return nil, "write: " .. tostring(err) end
    return rd.next()
  end
  local function text(v) return type(v.value) == "string" and v.value or tostring(v.value) end
  if opt.password then
    local args = { "AUTH", opt.password }
    if opt.username then args = { "AUTH", opt.username, opt.password } end
    local v, err = call(args)
    if not v then return fail(err) end
    if v.type == "-" then return fail("AUTH: " .. text(v)) end
    if v.type ~= "+" or v.value ~= "OK" then return fail(("AUTH: unexpected reply \"%s\""):format(printable(text(v)))) end
  end
  local v, err = call { "PING" }
  if not v then return fail(err) end
  if v.type == "-" then return fail("PING: " .. text(v)) end
  if not ((v.type == "+" or v.type == "$") and v.value == "PONG") then
    return fail(("PING: expected PONG, got \"%s\""):format(printable(v.value and text(v) or "(null)")))
  end
  local fields = opt.info_fields
  local info
  if fields and #fields > 0 then
    v, err = call { "INFO" }
    if not v then return fail(err) end
    if v.type == "-" then return fail("INFO: " .. text(v)) end
    if v.type ~= "$" or not v.value then return fail("INFO: expected a bulk reply") end
    local all = parse_info(v.value)
    info = {}
    local missing = {}
    for _, f in ipairs(fields) do
      f = tostring(f)
      if all[f] ~= nil then info[f] = all[f] else missing[#missing + 1] = f end
    end
    details.info = info
    if #missing > 0 then details.info_missing = table.concat(missing, ", ") end
    details.redis_version = all.redis_version
    details.role = all.role
  end
  conn:write(command { "QUIT" })
  return true, "PONG", details, info
end

local function name_part(s)
  s = s:gsub("[^%w_]+", "_")
  if #s > 100 then s = s:sub(1, 100) end
  return s
end

return beagle.check {
  name = "redis",
  description = "Redis: AUTH, PING -> PONG over RESP, optionally INFO fields as details and gauges",
  options = {
    host = { "string", description = "host name or address of the server" },
    port = { "integer", default = 6379, description = "TCP port" },
    username = { "string", optional = true, description = "ACL user for AUTH (Redis 6 and later); needs password" },
    password = { "secret", optional = true, description = "password: AUTH is sent first when it is set" },
    info_fields = { "list", optional = true,
      description = "INFO fields to report, e.g. { \"connected_clients\", \"used_memory\" }" },
    metrics = { "boolean", default = true, description = "record numeric INFO fields as gauges check.<name>.<field>" },
    slow = { "duration", default = "1s", description = "response time above which the check is degraded" },
  },
  command = command,
  parse_reply = parse_reply,
  parse_info = parse_info,
  session = session,
  -- at load (and reload): what the option types cannot say
  validate = function(opt)
    local perr = proto.port_error(opt.port)
    if perr then return perr end
    if opt.username and not opt.password then return "option username: needs password" end
  end,
  run = function(opt, ctx)
    local t0 = ctx.now()
    local where = proto.address(opt.host, opt.port)
    local conn, err = ctx.tcp.connect(opt.host, opt.port)
    if not conn then
      return ctx.unhealthy(("%s: %s"):format(where, err), { response_time = ctx.now() - t0 })
    end
    local ok, msg, details, info = session(conn, opt)
    conn:close()
    local elapsed = ctx.now() - t0
    details.response_time = elapsed
    if not ok then return ctx.unhealthy(("%s: %s"):format(where, msg), details) end
    if info and opt.metrics then
      local prefix = "check." .. name_part(ctx.name) .. "."
      for k, val in pairs(info) do
        if type(val) == "number" then pcall(beagle.set_gauge, prefix .. name_part(k), val) end
      end
    end
    if elapsed > opt.slow then
      return ctx.degraded(("responding slowly: %.2fs (slow = %gs)"):format(elapsed, opt.slow), details)
    end
    return ctx.healthy(("%s in %.3fs"):format(msg, elapsed), details)
  end,
}
