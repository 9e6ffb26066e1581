-- The redis check against a real Redis (Debian's redis-server, scripts/deps.sh test) started
-- here on a free port with a password and an ACL user: PING with AUTH (default user and ACL
-- user), INFO fields as details and gauges, the server's errors (NOAUTH, WRONGPASS), a paused
-- server (degraded) and a stopped one (unhealthy).
local S = require "support"
local D = require "db_support"

describe("redis check", function()
  local redis, agent
  setup(function()
    redis = D.redis { conf = "requirepass sekret\nuser beagle on >acl-pw ~* +@all\n" }
    local function check(name, rest)
      return ('check "%s" { plugin = "redis", host = "127.0.0.1", port = %d, interval = "1h", retries = 0, %s }\n')
        :format(name, redis.port, rest)
    end
    agent = S.start {
      config = S.calm_system
        .. check("cache", 'password = "sekret", info_fields = { "connected_clients", "used_memory", "no_such_field" }')
        .. check("acl", 'username = "beagle", password = "acl-pw"')
        .. check("noauth", 'slow = "1s"')
        .. check("wrongpass", 'password = "nope"'),
    }
    D.settle(agent, { "cache", "acl", "noauth", "wrongpass" })
  end)
  teardown(function()
    if agent then agent:stop() end
    if redis then redis.stop() end
  end)

  it("AUTHs, PINGs and reports INFO fields as details and gauges", function()
    local o = D.run(agent, "cache")
    assert.are.equal("healthy", o.status, o.message)
    assert.truthy(o.message:find("^PONG in %d"), o.message)
    assert.is_number(o.details.response_time)
    assert.is_true(o.details.info.connected_clients >= 1)
    assert.is_true(o.details.info.used_memory > 0)
    assert.are.equal("no_such_field", o.details.info_missing)
    assert.truthy(o.details.redis_version:find("^%d"), o.details.redis_version)
    local _, body = agent:get("/metrics")
    assert.truthy(body:find("\ncheck_cache_connected_clients [%d%.e+]+\n"), body)
    assert.truthy(body:find("\ncheck_cache_used_memory [%d%.e+]+\n"), body)
  end)

  it("AUTHs as an ACL user", function()
    local o = D.run(agent, "acl")
    assert.are.equal("healthy", o.status, o.message)
  end)

  it("reports NOAUTH and WRONGPASS as the server words them", function()
    local o = D.run(agent, "noauth")
    assert.are.equal("unhealthy", o.status)
    assert.are.equal(("127.0.0.1:%d: PING: NOAUTH Authentication required."):format(redis.port), o.message)
    o = D.run(agent, "wrongpass")
    assert.are.equal("unhealthy", o.status)
    assert.truthy(o.message:find("AUTH: WRONGPASS", 1, true), o.message)
  end)

  it("is degraded when the server answers slower than slow (paused with SIGSTOP)", function()
    local o = D.run_paused(agent, "acl", redis, 1.5)
    assert.are.equal("degraded", o.status, o.message)
    assert.truthy(o.message:find("^responding slowly: %d"), o.message)
    assert.is_true(o.details.response_time > 1, tostring(o.details.response_time))
  end)

  it("ends a run against a hostile server: a 4 GiB bulk, an endless line", function()
    local huge, flood, a
    local ok, err = pcall(function()
      huge = D.hostile("$4294967295\r\n")
      flood = D.hostile("+", "y")
      a = S.start { config = ('check "huge" { plugin = "redis", host = "127.0.0.1", port = %d, retries = 0 }\n'
        .. 'check "flood" { plugin = "redis", host = "127.0.0.1", port = %d, retries = 0 }\n'):format(huge.port, flood.port) }
      local o = D.run(a, "huge")
      assert.are.equal("unhealthy", o.status)
      assert.are.equal(("127.0.0.1:%d: a bulk reply of 4294967295 bytes exceeds the 1048576-byte limit"):format(huge.port),
        o.message)
      o = D.run(a, "flood")
      assert.are.equal("unhealthy", o.status)
      assert.are.equal(("127.0.0.1:%d: a reply line longer than 65536 bytes"):format(flood.port), o.message)
    end)
    if a then a:stop() end
    if huge then huge.stop() end
    if flood then flood.stop() end
    assert(ok, err)
  end)

  it("is unhealthy once the server is stopped", function()
    redis.stop()
    local o = D.run(agent, "cache")
    assert.are.equal("unhealthy", o.status)
    assert.are.equal(("127.0.0.1:%d: connection refused"):format(redis.port), o.message)
  end)

  it("refuses a username without password, or a wrong port, at load, naming the file and line", function()
    for _, case in ipairs {
      { 'check "acl" { plugin = "redis", host = "127.0.0.1", username = "u" }', "option username: needs password" },
      { 'check "port" { plugin = "redis", host = "127.0.0.1", port = 0 }', "option port: 0 is not a TCP port (1..65535)" },
    } do
      local name = case[1]:match('check "([^"]+)"')
      assert.are.equal(('beagle.lua:%d: check "%s": %s'):format(S.calm_lines + 1, name, case[2]),
        S.refused(case[1] .. "\n"))
    end
  end)
end)
