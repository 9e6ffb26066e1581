-- The postgres check's protocol code (plugins/checks/postgres.lua) against scripted servers: the
-- startup, each authentication (trust, cleartext, MD5, SCRAM-SHA-256 with RFC 7677's vector),
-- the SELECT 1 round trip, and hostile or broken answers (huge lengths, garbage, a connection
-- closed mid-message, an endless stream): always an answer, never an endless loop, bounded memory.
local D = require "db_support"

local P = D.load_plugin("postgres")

local function int32(n)
  n = n % 4294967296
  return string.char(math.floor(n / 16777216) % 256, math.floor(n / 65536) % 256, math.floor(n / 256) % 256, n % 256)
end
local function int16(n) return string.char(math.floor(n / 256) % 256, n % 256) end
local function msg(t, body) return t .. int32(#body + 4) .. body end
local function auth(code, rest) return msg("R", int32(code) .. (rest or "")) end
local function param(k, v) return msg("S", k .. "\0" .. v .. "\0") end
local READY = msg("Z", "I")
local function row(...)
  local cols = { ... }
  local b = int16(#cols)
  for _, c in ipairs(cols) do
    if c == false then b = b .. int32(-1) else b = b .. int32(#c) .. c end
  end
  return msg("D", b)
end
local QUERY_ANSWER = msg("T", int16(1) .. "?column?\0" .. ("\0"):rep(18)) .. row("1") .. msg("C", "SELECT 1\0") .. READY
local function err(fields)
  local b = ""
  for _, f in ipairs(fields) do b = b .. f[1] .. f[2] .. "\0" end
  return msg("E", b .. "\0")
end

-- A server that answers each message the client writes with the next item of `answers` (a
-- string, or a function of what was written returning one).
local function server(answers, o)
  local i = 0
  return D.fake_conn {
    more = o and o.more,
    reply = function(data, c)
      i = i + 1
      local a = answers[i]
      if type(a) == "function" then a = a(data, c) end
      if a then c.push(a) end
    end,
  }
end

local OPT = { user = "beagle", database = "app" }
local function with(t)
  local o = {}
  for k, v in pairs(OPT) do o[k] = v end
  for k, v in pairs(t or {}) do o[k] = v end
  return o
end

describe("postgres check: protocol", function()
  local crypto = D.test_crypto()

  it("sends a protocol 3.0 startup message with user, database and application_name", function()
    local m = P.startup_message("beagle", "app")
    assert.are.equal(#m, (m:byte(1) * 2 ^ 24 + m:byte(2) * 2 ^ 16 + m:byte(3) * 256 + m:byte(4)))
    assert.are.equal(int32(196608), m:sub(5, 8))
    assert.are.equal("user\0beagle\0database\0app\0application_name\0beagle\0\0", m:sub(9))
  end)

  it("logs in with trust, runs SELECT 1, reads the version and terminates", function()
    local c = server { auth(0) .. param("server_version", "15.5") .. msg("K", int32(7) .. int32(9)) .. READY, QUERY_ANSWER }
    local ok, message, d = P.session(c, OPT, crypto)
    assert.is_true(ok, message)
    assert.are.equal("SELECT 1 ok", message)
    assert.are.equal("15.5", d.server_version)
    assert.are.equal("trust", d.auth)
    assert.are.equal("Q" .. int32(13) .. "SELECT 1\0", c.written[2])
    assert.are.equal("X" .. int32(4), c.written[3])
  end)

  it("answers a cleartext password request", function()
    local c = server { auth(3), auth(0) .. READY, QUERY_ANSWER }
    local ok, message, d = P.session(c, with { password = "pw" }, crypto)
    assert.is_true(ok, message)
    assert.are.equal("password", d.auth)
    assert.are.equal("p" .. int32(7) .. "pw\0", c.written[2])
  end)

  it("computes the MD5 answer as libpq does", function()
    -- md5(md5("secret" .. "beagle") .. salt), salt "\1\2\3\4", worked out with Python's hashlib
    assert.are.equal("md5" .. crypto.md5_hex(crypto.md5_hex("secretbeagle") .. "\1\2\3\4"),
      P.md5_password(crypto.md5_hex, "beagle", "secret", "\1\2\3\4"))
    assert.are.equal("md50dcf14a03b4ab256ca87208e452446c3", P.md5_password(crypto.md5_hex, "beagle", "secret", "\1\2\3\4"))
    local c = server { auth(5, "\1\2\3\4"), auth(0) .. READY, QUERY_ANSWER }
    local ok, message, d = P.session(c, with { password = "secret" }, crypto)
    assert.is_true(ok, message)
    assert.are.equal("md5", d.auth)
    assert.are.equal("p" .. int32(40) .. "md50dcf14a03b4ab256ca87208e452446c3\0", c.written[2])
  end)

  it("computes SCRAM-SHA-256 as RFC 7677's example", function()
    local final, expected = P.scram_final(crypto, "pencil", "n=user,r=rOprNGfwEbeRWgbNEkqO",
      "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", "rOprNGfwEbeRWgbNEkqO")
    assert.are.equal("c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", final)
    assert.are.equal("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", crypto.base64_encode(expected))
    assert.is_true(P.scram_verify(crypto, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", expected))
    local ok, why = P.scram_verify(crypto, "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", expected)
    assert.is_nil(ok)
    assert.truthy(why:find("signature does not match", 1, true), why)
    ok, why = P.scram_verify(crypto, "e=invalid-proof", expected)
    assert.is_nil(ok)
    assert.truthy(why:find("invalid-proof", 1, true), why)
  end)

  -- A SCRAM server played by the test with the same arithmetic (the server side of RFC 5802).
  local function scram_server(password, o)
    o = o or {}
    local salt, iter, snonce = "saltsaltsalt", o.iterations or 4096, "SERVERNONCE"
    local st = {}
    return server {
      auth(10, "SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"),
      function(data)
        -- 'p' len "SCRAM-SHA-256\0" int32 len client-first
        local mech = data:match("^p....([^%z]+)%z")
        assert.are.equal("SCRAM-SHA-256", mech)
        local first = data:sub(6 + #mech + 1 + 4)
        st.bare = assert(first:match("^n,,(.*)$"))
        st.cnonce = assert(st.bare:match("r=([^,]+)"))
        st.server_first = ("r=%s%s,s=%s,i=%d"):format(st.cnonce, snonce, crypto.base64_encode(salt), iter)
        return auth(11, o.server_first and o.server_first(st) or st.server_first)
      end,
      function(data)
        local final = data:sub(6)
        local without = assert(final:match("^(.*),p=[^,]*$"))
        local auth_message = st.bare .. "," .. st.server_first .. "," .. without
        local salted = crypto.pbkdf2_sha256(password, salt, iter, 32)
        local client_key = crypto.hmac_sha256(salted, "Client Key")
        local sig = crypto.hmac_sha256(crypto.sha256(client_key), auth_message)
        local proof = crypto.base64_decode(final:match(",p=([^,]*)$"))
        local got = {}
        for i = 1, #proof do got[i] = string.char(bit.bxor(proof:byte(i), sig:byte(i))) end
        if crypto.sha256(table.concat(got)) ~= crypto.sha256(client_key) then
          return err { { "S", "FATAL" }, { "C", "28P01" }, { "M", 'password authentication failed for user "beagle"' } }
        end
        local server_sig = crypto.hmac_sha256(crypto.hmac_sha256(salted, "Server Key"), auth_message)
        if o.bad_server_signature then server_sig = ("x"):rep(32) end
        return auth(12, "v=" .. crypto.base64_encode(server_sig)) .. auth(0) .. READY
      end,
      QUERY_ANSWER,
    }
  end

  it("logs in with SCRAM-SHA-256 against a server that checks the proof", function()
    local c = scram_server("right")
    local ok, message, d = P.session(c, with { password = "right" }, crypto)
    assert.is_true(ok, message)
    assert.are.equal("scram-sha-256", d.auth)
  end)

  it("reports the server's error for a wrong SCRAM password", function()
    local ok, message = P.session(scram_server("right"), with { password = "wrong" }, crypto)
    assert.is_false(ok)
    assert.are.equal('FATAL: password authentication failed for user "beagle" (SQLSTATE 28P01)', message)
  end)

  it("refuses a server whose SCRAM signature does not match", function()
    local ok, message = P.session(scram_server("right", { bad_server_signature = true }), with { password = "right" }, crypto)
    assert.is_false(ok)
    assert.truthy(message:find("signature does not match", 1, true), message)
  end)

  it("refuses a SCRAM server that asks for too many iterations or changes our nonce", function()
    local ok, message = P.session(scram_server("right", { server_first = function(st)
      return st.server_first:gsub("i=%d+", "i=2000000000") end }), with { password = "right" }, crypto)
    assert.is_false(ok)
    assert.truthy(message:find("iteration count 2000000000 is out of range", 1, true), message)
    ok, message = P.session(scram_server("right", { server_first = function(st)
      return st.server_first:gsub("^r=[^,]+", "r=someoneelse") end }), with { password = "right" }, crypto)
    assert.is_false(ok)
    assert.truthy(message:find("nonce", 1, true), message)
    ok, message = P.session(scram_server("right", { server_first = function() return "garbage" end }),
      with { password = "right" }, crypto)
    assert.is_false(ok)
    assert.truthy(message:find("malformed server-first-message", 1, true), message)
  end)

  it("reports a crypto call that fails (no libcrypto) instead of raising", function()
    local broken = setmetatable({
      md5_hex = function() return nil, "crypto: libcrypto.so.3 (OpenSSL 3) cannot be loaded" end,
      pbkdf2_sha256 = function() return nil, "crypto: libcrypto.so.3 (OpenSSL 3) cannot be loaded" end,
    }, { __index = crypto })
    local ok, message = P.session(server { auth(5, "abcd") }, with { password = "x" }, broken)
    assert.is_false(ok)
    assert.are.equal("md5: crypto: libcrypto.so.3 (OpenSSL 3) cannot be loaded", message)
    ok, message = P.session(scram_server("right"), with { password = "right" }, broken)
    assert.is_false(ok)
    assert.are.equal("SCRAM: crypto: libcrypto.so.3 (OpenSSL 3) cannot be loaded", message)
  end)

  it("says which auth method it lacks, and when a password is needed but not configured", function()
    local ok, message = P.session(server { auth(7) }, OPT, crypto)
    assert.is_false(ok)
    assert.are.equal("auth method GSSAPI is not supported", message)
    ok, message = P.session(server { auth(10, "SCRAM-SHA-256-PLUS\0\0") }, with { password = "x" }, crypto)
    assert.is_false(ok)
    assert.truthy(message:find("SCRAM-SHA-256-PLUS is not supported", 1, true), message)
    ok, message = P.session(server { auth(5, "abcd") }, OPT, crypto)
    assert.is_false(ok)
    assert.truthy(message:find("none is configured", 1, true), message)
    ok, message = P.session(server { auth(5, "abcd") }, with { password = "x" }, nil)
    assert.is_false(ok)
    assert.truthy(message:find("md5 is not supported", 1, true), message)
  end)

  it("turns an ErrorResponse's severity, code and message into the message", function()
    local ok, message = P.session(server { err { { "S", "FATAL" }, { "V", "FATAL" }, { "C", "3D000" },
      { "M", 'database "app" does not exist' } } }, OPT, crypto)
    assert.is_false(ok)
    assert.are.equal('FATAL: database "app" does not exist (SQLSTATE 3D000)', message)
    assert.are.same({ S = "ERROR", C = "42P01", M = "x" }, P.parse_fields("SERROR\0C42P01\0Mx\0\0"))
    -- a field without its end: kept, no loop
    assert.are.same({ S = "ERROR", M = "cut" }, P.parse_fields("SERROR\0Mcut"))
  end)

  it("reports a failed or odd SELECT 1", function()
    local ok, message = P.session(server { auth(0) .. READY, err { { "S", "ERROR" }, { "C", "57014" },
      { "M", "canceling statement" } } .. READY }, OPT, crypto)
    assert.is_false(ok)
    assert.are.equal("SELECT 1: ERROR: canceling statement (SQLSTATE 57014)", message)
    ok, message = P.session(server { auth(0) .. READY, row("2") .. READY }, OPT, crypto)
    assert.is_false(ok)
    assert.are.equal('SELECT 1 returned "2"', message)
    ok, message = P.session(server { auth(0) .. READY, msg("C", "SELECT 0\0") .. READY }, OPT, crypto)
    assert.is_false(ok)
    assert.are.equal("SELECT 1 returned no row", message)
    ok, message = P.session(server { auth(0) .. READY, msg("D", int16(1) .. int32(50) .. "1") .. READY }, OPT, crypto)
    assert.is_false(ok)
    assert.are.equal("DataRow column longer than the message", message)
  end)

  it("answers as pg_isready: any auth request or error but 57P03 is accepting", function()
    local ok, message = P.session(server { auth(10, "SCRAM-SHA-256\0\0") }, with { isready = true }, nil)
    assert.is_true(ok)
    assert.are.equal("accepting connections", message)
    local trusted = server { auth(0) .. READY }
    ok, message = P.session(trusted, with { isready = true }, nil)
    assert.is_true(ok)
    assert.are.equal("accepting connections", message)
    assert.are.same({ P.startup_message("beagle", "app"), "X" .. int32(4) }, trusted.written)
    local c = server { err { { "S", "FATAL" }, { "C", "28000" }, { "M", "no pg_hba.conf entry" } } }
    local d
    ok, message, d = P.session(c, with { isready = true }, nil)
    assert.is_true(ok)
    assert.are.equal("accepting connections", message)
    assert.are.equal("FATAL: no pg_hba.conf entry (SQLSTATE 28000)", d.error)
    assert.are.equal(1, #c.written) -- only the startup message
    ok, message = P.session(server { err { { "S", "FATAL" }, { "C", "57P03" }, { "M", "the database system is starting up" } } },
      with { isready = true }, nil)
    assert.is_false(ok)
    assert.are.equal("rejecting connections: FATAL: the database system is starting up (SQLSTATE 57P03)", message)
  end)

  describe("hostile or broken servers", function()
    it("refuses a 4 GiB length at once, without waiting for the bytes", function()
      local c = server { "R\255\255\255\255" }
      local ok, message = P.session(c, OPT, crypto)
      assert.is_false(ok)
      assert.truthy(message:find("4294967295 bytes exceeds the 65536%-byte limit"), message)
      assert.are.equal(1, c.reads)
    end)

    it("refuses lengths below 4 and garbage that is not PostgreSQL", function()
      local ok, message = P.session(server { "R\0\0\0\2" }, OPT, crypto)
      assert.is_false(ok)
      assert.truthy(message:find("length of 2", 1, true), message)
      ok, message = P.session(server { "HTTP/1.1 400 Bad Request\r\n\r\n" }, OPT, crypto)
      assert.is_false(ok)
      assert.truthy(message:find("unexpected message type 'H' (0x48)", 1, true), message)
      ok, message = P.session(server { "SSH-2.0-OpenSSH_9.2\r\n" }, OPT, crypto)
      assert.is_false(ok)
      assert.truthy(message:find("(not PostgreSQL?)", 1, true) or message:find("exceeds", 1, true), message)
      ok, message = P.session(server { "\0\0\0\0\0" }, OPT, crypto)
      assert.is_false(ok)
      assert.truthy(message:find("unexpected message type 0x00", 1, true), message)
    end)

    it("reports a connection closed before, or in the middle of, a message", function()
      local ok, message = P.session(server {}, OPT, crypto)
      assert.is_false(ok)
      assert.are.equal("the server closed the connection", message)
      ok, message = P.session(server { auth(0) .. "S\0\0\0\40serv" }, OPT, crypto)
      assert.is_false(ok)
      assert.are.equal("the server closed the connection in the middle of a message", message)
      ok, message = P.session(server { "R\0\0" }, OPT, crypto)
      assert.is_false(ok)
      assert.are.equal("the server closed the connection in the middle of a message", message)
    end)

    it("reads a message that arrives a byte at a time", function()
      local whole = auth(0) .. param("server_version", "16.1") .. READY
      local c = server { function(_, conn)
        for i = 1, #whole do conn.push(whole:sub(i, i)) end
      end, QUERY_ANSWER }
      local ok, message, d = P.session(c, OPT, crypto)
      assert.is_true(ok, message)
      assert.are.equal("16.1", d.server_version)
    end)

    it("stops a server that sends notices for ever, after 1 MiB", function()
      local notice = msg("N", "SNOTICE\0Mhello\0\0")
      local chunk = notice:rep(100)
      local c = server({ false }, { more = function() return chunk end })
      local ok, message = P.session(c, OPT, crypto)
      assert.is_false(ok)
      assert.are.equal("the server sent more than 1048576 bytes", message)
      assert.is_true(c.reads < 1000, tostring(c.reads))
    end)

    it("reports a read error as it comes", function()
      local c = D.fake_conn { err = "connection reset by peer" }
      local ok, message = P.session(c, OPT, crypto)
      assert.is_false(ok)
      assert.are.equal("read: connection reset by peer", message)
    end)

    it("refuses truncated authentication requests and DataRows", function()
      local ok, message = P.session(server { msg("R", "\0\0") }, OPT, crypto)
      assert.is_false(ok)
      assert.are.equal("truncated authentication request", message)
      ok, message = P.session(server { auth(5, "ab") }, with { password = "x" }, crypto)
      assert.is_false(ok)
      assert.are.equal("malformed MD5 authentication request", message)
      assert.is_nil((P.parse_data_row("\0\1\0\0")))
      assert.are.same({ false, "ab" }, P.parse_data_row("\0\2\255\255\255\255\0\0\0\2ab"))
    end)

    it("refuses SASL messages out of order", function()
      local ok, message = P.session(server { auth(11, "r=x,s=y,i=1") }, with { password = "x" }, crypto)
      assert.is_false(ok)
      assert.are.equal("unexpected SASLContinue from the server", message)
      ok, message = P.session(server { auth(12, "v=xx") }, with { password = "x" }, crypto)
      assert.is_false(ok)
      assert.are.equal("unexpected SASLFinal from the server", message)
    end)
  end)
end)
