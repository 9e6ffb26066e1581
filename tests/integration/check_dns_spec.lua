-- The dns check through the agent's resolver (ctx.dns.resolve, getaddrinfo on the loop's
-- thread pool): localhost, expected addresses (all and any), a .invalid name (NXDOMAIN by
-- RFC 6761), a wrong option, and its gauges.
local S = require "support"

describe("dns check", function()
  local agent

  setup(function()
    agent = S.start {
      config = S.calm_system .. [[
local function c(name, t) t.plugin = "dns" t.retries = 0 t.interval = "5s" check(name)(t) end
c("localhost", { name = "localhost" })
c("localhost4", { name = "localhost", family = "inet", expect = { "127.0.0.1" } })
c("missing_one", { name = "localhost", family = "inet", expect = { "127.0.0.1", "192.0.2.77" } })
c("any_of", { name = "localhost", family = "inet", expect = { "192.0.2.77", "127.0.0.1" }, expect_mode = "any" })
c("none_of", { name = "localhost", family = "inet", expect = { "192.0.2.77", "192.0.2.78" }, expect_mode = "any" })
c("nxdomain", { name = "no-such-name.invalid" })
]],
    }
  end)

  teardown(function()
    if agent then agent:stop() end
  end)

  local function expect(name, status, message)
    local o = agent:wait_check(name, function(c) return c.runs and c.runs > 0 end, 20)
    assert.is_truthy(o, "check " .. name .. " did not run:\n" .. agent:logtext())
    assert.are.equal(status, o.status, name .. ": " .. tostring(o.message))
    if message then
      assert.is_truthy(tostring(o.message):find(message, 1, true), name .. ": " .. tostring(o.message))
    end
    return o
  end

  it("resolves localhost, and records the time and the number of addresses", function()
    local o = expect("localhost", "healthy", "localhost: ")
    assert.is_true(o.details.count >= 1)
    assert.is_number(o.details.time)
    local _, body = agent:get("/metrics")
    local n = tonumber(body:match('\ncheck_dns_addresses{check="localhost"} ([%d%.]+)\n'))
    assert.are.equal(o.details.count, n, body)
    assert.is_truthy(body:find('\ncheck_dns_seconds{check="localhost"} [%d%.e+-]+\n'), body)
  end)

  it("finds the expected addresses, all of them or any", function()
    local o = expect("localhost4", "healthy")
    assert.are.equal("127.0.0.1", o.details.addresses)
    expect("missing_one", "unhealthy", "localhost: missing 192.0.2.77 (resolved 127.0.0.1)")
    expect("any_of", "healthy")
    expect("none_of", "unhealthy", "localhost: none of 192.0.2.77, 192.0.2.78 (resolved 127.0.0.1)")
  end)

  it("is unhealthy for a name that does not exist, naming it", function()
    local o = expect("nxdomain", "unhealthy", "no-such-name.invalid")
    assert.is_nil(o.details.addresses)
    local _, body = agent:get("/metrics")
    assert.is_truthy(body:find('\ncheck_dns_addresses{check="nxdomain"} 0\n'), body)
  end)

  it("refuses a wrong option at load, naming the file and line, the check and the option", function()
    for _, case in ipairs {
      { 'check "bad_family" { plugin = "dns", name = "localhost", family = "ipv4" }',
        'option family: "ipv4" is not any, inet or inet6' },
      { 'check "bad_mode" { plugin = "dns", name = "localhost", expect = { "127.0.0.1" }, expect_mode = "most" }',
        'option expect_mode: "most" is not all or any' },
      { 'check "bad_item" { plugin = "dns", name = "localhost", expect = { "127.0.0.1", 7 } }',
        "option expect: item 2 is a number, not an address string" },
    } do
      local name = case[1]:match('check "([^"]+)"')
      assert.are.equal(('beagle.lua:%d: check "%s": %s'):format(S.calm_lines + 1, name, case[2]),
        S.refused(case[1] .. "\n"))
    end
  end)
end)
