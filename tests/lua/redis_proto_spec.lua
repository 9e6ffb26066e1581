-- The redis check's RESP code (plugins/checks/redis.lua) against scripted servers: AUTH (with
-- and without an ACL user), PING, INFO fields, the server's errors, and hostile or broken
-- answers (huge lengths, garbage, endless lines, a connection closed mid-reply).
local D = require "db_support"

local P = D.load_plugin("redis")

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

local INFO = "# Server\r\nredis_version:7.0.15\r\nrole:master\r\n\r\n# Clients\r\nconnected_clients:3\r\n"
  .. "used_memory:1048576\r\nused_memory_human:1.00M\r\n"
local function bulk(s) return ("$%d\r\n%s\r\n"):format(#s, s) end

describe("redis check: RESP", function()
  it("writes commands as arrays of bulk strings", function()
    assert.are.equal("*1\r\n$4\r\nPING\r\n", P.command { "PING" })
    assert.are.equal("*3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n$6\r\np w\r\nx\r\n", P.command { "AUTH", "u", "p w\r\nx" })
  end)

  it("parses each reply type, waiting for whole replies", function()
    assert.are.same({ { type = "+", value = "PONG" }, 8 }, { P.parse_reply("+PONG\r\n") })
    assert.are.same({ { type = "-", value = "ERR x" }, 9 }, { P.parse_reply("-ERR x\r\n") })
    assert.are.same({ { type = ":", value = -12 }, 7 }, { P.parse_reply(":-12\r\n") })
    assert.are.same({ { type = "$", value = "a\r\nb" }, 11 }, { P.parse_reply("$4\r\na\r\nb\r\n") })
    assert.are.same({ { type = "$" }, 6 }, { P.parse_reply("$-1\r\n") })
    assert.are.same({ type = "*", value = { { type = ":", value = 1 }, { type = "+", value = "x" } } },
      (P.parse_reply("*2\r\n:1\r\n+x\r\n")))
    for _, part in ipairs { "", "+PON", "$4\r\nab", "$4\r\nabcd\r", "*2\r\n:1\r\n" } do
      local v, n, err = P.parse_reply(part)
      assert.is_nil(v, part)
      assert.is_nil(n, part)
      assert.is_nil(err, part)
    end
  end)

  it("refuses hostile lengths and garbage at once", function()
    local _, _, err = P.parse_reply("$4294967296\r\n")
    assert.truthy(err:find("exceeds the 1048576%-byte limit"), err)
    _, _, err = P.parse_reply("*99999999\r\n")
    assert.truthy(err:find("exceeds the limit of 1024", 1, true), err)
    _, _, err = P.parse_reply("$-7\r\n")
    assert.truthy(err:find("malformed length", 1, true), err)
    _, _, err = P.parse_reply("$abc\r\n")
    assert.truthy(err:find("malformed length", 1, true), err)
    _, _, err = P.parse_reply("$3\r\nabcXY")
    assert.are.equal("bulk reply not ended by CRLF", err)
    _, _, err = P.parse_reply("HTTP/1.1 400 Bad Request\r\n")
    assert.are.equal('unexpected reply "HTTP/1.1 400 Bad Request\\x0d\\x0a" (not Redis?)', err)
    _, _, err = P.parse_reply("\0\0\0\0")
    assert.truthy(err:find("not Redis?", 1, true), err)
    _, _, err = P.parse_reply("+" .. ("x"):rep(70000))
    assert.truthy(err:find("longer than 65536 bytes", 1, true), err)
    _, _, err = P.parse_reply(("*1\r\n"):rep(20) .. ":1\r\n")
    assert.are.equal("arrays nested too deep", err)
  end)

  it("parses INFO text into fields, numbers as numbers", function()
    local i = P.parse_info(INFO)
    assert.are.equal("7.0.15", i.redis_version)
    assert.are.equal(3, i.connected_clients)
    assert.are.equal(1048576, i.used_memory)
    assert.are.equal("1.00M", i.used_memory_human)
    assert.is_nil(i["# Server"])
  end)

  it("PINGs, and AUTHs first with a password (and a user)", function()
    local c = server { "+PONG\r\n" }
    local ok, message = P.session(c, {})
    assert.is_true(ok, message)
    assert.are.equal("PONG", message)
    assert.are.equal("*1\r\n$4\r\nPING\r\n", c.written[1])
    assert.are.equal("*1\r\n$4\r\nQUIT\r\n", c.written[2])
    c = server { "+OK\r\n", "+PONG\r\n" }
    ok = P.session(c, { password = "pw", username = "beagle" })
    assert.is_true(ok)
    assert.are.equal(P.command { "AUTH", "beagle", "pw" }, c.written[1])
    c = server { "+OK\r\n", "+PONG\r\n" }
    assert.is_true((P.session(c, { password = "pw" })))
    assert.are.equal(P.command { "AUTH", "pw" }, c.written[1])
  end)

  it("reports the server's errors", function()
    local ok, message = P.session(server { "-NOAUTH Authentication required.\r\n" }, {})
    assert.is_false(ok)
    assert.are.equal("PING: NOAUTH Authentication required.", message)
    ok, message = P.session(server { "-WRONGPASS invalid username-password pair or user is disabled.\r\n" }, { password = "x" })
    assert.is_false(ok)
    assert.are.equal("AUTH: WRONGPASS invalid username-password pair or user is disabled.", message)
    ok, message = P.session(server { "-LOADING Redis is loading the dataset in memory\r\n" }, {})
    assert.is_false(ok)
    assert.are.equal("PING: LOADING Redis is loading the dataset in memory", message)
    ok, message = P.session(server { "+PANG\r\n" }, {})
    assert.is_false(ok)
    assert.are.equal('PING: expected PONG, got "PANG"', message)
    ok, message = P.session(server { "$-1\r\n" }, {})
    assert.is_false(ok)
    assert.are.equal('PING: expected PONG, got "(null)"', message)
  end)

  it("reports the INFO fields asked for, and the missing ones", function()
    local ok, message, d, info = P.session(server { "+PONG\r\n", bulk(INFO) },
      { info_fields = { "connected_clients", "used_memory", "no_such_field" } })
    assert.is_true(ok, message)
    assert.are.same({ connected_clients = 3, used_memory = 1048576 }, info)
    assert.are.same(info, d.info)
    assert.are.equal("no_such_field", d.info_missing)
    assert.are.equal("7.0.15", d.redis_version)
    assert.are.equal("master", d.role)
    ok, message = P.session(server { "+PONG\r\n", "-ERR unknown command 'INFO'\r\n" }, { info_fields = { "x" } })
    assert.is_false(ok)
    assert.are.equal("INFO: ERR unknown command 'INFO'", message)
  end)

  describe("hostile or broken servers", function()
    it("refuses a 4 GiB bulk without waiting for it", function()
      local c = server { "$4294967295\r\n" }
      local ok, message = P.session(c, {})
      assert.is_false(ok)
      assert.truthy(message:find("exceeds the 1048576%-byte limit"), message)
      assert.are.equal(1, c.reads)
    end)

    it("reports a connection closed before or in the middle of a reply", function()
      local ok, message = P.session(server {}, {})
      assert.is_false(ok)
      assert.are.equal("the server closed the connection", message)
      ok, message = P.session(server { "+PO" }, {})
      assert.is_false(ok)
      assert.are.equal("the server closed the connection in the middle of a reply", message)
      ok, message = P.session(server { "+PONG\r\n", "$100\r\nshort" }, { info_fields = { "x" } })
      assert.is_false(ok)
      assert.are.equal("the server closed the connection in the middle of a reply", message)
    end)

    it("stops a line that never ends, and a server that sends too much", function()
      local c = server({ false }, { more = function() return "+" .. ("y"):rep(4096) end })
      local ok, message = P.session(c, {})
      assert.is_false(ok)
      assert.truthy(message:find("longer than 65536 bytes", 1, true), message)
      assert.is_true(c.reads < 100, tostring(c.reads))
      -- a bulk announced at the limit, then bytes for ever: ends at the session's limit
      c = server({ "+PONG\r\n", "$1048576\r\n" }, { more = function() return ("z"):rep(65536) end })
      ok, message = P.session(c, { info_fields = { "x" } })
      assert.is_false(ok)
      assert.truthy(message:find("bulk reply not ended by CRLF", 1, true) or message:find("more than", 1, true), message)
    end)

    it("reads a reply that arrives a byte at a time", function()
      local c = server { function(_, conn) for ch in ("+PONG\r\n"):gmatch(".") do conn.push(ch) end end }
      assert.is_true((P.session(c, {})))
    end)
  end)
end)
