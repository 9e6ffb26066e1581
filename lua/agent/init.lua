-- The agent: command line, settings, start-up order, routes, reload and shutdown. Runs in
-- the agent's own lua_State (core/agent.c), which is trusted code; plugins never see it.
local core = require "agent.core"
local util = require "agent.util"
local json = require "beagle.json"
local settings_mod = require "agent.settings"
local config_mod = require "agent.config"
local plugins_mod = require "agent.plugins"
local health_mod = require "agent.health"
local channels_mod = require "agent.channels"
local api_metrics = require "agent.api_metrics"
local performance = require "agent.performance"

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
  --rules DIR             alert rules directory (default: the built-in rules/)
  --data DIR              directory for durable state (default ./data)
  --log-format FORMAT     logfmt or json
  --log-level LEVEL       debug, info, warn or error
  --statsd HOST:PORT      StatsD/DogStatsD address (UDP and TCP), or "off"

Settings are read from the config file and overridden by MONITORING_<NAME> variables.
]]

local function log(level, msg, fields) core.log(level, msg, fields) end

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

function Agent:setup(opts, home)
  self.opts, self.home = opts, home
  local s, cfg, path = resolve(opts)
  if not s then return nil, cfg end
  self.settings, self.config, self.config_path = s, cfg, path
  -- `beagle check` prints its results; its log stays quiet unless asked
  local level = s.log_level
  if opts.cmd == "check" and not opts.log_level and not os.getenv("MONITORING_LOG_LEVEL") then level = "warn" end
  core.log_setup(s.log_format, level)
  local mok, metrics = pcall(require, "agent.metrics")
  if not mok then return nil, "metrics: " .. tostring(metrics) end
  self.metrics = metrics
  metrics.set_limits(s.max_series, s.max_series_per_metric)
  for _, d in ipairs(opts.plugins) do
    if not core.listdir(d) then return nil, ("--plugins %s: not a readable directory"):format(d) end
  end
  self.health = health_mod.new {
    settings = s, metrics = metrics, log = log, on_update = function() self:publish_soon() end,
  }
  self.health.config_path = path
  self.health.config_checks = cfg.checks
  self.plugins = plugins_mod.new {
    dirs = self:plugin_dirs(), memory_limit = s.plugin_memory_limit_mb * 1024 * 1024, log = log,
    exec_allow = util.split_list(s.plugin_exec_allow),
    metrics = metrics,
    validate = function(name, script, meta)
      if meta.kind == "channel" then return self.channels:validate_plugin(name, script, meta) end
      return self.health:validate_plugin(name, script, meta)
    end,
    on_change = function()
      if not self.synced then return end
      self.health:sync()
      self:sync_channels()
    end,
  }
  self.health.plugins = self.plugins
  self.channels = channels_mod.new { plugins = self.plugins, settings = s, log = log }
  for name, c in pairs(cfg.checks) do
    if c.spec.plugin ~= nil and type(c.spec.plugin) ~= "string" then
      return nil, ("%s:%d: check %q: plugin must be a string"):format(path, c.line, name)
    end
  end
  self.plugins:scan(false)
  self.health:sync()
  self.synced = true
  -- At start-up a misconfigured check is fatal (at reload the old config stays instead).
  local bad = {}
  for _, inst in ipairs(self.health:sorted()) do
    if inst.error and inst.line then
      bad[#bad + 1] = ("%s:%d: check %q: %s"):format(path, inst.line, inst.name, inst.error)
    end
  end
  for _, p in ipairs(self.channels:sync(cfg.channels, path)) do bad[#bad + 1] = p end
  if #bad > 0 then
    self.plugins:close_all(true)
    return nil, table.concat(bad, "\n")
  end
  return true
end

-- Re-validates the channel instances (config or plugins changed) and tells the outbox.
function Agent:sync_channels(config_channels)
  local problems = self.channels:sync(config_channels, self.config_path)
  for _, p in ipairs(problems) do log(3, "channel is misconfigured", { error = p }) end
  if self.delivery then self.delivery:sync(self.channels.confs) end
  return #problems
end

-- Check results arrive one by one; re-rendering /health for every one of them costs
-- O(checks) each, O(checks^2) a round. Results are coalesced: /health is at most 20 ms stale.
local PUBLISH_DELAY = 0.02
function Agent:publish_soon()
  if not self.server or self.publish_timer then return end
  self.publish_timer = core.timer(PUBLISH_DELAY, 0, function()
    local t = self.publish_timer
    self.publish_timer = nil
    if t then t:stop() end
    self:publish()
  end)
end

-- Writes the hot routes into the HTTP server's static table (answered in C).
function Agent:publish()
  if not self.server then return end
  local st, body = self.health:health_json()
  self.server:set_static("/health", st, "application/json", body)
  self.server:set_static("/health/", st, "application/json", body)
  st, body = self.health:ready_json()
  self.server:set_static("/health/ready", st, "application/json", body)
end

function Agent:update_self_metrics()
  local m = self.metrics
  m.set_gauge("beagle_resident_memory_bytes", core.rss())
  m.set_gauge("beagle_uptime_seconds", core.now() - self.started_at)
  m.set_gauge("beagle_plugins_loaded", (function()
    local n = 0
    for _ in pairs(self.plugins.by_name) do n = n + 1 end
    return n
  end)())
  for _, p in ipairs(self.plugins:list()) do
    if p.memory_bytes then m.set_gauge("beagle_plugin_lua_memory_bytes", p.memory_bytes, { plugin = p.name }) end
    m.set_gauge("beagle_plugin_up", p.state == "loaded" and not p.error and 1 or 0, { plugin = p.name })
  end
  if self.server then
    local hs = self.server:stats()
    m.set_gauge("beagle_http_connections_open", hs.connections_open)
  end
  if self.rules then self.rules:update_metrics() end
  if self.delivery then self.delivery:update_metrics() end
  if self.history then
    local hs = self.history:stats()
    m.set_gauge("beagle_history_series", hs.series)
    m.set_gauge("beagle_history_memory_bytes", hs.mem_bytes)
    m.set_gauge("beagle_history_pending_rows", hs.pending_rows)
    m.set_gauge("beagle_history_flush_errors", hs.flush_errors)
    m.set_gauge("beagle_history_last_flush_seconds", hs.last_flush_ms / 1000)
  end
  if self.statsd then
    local st = self.statsd:stats()
    m.set_gauge("beagle_statsd_tcp_clients", st.tcp_clients)
    m.set_gauge("beagle_statsd_kernel_drops", st.kernel_drops)
  end
end

local function authorized(self, req)
  local token = self.settings.api_token
  if token ~= "" then
    local h = req.headers["authorization"] or ""
    if h ~= "Bearer " .. token then return false, 401, "a valid Authorization: Bearer token is required" end
    return true
  end
  if not req.loopback then
    return false, 403, "writes are accepted from loopback clients only when no api_token is set"
  end
  return true
end

local function err_json(status, msg, extra)
  local o = extra or {}
  o.error, o.status = msg, status
  return status, "application/json", json.encode(o)
end

-- path -> { method -> handler(self, req, captures) }
local routes = {
  { "^/health/detailed$", { GET = function(self)
    local limits = self.metrics.limits()
    limits.metrics = json.array(limits.metrics)
    limits.max_series, limits.max_series_per_metric = self.settings.max_series, self.settings.max_series_per_metric
    return 200, "application/json", json.encode(self.health:detailed {
      version = core.version, uptime_seconds = core.now() - self.started_at,
      plugins = setmetatable(self.plugins:list(), { __json_array = true }),
      rules = self.rules and self.rules:files_json() or nil,
      channels = setmetatable(self.channels:list(self.delivery and self.delivery:status() or nil),
        { __json_array = true }),
      metrics = limits,
    })
  end } },
  { "^/health/live$", { GET = function() return 200, "application/json", '{"status":"alive"}' end } },
  { "^/health/ready$", { GET = function(self) local st, b = self.health:ready_json() return st, "application/json", b end } },
  { "^/health/?$", { GET = function(self) local st, b = self.health:health_json() return st, "application/json", b end } },
  { "^/health/([^/]+)$", { GET = function(self, _, name)
    local o = self.health:check_json(name)
    if not o then return err_json(404, ("no check named %q"):format(name)) end
    return o.status == "unhealthy" and 503 or 200, "application/json", json.encode(o)
  end } },
  -- GET and HEAD /metrics are answered in C (server:serve_metrics in Agent:run); the entry
  -- stays for the 405 and its Allow header on the other methods.
  { "^/metrics/?$", { GET = function() return err_json(500, "GET /metrics is served by the C core") end } },
  { "^/alerts/?$", { GET = function(self)
    if not self.rules then return err_json(503, "alert rules are off") end
    return 200, "application/json", json.encode { status = "success", alerts = self.rules:alerts_json() }
  end } },
  { "^/alerts/rules/?$", {
    GET = function(self)
      if not self.rules then return err_json(503, "alert rules are off") end
      return 200, "application/json", json.encode { status = "success", rules = self.rules:rules_json() }
    end,
    POST = function(self, req)
      return self:alerts_write(req, function(rules)
        local spec, jerr = json.decode(req.body)
        if spec == nil then return 400, { error = "body is not valid JSON: " .. tostring(jerr) } end
        return rules:api_put_rule(spec)
      end)
    end,
  } },
  { "^/alerts/rules/([^/]+)$", { DELETE = function(self, req, name)
    return self:alerts_write(req, function(rules) return rules:api_delete_rule(name) end)
  end } },
  { "^/alerts/test/([^/]+)$", { POST = function(self, req, name)
    return self:alerts_write(req, function(rules) return rules:api_test_rule(name) end)
  end } },
  { "^/alerts/silences/?$", {
    GET = function(self)
      if not self.rules then return err_json(503, "alert rules are off") end
      return 200, "application/json", json.encode { status = "success", silences = self.rules:silences_json() }
    end,
    POST = function(self, req)
      return self:alerts_write(req, function(rules)
        local spec, jerr = json.decode(req.body)
        if spec == nil then return 400, { error = "body is not valid JSON: " .. tostring(jerr) } end
        return rules:api_add_silence(spec)
      end)
    end,
  } },
  { "^/alerts/silences/([^/]+)$", { DELETE = function(self, req, id)
    return self:alerts_write(req, function(rules) return rules:api_delete_silence(id) end)
  end } },
  { "^/metrics/performance$", { GET = function(self)
    self:update_self_metrics()
    local body = performance.render_json(core.wall())
    if not body then return err_json(500, "out of memory") end
    return 200, "application/json", body
  end } },
  { "^/metrics/custom$", { POST = function(self, req)
    local ok, st, msg = authorized(self, req)
    if not ok then return err_json(st, msg) end
    local partial = (req.query or ""):match("partial=([^&]*)")
    local code, o = api_metrics.custom(self.metrics, req.body, partial == "true" or partial == "1")
    return code, "application/json", json.encode(o)
  end } },
  { "^/%-/reload$", { POST = function(self, req)
    local ok, st, msg = authorized(self, req)
    if not ok then return err_json(st, msg) end
    local failures = self:reload("http")
    return 200, "application/json", json.encode {
      status = failures == 0 and "ok" or "partial", failures = failures,
      plugins = setmetatable(self.plugins:list(), { __json_array = true }),
    }
  end } },
  { "^/$", { GET = function()
    return 200, "application/json", json.encode { name = "beagle", version = core.version,
      routes = json.array { "/health", "/health/live", "/health/ready", "/health/detailed", "/health/{name}",
        "/metrics", "/metrics/performance", "POST /metrics/custom", "POST /-/reload" } }
  end } },
}

-- A write route of /alerts: auth, then fn(rules) -> status, table.
function Agent:alerts_write(req, fn)
  local ok, st, msg = authorized(self, req)
  if not ok then return err_json(st, msg) end
  if not self.rules then return err_json(503, "alert rules are off") end
  local code, o = fn(self.rules)
  if code >= 400 then o.status = code end
  return code, "application/json", json.encode(o)
end

function Agent:handle(req)
  local self_ = self
  for _, r in ipairs(routes) do
    local caps = { req.path:match(r[1]) }
    if caps[1] ~= nil or req.path:match(r[1]) then
      local method = req.method == "HEAD" and "GET" or req.method
      local h = r[2][method]
      if not h then
        local allow = util.sorted_keys(r[2])
        local st, ct, body = err_json(405, ("method %s is not allowed on %s"):format(req.method, req.path),
          { allow = json.array(allow) })
        return st, ct, body, "Allow: " .. table.concat(allow, ", ") .. "\r\n"
      end
      return h(self_, req, caps[1] ~= req.path and caps[1] or nil)
    end
  end
  return err_json(404, ("no route for %s"):format(req.path))
end

-- Re-reads the config (keeping the old one when it fails) and rescans every plugin.
function Agent:reload(why)
  log(1, "reloading", { trigger = why })
  local failures = 0
  if self.config_path then
    local cfg, err = config_mod.load(self.config_path)
    if cfg then
      self.config = cfg
      self.health.config_checks = cfg.checks
      self.config_channels_changed = cfg.channels
    else
      failures = failures + 1
      log(3, "config reload failed, keeping the previous config", { file = self.config_path, error = err })
    end
  end
  failures = failures + self.plugins:scan(false)
  if self.rules then failures = failures + self.rules:scan() end
  self.health:sync()
  failures = failures + self:sync_channels(self.config_channels_changed)
  self.config_channels_changed = nil
  self:publish()
  return failures
end

function Agent:shutdown(sig)
  if self.shutting_down then
    log(2, "second signal, stopping now", { signal = tostring(sig) })
    self.plugins:close_all(true)
    core.stop(0)
    return
  end
  self.shutting_down = true
  log(1, "shutting down", { signal = tostring(sig) })
  if self.profiler then self.profiler.stop() self.profiler = nil end
  self.plugins:stop_watching()
  if self.rules then self.rules:stop() end
  -- undelivered notifications stay in the outbox for the next start
  if self.delivery then self.delivery:stop() end
  local pending = self.health:stop()
  if self.server then self.server:close() self.server = nil end
  if self.statsd then self.statsd:stop() self.statsd = nil end
  for _, t in pairs(self.timers) do t:stop() end
  local deadline = core.now() + self.settings.shutdown_grace
  local function finish()
    local left = self.health:in_flight()
    if left > 0 then log(2, "cancelling checks still running", { count = tostring(left) }) end
    self.plugins:close_all(true)
    if self.history then
      -- the last samples and the minute being filled reach the disk before we go
      self.history:sample(core.wall() * 1000)
      local ok, ferr = self.history:flush(true)
      if not ok then log(3, "final history flush failed", { error = ferr }) end
      self.history:close()
      self.history = nil
    end
    log(1, "stopped")
    core.stop(0)
  end
  if pending == 0 then return finish() end
  self.timers.shutdown = core.timer(0.02, 0.02, function()
    if self.health:in_flight() == 0 or core.now() >= deadline then
      self.timers.shutdown:stop()
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
  local host, port = settings_mod.split_address(s.listen)
  local server, err = core.http_server(host, port, function(req) return self:handle(req) end)
  if not server then
    io.stderr:write("beagle: ", err, "\n")
    return 1
  end
  self.server = server
  self.started_at = core.now()
  self.timers = {}
  local ok, derr = core.mkdir(s.data_dir)
  if not ok then log(2, "cannot create the data directory", { dir = s.data_dir, error = derr }) end
  server:set_static("/health/live", 200, "application/json", '{"status":"alive"}')
  -- GET /metrics renders the registry in C, straight into the response. The gauges that are
  -- read on demand (RSS, uptime, plugin memory, open connections, queue and history sizes,
  -- rules and delivery state) are refreshed by this hook just before each render, as the Lua
  -- route did: a timer would serve them stale by up to its period and spend CPU while nobody
  -- scrapes, and RSS or uptime have no "place where they change". It is one call per scrape
  -- that builds no body; its work grows with plugins, channels and alerts, not with series
  -- (the history counts its series and chunks again only after a sample, core/history.c).
  server:serve_metrics({ "/metrics", "/metrics/" }, function() self:update_self_metrics() end)
  self:publish()
  self.plugins:watch(s.reload_debounce)
  self.health:start()
  self:publish()
  if s.statsd_address ~= "off" then
    local sd, serr = core.statsd_start(s.statsd_address)
    if not sd then
      io.stderr:write("beagle: ", serr, "\n")
      server:close()
      return 1
    end
    self.statsd = sd
    -- a set's value is its distinct count per collection interval
    self.timers.statsd_sets = core.timer(s.metrics_collection_interval, s.metrics_collection_interval,
      function() sd:flush_sets() end)
  end
  -- alert rules: the built-in rules/ and --rules DIR, each file in a sandboxed state
  local rules_dirs = { self.home .. "/rules" }
  if self.opts.rules and self.opts.rules ~= rules_dirs[1] then rules_dirs[#rules_dirs + 1] = self.opts.rules end
  local rules_mod = require "agent.rules.manager"
  local rm, rerr = rules_mod.new { dirs = rules_dirs, settings = s, metrics = self.metrics, log = log,
    data_dir = s.data_dir, memory_limit = s.plugin_memory_limit_mb * 1024 * 1024 }
  if not rm then
    log(3, "alert rules are off", { error = tostring(rerr) })
  else
    self.rules = rm
    rm:scan()
    rm:watch(s.reload_debounce)
    -- the outbox: notifications go out through the channels, durably when the store is open
    local delivery = require("agent.delivery").new {
      now = core.wall, timer = channels_mod.timer, store = rm.store, settings = s, log = log,
      metrics = self.metrics,
      channel = function(name) return self.channels:get(name) end,
      attempt = function(conf, n, done) return self.channels:attempt(conf, n, done) end,
      active_alerts = function(name) return rm:active_for(name) end,
    }
    self.delivery = delivery
    rm.delivery = delivery
    delivery:sync(self.channels.confs)
    delivery:resume()
    -- the notification rows (sent, failed, expired, and pending ones past their time-to-live),
    -- resolved instances and ended silences older than notification_retention_days: at start
    -- and every hour, so that the state store stays the size of its window
    if rm.store then
      local function prune()
        local keep = math.max(s.notification_retention_days * 86400, s.notification_ttl)
        local res, perr = rm.store:prune(core.wall() - keep)
        if not res then
          log(3, "state store prune failed", { error = tostring(perr) })
        elseif res.notifications + res.instances + res.silences > 0 then
          log(1, "state store pruned", { notifications = tostring(res.notifications),
            instances = tostring(res.instances), silences = tostring(res.silences) })
        end
      end
      prune()
      self.timers.prune = core.timer(3600, 3600, prune)
    end
  end
  -- history: a sample of every series each collection interval, rollups flushed to the data
  -- directory every 15 s (on the threadpool), read by agent.query
  local hist, herr = core.history_open(s.data_dir, s.history_raw, s.metrics_retention_days)
  if not hist then
    log(3, "history is not kept", { error = herr })
  else
    self.history = hist
    local step = s.metrics_collection_interval
    local function sample()
      -- timestamps on the interval grid compress to a bit each
      hist:sample(math.floor(core.wall() / step) * step * 1000)
    end
    sample()
    self.timers.history_sample = core.timer(step, step, sample)
    self.timers.history_flush = core.timer(15, 15, function() hist:flush() end)
  end
  -- histogram windows: a snapshot a minute (the tick takes it once per minute)
  performance.tick(core.wall())
  self.timers.window = core.timer(15, 15, function() performance.tick(core.wall()) end)
  -- beagle_loop_lag_seconds and beagle_loop_lag_max_seconds are measured in C on every turn
  -- of the loop (core/looplag.c, started by core/agent.c)
  self.signals = {
    core.signal("SIGTERM", function() self:shutdown("SIGTERM") end),
    core.signal("SIGINT", function() self:shutdown("SIGINT") end),
    core.signal("SIGHUP", function() self:reload("SIGHUP") end),
  }
  local statsd_at = "off"
  if self.statsd then
    local shost = settings_mod.split_address(s.statsd_address)
    statsd_at = ("%s:%d"):format(shost, (self.statsd:ports()))
  end
  log(1, "beagle started", { listen = host .. ":" .. server:port(), version = core.version, statsd = statsd_at,
    plugins = table.concat(self:plugin_dirs(), ","), config = self.config_path or "none",
    data = s.data_dir, rules = self.opts.rules or (self.home .. "/rules") })
  return nil
end

-- beagle check: runs every (or each named) check once and exits with the worst status.
function Agent:check_once(names)
  local list = {}
  if #names == 0 then
    for _, inst in ipairs(self.health:sorted()) do if inst.enabled then list[#list + 1] = inst end end
  else
    for _, n in ipairs(names) do
      local inst = self.health.instances[n]
      if not inst then
        io.stdout:write(("%s: unknown (no check named %q)\n"):format(n, n))
        return 3
      end
      list[#list + 1] = inst
    end
  end
  if #list == 0 then
    io.stdout:write("no checks configured\n")
    return 0
  end
  local left, worst = #list, "healthy"
  local results = {}
  for _, inst in ipairs(list) do
    self.health:execute(inst, function(i, r)
      results[i.name] = r or i.last
      left = left - 1
      if left == 0 then
        for _, x in ipairs(list) do
          local res = results[x.name]
          if health_mod.rank[res.status] > health_mod.rank[worst] then worst = res.status end
          io.stdout:write(("%s: %s (%.0fms)%s\n"):format(x.name, res.status, (res.response_time or 0) * 1000,
            res.message and (" " .. res.message) or ""))
        end
        io.stdout:flush()
        self.plugins:close_all(false)
        core.stop(health_mod.exit_codes[worst])
      end
    end)
  end
  return nil
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
  local ok, err = agent:setup(opts, home)
  if not ok then
    io.stderr:write("beagle: ", err, "\n")
    return cmd == "check" and 3 or 1
  end
  M.current = agent
  if cmd == "check" then return agent:check_once(opts.names) end
  return agent:run()
end

return M
