-- MySQL and MariaDB greet every client with a handshake packet (protocol 10: server version,
-- connection id, capabilities) or an ERR packet ("Host ... is not allowed", "Too many
-- connections"). This check reads that first packet over ctx.tcp and closes. No client library.

local proto = require "beagle.proto"

local MAX_PACKET = 64 * 1024 -- a greeting is about 100 bytes; a longer packet is refused

local function le(s, i, n)
  local v = 0
  for k = n - 1, 0, -1 do
    local b = s:byte(i + k)
    if not b then return nil end
    v = v * 256 + b
  end
  return v
end

local function clean(s, max)
  s = s:gsub("[^\32-\126]", "?")
  if #s > max then s = s:sub(1, max) .. "..." end
  return s
end

-- parse_packet(buf) -> { seq, payload }, bytes used | nil (more needed) | nil, nil, err
local function parse_packet(buf)
  if #buf < 4 then return nil end
  local len = le(buf, 1, 3)
  if len > MAX_PACKET then
    return nil, nil, ("a packet of %d bytes exceeds the %d-byte limit (not MySQL?)"):format(len, MAX_PACKET)
  end
  if len == 0 then return nil, nil, "an empty packet (not MySQL?)" end
  if #buf < 4 + len then return nil end
  return { seq = buf:byte(4), payload = buf:sub(5, 4 + len) }, 4 + len
end

-- parse_error(payload) -> { code, sqlstate, message }
local function parse_error(p)
  local e = { code = le(p, 2, 2) }
  local i = 4
  if p:sub(i, i) == "#" then e.sqlstate = p:sub(i + 1, i + 5) i = i + 6 end
  e.message = clean(p:sub(i), 500)
  return e
end

local CLIENT_SSL = 0x800
local CLIENT_PLUGIN_AUTH = 0x80000

-- parse_handshake(payload) -> { protocol, server_version, connection_id, capabilities,
-- charset, status, auth_plugin, ssl } | nil, err
local function parse_handshake(p)
  local version = p:byte(1)
  if version ~= 10 then
    return nil, ("protocol version %s is not supported (10 is)"):format(tostring(version))
  end
  local z = p:find("\0", 2, true)
  if not z then return nil, "truncated handshake: no end to the server version" end
  local h = { protocol = 10, server_version = clean(p:sub(2, z - 1), 100) }
  local i = z + 1
  h.connection_id = le(p, i, 4)
  if not h.connection_id then return nil, "truncated handshake: no connection id" end
  i = i + 4 + 8 + 1 -- auth-plugin-data part 1, filler
  local cap = le(p, i, 2)
  if not cap then return nil, "truncated handshake: no capability flags" end
  i = i + 2
  if #p >= i + 4 then
    h.charset = p:byte(i)
    h.status = le(p, i + 1, 2)
    cap = cap + le(p, i + 3, 2) * 65536
    local auth_len = p:byte(i + 5)
    i = i + 6 + 10
    if bit.band(cap, CLIENT_PLUGIN_AUTH) ~= 0 and auth_len then
      i = i + math.max(13, auth_len - 8)
      local name = p:match("^([^%z]*)", i)
      if name and name ~= "" then h.auth_plugin = clean(name, 64) end
    end
  end
  h.capabilities = cap
  h.ssl = bit.band(cap, CLIENT_SSL) ~= 0
  -- MariaDB announces itself as "5.5.5-10.11.6-MariaDB" for old replication clients
  h.version = h.server_version:match("^5%.5%.5%-(.+MariaDB.*)$") or h.server_version
  return h
end

-- session(conn) -> ok, message, details
local function session(conn)
  local details = {}
  local buf, total = "", 0
  while true do
    local pkt, used, err = parse_packet(buf)
    if err then return false, err, details end
    if pkt then
      local p = pkt.payload
      if used < #buf then details.trailing_bytes = #buf - used end
      if p:byte(1) == 0xff then
        local e = parse_error(p)
        details.error_code = e.code
        details.sqlstate = e.sqlstate
        return false, ("ERROR %s%s: %s"):format(tostring(e.code), e.sqlstate and (" (" .. e.sqlstate .. ")") or "",
          e.message), details
      end
      local h, herr = parse_handshake(p)
      if not h then return false, herr, details end
      details.server_version = h.version
      details.connection_id = h.connection_id
      details.protocol_version = h.protocol
      details.auth_plugin = h.auth_plugin
      details.ssl = h.ssl
      return true, ("handshake from %s"):format(h.version), details
    end
    local data, rerr = conn:read()
    if not data then
      if rerr == "eof" or rerr == nil then
        return false, #buf > 0 and "the server closed the connection in the middle of its greeting"
          or "the server closed the connection without a greeting", details
      end
      return false, "read: " .. tostring(rerr), details
    end
    total = total + #data
    if total > MAX_PACKET + 4 then return false, "the server sent too much before its greeting ended", details end
    buf = buf .. data
  end
end

return beagle.check {
  name = "mysql",
  description = "MySQL or MariaDB: read the server's handshake packet (version, connection id) or its ERR packet",
  options = {
    host = { "string", description = "host name or address of the server" },
    port = { "integer", default = 3306, description = "TCP port" },
    slow = { "duration", default = "1s", description = "response time above which the check is degraded" },
  },
  parse_packet = parse_packet,
  parse_handshake = parse_handshake,
  parse_error = parse_error,
  session = session,
  -- at load (and reload): what the option types cannot say
  validate = function(opt)
    local perr = proto.port_error(opt.port)
    if perr then return perr end
  end,
  run = function(opt, ctx)
    local t0 = ctx.now()
    local where = proto.address(opt.host, opt.port)
    local conn, err = ctx.tcp.connect(opt.host, opt.port)
    if not conn then
      return ctx.unhealthy(("%s: %s"):format(where, err), { response_time = ctx.now() - t0 })
    end
    local ok, msg, details = session(conn)
    conn:close()
    local elapsed = ctx.now() - t0
    details.response_time = elapsed
    if not ok then return ctx.unhealthy(("%s: %s"):format(where, msg), details) end
    if elapsed > opt.slow then
      return ctx.degraded(("responding slowly: %.2fs (slow = %gs)"):format(elapsed, opt.slow), details)
    end
    return ctx.healthy(("%s in %.3fs"):format(msg, elapsed), details)
  end,
}
