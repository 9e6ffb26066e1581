-- Runs first in every plugin's lua_State: builds the environment plugin code sees and the
-- entry points the agent calls through the C core (script.c): __load, __validate, __run_check.
-- Plugin chunks run with the JIT off (jit.off(chunk, true)) so that the count hook that
-- enforces the instruction budget and deadline fires; this library keeps the JIT.
local bg = __bg
package.path = bg.lua_dir .. "/?.lua;" .. bg.lua_dir .. "/?/init.lua"
-- no C modules, except cjson for beagle.json (loaded on first use, e.g. by a channel)
local cjson_so = package.searchpath("cjson", package.cpath)
if cjson_so then package.preload.cjson = package.loadlib(cjson_so, "luaopen_cjson") end
package.cpath = ""

local beagle = require "beagle"
local util = require "agent.util"

local raw_pcall, raw_xpcall, raw_error = pcall, xpcall, error
local co_create, co_resume, co_yield, co_status = coroutine.create, coroutine.resume, coroutine.yield,
  coroutine.status
local unpack, select, type = unpack, select, type

-- A run that was killed (timeout, budget, memory) must not be kept alive by a pcall in
-- plugin code: every protected call re-raises once the run is killed.
local function guard(ok, ...)
  local why = bg.killed()
  if why then raw_error(why, 0) end
  return ok, ...
end
local function safe_pcall(f, ...) return guard(raw_pcall(f, ...)) end
local function safe_xpcall(f, h, ...)
  if select("#", ...) > 0 then
    local args = { n = select("#", ...), ... }
    return guard(raw_xpcall(function() return f(unpack(args, 1, args.n)) end, h))
  end
  return guard(raw_xpcall(f, h))
end

-- Coroutines inside plugin code: the C core yields a marker when an I/O call waits; a
-- plugin's own coroutine passes that yield up to the run and hands the result back down.
local function resume(co, ...)
  local r = { n = 0 }
  local function collect(...) r = { n = select("#", ...), ... } end
  collect(co_resume(co, ...))
  while r[1] and r.n == 2 and r[2] == bg.IO and co_status(co) == "suspended" do
    -- the inner coroutine waits on I/O: wait with it, then resume it with the result
    collect(co_resume(co, co_yield(r[2])))
  end
  guard(true)
  return unpack(r, 1, r.n)
end
local safe_coroutine = {
  create = co_create, status = co_status, running = coroutine.running, yield = co_yield,
  resume = resume,
  wrap = function(f)
    local co = co_create(f)
    return function(...)
      local r = { resume(co, ...) }
      if not r[1] then raw_error(r[2], 0) end
      return unpack(r, 2)
    end
  end,
}

local function copy_lib(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local function make_env(name)
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    select = select, tonumber = tonumber, tostring = tostring, type = type, unpack = unpack,
    rawequal = rawequal, rawget = rawget, rawset = rawset, setmetatable = setmetatable,
    getmetatable = getmetatable, _VERSION = _VERSION,
    pcall = safe_pcall, xpcall = safe_xpcall, coroutine = safe_coroutine,
    string = copy_lib(string), table = copy_lib(table), math = copy_lib(math), bit = copy_lib(bit),
    os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime },
    beagle = beagle,
    print = function(...)
      local parts = {}
      for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
      beagle.log.info(table.concat(parts, " "))
    end,
    require = function(mod)
      if mod == "beagle.query" then return require("agent.query") end
      if type(mod) == "string" and mod:match("^beagle%.?") then return require(mod) end
      raw_error(("plugin %s: require %q is not allowed (only beagle modules)"):format(name, tostring(mod)), 2)
    end,
  }
  env._G = env
  return env
end

local PLUGIN -- the table the plugin file returned

-- __load(path) -> metadata | nil, err
function __load(path)
  local src, err = bg.read_file(path, 4 * 1024 * 1024)
  if not src then return nil, err end
  local chunk
  chunk, err = load(src, "@" .. path, "t")
  if not chunk then return nil, err end
  jit.off(chunk, true)
  setfenv(chunk, make_env(path))
  local ok, p = raw_pcall(chunk)
  if not ok then return nil, tostring(p) end
  local kind = beagle.is_plugin(p)
  if not kind then
    return nil, path .. ": the file must return beagle.check { ... }, beagle.backend { ... } or beagle.channel { ... }"
  end
  PLUGIN = p
  local all_defaults = true
  local options = {}
  for oname, o in pairs(p.options) do
    if o.required then all_defaults = false end
    options[oname] = { type = o.type, default = o.default, required = o.required, description = o.description }
  end
  return {
    kind = kind, name = p.name, description = p.description, options = options,
    interval = p.interval, timeout = p.timeout, retries = p.retries, critical = p.critical, resend = p.resend,
    all_defaults = all_defaults,
  }
end

-- __collect() -> true: a full collection, after loading (the parser's garbage goes at once)
function __collect()
  collectgarbage()
  return true
end

-- __validate(given_options) -> typed options | nil, err
function __validate(given)
  if not PLUGIN then return nil, "no plugin loaded" end
  return beagle.validate_options(PLUGIN.options, given)
end

-- bg.http's answer: { status, body, headers = { lowercased name = value }, time } | nil, err
local function http_request(req)
  return bg.http(req)
end

local function header_list(h)
  local out = {}
  if type(h) == "table" then
    for k, v in pairs(h) do
      if type(k) == "number" then out[#out + 1] = v else out[#out + 1] = k .. ": " .. tostring(v) end
    end
  end
  return out
end

local function result(status)
  return function(message, details)
    if message ~= nil and type(message) ~= "string" then message = tostring(message) end
    if details ~= nil and type(details) ~= "table" then details = { value = details } end
    return { __check_result = true, status = status, message = message, details = details }
  end
end

local function make_ctx(a)
  local ctx = {
    name = a.name,
    healthy = result("healthy"), degraded = result("degraded"),
    unhealthy = result("unhealthy"), unknown = result("unknown"),
    sleep = bg.sleep, now = bg.now, time = bg.wall,
    read_file = bg.read_file, statvfs = bg.statvfs,
    log = beagle.log,
    http = {
      request = function(req)
        req = util.copy(req)
        req.headers = header_list(req.headers)
        return http_request(req)
      end,
      get = function(url, opt)
        opt = opt or {}
        return http_request { url = url, method = "GET", timeout = opt.timeout, headers = header_list(opt.headers),
          follow = opt.follow, insecure = opt.insecure, max_body = opt.max_body }
      end,
      post = function(url, body, opt)
        opt = opt or {}
        return http_request { url = url, method = "POST", body = body, timeout = opt.timeout,
          headers = header_list(opt.headers), insecure = opt.insecure, max_body = opt.max_body }
      end,
    },
    tcp = { connect = function(host, port) return bg.tcp_connect(host, port) end },
    exec = function(argv) return bg.exec(argv) end,
  }
  return ctx
end

-- __run_check{ name, opts } -> { status, message, details, response_time }
function __run_check(a)
  if not PLUGIN or PLUGIN.kind ~= "check" then raw_error("plugin is not a check", 0) end
  local ctx = make_ctx(a)
  local t0 = bg.now()
  local r = PLUGIN.run(a.opts or {}, ctx)
  local elapsed = bg.now() - t0
  if type(r) ~= "table" or not r.__check_result then
    raw_error(("check %s returned %s: return ctx.healthy(), ctx.degraded() or ctx.unhealthy()")
      :format(a.name, type(r)), 0)
  end
  return { status = r.status, message = r.message, details = r.details, response_time = elapsed }
end

-- ---- channels -------------------------------------------------------------------------------
-- lua/beagle/CHANNELS.md is the contract: send(n, ctx) returns true (or nothing) when the receiver
-- took the notification; nil/false, err[, { retry_after, permanent }] or a raised error otherwise.

local function masker(opts)
  local secrets = {}
  for oname, o in pairs(PLUGIN and PLUGIN.options or {}) do
    if o.type == "secret" and type(opts[oname]) == "string" and opts[oname] ~= "" then
      secrets[#secrets + 1] = opts[oname]
    end
  end
  local cu = require "beagle.channel_util"
  return function(text) return cu.mask(text, secrets) end
end

local function masked_log(mask)
  local out = {}
  for level, fn in pairs(beagle.log) do
    out[level] = function(msg, fields)
      local f
      if type(fields) == "table" then
        f = {}
        for k, v in pairs(fields) do f[k] = mask(tostring(v)) end
      end
      return fn(mask(msg), f)
    end
  end
  return out
end

local function send_result(n, ...)
  if n == 0 then return { ok = true } end
  local ok, err, info = ...
  if ok ~= nil and ok ~= false then return { ok = true } end
  info = type(info) == "table" and info or {}
  return { ok = false, error = err ~= nil and tostring(err) or "send returned no success and no error",
    retry_after = tonumber(info.retry_after), permanent = info.permanent == true or nil }
end

-- What every send's ctx shares, made once per state: its functions do not depend on the
-- instance or the notification. ctx.log, which masks the instance's secrets, is made on first
-- use: building its closures for every send cost more than most sends' own work, and closures
-- made in a function keep LuaJIT from compiling it.
local SEND_MT

-- Only the first send calls this: a function that makes closures can't be compiled (and an
-- early return past them closes upvalues, which neither can), so __send must not be it.
local function build_send_mt()
  local cu = require "beagle.channel_util"
  local json = require "beagle.json"
  -- the C encoder gives json.encode's exact bytes without the interpreter's cost
  local encode = json.encode
  if bg.json_encode then
    -- raises like json.encode does, so that a body that can't be made fails the send
    encode = function(v)
      local s, err = bg.json_encode(v)
      if s == nil then error(err, 2) end
      return s
    end
  end
  local base = make_ctx({})
  base.name = nil
  base.json = { encode = encode, decode = json.decode, array = json.array, null = json.null }
  base.response = cu.response
  base.iso8601 = cu.iso8601
  base.sha256 = bg.sha256
  base.hmac_sha256 = bg.hmac_sha256
  base.mail = function(m)
    if not bg.mail then return nil, "mail is not supported by this build" end
    return bg.mail(m)
  end
  SEND_MT = { __index = function(ctx, k)
    if k == "log" then
      local l = masked_log(masker(rawget(ctx, "options") or {}))
      rawset(ctx, "log", l)
      return l
    end
    return base[k]
  end }
  return SEND_MT
end

local function pack_result(...) return send_result(select("#", ...), ...) end

-- A channel's state is idle until deliveries come, each of which leaves garbage (its copy of
-- the notification, the payload, the body): from its first send on, it collects when the heap
-- reaches 4x its live size rather than 2x, which saves ~10k of ~410k instructions a
-- notification in a burst (callgrind). Set on the first send, not at load: a channel that
-- never sends keeps the default and the idle agent's memory (+0.1 MiB RSS otherwise).
local send_pause_set = false

-- __send{ name, opts, n } -> { ok = true } | { ok = false, error, retry_after, permanent }
function __send(a)
  if not PLUGIN or PLUGIN.kind ~= "channel" then raw_error("plugin is not a channel", 0) end
  if not send_pause_set then
    send_pause_set = true
    collectgarbage("setpause", 400)
    bg.pool() -- small blocks from the state's pool from now on (core/lpool.h)
  end
  local opts = a.opts or {}
  -- the send's own fields over the shared ones (a ctx per send: what a plugin sets on it stays
  -- in that send)
  local ctx = setmetatable({ name = a.name, options = opts }, SEND_MT or build_send_mt())
  return pack_result(PLUGIN.send(a.n, ctx))
end

-- ---- rule files ---------------------------------------------------------------------------
-- A rule file runs in a state of its own too: its expr functions are plugin-grade code (the
-- JIT off, the budget and deadline on), and they read history through agent.query.

-- anomaly methods -> agent.query score functions
local SCORE_FN = { zscore = "zscore_all", mad = "madscore_all", ewma = "ewmascore_all" }

local RULES -- the set agent.rules.dsl made of the file, with its expr functions
local RULE_BY_NAME = {}
local Q -- one query object for the file's evaluations

local function strip_functions(set)
  local out = {}
  for k, v in pairs(set) do
    if k ~= "exprs" then out[k] = v end
  end
  return out
end

-- __load_rules(path) -> set without functions | nil, problems (one string, a line each)
function __load_rules(path)
  local src, err = bg.read_file(path, 4 * 1024 * 1024)
  if not src then return nil, err end
  local dsl = require "agent.rules.dsl"
  local set, problems = dsl.load(path, src, { beagle = beagle })
  if not set then
    return nil, type(problems) == "table" and table.concat(problems, "\n") or tostring(problems)
  end
  for _, f in pairs(set.exprs or {}) do jit.off(f, true) end
  RULES = set
  RULE_BY_NAME = {}
  for _, r in ipairs(set.alerts or {}) do RULE_BY_NAME[r.name] = r end
  return strip_functions(set)
end

local function find_rule(name) return RULE_BY_NAME[name] end

-- Turns what an expr returned into a list of { labels, value }: a number, a list of
-- { labels = {...}, value = n }, or a map of label value -> number (for one-label results).
local function samples_of(v, name)
  if type(v) == "number" then return { { labels = {}, value = v } } end
  if type(v) ~= "table" then
    raw_error(("expr of %q returned %s: return a number or a table of labelled numbers"):format(name, type(v)), 0)
  end
  local out = {}
  for k, x in pairs(v) do
    if type(x) == "table" and type(x.value) == "number" then
      out[#out + 1] = { labels = x.labels or {}, value = x.value }
    elseif type(x) == "number" then
      out[#out + 1] = { labels = { key = tostring(k) }, value = x }
    end
  end
  return out
end

local function eval_one(name)
  local r = find_rule(name)
  if not r then raw_error(("no rule %q in this file"):format(name), 0) end
  local q = Q
  if r.expr then
    return samples_of(RULES.exprs[r.name](q), r.name)
  elseif r.kind == "anomaly" then
    return q[SCORE_FN[r.method]](r.metric, r.window, r.matchers, r.min_samples)
  end
  return q.last_all(r.metric, r.matchers)
end

local function query_at(at)
  Q = Q or require("agent.query").new()
  Q.at(at)
  return Q
end

-- __eval_rule{ name, at = ms | nil } -> { samples = {...} }
function __eval_rule(a)
  query_at(a.at)
  return { samples = eval_one(a.name) }
end

-- __eval_rules{ names = {...}, at = ms | nil } -> { [name] = { samples = {...} } | { error = "..." } }
-- Every rule of the file that is due at once, in one crossing between states.
function __eval_rules(a)
  query_at(a.at)
  local out = {}
  for _, name in ipairs(a.names or {}) do
    local ok, samples = raw_pcall(eval_one, name)
    local why = bg.killed()
    if why then raw_error(why, 0) end
    out[name] = ok and { samples = samples } or { error = tostring(samples) }
  end
  return out
end
