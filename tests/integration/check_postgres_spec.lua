-- The postgres check against a real PostgreSQL (Debian's postgresql, scripts/deps.sh test)
-- started here on a free port: trust, cleartext, MD5 and SCRAM-SHA-256 logins (roles made for
-- each, pg_hba.conf choosing the method), a wrong password (the server's own message), an
-- unknown database, the pg_isready answer, a paused server (degraded) and a stopped one.
local S = require "support"
local D = require "db_support"

describe("postgres check", function()
  local pg, agent
  setup(function()
    pg = D.postgres {
      hba = "host all trusty 127.0.0.1/32 trust\nhost all pwuser 127.0.0.1/32 password\n"
        .. "host all md5user 127.0.0.1/32 md5\nhost all all 127.0.0.1/32 scram-sha-256\n",
      sql = "CREATE ROLE trusty LOGIN; CREATE ROLE pwuser LOGIN PASSWORD 'plain pw';"
        .. " SET password_encryption = 'scram-sha-256'; CREATE ROLE scram LOGIN PASSWORD 'sekret';"
        .. " SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN PASSWORD 'md5 pw';",
    }
    local p = pg.port
    local function check(name, rest)
      return ('check "%s" { plugin = "postgres", host = "127.0.0.1", port = %d, database = "postgres",'
        .. ' interval = "1h", retries = 0, %s }\n'):format(name, p, rest)
    end
    agent = S.start {
      config = S.calm_system
        .. check("trust", 'user = "trusty"')
        .. check("cleartext", 'user = "pwuser", password = "plain pw"')
        .. check("md5", 'user = "md5user", password = "md5 pw"')
        .. check("scram", 'user = "scram", password = "sekret"')
        .. check("wrong_password", 'user = "scram", password = "not it"')
        .. check("no_password", 'user = "scram"')
        .. check("no_database", 'user = "trusty", database = "nope"')
        .. check("isready", 'isready = true, user = "nobody"')
        .. check("paused", 'user = "trusty", slow = "1s"'),
    }
    D.settle(agent, { "trust", "cleartext", "md5", "scram", "wrong_password", "no_password", "no_database", "isready", "paused" })
  end)
  teardown(function()
    if agent then agent:stop() end
    if pg then pg.stop() end
  end)

  local function healthy(name)
    local o = D.run(agent, name)
    assert.are.equal("healthy", o.status, name .. ": " .. tostring(o.message) .. "\n" .. agent:logtext())
    return o
  end

  it("logs in with trust and runs SELECT 1", function()
    local o = healthy("trust")
    assert.truthy(o.message:find("^SELECT 1 ok in %d"), o.message)
    assert.are.equal("trust", o.details.auth)
    assert.truthy(o.details.server_version:find("^15"), o.details.server_version)
    assert.is_number(o.details.response_time)
  end)

  it("logs in with a cleartext password", function()
    assert.are.equal("password", healthy("cleartext").details.auth)
  end)

  it("logs in with md5 and scram-sha-256 passwords", function()
    local o = D.run(agent, "md5")
    if (o.message or ""):find("(no ctx.crypto)", 1, true) then
      pending("ctx.crypto is not in this build: " .. o.message)
      return
    end
    assert.are.equal("healthy", o.status, o.message)
    assert.are.equal("md5", o.details.auth)
    assert.are.equal("scram-sha-256", healthy("scram").details.auth)
  end)

  it("reports the server's own message for a wrong password, and a missing one", function()
    local o = D.run(agent, "wrong_password")
    assert.are.equal("unhealthy", o.status)
    if o.message:find("(no ctx.crypto)", 1, true) then pending("ctx.crypto is not in this build") return end
    assert.are.equal(("127.0.0.1:%d: FATAL: password authentication failed for user \"scram\" (SQLSTATE 28P01)")
      :format(pg.port), o.message)
    o = D.run(agent, "no_password")
    assert.are.equal("unhealthy", o.status)
    assert.truthy(o.message:find("none is configured", 1, true), o.message)
    o = D.run(agent, "no_database")
    assert.are.equal("unhealthy", o.status)
    assert.truthy(o.message:find('database "nope" does not exist (SQLSTATE 3D000)', 1, true), o.message)
  end)

  it("answers as pg_isready, even for a role that does not exist", function()
    local o = healthy("isready")
    assert.truthy(o.message:find("^accepting connections"), o.message)
  end)

  it("is degraded when the server answers slower than slow (paused with SIGSTOP)", function()
    local o = D.run_paused(agent, "paused", pg, 1.5)
    assert.are.equal("degraded", o.status, o.message)
    assert.truthy(o.message:find("^responding slowly: %d"), o.message)
    assert.is_true(o.details.response_time > 1, tostring(o.details.response_time))
    healthy("paused") -- and recovers
  end)

  it("ends a run against a hostile server: a 4 GiB length, an endless stream", function()
    local huge, flood, a
    local ok, err = pcall(function()
      huge = D.hostile("R\255\255\255\255")
      flood = D.hostile("", "N\0\0\0\20SNOTICE\0Mhello\0\0")
      a = S.start { config = ('check "huge" { plugin = "postgres", host = "127.0.0.1", port = %d, retries = 0 }\n'
        .. 'check "flood" { plugin = "postgres", host = "127.0.0.1", port = %d, retries = 0 }\n'):format(huge.port, flood.port) }
      local o = D.run(a, "huge")
      assert.are.equal("unhealthy", o.status)
      assert.are.equal(("127.0.0.1:%d: message 'R' (0x52) of 4294967295 bytes exceeds the 65536-byte limit"):format(huge.port),
        o.message)
      o = D.run(a, "flood")
      assert.are.equal("unhealthy", o.status)
      assert.are.equal(("127.0.0.1:%d: the server sent more than 1048576 bytes"):format(flood.port), o.message)
    end)
    if a then a:stop() end
    if huge then huge.stop() end
    if flood then flood.stop() end
    assert(ok, err)
  end)

  it("is unhealthy once the server is stopped", function()
    pg.stop()
    local o = D.run(agent, "trust")
    assert.are.equal("unhealthy", o.status)
    assert.are.equal(("127.0.0.1:%d: connection refused"):format(pg.port), o.message)
  end)

  it("refuses a wrong port at load, naming the file and line, the check and the option", function()
    for _, case in ipairs {
      { 'check "pg" { plugin = "postgres", host = "127.0.0.1", port = 70000 }',
        "option port: 70000 is not a TCP port (1..65535)" },
    } do
      local name = case[1]:match('check "([^"]+)"')
      assert.are.equal(('beagle.lua:%d: check "%s": %s'):format(S.calm_lines + 1, name, case[2]),
        S.refused(case[1] .. "\n"))
    end
  end)
end)
