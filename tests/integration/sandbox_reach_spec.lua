-- Everything a plugin can reach (issue 13 §1): a check walks its own environment, every public
-- module, the ctx it is given, metric handles, a timer and a query object, through table keys
-- and values and metatables (getmetatable, as the plugin sees them; upvalues are out of its
-- reach without debug). Every table, function, cdata, userdata or thread found is listed by
-- the first path that reaches it; the list must match tests/integration/sandbox_reach.txt,
-- committed with this test and reviewed by hand: a new entry fails the test until it is
-- looked at and added. Set BEAGLE_REACH_WRITE=1 to print the list instead.
local S = require "support"

local WALKER = [[
return beagle.check { name = "reach", interval = "1h", retries = 0, timeout = "10s",
  run = function(opt, ctx)
    local roots = {
      env = _G,
      ctx = ctx,
      counter = beagle.counter("reach_c"), gauge = beagle.gauge("reach_g"),
      histogram = beagle.histogram("reach_h"), timer = beagle.timer("reach_t"),
    }
    for _, m in ipairs { "beagle", "beagle.json", "beagle.channel_util", "beagle.query" } do
      roots["require " .. m] = require(m)
    end
    local seen, out = {}, {}
    local queue, qi = {}, 1
    local function visit(v, path)
      local t = type(v)
      if t == "string" or t == "number" or t == "boolean" or t == "nil" then return end
      if seen[v] then return end
      seen[v] = true
      local kind = t
      if t == "cdata" then kind = "cdata" end
      out[#out + 1] = path .. "\t" .. kind
      if t == "table" then queue[#queue + 1] = { v, path } end
      local mt = getmetatable(v)
      if mt ~= nil and mt ~= false then visit(mt, path .. "<mt>") end
    end
    local names = {}
    for k in pairs(roots) do names[#names + 1] = k end
    table.sort(names)
    for _, k in ipairs(names) do visit(roots[k], k) end
    while qi <= #queue do
      local t, path = queue[qi][1], queue[qi][2]
      qi = qi + 1
      local keys = {}
      for k in pairs(t) do keys[#keys + 1] = k end
      table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
      for _, k in ipairs(keys) do
        visit(k, path .. "[key]")
        visit(rawget(t, k), path .. "." .. tostring(k))
      end
    end
    table.sort(out)
    return ctx.healthy("walked " .. #out, { paths = table.concat(out, "\n") })
  end,
}
]]

describe("what a plugin can reach", function()
  it("is exactly the reviewed allowlist", function()
    local dir = S.tmpdir()
    S.write(dir .. "/reach.lua", WALKER)
    local agent = S.start { plugins = dir, config = S.calm_system }
    local o = agent:wait_check("reach", function(c) return c.runs and c.runs > 0 end, 10)
    local st, d = agent:get_json("/health/reach")
    agent:stop()
    assert.is_table(o)
    assert.are.equal(200, st)
    assert.are.equal("healthy", o.status, o.message)
    local got = d.details and d.details.paths or ""
    if os.getenv("BEAGLE_REACH_WRITE") then io.stdout:write(got, "\n") end
    local want = S.read(S.src .. "/tests/integration/sandbox_reach.txt") or ""
    local allowed, have = {}, {}
    for line in want:gmatch("[^\n]+") do if not line:match("^#") then allowed[line] = true end end
    local extra, missing = {}, {}
    for line in got:gmatch("[^\n]+") do
      have[line] = true
      if not allowed[line] then extra[#extra + 1] = line end
    end
    for line in pairs(allowed) do if not have[line] then missing[#missing + 1] = line end end
    table.sort(missing)
    -- nothing of these kinds may ever be reachable, allowlist or not: the libraries a plugin
    -- must not have (as a path segment), the functions that load code, hook, peek or collect
    -- (as the last segment), and cdata, threads and userdata (cjson's null, a NULL light
    -- userdata sentinel, is the one value of those kinds a plugin holds)
    local BAD_PART = { ffi = true, jit = true, io = true, package = true, debug = true, C = true, __bg = true }
    local BAD_LAST = { getinfo = true, sethook = true, getupvalue = true, setupvalue = true, getregistry = true,
      getlocal = true, setlocal = true, dump = true, load = true, loadstring = true, dofile = true, loadfile = true,
      collectgarbage = true, getfenv = true, setfenv = true, newproxy = true, cdef = true, cast = true,
      popen = true, set_limits = true }
    local BAD_OS = { execute = true, getenv = true, remove = true, rename = true, exit = true, tmpname = true }
    for line in got:gmatch("[^\n]+") do
      local path, kind = line:match("^(.-)\t(%S+)$")
      local parts = {}
      for p in path:gsub("^require ", ""):gmatch("[^.]+") do parts[#parts + 1] = p end
      for i = 1, #parts - 1 do assert.is_nil(BAD_PART[parts[i]] and parts[i] or nil, line) end
      assert.is_nil(BAD_LAST[parts[#parts]] and parts[#parts] or nil, line)
      assert.is_nil(parts[#parts - 1] == "os" and BAD_OS[parts[#parts]] and parts[#parts] or nil, line)
      if kind ~= "table" and kind ~= "function" then
        assert.are.equal("require beagle.json.null\tuserdata", line)
      end
    end
    assert.are.same({}, extra, "reachable but not in tests/integration/sandbox_reach.txt")
    assert.are.same({}, missing, "in tests/integration/sandbox_reach.txt but no longer reachable")
  end)
end)
