-- Runs first in every plugin's lua_State, as trusted code: builds the environment plugin code
-- sees and the entry points the agent calls through the C core (script.c): __load,
-- __validate, __run_check, __send, __load_rules, __eval_rules.
--
-- The boundary (docs/plugins.md, "What a plugin can reach"): plugin code gets a fresh
-- environment whose values are copies made here: the safe base functions, copies of string,
-- table, math and bit, and `require` for the public modules only (beagle, beagle.json,
-- beagle.channel_util, beagle.query), each a copy of its own per plugin. Nothing it can reach
-- holds ffi, a clib, the C functions of this state (__bg), debug, jit, io, package, load,
-- string.dump, collectgarbage, getfenv/setfenv or the agent's modules; the ctx it is given
-- wraps the C functions in checks (read_file, list_dir: /proc and /sys; stat, statvfs,
-- read_pidfile: absolute paths; exec: the programs the operator allows in plugin_exec_allow,
-- with an empty environment).
-- Plugin chunks run with the JIT off (jit.off(chunk, true), which covers every function they
-- define) so that the count hook that enforces the instruction budget and deadline, and ends
-- each slice of a run, fires; the library keeps the JIT.
local bg = __bg
package.path = bg.lua_dir .. "/?.lua;" .. bg.lua_dir .. "/?/init.lua"
-- no C modules, except cjson for beagle.json (loaded on first use, e.g. by a channel)
local cjson_so = package.searchpath("cjson", package.cpath)
if cjson_so then package.preload.cjson = package.loadlib(cjson_so, "luaopen_cjson") end
package.cpath = ""

local beagle = require "beagle" -- reads __bg for its log
local util = require "agent.util"
__bg = nil

local raw_pcall, raw_xpcall, raw_error = pcall, xpcall, error
local co_create, co_resume, co_yield, co_status = coroutine.create, coroutine.resume, coroutine.yield,
  coroutine.status
local unpack, select, type, pairs, next = unpack, select, type, pairs, next
local getmetatable, setmetatable, rawget, rawset = getmetatable, setmetatable, rawget, rawset
local jit_off = jit.off
-- Loading runs once: no trace compiled while the state sets itself up and loads the file is
-- worth its machine code and the JIT's buffers (a 32 KB code area per state otherwise, ~90 KB of
-- an idle agent's RSS). __collect (after a load) and __load_rules turn it back on for the runs.
jit.off()
local IO, SLICE = bg.IO, bg.SLICE

-- Strings share one metatable whose __index is this state's real string library: a plugin
-- must not reach it (getmetatable("") answers false) to replace functions trusted code calls,
-- and ("").dump must not hand out bytecode.
getmetatable("").__metatable = false
string.dump = nil

-- The text of an error value without running plugin code (no __tostring).
local function errtext(e)
  local t = type(e)
  if t == "string" then return e end
  if t == "number" or t == "boolean" or t == "nil" then return tostring(e) end
  return "error object is a " .. t .. " value"
end

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

local function pack(...) return { n = select("#", ...), ... } end

-- Coroutines inside plugin code. The C core yields a marker when an I/O call waits, and the
-- count hook yields (no values, bg.slice_taken() says so) when a slice of the run is over; a
-- plugin's own coroutine passes either up to the run and hands what comes back down, so that
-- a coroutine can neither hold the loop nor hide from the budget. bg.nest tells the hook
-- whether the resumer could yield at all (not inside a C function such as table.sort).
-- The coroutines a plugin made itself (weak keys): only those can it resume or see as running.
-- A run's own coroutine stays out of its reach: resumed by another run of the same state while it
-- waits on I/O, it would go on with that run's values in place of its answer.
local MINE = setmetatable({}, { __mode = "k" })

local function resume(co, ...)
  if not MINE[co] then return false, "cannot resume a coroutine this plugin did not create" end
  local could = bg.nest(true)
  local r = pack(co_resume(co, ...))
  bg.nest(false, could)
  while r[1] and co_status(co) == "suspended" do
    -- the hook ended the inner one's slice, or it passes up a wait or a slice of its own inner one
    local marker = bg.slice_taken() and SLICE or (r.n == 2 and (r[2] == IO or r[2] == SLICE) and r[2])
    if not marker then break end
    local back = pack(co_yield(marker))
    could = bg.nest(true)
    r = pack(co_resume(co, unpack(back, 1, back.n)))
    bg.nest(false, could)
  end
  guard(true)
  return unpack(r, 1, r.n)
end

local co_running = coroutine.running
local function create(f)
  local co = co_create(f)
  MINE[co] = true
  return co
end

local function safe_coroutine()
  return {
    create = create, yield = co_yield, resume = resume,
    status = function(co)
      if not MINE[co] then raw_error("bad argument #1 to 'status' (a coroutine of this plugin expected)", 2) end
      return co_status(co)
    end,
    -- inside the run itself there is no coroutine of the plugin's: nil, as in the main thread
    running = function()
      local co = co_running()
      if co and MINE[co] then return co end
      return nil
    end,
    wrap = function(f)
      local co = create(f)
      return function(...)
        local r = pack(resume(co, ...))
        if not r[1] then raw_error(r[2], 0) end
        return unpack(r, 2, r.n)
      end
    end,
  }
end

-- A deep copy of a public table: tables are copied (a cycle maps to the same copy), functions
-- and other values are shared (a function's upvalues are out of a plugin's reach without
-- debug). Metatables are not copied: the public modules' tables have none a plugin needs.
local function seal(t, seen)
  seen = seen or {}
  if seen[t] then return seen[t] end
  local c = {}
  seen[t] = c
  for k, v in next, t do
    if type(v) == "table" then v = seal(v, seen) end
    c[k] = v
  end
  return c
end

local function copy_lib(t, leave_out)
  local c = {}
  for k, v in pairs(t) do
    if not (leave_out and leave_out[k]) then c[k] = v end
  end
  return c
end

-- The public modules, each made anew for the plugin that requires it.
local PUBLIC = {
  beagle = function()
    local b = seal(beagle)
    -- metric and span functions load their FFI declarations on first use (~100 KB per state)
    local keys, tkeys = beagle.metric_keys, beagle.trace_keys
    setmetatable(b, { __metatable = false, __index = function(t, k)
      local api, names
      if keys[k] then
        api, names = require("agent.metrics").plugin_api(), keys
      elseif tkeys[k] then
        local trace = require("agent.trace")
        trace.set_scope(bg.name) -- the plugin's spans are of its scope, as its log lines
        api, names = trace.plugin_api(), tkeys
      else
        return nil
      end
      for name in pairs(names) do
        if rawget(t, name) == nil then rawset(t, name, api[name]) end
      end
      return rawget(t, k)
    end })
    return b
  end,
  -- encode is the C encoder (the same bytes as the Lua one, without the interpreter's cost)
  ["beagle.json"] = function()
    local json = require "beagle.json"
    return seal(bg.json_encode and json.with_encoder(bg.json_encode) or json)
  end,
  ["beagle.channel_util"] = function() return seal(require "beagle.channel_util") end,
  ["beagle.proto"] = function() return seal(require "beagle.proto") end,
  ["beagle.analysis"] = function() return seal(require "beagle.analysis") end,
  -- a query object of its own over the agent's history (its functions reach C only through
  -- agent.query, which checks their arguments)
  ["beagle.query"] = function()
    local q = require("agent.query").new(nil)
    local out = {}
    for k, f in pairs(q) do if type(f) == "function" then out[k] = f end end
    return out
  end,
}
local PUBLIC_NAMES = {}
for k in pairs(PUBLIC) do PUBLIC_NAMES[#PUBLIC_NAMES + 1] = k end
table.sort(PUBLIC_NAMES)

local function make_env(name)
  local loaded = {}
  local env = {
    assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
    select = select, tonumber = tonumber, tostring = tostring, type = type, unpack = unpack,
    rawequal = rawequal, rawget = rawget, rawset = rawset, setmetatable = setmetatable,
    getmetatable = getmetatable, _VERSION = _VERSION,
    pcall = safe_pcall, xpcall = safe_xpcall, coroutine = safe_coroutine(),
    string = copy_lib(string, { dump = true }), table = copy_lib(table), math = copy_lib(math),
    bit = copy_lib(bit),
    os = { time = os.time, clock = os.clock, date = os.date, difftime = os.difftime },
    print = function(...)
      local parts = {}
      for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
      beagle.log.info(table.concat(parts, " "))
    end,
    require = function(mod)
      local make = PUBLIC[mod]
      if not make then
        raw_error(("plugin %s: require %q is not allowed (public modules: %s)")
          :format(name, errtext(mod), table.concat(PUBLIC_NAMES, ", ")), 2)
      end
      local m = loaded[mod]
      if m == nil then
        m = make()
        loaded[mod] = m
      end
      return m
    end,
  }
  env.beagle = env.require("beagle")
  env._G = env
  return env
end

-- Loads a plugin's source as a chunk of its own environment, with the JIT off for it and every
-- function it defines. Returns chunk, env or nil, err.
local function load_plugin(path, src, env)
  local chunk, err = load(src, "@" .. path, "t")
  if not chunk then return nil, err end
  jit_off(chunk, true)
  setfenv(chunk, env)
  return chunk
end

local PLUGIN -- the table the plugin file returned
local EXEC_ALLOW = {} -- program path -> true: what ctx.exec may run (plugin_exec_allow)
local TLS_ALLOW = {} -- paths, and directories ending in /: a TLS identity ctx.http may use (plugin_tls_files)

-- __load{ path, src = the file's text (read from path when nil), exec_allow = { program, ... } }
-- (or the path alone) -> metadata | nil, err
function __load(a)
  if type(a) == "string" then a = { path = a } end
  local path = a.path
  for _, p in ipairs(a.exec_allow or {}) do EXEC_ALLOW[p] = true end
  for _, p in ipairs(a.tls_allow or {}) do TLS_ALLOW[#TLS_ALLOW + 1] = p end
  local src, err = a.src, nil
  if type(src) ~= "string" then src, err = bg.read_file(path, 4 * 1024 * 1024) end
  if not src then return nil, err end
  local chunk
  chunk, err = load_plugin(path, src, make_env(path))
  if not chunk then return nil, err end
  local ok, p = raw_pcall(chunk)
  if not ok then return nil, errtext(p) end
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
    -- automatic = false: a plugin whose options all have defaults still runs only when declared
    batch_size = p.batch_size, all_defaults = all_defaults and p.automatic ~= false,
    -- a backend's signal: "metrics" (nil), "traces", "logs", or a list of them (agent.backends checks it)
    signal = (type(p.signal) == "string" or type(p.signal) == "table") and p.signal or nil,
  }
end

-- __collect() -> true: a full collection, after loading (the parser's garbage goes at once)
function __collect()
  jit.on()
  collectgarbage()
  return true
end

-- __validate(given_options) -> typed options | nil, err: the options' types, then the plugin's
-- own validate(opt) when it has one (what types cannot say: a port's range, two options that
-- exclude each other), so that a bad instance is refused at load with its file and line rather
-- than reported at each run. validate runs here, synchronously and bounded like every call of
-- this state: no I/O.
function __validate(given)
  if not PLUGIN then return nil, "no plugin loaded" end
  local opts, err = beagle.validate_options(PLUGIN.options, given)
  if not opts or type(PLUGIN.validate) ~= "function" then return opts, err end
  local ok, res = raw_pcall(PLUGIN.validate, opts)
  if not ok then return nil, errtext(res) end
  if res ~= nil and res ~= true then return nil, tostring(res) end
  return opts
end

local instance -- below

-- __configure{ name, given } -> typed options | nil, err: validates an instance's options and
-- keeps them in this state for its runs and sends, which then cross with only the instance's
-- name (and the notification). A failure leaves what the instance had.
function __configure(a)
  local opts, err = __validate(a.given)
  if not opts then return nil, err end
  instance(a.name, opts)
  -- what this plugin logs with beagle.log goes through util.redact: its instances' secrets too
  local secrets = {}
  for oname, o in pairs(PLUGIN.options or {}) do
    if o.type == "secret" and type(opts[oname]) == "string" then secrets[#secrets + 1] = opts[oname] end
  end
  util.set_secrets(a.name, secrets)
  return opts
end

-- ---- what a check's ctx reaches ----------------------------------------------------------

-- /proc and /sys, read-only, without the parts that lead elsewhere or hold secrets: a
-- process's environment (the agent's holds the channels' keys), memory, and the links to its
-- root, working directory, executable and open files (any file on the host).
local PROC_DENY = { environ = true, mem = true, root = true, cwd = true, exe = true, fd = true,
  fdinfo = true, map_files = true, pagemap = true, kcore = true, kmem = true, auxv = true,
  syscall = true, ["timerslack_ns"] = true }

local function readable(path, fname)
  fname = fname or "read_file"
  if type(path) ~= "string" then return nil, fname .. ": path must be a string" end
  if path:find("\0", 1, true) then return nil, fname .. ": path may not contain NUL bytes" end
  local top = path:match("^/(%a+)/") or path:match("^/(%a+)$")
  if top ~= "proc" and top ~= "sys" then
    return nil, ("%s: %s is outside /proc and /sys"):format(fname, path)
  end
  for part in path:gmatch("[^/]+") do
    if part == ".." or part == "." then return nil, ("%s: %s: no . or .. in paths"):format(fname, path) end
    if top == "proc" and PROC_DENY[part] then
      return nil, ("%s: %s: /proc/*/%s is not readable by plugins"):format(fname, path, part)
    end
  end
  return path
end

-- Any absolute path, for the calls that learn metadata only (stat, statvfs) or a pid.
local function absolute(path, fname)
  if type(path) ~= "string" then return nil, ("%s: path must be a string, not a %s"):format(fname, type(path)) end
  if path:sub(1, 1) ~= "/" then return nil, ("%s: %q is not an absolute path"):format(fname, path) end
  if path:find("\0", 1, true) then return nil, fname .. ": path may not contain NUL bytes" end
  if #path > 4096 then return nil, fname .. ": path is longer than 4096 bytes" end
  return path
end

local function read_file(path, max)
  local p, err = readable(path)
  if not p then return nil, err end
  if max ~= nil and (type(max) ~= "number" or max ~= max or max < 1) then
    return nil, "read_file: max must be a number of bytes >= 1"
  end
  return bg.read_file(p, max)
end

local function exec(argv)
  if type(argv) ~= "table" or type(argv[1]) ~= "string" then
    return nil, "exec: argv must be a list of strings, the program first"
  end
  if not EXEC_ALLOW[argv[1]] then
    return nil, ("exec: %s is not allowed (the operator lists the programs plugins may run in plugin_exec_allow)")
      :format(argv[1])
  end
  local clean = {}
  for i = 1, #argv do
    if type(argv[i]) ~= "string" and type(argv[i]) ~= "number" then
      return nil, ("exec: argument %d is a %s, not a string"):format(i, type(argv[i]))
    end
    clean[i] = tostring(argv[i])
  end
  return bg.exec(clean)
end

-- The calls below wait: the run yields while a threadpool thread asks the kernel.
local function statvfs(path)
  local p, err = absolute(path, "statvfs")
  if not p then return nil, err end
  return bg.statvfs(p)
end

local function is_int(v, lo, hi) return type(v) == "number" and v == math.floor(v) and v >= lo and v <= hi end

-- The calls most plugins never make (dns, stat, list_dir, read_pidfile, crypto) check their
-- arguments in agent.sandbox_io, loaded by the first such call: ~10 KB of code that the state
-- of a plugin that never makes one does not hold.
local IOX
local function iox(name)
  return function(...)
    if not IOX then IOX = require("agent.sandbox_io")(bg, readable, absolute, is_int) end
    return IOX[name](...)
  end
end
local stat, list_dir, read_pidfile, dns_resolve = iox("stat"), iox("list_dir"), iox("read_pidfile"), iox("dns_resolve")
local crypto_fns = {}
for _, k in ipairs { "md5_hex", "sha256", "hmac_sha256", "pbkdf2_sha256", "random", "base64_encode", "base64_decode" } do
  crypto_fns[k] = iox(k)
end

local function header_list(h)
  local out = {}
  if type(h) == "table" then
    for k, v in pairs(h) do
      if type(k) == "number" then out[#out + 1] = tostring(v) else out[#out + 1] = tostring(k) .. ": " .. tostring(v) end
    end
  end
  return out
end

-- bg.http's answer: { status, body, headers = { lowercased name = value }, time, redirects, url,
-- timings, cert } | nil, err. Only known keys of plain types cross to C.
local REQ_KEYS = { url = "string", method = "string", body = "string", timeout = "number", follow = "boolean",
  insecure = "boolean", max_body = "number", max_redirects = "number", client_cert = "string",
  client_key = "string", ca_file = "string", cert_info = "boolean", connect_only = "boolean", timings = "boolean" }
local PEM_KEYS = { "client_cert", "client_key", "ca_file" }

-- p (absolute, without . or ..) is one of TLS_ALLOW or under one ending in /.
local function tls_allowed(p)
  if p:find("/%.%.?/") or p:find("/%.%.?$") or p:find("//", 1, true) then return false end
  for _, a in ipairs(TLS_ALLOW) do
    if p == a or (a:sub(-1) == "/" and p:sub(1, #a) == a) then return true end
  end
  return false
end

-- connect_to: "host:port:connect_host:connect_port" (curl's CURLOPT_CONNECT_TO: connect to
-- connect_host:connect_port for a URL of host:port; an empty part matches any, an IPv6 address
-- goes in brackets), a string or a list of at most 8 -> list | nil, err
local function connect_to_list(v)
  if type(v) == "string" then v = { v } end
  if type(v) ~= "table" then return nil, ("http: connect_to must be a string or a list of strings, not a %s"):format(type(v)) end
  local out = {}
  for k in pairs(v) do
    if not is_int(k, 1, #v) then return nil, "http: connect_to must be a list of strings" end
  end
  if #v > 8 then return nil, ("http: connect_to takes at most 8 entries, not %d"):format(#v) end
  for i, s in ipairs(v) do
    if type(s) ~= "string" then return nil, ("http: connect_to item %d must be a string, not a %s"):format(i, type(s)) end
    local plain = s:gsub("%[[%x:%.]+%]", "h")
    local p1, p2 = plain:match("^[^:%[%]%c%s]*:(%d*):[^:%[%]%c%s]*:(%d*)$")
    if #s > 512 or not p1 or (p1 ~= "" and not is_int(tonumber(p1), 1, 65535))
      or (p2 ~= "" and not is_int(tonumber(p2), 1, 65535)) then
      local shown = s:sub(1, 100):gsub("%c", function(c) return "\\" .. c:byte() end)
      return nil, ('http: connect_to item %d ("%s") is not host:port:connect_host:connect_port'):format(i, shown)
    end
    out[i] = s
  end
  return out
end

local function http_request(req)
  if type(req) ~= "table" then return nil, "http: the request must be a table" end
  local clean = { headers = header_list(req.headers) }
  for k, t in pairs(REQ_KEYS) do
    local v = req[k]
    if v ~= nil then
      if type(v) ~= t then return nil, ("http: %s must be a %s, not a %s"):format(k, t, type(v)) end
      clean[k] = v
    end
  end
  if not clean.url then return nil, "http: url is required" end
  local mr = clean.max_redirects
  if mr ~= nil and not is_int(mr, 0, 50) then return nil, ("http: max_redirects must be an integer 0..50, not %s"):format(mr) end
  for _, k in ipairs(PEM_KEYS) do
    if clean[k] ~= nil then
      local p, err = absolute(clean[k], "http: " .. k)
      if not p then return nil, err end
    end
  end
  if clean.client_key and not clean.client_cert then return nil, "http: client_key needs client_cert" end
  -- a certificate and key on the host are its identity: the operator names those plugins may use
  for _, k in ipairs { "client_cert", "client_key" } do
    local p = clean[k]
    if p and not tls_allowed(p) then
      return nil, ("http: %s: %s is not allowed (the operator lists the files plugins may use as TLS identities in plugin_tls_files)")
        :format(k, p)
    end
  end
  if req.connect_to ~= nil then
    local list, err = connect_to_list(req.connect_to)
    if not list then return nil, err end
    clean.connect_to = list
  end
  local res, err = bg.http(clean)
  if res and res.url == nil then res.url = clean.url end
  return res, err
end

-- get(url, opts) and post(url, body, opts): opts are request{} keys, besides url, method, body.
local function with_opts(opt, url, method, body)
  local req = {}
  if type(opt) == "table" then for k, v in pairs(opt) do req[k] = v end end
  req.url, req.method, req.body = url, method, body
  return req
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
    sleep = function(s)
      if type(s) ~= "number" then return nil, "sleep: seconds must be a number" end
      return bg.sleep(s)
    end,
    now = bg.now, time = bg.wall,
    read_file = read_file, statvfs = statvfs, stat = stat, list_dir = list_dir, read_pidfile = read_pidfile,
    log = seal(beagle.log),
    http = {
      request = function(req) return http_request(req) end,
      get = function(url, opt) return http_request(with_opts(opt, url, "GET")) end,
      post = function(url, body, opt) return http_request(with_opts(opt, url, "POST", body)) end,
    },
    dns = { resolve = dns_resolve },
    crypto = copy_lib(crypto_fns),
    tcp = { connect = function(host, port)
      if type(host) ~= "string" or type(port) ~= "number" then
        return nil, "tcp.connect: host must be a string and port a number"
      end
      return bg.tcp_connect(host, port)
    end },
    exec = exec,
  }
  return ctx
end

-- ---- instances: their own state, init and close ---------------------------------------------
-- Each instance (a check or channel declared under a name) has a ctx.state table of its own that
-- lives as long as this plugin state: across its runs and reloads of the config, not across a
-- new version of the plugin file (a new state). A plugin's init(opt, ctx), when it has one, runs
-- before the instance's first run (inside that run: it may wait on I/O); close(opt, ctx) when
-- the instance goes away or the plugin state is replaced (synchronous: no I/O there).
local INSTANCES = {} -- name -> { state = {}, opts = last options, inited = bool }

-- The instance of that name, made on first use; opts replace its options when given. Without
-- options (a run or send that names it) it must have been configured.
function instance(name, opts)
  name = tostring(name)
  local inst = INSTANCES[name]
  if not inst then
    if opts == nil then raw_error(("instance %q is not configured in this plugin state"):format(name), 0) end
    inst = { state = {} }
    INSTANCES[name] = inst
  end
  if opts ~= nil then inst.opts = opts end
  return inst
end

local function ensure_init(inst, opts, ctx)
  if inst.inited or type(PLUGIN.init) ~= "function" then return end
  inst.inited = true -- once, even when it fails: the failure is this run's
  PLUGIN.init(opts, ctx)
end

-- __in_use() -> whether an instance is configured here (agent.plugins parks a state without one)
function __in_use() return next(INSTANCES) ~= nil end

-- __close{ name = instance | nil for every instance } -> true: calls the plugin's close.
-- Errors are the plugin's: they are returned, the instance is gone either way.
function __close(a)
  local names = {}
  if a and a.name then names[1] = tostring(a.name) else for n in pairs(INSTANCES) do names[#names + 1] = n end end
  local errs = {}
  for _, n in ipairs(names) do
    local inst = INSTANCES[n]
    INSTANCES[n] = nil
    if inst and inst.inited and PLUGIN and type(PLUGIN.close) == "function" then
      local ctx = make_ctx({ name = n })
      ctx.state = inst.state
      local ok, e = raw_pcall(PLUGIN.close, inst.opts or {}, ctx)
      if not ok then errs[#errs + 1] = n .. ": " .. errtext(e) end
    end
  end
  if #errs > 0 then return nil, table.concat(errs, "; ") end
  return true
end

-- __run_check{ name } -> { status, message, details, response_time } (the options are the
-- instance's, kept here by __configure; a.opts, when given, replaces them)
function __run_check(a)
  if not PLUGIN or PLUGIN.kind ~= "check" then raw_error("plugin is not a check", 0) end
  local inst = instance(a.name, a.opts)
  local opts = inst.opts
  local ctx = make_ctx(a)
  ctx.state = inst.state
  local t0 = bg.now()
  ensure_init(inst, opts, ctx)
  local r = PLUGIN.run(opts, ctx)
  local elapsed = bg.now() - t0
  if type(r) ~= "table" or rawget(r, "__check_result") ~= true then
    raw_error(("check %s returned %s: return ctx.healthy(), ctx.degraded() or ctx.unhealthy()")
      :format(a.name, type(r)), 0)
  end
  return { status = rawget(r, "status"), message = rawget(r, "message"), details = rawget(r, "details"),
    response_time = elapsed }
end

-- ---- the channel, backend and rule-file parts, loaded where they are used ---------------------
-- A check's state needs none; each is ~8 KB of code in every plugin state otherwise. The first
-- call of an entry point loads its part, which defines the entry points for good.
local S = {
  bg = bg, beagle = beagle, errtext = errtext, make_ctx = make_ctx, make_env = make_env,
  public = PUBLIC, instance = instance, ensure_init = ensure_init, plugin = function() return PLUGIN end,
}
local function lazy(module, names)
  for _, name in ipairs(names) do
    _G[name] = function(...)
      require(module)(S)
      return _G[name](...)
    end
  end
end
lazy("agent.sandbox_channel", { "__send" })
lazy("agent.sandbox_backend", { "__send_batch" })
lazy("agent.sandbox_rules", { "__load_rules", "__eval_rule", "__eval_rules" })
