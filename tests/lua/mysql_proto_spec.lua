-- The mysql check's packet code (plugins/checks/mysql.lua) against scripted greetings: MySQL's
-- and MariaDB's handshakes, ERR packets sent instead ("Host ... is not allowed", "Too many
-- connections"), and hostile or broken ones (huge lengths, garbage, truncated, closed early).
local D = require "db_support"

local P = D.load_plugin("mysql")

local function le(n, bytes)
  local t = {}
  for i = 1, bytes do t[i] = string.char(n % 256) n = math.floor(n / 256) end
  return table.concat(t)
end
local function packet(seq, payload) return le(#payload, 3) .. string.char(seq) .. payload end

-- A protocol 10 greeting as MySQL 8 and MariaDB send it.
local function greeting(version, id, plugin)
  local caps = 0xf7ff + 0x80000 + 0x800 -- incl. CLIENT_SSL, CLIENT_PLUGIN_AUTH
  return packet(0, "\10" .. version .. "\0" .. le(id, 4) .. "abcdefgh" .. "\0" .. le(caps % 65536, 2)
    .. "\45" .. le(2, 2) .. le(math.floor(caps / 65536), 2) .. "\21" .. ("\0"):rep(10)
    .. "ijklmnopqrst\0" .. plugin .. "\0")
end

local function session(chunks, o)
  local c = D.fake_conn { chunks = chunks, more = o and o.more }
  local ok, message, d = P.session(c)
  return ok, message, d, c
end

describe("mysql check: handshake", function()
  it("reads MariaDB's greeting: version without the 5.5.5- prefix, connection id, plugin, TLS", function()
    local ok, message, d = session { greeting("5.5.5-10.11.6-MariaDB-0+deb12u1", 42, "mysql_native_password") }
    assert.is_true(ok, message)
    assert.are.equal("handshake from 10.11.6-MariaDB-0+deb12u1", message)
    assert.are.equal("10.11.6-MariaDB-0+deb12u1", d.server_version)
    assert.are.equal(42, d.connection_id)
    assert.are.equal(10, d.protocol_version)
    assert.are.equal("mysql_native_password", d.auth_plugin)
    assert.is_true(d.ssl)
  end)

  it("reads MySQL 8's greeting", function()
    local ok, _, d = session { greeting("8.0.36", 4294967295, "caching_sha2_password") }
    assert.is_true(ok)
    assert.are.equal("8.0.36", d.server_version)
    assert.are.equal(4294967295, d.connection_id)
    assert.are.equal("caching_sha2_password", d.auth_plugin)
  end)

  it("reads an old short greeting (no capabilities upper half)", function()
    local ok, _, d = session { packet(0, "\10" .. "5.0.1\0" .. le(7, 4) .. "abcdefgh\0" .. le(0x200, 2)) }
    assert.is_true(ok)
    assert.are.equal("5.0.1", d.server_version)
    assert.is_false(d.ssl)
  end)

  it("reports an ERR packet sent instead of the greeting, with and without SQL state", function()
    local ok, message, d = session { packet(0, "\255" .. le(1130, 2)
      .. "Host '10.0.0.7' is not allowed to connect to this MariaDB server") }
    assert.is_false(ok)
    assert.are.equal("ERROR 1130: Host '10.0.0.7' is not allowed to connect to this MariaDB server", message)
    assert.are.equal(1130, d.error_code)
    ok, message = session { packet(0, "\255" .. le(1040, 2) .. "#08004Too many connections") }
    assert.is_false(ok)
    assert.are.equal("ERROR 1040 (08004): Too many connections", message)
  end)

  it("reads a greeting that arrives a byte at a time", function()
    local g = greeting("8.0.36", 1, "caching_sha2_password")
    local chunks = {}
    for i = 1, #g do chunks[i] = g:sub(i, i) end
    assert.is_true((session(chunks)))
  end)

  describe("hostile or broken servers", function()
    it("refuses a huge length at once, and garbage (HTTP, SSH, zeros)", function()
      local ok, message, _, c = session { "\255\255\255\0" }
      assert.is_false(ok)
      assert.truthy(message:find("16777215 bytes exceeds the 65536%-byte limit"), message)
      assert.are.equal(1, c.reads)
      ok, message = session { "HTTP/1.1 400 Bad Request\r\n\r\n" }
      assert.is_false(ok)
      assert.truthy(message:find("not MySQL?", 1, true), message)
      ok, message = session { "SSH-2.0-OpenSSH_9.2\r\n" }
      assert.is_false(ok)
      assert.truthy(message:find("not MySQL?", 1, true), message)
      ok, message = session { "\0\0\0\0" }
      assert.is_false(ok)
      assert.are.equal("an empty packet (not MySQL?)", message)
      ok, message = session { packet(0, "\9" .. "4.0\0") }
      assert.is_false(ok)
      assert.are.equal("protocol version 9 is not supported (10 is)", message)
      ok, message = session { packet(0, "+PONG\r\n") }
      assert.is_false(ok)
      assert.truthy(message:find("protocol version 43", 1, true), message)
    end)

    it("refuses truncated greetings", function()
      local ok, message = session { packet(0, "\10" .. "8.0.36") }
      assert.is_false(ok)
      assert.are.equal("truncated handshake: no end to the server version", message)
      ok, message = session { packet(0, "\10" .. "8.0.36\0\1\2") }
      assert.is_false(ok)
      assert.are.equal("truncated handshake: no connection id", message)
      ok, message = session { packet(0, "\10" .. "8.0.36\0\1\2\3\4abcdefgh\0") }
      assert.is_false(ok)
      assert.are.equal("truncated handshake: no capability flags", message)
    end)

    it("reports a connection closed before or in the middle of the greeting", function()
      local ok, message = session {}
      assert.is_false(ok)
      assert.are.equal("the server closed the connection without a greeting", message)
      ok, message = session { greeting("8.0.36", 1, "x"):sub(1, 20) }
      assert.is_false(ok)
      assert.are.equal("the server closed the connection in the middle of its greeting", message)
      local c = D.fake_conn { err = "connection reset by peer" }
      ok, message = P.session(c)
      assert.is_false(ok)
      assert.are.equal("read: connection reset by peer", message)
    end)

    it("does not buffer more than one packet's worth from a server that keeps sending", function()
      local ok, message, _, c = session({ "\255\255\0\0" }, { more = function() return ("x"):rep(4096) end })
      assert.is_false(ok)
      assert.are.equal("protocol version 120 is not supported (10 is)", message)
      assert.is_true(c.reads < 40, tostring(c.reads))
    end)
  end)
end)
