-- The mysql check against a real MariaDB (Debian's mariadb-server, scripts/deps.sh test)
-- started here on a free port: the handshake's version and connection id, a paused server
-- (degraded) and a stopped one (unhealthy). The ERR packets a server may greet with are
-- covered by tests/lua/mysql_proto_spec.lua.
local S = require "support"
local D = require "db_support"

describe("mysql check", function()
  local db, agent
  setup(function()
    db = D.mariadb()
    agent = S.start {
      config = S.calm_system .. ('check "db" { plugin = "mysql", host = "127.0.0.1", port = %d, interval = "1h", retries = 0 }\n')
        :format(db.port),
    }
    D.settle(agent, { "db" })
  end)
  teardown(function()
    if agent then agent:stop() end
    if db then db.stop() end
  end)

  it("reads the server's handshake: version and connection id", function()
    local o = D.run(agent, "db")
    assert.are.equal("healthy", o.status, o.message)
    assert.truthy(o.message:find("^handshake from 10%.[%d.]+%-MariaDB.* in %d"), o.message)
    assert.truthy(o.details.server_version:find("MariaDB", 1, true), o.details.server_version)
    assert.is_nil(o.details.server_version:find("^5%.5%.5%-"))
    assert.is_true(o.details.connection_id >= 1)
    assert.are.equal(10, o.details.protocol_version)
    assert.is_string(o.details.auth_plugin)
    local again = D.run(agent, "db")
    assert.is_true(again.details.connection_id > o.details.connection_id)
  end)

  it("is degraded when the server answers slower than slow (paused with SIGSTOP)", function()
    local o = D.run_paused(agent, "db", db, 1.5)
    assert.are.equal("degraded", o.status, o.message)
    assert.truthy(o.message:find("^responding slowly: %d"), o.message)
    assert.is_true(o.details.response_time > 1, tostring(o.details.response_time))
  end)

  it("ends a run against a hostile server: a huge length, HTTP's answer", function()
    local huge, http, a
    local ok, err = pcall(function()
      huge = D.hostile("\255\255\255\0")
      http = D.hostile("HTTP/1.1 400 Bad Request\r\n\r\n")
      a = S.start { config = ('check "huge" { plugin = "mysql", host = "127.0.0.1", port = %d, retries = 0 }\n'
        .. 'check "http" { plugin = "mysql", host = "127.0.0.1", port = %d, retries = 0 }\n'):format(huge.port, http.port) }
      local o = D.run(a, "huge")
      assert.are.equal("unhealthy", o.status)
      assert.are.equal(("127.0.0.1:%d: a packet of 16777215 bytes exceeds the 65536-byte limit (not MySQL?)"):format(huge.port),
        o.message)
      o = D.run(a, "http")
      assert.are.equal("unhealthy", o.status)
      assert.truthy(o.message:find("exceeds the 65536-byte limit (not MySQL?)", 1, true), o.message)
    end)
    if a then a:stop() end
    if huge then huge.stop() end
    if http then http.stop() end
    assert(ok, err)
  end)

  it("is unhealthy once the server is stopped", function()
    db.stop()
    local o = D.run(agent, "db")
    assert.are.equal("unhealthy", o.status)
    assert.are.equal(("127.0.0.1:%d: connection refused"):format(db.port), o.message)
  end)

  it("refuses a wrong port at load, naming the file and line, the check and the option", function()
    for _, case in ipairs {
      { 'check "my" { plugin = "mysql", host = "127.0.0.1", port = -1 }', "option port: -1 is not a TCP port (1..65535)" },
    } do
      local name = case[1]:match('check "([^"]+)"')
      assert.are.equal(('beagle.lua:%d: check "%s": %s'):format(S.calm_lines + 1, name, case[2]),
        S.refused(case[1] .. "\n"))
    end
  end)
end)
