-- A name resolves (through the system resolver, on the loop's thread pool), optionally to
-- expected addresses, in time. The time and the number of addresses go into the details and the
-- gauges check.dns.seconds{check} and check.dns.addresses{check}.

local FAMILIES = { any = true, inet = true, inet6 = true }

-- The canonical text of an IPv6 address (8 groups of 4 lower-case hex digits, "::" expanded,
-- an embedded IPv4 tail turned into two groups), so that 2001:db8:0:0::1 is 2001:db8::1; any
-- other text (IPv4, or not an address) as it is, lower-cased. nil for a malformed IPv6 one.
local function canonical(a)
  a = tostring(a):lower()
  if not a:find(":", 1, true) then return a end
  local v4 = a:match(":(%d+%.%d+%.%d+%.%d+)$")
  if v4 then
    local b = {}
    for n in v4:gmatch("%d+") do b[#b + 1] = tonumber(n) end
    for _, n in ipairs(b) do if n > 255 then return nil end end
    a = a:sub(1, -#v4 - 1) .. ("%x:%x"):format(b[1] * 256 + b[2], b[3] * 256 + b[4])
  end
  local head, tail = a:match("^(.-)::(.*)$")
  local function groups(t)
    local out = {}
    if t == "" then return out end
    for g in (t .. ":"):gmatch("([^:]*):") do
      if not g:match("^%x%x?%x?%x?$") then return nil end
      out[#out + 1] = ("%04x"):format(tonumber(g, 16))
    end
    return out
  end
  local h, t
  if head then h, t = groups(head), groups(tail) else h, t = groups(a), {} end
  if not h or not t then return nil end
  local fill = 8 - #h - #t
  if (head and fill < 1) or (not head and fill ~= 0) then return nil end
  for _ = 1, fill do h[#h + 1] = "0000" end
  for _, g in ipairs(t) do h[#h + 1] = g end
  return table.concat(h, ":")
end

-- compare(got, expect, mode) -> nil when the expectation holds, else the list of what is missing
-- (mode "all": every expected address must be among those resolved; "any": at least one).
-- Addresses are compared as addresses, not as text (canonical).
local function compare(got, expect, mode)
  local have = {}
  for _, a in ipairs(got) do
    local c = canonical(a)
    if c then have[c] = true end
  end
  local missing, found = {}, 0
  for _, e in ipairs(expect) do
    if have[canonical(e) or ""] then found = found + 1 else missing[#missing + 1] = tostring(e) end
  end
  if mode == "any" then
    if found > 0 or #expect == 0 then return nil end
    return missing
  end
  if #missing == 0 then return nil end
  return missing
end

return beagle.check {
  name = "dns",
  description = "a name resolves, optionally to expected addresses, in time",
  options = {
    name = { "string", description = "host name to resolve" },
    family = { "string", default = "any", description = "address family: any, inet (IPv4) or inet6 (IPv6)" },
    expect = { "list", optional = true, description = "addresses expected among the answers" },
    expect_mode = { "string", default = "all",
      description = "all: every address of expect must be resolved; any: at least one of them" },
    slow = { "duration", default = "1s", description = "resolution time above which the check is degraded" },
    metrics = { "boolean", default = true,
      description = "record the time and address count as gauges check.dns.seconds{check}, check.dns.addresses{check}" },
  },
  compare = compare,
  canonical = canonical,
  -- at load (and reload): what the option types cannot say
  validate = function(opt)
    if not FAMILIES[opt.family] then
      return ("option family: %q is not any, inet or inet6"):format(opt.family)
    end
    if opt.expect_mode ~= "all" and opt.expect_mode ~= "any" then
      return ("option expect_mode: %q is not all or any"):format(opt.expect_mode)
    end
    for i, e in ipairs(opt.expect or {}) do
      if type(e) ~= "string" then
        return ("option expect: item %d is a %s, not an address string"):format(i, type(e))
      end
      if not canonical(e) then return ("option expect: item %d, %q, is not an IPv6 address"):format(i, e) end
    end
  end,
  run = function(opt, ctx)
    local t0 = ctx.now()
    local addrs, err = ctx.dns.resolve(opt.name, { family = opt.family })
    local elapsed = ctx.now() - t0
    if opt.metrics then pcall(beagle.set_gauge, "check.dns.seconds", elapsed, { check = ctx.name }) end
    if not addrs then
      if opt.metrics then pcall(beagle.set_gauge, "check.dns.addresses", 0, { check = ctx.name }) end
      return ctx.unhealthy(tostring(err), { time = elapsed })
    end
    if opt.metrics then pcall(beagle.set_gauge, "check.dns.addresses", #addrs, { check = ctx.name }) end
    local details = { time = elapsed, addresses = table.concat(addrs, ", "), count = #addrs }
    if #addrs == 0 then return ctx.unhealthy(opt.name .. ": no addresses", details) end
    if opt.expect then
      local missing = compare(addrs, opt.expect, opt.expect_mode)
      if missing then
        local what = opt.expect_mode == "any" and "none of" or "missing"
        return ctx.unhealthy(("%s: %s %s (resolved %s)"):format(opt.name, what, table.concat(missing, ", "),
          details.addresses), details)
      end
    end
    if elapsed > opt.slow then
      return ctx.degraded(("%s: slow: %.3fs"):format(opt.name, elapsed), details)
    end
    return ctx.healthy(("%s: %s in %.3fs"):format(opt.name, details.addresses, elapsed), details)
  end,
}
