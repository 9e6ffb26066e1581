-- agent.metrics.plugin_api(): what a plugin gets of the metrics (issue 13 §1). Its own spec
-- file so that it starts in a fresh state. Two halves: everything reachable from the API is
-- free of ffi, clibs, the registry and raw pointers; and every attack a plugin could try with
-- it (indexing past a handle, lowering a counter, foreign values as handles and arguments)
-- ends in a Lua error or nil, err, never a crash, and leaves every other series as it was.
local ffi = require("ffi")
local metrics = require("agent.metrics")

local ALLOWED = { "counter", "gauge", "histogram", "increment_counter", "set_gauge",
  "record_histogram", "timer", "time", "quantile", "now" }

-- Series the attacks must leave alone, read through the trusted API.
local sentinel = {}
local function sentinel_state()
  local lines = {}
  for line in metrics.render():gmatch("[^\n]+") do
    if line:find("^attack_sentinel") then lines[#lines + 1] = line end
  end
  return {
    c = metrics.counter("attack.sentinel_c"):value(),
    g = metrics.gauge("attack.sentinel_g"):value(),
    h = metrics.histogram("attack.sentinel_h"):count(),
    hs = metrics.histogram("attack.sentinel_h"):sum(),
    exposed = table.concat(lines, "\n"),
  }
end

local function values_of(t)
  local set = {}
  for _, v in pairs(t) do set[v] = true end
  return set
end

-- Every function and table the trusted side holds that a plugin must never get.
local forbidden = values_of(ffi)
for _, k in ipairs { "C", "registry", "pointer", "remove", "set_limits", "limits", "render",
  "render_prometheus", "gzip", "negotiate", "accepts_gzip", "plugin_api" } do
  if metrics[k] ~= nil then forbidden[metrics[k]] = k end
end
forbidden[ffi] = "ffi"
forbidden[metrics] = "agent.metrics"

-- Walks v: table keys and values, metatables as getmetatable shows them. Returns the list of
-- what should not be there, each with its path.
local function walk(root, name)
  local bad, seen = {}, {}
  local function visit(v, path)
    local t = type(v)
    if t ~= "table" and t ~= "function" and t ~= "cdata" and t ~= "userdata" and t ~= "thread" then
      return
    end
    if seen[v] then return end
    seen[v] = true
    if t == "cdata" or t == "userdata" or t == "thread" then
      bad[#bad + 1] = path .. " is " .. t
      return
    end
    if forbidden[v] then
      bad[#bad + 1] = path .. " is " .. tostring(forbidden[v])
      return
    end
    local mt = getmetatable(v)
    if mt ~= nil and mt ~= false then visit(mt, path .. "<mt>") end
    if t == "table" then
      for k, x in next, v do
        visit(k, path .. "[key]")
        visit(x, path .. "." .. tostring(k))
      end
    end
  end
  visit(root, name)
  return bad
end

describe("agent.metrics plugin_api", function()
  setup(function()
    metrics.counter("attack.sentinel_c"):add(7)
    metrics.gauge("attack.sentinel_g"):set(3)
    metrics.histogram("attack.sentinel_h"):observe(1)
    metrics.histogram("attack.sentinel_h"):observe(2)
    sentinel = sentinel_state()
  end)

  after_each(function()
    assert.same(sentinel, sentinel_state())
  end)

  it("is a new plain table of trusted functions each call, with nothing else", function()
    local a, b = metrics.plugin_api(), metrics.plugin_api()
    assert.is_not.equal(a, b)
    assert.is_nil(getmetatable(a))
    local keys = {}
    for k, v in pairs(a) do
      keys[#keys + 1] = k
      assert.equal("function", type(v), k)
      assert.equal(v ~= nil, b[k] ~= nil, k)
    end
    table.sort(keys)
    local want = { unpack(ALLOWED) }
    table.sort(want)
    assert.same(want, keys)
    -- handles are never shared between the agent and a plugin, nor between two plugin APIs
    local h1, h2 = a.counter("attack.shared"), b.counter("attack.shared")
    assert.equal(h1, a.counter("attack.shared"))
    assert.is_not.equal(h1, h2)
    assert.is_not.equal(h1, metrics.counter("attack.shared"))
  end)

  it("reaches no ffi, clib, registry, raw pointer or trusted-only function", function()
    local api = metrics.plugin_api()
    local roots = {
      api = api,
      counter = api.counter("attack.reach_c", { k = "v" }),
      gauge = api.gauge("attack.reach_g"),
      histogram = api.histogram("attack.reach_h", { buckets = { 1, 2 } }),
      timer = api.timer("attack.reach_t"),
      now = api.now(),
      quantile = { api.quantile("attack.reach_h", nil, 0.5) },
      by_name = { api.increment_counter("attack.reach_n"), api.set_gauge("attack.reach_n2", 1),
        api.record_histogram("attack.reach_n3", 1) },
      time = { api.time("attack.reach_t", nil, function() return 1 end) },
    }
    roots.stopped = roots.timer:stop()
    -- results and error objects of calls with bad arguments
    local errors = {}
    for _, k in ipairs(ALLOWED) do
      for _, arg in ipairs { {}, 0, "9x" } do
        errors[#errors + 1] = { pcall(api[k], arg, arg, arg) }
      end
    end
    for _, h in ipairs { roots.counter, roots.gauge, roots.histogram } do
      for _, f in pairs(h) do errors[#errors + 1] = { pcall(f, nil, "x") } end
    end
    roots.errors = errors
    assert.same({}, walk(roots, "plugin"))
    for _, h in ipairs { roots.counter, roots.gauge, roots.histogram, roots.timer } do
      assert.is_false(getmetatable(h))
      assert.has_error(function() setmetatable(h, {}) end)
      assert.is_nil(tostring(h):find("0x", 1, true))
      assert.is_nil(tostring(h):find("cdata", 1, true))
    end
  end)

  it("bounds a handle: no index reaches past its series, no write lands", function()
    local api = metrics.plugin_api()
    local c, g, h = api.counter("attack.bound_c"), api.gauge("attack.bound_g"),
      api.histogram("attack.bound_h")
    c:inc(5)
    g:set(5)
    for _, x in ipairs { c, g, h } do
      for _, k in ipairs { 0, 1, -1, 2 ^ 26, -2 ^ 31, 2 ^ 53, 2 ^ 63, 1 / 0, -1 / 0, 0.5, "v",
        "value_", true } do
        assert.has_error(function() return x[k] end)
        assert.has_error(function() x[k] = 1 end)
      end
      assert.has_error(function() x[0 / 0] = 1 end)
      assert.has_error(function() return x[2 ^ 26].v end)
      assert.has_error(function() x[2 ^ 26].v = 1 end)
      assert.has_error(function() x.v = -1 end)
      rawset(x, "v", -1) -- lands in the table, not in the series
      assert.has_error(function() return x + 1 end)
      assert.has_error(function() return x() end)
    end
    assert.equal(5, c:value())
    assert.equal(5, g:value())
    assert.equal(0, h:count())
  end)

  it("never lowers a counter", function()
    local api = metrics.plugin_api()
    local c = api.counter("attack.down")
    c:inc(10)
    local tricky = setmetatable({}, {
      __lt = function() return false end, __le = function() return true end,
      __add = function() return -1e300 end, __sub = function() return -1e300 end,
      __tonumber = function() return -1 end,
    })
    for _, v in ipairs { -1, -1e300, -1 / 0, 0 / 0 } do
      c:inc(v)
      c:add(v)
    end
    for _, v in ipairs { tricky, "-5", "x", true, {}, c, print } do
      assert.has_error(function() c:inc(v) end)
      assert.has_error(function() c:add(v) end)
    end
    assert.has_error(function() c:add() end)
    assert.equal(10, c:value())
    for _, v in ipairs { -1, -1 / 0, 0 / 0 } do assert.is_nil(api.increment_counter("attack.down", v)) end
    assert.is_nil(api.increment_counter("attack.down", tricky))
    assert.equal(10, c:value())
  end)

  it("raises for anything but a live handle of the method's kind, before any C call", function()
    local api = metrics.plugin_api()
    local c, g, h = api.counter("attack.self_c"), api.gauge("attack.self_g"),
      api.histogram("attack.self_h")
    local t = api.timer("attack.self_t")
    local co = coroutine.create(function() end)
    local foreign = { nil, false, true, 0, -1, 2 ^ 63, 0 / 0, "", "attack.self_c", {}, print, co,
      setmetatable({}, { __index = function() return 1 end }), { v = 1 }, t }
    local n = 15 -- foreign has holes at nil
    for _, x in ipairs { c, g, h } do
      local kinds = { c, g, h }
      for name, f in pairs(x) do
        for i = 1, n do
          local ok, err = pcall(f, foreign[i], 1)
          assert.is_false(ok, name)
          assert.is_string(err, name)
        end
        for _, other in ipairs(kinds) do
          if other ~= x then
            local ok, err = pcall(f, other, 1)
            assert.is_false(ok, name)
            assert.matches("handle expected, got a %a+ handle", err)
          end
        end
      end
    end
    -- and from compiled code, where the checks are guards in the trace
    local bad = 0
    for i = 1, 2000 do
      local self = (i % 3 == 0) and g or c
      if not pcall(c.inc, self, 1) then bad = bad + 1 end
      if not pcall(h.observe, (i % 5 == 0) and c or h, 1) then bad = bad + 1 end
    end
    assert.equal(666 + 400, bad)
    assert.equal(2000 - 666, c:value())
    assert.equal(2000 - 400, h:count())
    for i = 1, n - 1 do -- all but the timer itself
      local ok, err = pcall(t.stop, foreign[i])
      assert.is_false(ok)
      assert.matches("a timer expected", err)
    end
    assert.is_number(t:stop())
  end)

  it("gives nil, err or a clear error for foreign arguments to every function", function()
    local api = metrics.plugin_api()
    local c = api.counter("attack.arg_c")
    local huge = {}
    for i = 1, 100000 do huge[i] = i end
    local labels_huge = {}
    for i = 1, 100 do labels_huge["l" .. i] = "v" end
    local args = { nil, 0, -1, 2 ^ 53, 0 / 0, "", "9x", "a b", ("x"):rep(100000), {}, huge, print,
      coroutine.create(print), c, setmetatable({}, { __index = function() error("boom") end }),
      { k = {} }, labels_huge, { [1] = "v" }, { k = 0 / 0 } }
    local nargs = 19
    for _, k in ipairs(ALLOWED) do
      for i = 1, nargs do
        for j = 1, nargs, 3 do
          local ok, r1, r2 = pcall(api[k], args[i], args[j], args[(i + j) % nargs + 1])
          if ok and r1 == nil and k ~= "counter" then assert.is_string(r2, k) end
        end
      end
    end
    assert.has_error(function() api.histogram("attack.buckets", { buckets = huge }) end)
    assert.has_error(function() api.histogram("attack.buckets", { buckets = { 1, "x" } }) end)
    assert.has_error(function() api.counter("attack.opts", nil, "opts") end)
    assert.has_error(function() api.counter("attack.labels", labels_huge) end)
    local ok, err = api.quantile(c, 0.5)
    assert.is_nil(ok)
    assert.equal("quantile: a histogram handle or a metric name expected, got a counter handle", err)
    ok, err = api.quantile({}, 0.5)
    assert.is_nil(ok)
    assert.matches("got table", err)
    assert.same({ nil, "time: fn must be callable" }, { api.time("attack.t", nil, {}) })
    local obj = setmetatable({}, { __tostring = function() error("never called") end })
    local ok2, got = pcall(api.time, "attack.t", nil, function() error(obj) end)
    assert.is_false(ok2)
    assert.equal(obj, got) -- the plugin's own error object, passed through untouched
    assert.is_number(api.now())
    assert.equal(0, c:value())
  end)

  it("kills every handle of a removed series in this state (agent side)", function()
    local api = metrics.plugin_api()
    local a, b = api.histogram("attack.removed"), metrics.histogram("attack.removed")
    local t = api.timer("attack.removed")
    a:observe(1)
    metrics.remove(b)
    for _, x in ipairs { a, b } do
      local ok, err = pcall(x.observe, x, 1)
      assert.is_false(ok)
      assert.equal("bad self to 'observe' (a histogram handle expected, got a removed histogram handle)", err)
      assert.has_error(function() return x:count() end)
      assert.equal("beagle.histogram (removed)", tostring(x))
    end
    assert.is_number(t:stop()) -- records nothing: the series is gone
    assert.is_nil(api.quantile(a, 0.5))
    assert.has_error(function() metrics.remove(a) end)
    assert.has_error(function() metrics.remove(nil) end)
    assert.has_error(function() metrics.remove({}) end)
    local fresh = api.histogram("attack.removed") -- a new series, a new handle
    assert.is_not.equal(a, fresh)
    assert.equal(0, fresh:count())
  end)

  it("runs as plugins run it: interpreted, with a count hook", function()
    local api = metrics.plugin_api()
    local chunk = assert(load([[
      local api = ...
      local c, g, h = api.counter("attack.plugin_c"), api.gauge("attack.plugin_g"),
        api.histogram("attack.plugin_h")
      for i = 1, 5000 do
        c:inc() g:set(i) h:observe(i / 1000)
        api.increment_counter("attack.plugin_n", 1, { k = "v" })
        pcall(c.inc, g)
      end
      return c:value(), g:value(), h:count()
    ]], "=plugin"))
    jit.off(chunk, true)
    local hooks = 0
    debug.sethook(function() hooks = hooks + 1 end, "", 1000)
    local cv, gv, hc = chunk(api)
    debug.sethook()
    assert.is_true(hooks > 0)
    assert.same({ 5000, 5000, 5000 }, { cv, gv, hc })
    assert.equal(5000, metrics.counter("attack.plugin_n", { k = "v" }):value())
  end)

  it("makes no series outside the limits once the state hosts plugins", function()
    metrics.plugin_api() -- this state is a plugin's from now on
    metrics.set_limits(1, 1)
    local ok, err = metrics.set_gauge("beagle_plugin_claims_own", 1)
    metrics.set_limits()
    assert.is_nil(ok)
    assert.equal("total series limit reached (1)", err)
  end)
end)
