-- The agent: command line, settings, and the order in which the services start, reload and
-- stop. Runs in the agent's own lua_State (core/app/agent.c), which is trusted code; plugins never
-- see it.
--
-- Each part is a service (lua/agent/services/*.lua) with one interface; every method but new
-- is optional, and the agent calls them in the order of Agent.services (stop and close in
-- reverse):
--   Service.new(deps)       deps: settings, metrics, log, and the services it uses
--   svc:configure(cfg)      takes its declarations from the config (agent.config); returns the
--                           problems ("file:line: ..."), fatal at start-up, logged at reload
--   svc:load()              builds and validates its instances (start-up, `beagle check` too);
--                           returns the problems, fatal
--   svc:start(server)       starts its work (`beagle run` only); true, or nil, err (fatal)
--   svc:prepare(cfg)        a reload's first step: checks the re-read config (cfg, nil when it
--                           did not load) and stages what it would load, changing nothing;
--                           returns the problems ("file:line: ..." or { file, line, message })
--   svc:commit()            applies what prepare staged (every service's prepare passed)
--   svc:discard()           drops it (some prepare failed: the previous config keeps running)
--   svc:reload()            plugin files only: rescans (each file on its own); failures
--   svc:stop()              stops starting work; returns the runs still in flight
--   svc:in_flight()         runs still in flight, while shutdown waits for them
--   svc:close(abort)        after the grace (abort: a second signal or a failed start)
--   svc:routes()            { { method, pattern, handler(req, capture) }, ... } for the router
--   svc:update_metrics()    refreshes its self-metrics (before each /metrics render)
--   svc:detail()            key, value of its part of GET /health/detailed
local core = require "agent.core"
local util = require "agent.util"
local json = require "beagle.json"
local settings_mod = require "agent.settings"
local config_mod = require "agent.config"
local router = require "agent.router"

local M = {}

local USAGE = [[
usage: beagle <command> [options]

commands:
  run      run the agent in the foreground
  check    run the checks once, print one line each, exit 0/1/2/3 (healthy/degraded/unhealthy/unknown)
  rules check FILE...   validate alert rule files, print each problem with file:line, exit 1 on any
  rules test FILE...    run rule unit tests (input series, evaluation times, expected alerts)
  rules replay FILE... --data DIR [--since 7d] [--step 1m]
                        evaluate rules against stored history: when they would have fired and notified
  version  print the version

options (run and check):
  -c, --config FILE       configuration file (Lua); default ./beagle.lua when present
  --plugins DIR           add a drop-in plugin directory (repeatable)
options (run):
  --listen HOST:PORT      HTTP address (default 127.0.0.1:8001)
  --rules DIR             an alert rules directory, loaded with the built-in rules/ (set
                          builtin_rules = false in the config to load only this one)
  --data DIR              directory for durable state (default ./data)
  --log-format FORMAT     logfmt or json
  --log-level LEVEL       debug, info, warn or error
  --statsd HOST:PORT      StatsD/DogStatsD address (UDP and TCP), or "off"

Settings are read from the config file and overridden by MONITORING_<NAME> variables.
]]

-- Every agent log line goes through util.redact: a URL's credentials or a secret option's value
-- never reaches the log, whatever error text carries them.
local function log(level, msg, fields)
  if fields then
    local clean = {}
    for k, v in pairs(fields) do clean[k] = type(v) == "string" and util.redact(v) or v end
    fields = clean
  end
  core.log(level, util.redact(msg), fields)
end

local function usage_error(msg)
  io.stderr:write("beagle: ", msg, "\n", USAGE)
  return 2
end

-- Parses argv. Returns opts or nil, exit code.
local function parse_args(args)
  local o = { cmd = args[1], plugins = {}, names = {} }
  local takes = { ["-c"] = "config", ["--config"] = "config", ["--listen"] = "listen",
    ["--rules"] = "rules", ["--data"] = "data", ["--log-format"] = "log_format",
    ["--log-level"] = "log_level", ["--plugins"] = "plugins", ["--statsd"] = "statsd" }
  local allowed = {
    run = { config = true, listen = true, rules = true, data = true, log_format = true, log_level = true, plugins = true,
      statsd = true },
    check = { config = true, plugins = true, log_format = true, log_level = true },
  }
  local i = 2
  while i <= #args do
    local a = args[i]
    local key, val = a:match("^(%-%-[%w%-]+)=(.*)$")
    key = key or a
    local field = takes[key]
    if field then
      if not allowed[o.cmd][field] then return nil, usage_error(("%s does not take %s"):format(o.cmd, key)) end
      if val == nil then
        i = i + 1
        val = args[i]
        if val == nil then return nil, usage_error(key .. " needs a value") end
      end
      if field == "plugins" then o.plugins[#o.plugins + 1] = val else o[field] = val end
    elseif a == "-h" or a == "--help" then
      io.stdout:write(USAGE)
      return nil, 0
    elseif a:sub(1, 1) == "-" then
      return nil, usage_error("unknown option " .. a)
    elseif o.cmd == "check" then
      o.names[#o.names + 1] = a
    else
      return nil, usage_error("unexpected argument " .. a)
    end
    i = i + 1
  end
  return o
end

local function file_exists(p)
  local f = io.open(p, "r")
  if f then f:close() return true end
  return false
end

-- Defaults < config file < MONITORING_* < command-line flags. Returns settings, config or nil, err.
local function resolve(o)
  local s = settings_mod.defaults()
  local cfg = { checks = {}, channels = {}, backends = {}, settings = {} }
  local path = o.config
  if not path and file_exists("beagle.lua") then path = "beagle.lua" end
  if path then
    local c, err = config_mod.load(path)
    if not c then return nil, err end
    cfg = c
    for k, v in pairs(c.settings) do s[k] = v.value end
  end
  local ok, err = settings_mod.apply_env(s)
  if not ok then return nil, err end
  local flags = { listen = o.listen, log_format = o.log_format, log_level = o.log_level, data_dir = o.data,
    statsd_address = o.statsd }
  local flag_names = { listen = "--listen", log_format = "--log-format", log_level = "--log-level",
    data_dir = "--data", statsd_address = "--statsd" }
  for k, v in pairs(flags) do
    local val, why = settings_mod.coerce(k, v, true)
    if val == nil then return nil, ("%s %s: %s"):format(flag_names[k], v, why) end
    s[k] = val
  end
  return s, cfg, path
end

local Agent = {}
Agent.__index = Agent

function Agent:plugin_dirs()
  local dirs = { self.home .. "/plugins" }
  for _, d in ipairs(self.opts.plugins) do dirs[#dirs + 1] = d end
  return dirs
end

-- Calls svc:method(...) on every service that has it, in order (reverse: backwards); returns
-- the sum of the numbers and the concatenation of the lists they return.
function Agent:each(method, reverse, ...)
  local list, n, problems = self.services, 0, {}
  local first, last, step = 1, #list, 1
  if reverse then first, last, step = last, first, -1 end
  for i = first, last, step do
    local svc = list[i]
    if svc[method] then
      local r = svc[method](svc, ...)
      if type(r) == "number" then n = n + r
      elseif type(r) == "table" then for _, p in ipairs(r) do problems[#problems + 1] = p end end
    end
  end
  return n, problems
end

-- Builds the services and their instances; the checks run only with run (or check_once).
function Agent:setup(opts, home)
  self.opts, self.home = opts, home
  local s, cfg, path = resolve(opts)
  if not s then return nil, cfg end
  self.settings, self.config, self.config_path = s, cfg, path
  local secrets = {}
  for name, def in pairs(settings_mod.schema) do
    if def.secret and type(s[name]) == "string" then secrets[#secrets + 1] = s[name] end
  end
  util.set_secrets("settings", secrets)
  -- `beagle check` prints its results; its log stays quiet unless asked
  local level = s.log_level
  if opts.cmd == "check" and not opts.log_level and not os.getenv("MONITORING_LOG_LEVEL") then level = "warn" end
  core.log_setup(s.log_format, level)
  -- settings that are accepted (a guide's config loads) but do nothing yet say so once
  if opts.cmd == "run" then
    for _, name in ipairs(util.sorted_keys(settings_mod.schema)) do
      local env = "MONITORING_" .. name:upper()
      local v = cfg.settings and cfg.settings[name]
      if settings_mod.schema[name].not_yet and (v or os.getenv(env)) then
        log(2, "setting has no effect yet", { setting = name,
          where = os.getenv(env) and env or ("%s:%d"):format(path, v.line) })
      end
    end
  end
  local mok, metrics = pcall(require, "agent.metrics")
  if not mok then return nil, "metrics: " .. tostring(metrics) end
  self.metrics = metrics
  metrics.set_limits(s.max_series, s.max_series_per_metric)
  require("agent.trace").configure(s) -- sampling, buffers, and log lines with span ids
  for _, d in ipairs(opts.plugins) do
    if not core.listdir(d) then return nil, ("--plugins %s: not a readable directory"):format(d) end
  end
  local function deps(extra)
    local d = { settings = s, metrics = metrics, log = log }
    for k, v in pairs(extra or {}) do d[k] = v end
    return d
  end
  -- alert rules: the built-in rules/ (unless builtin_rules = false) and --rules DIR, each file
  -- in a sandboxed state
  local rules_dirs = {}
  if s.builtin_rules then rules_dirs[1] = home .. "/rules" end
  if opts.rules and opts.rules ~= rules_dirs[1] then rules_dirs[#rules_dirs + 1] = opts.rules end
  local svc = {}
  svc.metrics = require("agent.services.metrics").new(deps { refresh = function() self:update_metrics() end })
  svc.plugins = require("agent.services.plugins").new(deps { dirs = self:plugin_dirs() })
  svc.checks = require("agent.services.checks").new(deps { plugins = svc.plugins,
    details = function() return self:details() end })
  svc.statsd = require("agent.services.statsd").new(deps())
  svc.rules = require("agent.services.rules").new(deps { dirs = rules_dirs,
    sample_now = function() svc.history:sample_now() end })
  svc.channels = require("agent.services.channels").new(deps { plugins = svc.plugins, rules = svc.rules })
  svc.backends = require("agent.services.backends").new(deps { plugins = svc.plugins })
  svc.history = require("agent.services.history").new(deps())
  self.svc = svc
  -- the plugin files load before the kinds build instances on them; the channels' outbox
  -- starts after the rules whose store it shares
  self.services = { svc.metrics, svc.plugins, svc.checks, svc.statsd, svc.rules, svc.channels, svc.backends,
    svc.history }
  local _, bad = self:each("configure", false, cfg)
  if #bad > 0 then return nil, table.concat(bad, "\n") end
  _, bad = self:each("load")
  if #bad > 0 then
    self:each("close", true, true)
    return nil, table.concat(bad, "\n")
  end
  return true
end

function Agent:update_metrics() self:each("update_metrics") end

-- GET /health/detailed beyond the checks: each service's part.
function Agent:details()
  local o = { version = core.version, uptime_seconds = self.svc.metrics:uptime() }
  for _, svc in ipairs(self.services) do
    if svc.detail then
      local k, v = svc:detail()
      o[k] = v
    end
  end
  return o
end

-- The agent's own routes: the index and POST /-/reload.
function Agent:routes()
  return {
    { "POST", "^/%-/reload$", function(req)
      local ok, st, msg = router.authorized(self.settings, req)
      if not ok then return router.err_json(st, msg) end
      local errors, plugin_errors = self:reload("http")
      if #errors > 0 then
        return router.err_json(422, ("reload refused: %d problem%s; the previous configuration keeps running")
          :format(#errors, #errors == 1 and "" or "s"), { errors = json.array(errors),
          plugin_errors = json.array(plugin_errors), plugins = self.svc.plugins:list() })
      end
      return 200, "application/json", json.encode {
        status = #plugin_errors == 0 and "ok" or "partial", failures = #plugin_errors,
        plugin_errors = json.array(plugin_errors), plugins = self.svc.plugins:list(),
      }
    end },
    { "GET", "^/$", function()
      return 200, "application/json", json.encode { name = "beagle", version = core.version,
        routes = json.array { "/health", "/health/live", "/health/ready", "/health/detailed", "/health/{name}",
          "/metrics", "/metrics/performance", "POST /metrics/custom", "POST /-/reload" } }
    end },
  }
end

-- Reloads the plugin files, then the config file and the rule files, all or nothing: every
-- service first checks and stages what it would load (prepare); one problem anywhere and the
-- whole previous configuration keeps running (discard), else all of it is applied (commit).
-- A plugin file is its own matter: one that fails keeps its previous version (or stays out),
-- is reported, and does not hold back the rest. Returns the problems that refused the reload
-- and the plugin files that failed, each { file, line, message }; both are logged.
function Agent:reload(why)
  log(1, "reloading", { trigger = why })
  self.svc.plugins:reload()
  local plugin_errors = {}
  for _, p in ipairs(self.svc.plugins:list()) do
    if p.error then plugin_errors[#plugin_errors + 1] = util.problem(p.error, p.file) end
  end
  local errors = {}
  local function add(list, default_file)
    for _, p in ipairs(list) do
      if type(p) == "table" then errors[#errors + 1] = p
      else
        -- a config error is "file:line: message" lines; a message of several lines stays one
        for line in tostring(p):gmatch("[^\n]+") do
          local e = util.problem(line, default_file)
          if e.line or #errors == 0 then errors[#errors + 1] = e
          else errors[#errors].message = errors[#errors].message .. "\n" .. line end
        end
      end
    end
  end
  local cfg = self.config
  if self.config_path then
    local c, err = config_mod.load(self.config_path)
    if c then cfg = c else cfg = nil add({ err }, self.config_path) end
  end
  local _, bad = self:each("prepare", false, cfg)
  add(bad, self.config_path)
  for _, e in ipairs(errors) do e.message = util.redact(e.message) end
  if #errors > 0 then
    self:each("discard")
    for _, e in ipairs(errors) do
      log(3, "reload refused, the previous configuration keeps running", { file = e.file,
        line = e.line and tostring(e.line), error = e.message })
    end
  else
    self.config = cfg
    self:each("commit")
    require("agent.trace").configure(self.settings, cfg)
  end
  for _, e in ipairs(plugin_errors) do
    log(2, "plugin file failed, its previous version (if any) stays", { file = e.file,
      line = e.line and tostring(e.line), error = e.message })
  end
  self.svc.plugins:park()
  return errors, plugin_errors
end

function Agent:shutdown(sig)
  if self.shutting_down then
    log(2, "second signal, stopping now", { signal = tostring(sig) })
    self:each("close", true, true)
    core.stop(0)
    return
  end
  self.shutting_down = true
  log(1, "shutting down", { signal = tostring(sig) })
  if self.profiler then self.profiler.stop() self.profiler = nil end
  local pending = self:each("stop", true)
  if self.server then self.server:close() self.server = nil end
  local deadline = core.now() + self.settings.shutdown_grace
  local function finish()
    local left = self:each("in_flight")
    if left > 0 then log(2, "cancelling checks still running", { count = tostring(left) }) end
    self:each("close", true, false)
    log(1, "stopped")
    core.stop(0)
  end
  if pending == 0 then return finish() end
  self.shutdown_timer = core.timer(0.02, 0.02, function()
    if self:each("in_flight") == 0 or core.now() >= deadline then
      self.shutdown_timer:stop()
      finish()
    end
  end)
end

function Agent:run()
  local s = self.settings
  -- BEAGLE_PROFILE=FILE samples the agent's own Lua (not the plugins') with LuaJIT's profiler
  -- until shutdown; BEAGLE_PROFILE_MODE picks its options (default "fl": function:line).
  -- BEAGLE_JITDUMP=FILE writes every trace LuaJIT compiles in the agent's state (bytecode, IR,
  -- machine code) to FILE: how a JIT miscompile is matched to the address a crash reports.
  local function jit_tool(var, mod, default_mode, start)
    local file = os.getenv(var)
    if not file or file == "" then return end
    -- jit.* ships with LuaJIT's Lua files, outside the agent's package.path
    package.path = package.path .. ";/usr/share/luajit-2.1.0-beta3/?.lua;/usr/local/share/luajit-2.1.0-beta3/?.lua"
    local ok, m = pcall(require, mod)
    if not ok then
      log(2, var .. ": LuaJIT's " .. mod .. " is not available", { error = tostring(m) })
      return
    end
    start(m, os.getenv(var .. "_MODE") or default_mode, file)
    return m
  end
  self.profiler = jit_tool("BEAGLE_PROFILE", "jit.p", "fl", function(m, mode, f) m.start(mode, f) end)
  jit_tool("BEAGLE_JITDUMP", "jit.dump", "tbimrsXa", function(m, mode, f) m.on(mode, f) end)
  if not self.metrics.has_nkeys then
    log(2, "this LuaJIT lacks OpenResty's table.nkeys: by-name metrics are slower, and if it is"
      .. " Debian 12's luajit (2.1.0~beta3+git20220320) it miscompiles next() and pairs() on x64;"
      .. " install luajit2 (scripts/deps.sh does)", { version = jit and jit.version or "?" })
  end
  local lists = {}
  for _, svc in ipairs(self.services) do
    if svc.routes then lists[#lists + 1] = svc:routes() end
  end
  lists[#lists + 1] = self:routes()
  local routes = router.new(lists)
  local host, port = settings_mod.split_address(s.listen)
  local server, err = core.http_server(host, port, function(req) return routes:handle(req) end, {
    first_byte_timeout = s.http_first_byte_timeout, header_timeout = s.http_header_timeout,
    idle_timeout = s.http_idle_timeout, max_connections = s.http_max_connections,
  })
  if not server then
    io.stderr:write("beagle: ", err, "\n")
    return 1
  end
  self.server = server
  local ok, derr = core.mkdir(s.data_dir)
  if not ok then log(2, "cannot create the data directory", { dir = s.data_dir, error = derr }) end
  for _, svc in ipairs(self.services) do
    if svc.start then
      -- the garbage of the steps before goes first: LuaJIT's allocator keeps what is freed for
      -- reuse instead of giving it back (it trims past 2 MB only), so an idle agent's resident
      -- memory is start-up's peak (about 120 KiB less with this, measured)
      collectgarbage()
      local started, serr = svc:start(server)
      if not started then
        io.stderr:write("beagle: ", util.redact(serr), "\n")
        server:close()
        return 1
      end
    end
  end
  -- every kind has built its instances: a plugin no instance uses gives up its state
  self.svc.plugins:park()
  -- start-up is over: its garbage goes, and the agent's state collects more often from now on
  -- (a cycle at 1.5x the live heap, not 2x: LuaJIT's allocator keeps the peak). Plugin files
  -- are loaded parked (agent.plugins load), so start-up's heap stays small; what the states
  -- parked here free, glibc's heap keeps as free pages between what stays: they go back to the
  -- system (idle RSS 9.0 -> 8.1 MiB with this, 3 agents each, medians, with the backend
  -- plugins; ~7.1 MiB with parking at load)
  collectgarbage()
  collectgarbage("setpause", 150)
  if core.release_memory then
    local trim
    trim = core.timer(1, 0, function()
      trim:stop()
      core.release_memory()
    end)
  end
  -- beagle_loop_lag_seconds and beagle_loop_lag_max_seconds are measured in C on every turn
  -- of the loop (core/metrics/looplag.c, started by core/app/agent.c)
  self.signals = {
    core.signal("SIGTERM", function() self:shutdown("SIGTERM") end),
    core.signal("SIGINT", function() self:shutdown("SIGINT") end),
    core.signal("SIGHUP", function() self:reload("SIGHUP") end),
  }
  log(1, "beagle started", { listen = host .. ":" .. server:port(), version = core.version,
    statsd = self.svc.statsd:address(), plugins = table.concat(self:plugin_dirs(), ","),
    config = self.config_path or "none", data = s.data_dir, rules = self.opts.rules or (self.home .. "/rules") })
  return nil
end

-- beagle check: runs every (or each named) check once and exits with the worst status.
function Agent:check_once(names)
  return self.svc.checks:run_once(names, function(code)
    self.svc.plugins:release()
    core.stop(code)
  end)
end

-- beagle rules check FILE... | beagle rules test FILE...
function M.rules_command(args)
  local sub, files, opts = args[2], {}, {}
  local i = 3
  while i <= #args do
    local a = args[i]
    if a == "--data" or a == "--since" or a == "--step" then
      opts[a:sub(3)] = args[i + 1]
      i = i + 1
    else
      files[#files + 1] = a
    end
    i = i + 1
  end
  if (sub ~= "check" and sub ~= "test" and sub ~= "replay") or #files == 0 then
    return usage_error("rules needs check, test or replay and at least one file")
  end
  if sub == "replay" then
    if not opts.data then return usage_error("rules replay needs --data DIR") end
    local since = util.parse_duration(opts.since or "7d")
    local step = util.parse_duration(opts.step or "1m")
    if not since or not step or step <= 0 then return usage_error("--since and --step take durations (7d, 1m)") end
    local ok = require("agent.rules.replay").run({ files = files, data_dir = opts.data, since = since, step = step },
      io.stdout)
    return ok and 0 or 1
  end
  if sub == "check" then
    local dsl = require "agent.rules.dsl"
    local problems = dsl.check_files(files)
    for _, p in ipairs(problems) do io.stdout:write(p, "\n") end
    if #problems > 0 then return 1 end
    io.stdout:write(("%d file%s OK\n"):format(#files, #files == 1 and "" or "s"))
    return 0
  end
  local testing = require "agent.rules.testing"
  local ok = testing.run_files(files, io.stdout)
  return ok and 0 or 1
end

-- main(args, home) -> exit code now, or nil to run the loop.
function M.main(args, home)
  local cmd = args[1]
  if cmd == nil then return usage_error("a command is required") end
  if cmd == "version" or cmd == "--version" then
    io.stdout:write("beagle ", core.version, " (", jit.version, ")\n")
    return 0
  end
  if cmd == "help" or cmd == "--help" or cmd == "-h" then
    io.stdout:write(USAGE)
    return 0
  end
  if cmd == "rules" then return M.rules_command(args) end
  if cmd ~= "run" and cmd ~= "check" then return usage_error(("unknown command %q"):format(cmd)) end
  local opts, code = parse_args(args)
  if not opts then return code end
  local agent = setmetatable({}, Agent)
  -- start-up collects as it goes (a new cycle once the last one ends): its peak is what an
  -- idle agent keeps resident (run sets the pause back once started)
  collectgarbage("setpause", 100)
  local ok, err = agent:setup(opts, home)
  if not ok then
    io.stderr:write("beagle: ", util.redact(err), "\n")
    return cmd == "check" and 3 or 1
  end
  M.current = agent
  if cmd == "check" then return agent:check_once(opts.names) end
  return agent:run()
end

return M
