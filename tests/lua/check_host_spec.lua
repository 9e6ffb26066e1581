-- The pure parts of the tcp, dns, process and file checks: reading a reply until a pattern,
-- comparing addresses, parsing /proc/<pid>/stat and status, CPU between two samples, and the
-- file check's thresholds.
local F = require "check_fixture"
local load_plugin, opts = F.load_check, F.opts

-- a connection that hands out the given chunks, then eof (or an error)
local function conn(chunks, last)
  local i = 0
  return {
    reads = 0,
    read = function(self)
      i = i + 1
      self.reads = i
      if chunks[i] then return chunks[i] end
      return nil, last or "eof"
    end,
  }
end

describe("tcp check: read_until", function()
  local P = load_plugin("tcp")
  it("reads over several chunks until the pattern matches, then stops", function()
    local c = conn { "+PO", "NG", "\r\n", "never read" }
    local data, ok = P.read_until(c, "^%+PONG\r\n", 100)
    assert.are.equal("+PONG\r\n", data)
    assert.is_true(ok)
    assert.are.equal(3, c.reads)
  end)
  it("stops at max_bytes, or at eof, without a match", function()
    local data, ok = P.read_until(conn { "abcdef", "ghij" }, "xyz", 8)
    assert.are.equal("abcdefgh", data)
    assert.is_false(ok)
    data, ok = P.read_until(conn { "abc" }, "xyz", 100)
    assert.are.equal("abc", data)
    assert.is_false(ok)
  end)
  it("does not match past max_bytes", function()
    local data, ok = P.read_until(conn { "aaaa", "OK" }, "OK", 5)
    assert.are.equal("aaaaO", data)
    assert.is_false(ok)
  end)
  it("passes a read error on with what came before", function()
    local data, err, got = P.read_until(conn({ "ab" }, "connection reset"), "x", 100)
    assert.is_nil(data)
    assert.are.equal("connection reset", err)
    assert.are.equal("ab", got)
  end)
end)

describe("dns check: compare", function()
  local P = load_plugin("dns")
  local got = { "127.0.0.1", "::1" }
  it("all: every expected address must be resolved", function()
    assert.is_nil(P.compare(got, { "127.0.0.1", "::1" }, "all"))
    assert.are.same({ "10.0.0.1" }, P.compare(got, { "127.0.0.1", "10.0.0.1" }, "all"))
  end)
  it("any: one is enough", function()
    assert.is_nil(P.compare(got, { "10.0.0.1", "::1" }, "any"))
    assert.are.same({ "10.0.0.1", "10.0.0.2" }, P.compare(got, { "10.0.0.1", "10.0.0.2" }, "any"))
  end)
  it("ignores the case of IPv6 letters", function()
    assert.is_nil(P.compare({ "fe80::abcd" }, { "FE80::ABCD" }, "all"))
  end)
  it("compares IPv6 addresses as addresses, not text", function()
    assert.is_nil(P.compare({ "2001:db8::1" }, { "2001:db8:0:0::1", "2001:0db8:0000:0000:0000:0000:0000:0001" }, "all"))
    assert.is_nil(P.compare({ "::ffff:10.0.0.1" }, { "::ffff:a00:1" }, "all"))
    assert.are.same({ "2001:db8::2" }, P.compare({ "2001:db8::1" }, { "2001:db8::2" }, "all"))
    assert.are.equal("0000:0000:0000:0000:0000:0000:0000:0001", P.canonical("::1"))
    assert.are.equal("2001:0db8:0000:0000:0000:0000:0000:0000", P.canonical("2001:db8::"))
    for _, bad in ipairs { "1::2::3", "12345::", "1:2:3:4:5:6:7:8:9", "1:2:3", ":::", "g::1", "::1.2.3.256" } do
      assert.is_nil(P.canonical(bad), bad)
    end
  end)
end)

describe("process check", function()
  local P = load_plugin("process")
  it("parses /proc/<pid>/stat, a name with spaces and parentheses too", function()
    local line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 98765 123 4 1844"
    local s = P.parse_stat(line)
    assert.are.same({ state = "S", ticks = 300, start = 98765 }, s)
    assert.is_nil(P.parse_stat("garbage"))
    assert.is_nil(P.parse_stat(nil))
  end)
  it("reads VmRSS in bytes", function()
    assert.are.equal(2048 * 1024, P.parse_rss("Name:\tx\nVmPeak:\t 9 kB\nVmRSS:\t    2048 kB\nRssAnon: 1 kB\n"))
    assert.is_nil(P.parse_rss("Name:\tkthreadd\n"))
  end)
  it("joins a command line's arguments", function()
    assert.are.equal("/bin/sleep 300", P.cmdline_text("/bin/sleep\0" .. "300\0"))
  end)
  it("computes CPU percent of one core between samples, skipping new and reused pids", function()
    local prev = { ["1"] = { ticks = 100, start = 5 }, ["2"] = { ticks = 10, start = 7 } }
    local now = { ["1"] = { ticks = 150, start = 5 }, ["2"] = { ticks = 500, start = 9 }, ["3"] = { ticks = 80, start = 11 } }
    -- pid 1: 50 ticks = 0.5 s of CPU in 2 s -> 25 %; pid 2 was reused, pid 3 is new
    assert.are.equal(25, P.cpu_percent(prev, now, 2))
    assert.are.equal(0, P.cpu_percent(prev, now, 0))
  end)
end)

describe("file check: problems", function()
  local P = load_plugin("file")
  local st = { size = 500, mtime = 1000 }
  it("finds nothing wrong within the bounds", function()
    assert.are.same({}, P.problems({ max_age = 60, min_size = 1, max_size = 1000, min_free_percent = 10,
      min_free_mb = 1 }, st, 1030, { total = 100 * 1048576, available = 50 * 1048576 }))
  end)
  it("lists each problem", function()
    local p = P.problems({ max_age = 60, min_size = 1000, min_free_percent = 60, min_free_mb = 100 }, st, 4600,
      { total = 100 * 1048576, available = 50 * 1048576 })
    assert.are.same({ "modified 60m ago (max_age 60s)", "500 bytes, below min_size 1000",
      "filesystem 50.0% free, below min_free_percent 60", "filesystem 50 MiB free, below min_free_mb 100" }, p)
    assert.are.same({ "500 bytes, above max_size 10" }, P.problems({ max_size = 10 }, st, 1000))
  end)
  it("writes ages for people", function()
    assert.are.equal("59s", P.human_age(59))
    assert.are.equal("5m", P.human_age(300))
    assert.are.equal("3.0h", P.human_age(10800))
    assert.are.equal("2.5d", P.human_age(216000))
  end)
end)

describe("tcp, dns, process and file checks: validate, at load", function()
  it("accepts good options and names the option it refuses", function()
    local tcp, dns, process, file = load_plugin("tcp"), load_plugin("dns"), load_plugin("process"), load_plugin("file")
    for _, case in ipairs {
      { tcp, { port = 22 }, nil },
      { tcp, { port = 65536 }, "option port: 65536 is not a TCP port (1..65535)" },
      { tcp, { port = 22, max_bytes = 16 * 1024 * 1024 + 1 }, "option max_bytes: 16777217 is outside 1..16777216" },
      { dns, { name = "h", expect = { "::1" }, expect_mode = "any", family = "inet6" }, nil },
      { dns, { name = "h", family = "ipv6" }, 'option family: "ipv6" is not any, inet or inet6' },
      { dns, { name = "h", expect = { {} } }, "option expect: item 1 is a table, not an address string" },
      { process, { name = "nginx", min_count = 0, max_count = 0 }, nil },
      { process, { pidfile = "/run/x.pid" }, nil },
      { process, {}, "options name and pidfile: give exactly one of them" },
      { process, { name = "x", min_count = -1 }, "option min_count: -1 is negative" },
      { process, { pidfile = "run/x.pid" }, 'option pidfile: "run/x.pid" is not an absolute path' },
      { file, { path = "/x", min_size = 1, max_size = 1 }, nil },
      { file, { path = "x" }, 'option path: "x" is not absolute' },
      { file, { path = "/x", min_size = 2, max_size = 1 }, "option min_size: 2 is above max_size (1)" },
    } do
      assert.are.equal(case[3] or "accepted", case[1].validate(opts(case[1], case[2])) or "accepted")
    end
  end)
end)
