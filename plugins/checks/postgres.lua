-- PostgreSQL speaks its own frontend/backend protocol (3.0) over ctx.tcp: a startup message,
-- the authentication the server asks for (trust, cleartext, MD5, SCRAM-SHA-256), a `SELECT 1`
-- round trip, Terminate. Or only the startup, answered as pg_isready answers. No client library.

local proto = require "beagle.proto"

local MAX_MESSAGE = 64 * 1024 -- a server message longer than this is refused (none we read is near)
local MAX_TOTAL = 1024 * 1024 -- bytes read in one session, at most (a flood of notices ends here)
local MAX_ITERATIONS = 1000000 -- SCRAM iteration count a server may ask for (PBKDF2's cost)

-- ---- bytes ----------------------------------------------------------------------------------

local function be32(s, i)
  local a, b, c, d = s:byte(i, i + 3)
  if not d then return nil end
  return ((a * 256 + b) * 256 + c) * 256 + d
end

local function int32(n)
  n = n % 4294967296
  return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
end

local function printable(c)
  local b = c:byte()
  if b >= 32 and b < 127 then return ("'%s' (0x%02x)"):format(c, b) end
  return ("0x%02x"):format(b)
end

-- ---- what the client sends -----------------------------------------------------------------

local function startup_message(user, database)
  local body = int32(196608) .. "user\0" .. user .. "\0" .. "database\0" .. database .. "\0"
    .. "application_name\0beagle\0\0"
  return int32(#body + 4) .. body
end

local function message(kind, body) return kind .. int32(#body + 4) .. body end

local function password_message(p) return message("p", p .. "\0") end

-- md5 auth: "md5" .. md5(md5(password .. user) .. salt), hex digits
local function md5_password(md5_hex, user, password, salt)
  local inner, err = md5_hex(password .. user)
  if not inner then return nil, err end
  local outer, err2 = md5_hex(inner .. salt)
  if not outer then return nil, err2 end
  return "md5" .. outer
end

local function query_message(sql) return message("Q", sql .. "\0") end

local TERMINATE = message("X", "")

-- ---- what the server sends -----------------------------------------------------------------

-- parse_message(buf, allowed) -> { type, body }, bytes used | nil (more bytes needed) |
-- nil, nil, err. allowed: the message types expected at this point (a set of letters).
local function parse_message(buf, allowed)
  if #buf < 1 then return nil end
  local t = buf:sub(1, 1)
  if allowed and not allowed[t] then
    return nil, nil, ("unexpected message type %s from the server (not PostgreSQL?)"):format(printable(t))
  end
  if #buf < 5 then return nil end
  local len = be32(buf, 2)
  if len < 4 then return nil, nil, ("message %s declares a length of %d"):format(printable(t), len) end
  if len > MAX_MESSAGE then
    return nil, nil, ("message %s of %d bytes exceeds the %d-byte limit"):format(printable(t), len, MAX_MESSAGE)
  end
  if #buf < len + 1 then return nil end
  return { type = t, body = buf:sub(6, len + 1) }, len + 1
end

-- ErrorResponse / NoticeResponse body -> { S =, V =, C =, M =, D =, H = ... }
local function parse_fields(body)
  local f, i = {}, 1
  while i <= #body do
    local code = body:sub(i, i)
    if code == "\0" then break end
    local z = body:find("\0", i + 1, true)
    if not z then f[code] = body:sub(i + 1) break end
    f[code] = body:sub(i + 1, z - 1)
    i = z + 1
  end
  return f
end

-- The text of an ErrorResponse: "FATAL: password authentication failed for user "x" (SQLSTATE 28P01)"
local function error_text(body)
  local f = parse_fields(body)
  local sev = f.V or f.S or "ERROR"
  local msg = f.M or "(no message)"
  if #msg > 500 then msg = msg:sub(1, 500) .. "..." end
  local text = ("%s: %s"):format(sev, msg)
  if f.C then text = text .. (" (SQLSTATE %s)"):format(f.C) end
  return text, f
end

-- DataRow body -> { column values, false for NULL } | nil, err
local function parse_data_row(body)
  if #body < 2 then return nil, "truncated DataRow" end
  local n = body:byte(1) * 256 + body:byte(2)
  local cols, i = {}, 3
  for c = 1, n do
    local len = be32(body, i)
    if not len then return nil, "truncated DataRow" end
    i = i + 4
    if len == 4294967295 then cols[c] = false
    else
      if len > #body - i + 1 then return nil, "DataRow column longer than the message" end
      cols[c] = body:sub(i, i + len - 1)
      i = i + len
    end
  end
  return cols
end

-- ParameterStatus body -> name, value
local function parse_parameter(body)
  return body:match("^([^%z]*)%z([^%z]*)%z$")
end

local AUTH_NAMES = { [2] = "Kerberos V5", [6] = "SCM credentials", [7] = "GSSAPI", [8] = "GSSAPI", [9] = "SSPI" }

-- ---- SCRAM-SHA-256 (RFC 5802, RFC 7677) ---------------------------------------------------------

local function xor(a, b)
  local out = {}
  for i = 1, #a do out[i] = string.char(bit.bxor(a:byte(i), b:byte(i))) end
  return table.concat(out)
end

-- server-first-message -> { r =, s = (base64), i = } | nil, err
local function parse_server_first(msg, client_nonce)
  local a = {}
  for part in (msg .. ","):gmatch("([^,]*),") do
    local k, v = part:match("^(%a)=(.*)$")
    if k and a[k] == nil then a[k] = v end
  end
  if a.m then return nil, "the server requires a SCRAM extension" end
  if not a.r or not a.s or not a.i then return nil, "malformed server-first-message" end
  if a.r:sub(1, #client_nonce) ~= client_nonce or #a.r <= #client_nonce then
    return nil, "the server's nonce does not extend ours"
  end
  local iterations = tonumber(a.i)
  if not iterations or iterations % 1 ~= 0 or iterations < 1 or iterations > MAX_ITERATIONS then
    return nil, ("iteration count %s is out of range (1..%d)"):format(a.i, MAX_ITERATIONS)
  end
  a.i = iterations
  return a
end

-- scram_final(crypto, password, client_first_bare, server_first, client_nonce) ->
-- client-final-message, expected server signature (raw) | nil, err
local function scram_final(crypto, password, client_first_bare, server_first, client_nonce)
  local a, err = parse_server_first(server_first, client_nonce)
  if not a then return nil, err end
  local salt = crypto.base64_decode(a.s)
  if not salt or salt == "" then return nil, "the server's salt is not base64" end
  local salted, perr = crypto.pbkdf2_sha256(password, salt, a.i, 32)
  if not salted then return nil, tostring(perr) end
  local client_key = crypto.hmac_sha256(salted, "Client Key")
  local stored_key = crypto.sha256(client_key)
  local without_proof = "c=biws,r=" .. a.r
  local auth_message = client_first_bare .. "," .. server_first .. "," .. without_proof
  local proof = xor(client_key, crypto.hmac_sha256(stored_key, auth_message))
  local server_key = crypto.hmac_sha256(salted, "Server Key")
  return without_proof .. ",p=" .. crypto.base64_encode(proof), crypto.hmac_sha256(server_key, auth_message)
end

-- server-final-message -> true | nil, err
local function scram_verify(crypto, server_final, expected)
  local e = server_final:match("^e=([^,]*)")
  if e then return nil, "SCRAM: the server says " .. e end
  local v = server_final:match("^v=([^,]*)")
  if not v then return nil, "SCRAM: malformed server-final-message" end
  if crypto.base64_decode(v) ~= expected then return nil, "SCRAM: the server's signature does not match (not the server we think?)" end
  return true
end

-- ---- the session ----------------------------------------------------------------------------

local STARTUP = { R = true, E = true, N = true, S = true, K = true, Z = true, v = true }
local QUERY = { T = true, D = true, C = true, E = true, N = true, S = true, Z = true, I = true, K = true }

local function reader(conn) return proto.reader(conn, parse_message, MAX_TOTAL, "message") end

local function send(conn, data)
  local ok, err = conn:write(data)
  if not ok then return nil, "write: " .. tostring(err) end
  return true
end

-- session(conn, opt, crypto) -> ok, message, details. opt: user, database, password, isready.
-- crypto: ctx.crypto (md5_hex, sha256, hmac_sha256, pbkdf2_sha256, random, base64_*), may be nil.
-- ok is true (the server answered as it should), false (it did not: message says why).
local function session(conn, opt, crypto)
  local details = {}
  local rd = reader(conn)
  local function fail(msg) return false, msg, details end
  local ok, err = send(conn, startup_message(opt.user, opt.database or opt.user))
  if not ok then return fail(err) end
  local scram -- { nonce, first_bare, expected }
  while true do
    local m, rerr = rd.next(STARTUP)
    if not m then return fail(rerr) end
    if m.type == "E" then
      local text, f = error_text(m.body)
      if opt.isready then
        details.error = text
        -- pg_isready: only "cannot connect now" (starting up, shutting down, recovery) is a
        -- refusal; any other answer is a server that accepts connections
        if f.C == "57P03" then return fail("rejecting connections: " .. text) end
        return true, "accepting connections", details
      end
      return fail(text)
    elseif m.type == "R" then
      local code = be32(m.body, 1)
      if not code then return fail("truncated authentication request") end
      if opt.isready then
        details.auth_request = code
        if code == 0 then send(conn, TERMINATE) end -- trusted: logged in, so log out
        return true, "accepting connections", details
      end
      local reply
      if code == 0 then -- AuthenticationOk
        details.auth = details.auth or "trust"
        if scram and not scram.verified then return fail("SCRAM: the server skipped its final message") end
      elseif code == 3 then
        if not opt.password then return fail("the server asks for a password and none is configured") end
        details.auth = "password"
        reply = password_message(opt.password)
      elseif code == 5 then
        if not opt.password then return fail("the server asks for a password (md5) and none is configured") end
        if #m.body ~= 8 then return fail("malformed MD5 authentication request") end
        if not (crypto and crypto.md5_hex) then return fail("auth method md5 is not supported (no ctx.crypto)") end
        details.auth = "md5"
        local hashed, herr = md5_password(crypto.md5_hex, opt.user, opt.password, m.body:sub(5, 8))
        if not hashed then return fail("md5: " .. tostring(herr)) end
        reply = password_message(hashed)
      elseif code == 10 then
        local mechs = {}
        for name in m.body:sub(5):gmatch("([^%z]+)") do mechs[name] = true end
        if not mechs["SCRAM-SHA-256"] then
          local list = {}
          for name in pairs(mechs) do list[#list + 1] = name end
          table.sort(list)
          return fail(("auth method SASL %s is not supported (SCRAM-SHA-256 is)"):format(table.concat(list, ", ")))
        end
        if not opt.password then return fail("the server asks for a password (scram-sha-256) and none is configured") end
        if not (crypto and crypto.pbkdf2_sha256 and crypto.random) then
          return fail("auth method scram-sha-256 is not supported (no ctx.crypto)")
        end
        details.auth = "scram-sha-256"
        local raw, rerr2 = crypto.random(18)
        if not raw then return fail("SCRAM: " .. tostring(rerr2)) end
        local nonce = crypto.base64_encode(raw)
        scram = { nonce = nonce, first_bare = "n=,r=" .. nonce }
        local first = "n,," .. scram.first_bare
        reply = message("p", "SCRAM-SHA-256\0" .. int32(#first) .. first)
      elseif code == 11 then
        if not scram or scram.expected then return fail("unexpected SASLContinue from the server") end
        local final, expected = scram_final(crypto, opt.password, scram.first_bare, m.body:sub(5), scram.nonce)
        if not final then return fail("SCRAM: " .. expected) end
        scram.expected = expected
        reply = message("p", final)
      elseif code == 12 then
        if not scram or not scram.expected then return fail("unexpected SASLFinal from the server") end
        local vok, verr = scram_verify(crypto, m.body:sub(5), scram.expected)
        if not vok then return fail(verr) end
        scram.verified = true
      else
        return fail(("auth method %s is not supported"):format(AUTH_NAMES[code] or ("code " .. code)))
      end
      if reply then
        ok, err = send(conn, reply)
        if not ok then return fail(err) end
      end
    elseif m.type == "S" then
      local name, value = parse_parameter(m.body)
      if name == "server_version" then details.server_version = value end
    elseif m.type == "Z" then
      break
    end -- N (notice), K (backend key), v (protocol negotiation): nothing to do
  end
  ok, err = send(conn, query_message("SELECT 1"))
  if not ok then return fail(err) end
  local value, qerr
  while true do
    local m, rerr = rd.next(QUERY)
    if not m then return fail(rerr) end
    if m.type == "E" then qerr = qerr or error_text(m.body)
    elseif m.type == "D" then
      local cols, derr = parse_data_row(m.body)
      if not cols then return fail(derr) end
      value = value or cols[1]
    elseif m.type == "Z" then break
    end
  end
  send(conn, TERMINATE)
  if qerr then return fail("SELECT 1: " .. qerr) end
  if value ~= "1" then return fail(("SELECT 1 returned %s"):format(value and ("%q"):format(value) or "no row")) end
  return true, "SELECT 1 ok", details
end

return beagle.check {
  name = "postgres",
  description = "PostgreSQL: log in and run SELECT 1 over the wire protocol, or answer as pg_isready does",
  options = {
    host = { "string", description = "host name or address of the server" },
    port = { "integer", default = 5432, description = "TCP port" },
    user = { "string", default = "postgres", description = "role to log in as" },
    database = { "string", optional = true, description = "database to connect to (the user name by default)" },
    password = { "secret", optional = true, description = "password, for password, md5 or scram-sha-256 authentication" },
    isready = { "boolean", default = false,
      description = "only connect and send the startup message, as pg_isready: any answer but a refusal is healthy" },
    slow = { "duration", default = "1s", description = "response time above which the check is degraded" },
  },
  parse_message = parse_message,
  parse_fields = parse_fields,
  error_text = error_text,
  parse_data_row = parse_data_row,
  startup_message = startup_message,
  md5_password = md5_password,
  parse_server_first = parse_server_first,
  scram_final = scram_final,
  scram_verify = scram_verify,
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
    local ok, msg, details = session(conn, opt, ctx.crypto)
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
