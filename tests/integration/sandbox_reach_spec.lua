-- Everything a plugin can reach (issue 13 §1): a check walks its own environment, every public
-- module, the ctx it is given, metric handles, a timer and a query object, through table keys
-- and values and metatables (getmetatable, as the plugin sees them; upvalues are out of its
-- reach without debug). Every table, function, cdata, userdata or thread found is listed by
-- the first path that reaches it; the list must match tests/integration/sandbox_reach.txt,
-- committed with this test and reviewed by hand: a new entry fails the test until it is
-- looked at and added. Set BEAGLE_REACH_WRITE=1 to print the list instead.
local S = require "support"

-- The walk itself, shared by the check and the backend that run it: every value reachable from
-- roots, listed by the first path that reaches it, sorted.
local WALK = [[
local function walk(roots)
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
    return out
end
]]

local WALKER = WALK .. [[
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
    -- a span (issue 16): its metatable is closed, its methods are reached by name
    local span = beagle.trace_operation("reach")
    roots.span = span
    for _, m in ipairs { "set_attribute", "set_attributes", "add_event", "record_exception", "set_status",
      "trace_id", "span_id", "traceparent", "is_recording", "finish" } do
      roots["span:" .. m] = span[m]
    end
    local out = walk(roots)
    span:finish()
    return ctx.healthy("walked " .. #out, { paths = table.concat(out, "\n") })
  end,
}
]]

-- A backend's send: its ctx (ctx.encode's metatable is closed, its formats are functions made
-- on access), the batch (a userdata with a closed metatable: its methods are reached by
-- name) and a sample. The paths go to the sink.
local BACKEND_WALKER = WALK .. [[
return beagle.backend { name = "reach_backend", options = { url = "string" },
  send = function(batch, ctx)
    -- a sample that is not a histogram's (those add buckets), whichever comes first in the batch
    local one
    for i = 1, batch:size() do
      local s = batch:sample(i)
      if s.buckets == nil then one = s break end
    end
    local roots = { ctx = ctx, batch = batch, sample = one, samples = batch:samples(),
      ["ctx.encode.remote_write"] = ctx.encode.remote_write, ["ctx.encode.otlp_traces"] = ctx.encode.otlp_traces,
      ["ctx.encode.otlp_logs"] = ctx.encode.otlp_logs }
    for _, m in ipairs { "size", "time", "sample", "samples", "release" } do roots["batch:" .. m] = batch[m] end
    -- what the ctx's closed metatable answers by name (a send's ctx shares them)
    for _, k in ipairs { "http", "tcp", "udp", "json", "log", "response", "iso8601", "sha256", "hmac_sha256", "mail",
      "sleep", "now", "time", "read_file", "statvfs", "exec", "healthy", "degraded", "unhealthy", "unknown" } do
      roots["ctx:" .. k] = ctx[k]
    end
    local out = walk(roots)
    ctx.http.post(ctx.options.url, table.concat(out, "\n"))
    return true
  end,
}
]]

-- got (the walk's lines) must be exactly the reviewed list, and hold nothing of the kinds no
-- plugin may ever reach.
-- userdata: the lines of that kind allowed (cjson's null; a backend's batch).
local function verify(got, list, userdata)
  local want = S.read(S.src .. "/tests/integration/" .. list) or ""
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
      assert.is_true(userdata[line] == true, line)
    end
  end
  assert.are.same({}, extra, "reachable but not in tests/integration/" .. list)
  assert.are.same({}, missing, "in tests/integration/" .. list .. " but no longer reachable")
end

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
    verify(got, "sandbox_reach.txt", { ["require beagle.json.null\tuserdata"] = true })
  end)

  it("from a backend's send is exactly the reviewed allowlist", function()
    local dir = S.tmpdir()
    S.sh(("mkdir -p %q/backends"):format(dir))
    S.write(dir .. "/backends/reach_backend.lua", BACKEND_WALKER)
    local sink = S.sink()
    local agent = S.start { plugins = dir, config = S.calm_system
      .. ('backend "reach" { plugin = "reach_backend", url = "%s/walk", interval = "0.2s" }\n'):format(sink.url) }
    local r = S.wait(function() return sink.requests()[1] end, 10)
    agent:stop()
    sink.stop()
    assert.is_table(r, "the backend never sent")
    local got = r.body
    if os.getenv("BEAGLE_REACH_WRITE") then io.stdout:write(got, "\n") end
    verify(got, "sandbox_reach_backend.txt", { ["batch\tuserdata"] = true, ["ctx:json.null\tuserdata"] = true })
  end)
end)
