-- The check service: the config's `check` declarations and the checks plugins run without one
-- (agent.health builds, schedules and records them), the /health routes, the hot ones
-- published to the C server's static table, and `beagle check`'s single round.
-- The service interface is described at the top of lua/agent/init.lua.
local core = require "agent.core"
local util = require "agent.util"
local json = require "beagle.json"
local health_mod = require "agent.health"
local router = require "agent.router"

local M = {}
M.__index = M

-- new{ settings, metrics, log, plugins (service), details = fn() -> table for /health/detailed }
function M.new(d)
  local self = setmetatable({ plugins = d.plugins, details = d.details, settings = d.settings }, M)
  self.health = health_mod.new {
    settings = d.settings, metrics = d.metrics, log = d.log, plugins = d.plugins.manager,
    on_update = function() self:publish_soon() end,
  }
  d.plugins:subscribe(self)
  return self
end

local function malformed(cfg)
  local problems = {}
  for _, name in ipairs(util.sorted_keys(cfg.checks)) do
    local c = cfg.checks[name]
    if c.spec.plugin ~= nil and type(c.spec.plugin) ~= "string" then
      problems[#problems + 1] = ("%s:%d: check %q: plugin must be a string"):format(cfg.path, c.line, name)
    end
  end
  return problems
end

-- Takes the config's check declarations, unless one of them is malformed.
function M:configure(cfg)
  local problems = malformed(cfg)
  if #problems == 0 then self.health:set_config(cfg.checks, cfg.path) end
  return problems
end

-- The values of every instance's options of type secret, for util.redact.
function M:collect_secrets()
  local list = {}
  for _, inst in pairs(self.health.instances) do
    local rec = inst.opts and self.plugins.manager:get(inst.plugin)
    for oname, o in pairs(rec and rec.meta.options or {}) do
      local v = inst.opts[oname]
      if o.type == "secret" and type(v) == "string" then list[#list + 1] = v end
    end
  end
  util.set_secrets("checks", list)
end

-- Builds every instance. At start-up a misconfigured check is fatal (at reload the old config
-- stays instead).
function M:load()
  self.health:sync()
  self:collect_secrets()
  local bad = {}
  for _, inst in ipairs(self.health:sorted()) do
    if inst.error and inst.line then
      bad[#bad + 1] = ("%s:%d: check %q: %s"):format(self.health.config_path, inst.line, inst.name, inst.error)
    end
  end
  return bad
end

-- A reload's first step: every check of the new config must build against the loaded plugins
-- (validated only: nothing changes). Returns the problems; commit applies the config.
function M:prepare(cfg)
  if not cfg then return {} end
  local problems = malformed(cfg)
  if #problems > 0 then return problems end
  for _, name in ipairs(util.sorted_keys(cfg.checks)) do
    local c = cfg.checks[name]
    local ok, inst, err = pcall(self.health.build, self.health, name, c.spec.plugin or name, c.spec, c.line, true)
    if not ok then err = inst end
    if err then problems[#problems + 1] = ("%s:%d: check %q: %s"):format(cfg.path, c.line, name, err) end
  end
  self.pending = cfg
  return problems
end

function M:commit()
  if self.pending then self.health:set_config(self.pending.checks, self.pending.path) end
  self.pending = nil
  self.health:sync()
  self:collect_secrets()
  self:publish()
end

function M:discard() self.pending = nil end

function M:validate_plugin(name, script, meta) return self.health:validate_plugin(name, script, meta) end

function M:plugins_changed()
  self.health:sync()
  self:collect_secrets()
end

function M:start(server)
  self.server = server
  server:set_static("/health/live", 200, "application/json", '{"status":"alive"}')
  self:publish()
  self.health:start()
  self:publish()
  return true
end

-- Cancels the schedules; returns the number of runs still in flight.
function M:stop()
  local n = self.health:stop()
  self.server = nil
  return n
end

function M:in_flight() return self.health:in_flight() end

-- Check results arrive one by one (spread over their intervals); re-rendering /health for
-- every one of them costs O(checks) each. Results are coalesced for 20 ms, or for 200 times what
-- the last publishing took when that is longer (at most 1 s): publishing stays under about 0.5%
-- of a core however many checks there are (1,000 checks: about every 100 ms), and /health is at
-- most that stale.
local PUBLISH_DELAY, PUBLISH_MAX, PUBLISH_FACTOR = 0.02, 1, 200
function M:publish_soon()
  if not self.server or self.publish_timer then return end
  local delay = math.min(PUBLISH_MAX, math.max(PUBLISH_DELAY, (self.publish_cost or 0) * PUBLISH_FACTOR))
  self.publish_timer = core.timer(delay, 0, function()
    local t = self.publish_timer
    self.publish_timer = nil
    if t then t:stop() end
    self:publish()
  end)
end

-- Writes the hot routes into the HTTP server's static table (answered in C).
function M:publish()
  if not self.server then return end
  local t0 = core.now()
  local st, body = self.health:health_json() -- redacted: a message may quote a URL with its key
  self.server:set_static("/health", st, "application/json", body)
  self.server:set_static("/health/", st, "application/json", body)
  st, body = self.health:ready_json()
  self.server:set_static("/health/ready", st, "application/json", body)
  self.publish_cost = core.now() - t0
end

function M:routes()
  local health = self.health
  return {
    { "GET", "^/health/detailed$", function()
      return 200, "application/json", json.encode(health:detailed(self.details()))
    end },
    { "GET", "^/health/live$", function() return 200, "application/json", '{"status":"alive"}' end },
    { "GET", "^/health/ready$", function() local st, b = health:ready_json() return st, "application/json", b end },
    { "GET", "^/health/?$", function() local st, b = health:health_json() return st, "application/json", b end },
    { "GET", "^/health/([^/]+)$", function(req, name)
      local inst = health.instances[name]
      if not inst then return router.err_json(404, ("no check named %q"):format(name)) end
      local run = (req.query or ""):match("^run=([^&]*)") or (req.query or ""):match("&run=([^&]*)")
      if run and run ~= "0" and run ~= "false" and req.method == "GET" then -- HEAD runs nothing
        return self:run_now(req, inst)
      end
      local o = health:check_json(name)
      return o.status == "unhealthy" and 503 or 200, "application/json", json.encode(o)
    end },
  }
end

-- GET /health/{name}?run=1: runs the check now (a write: authenticated as POST routes are) and
-- answers with its fresh result once the run (with its retries) is done; a run under way is
-- waited for instead of starting a second. The answer is deferred: the loop serves meanwhile.
function M:run_now(req, inst)
  local ok, st, msg = router.authorized(self.settings, req)
  if not ok then return router.err_json(st, msg) end
  local server, health = self.server, self.health
  if not server or not req.ticket then return router.err_json(503, "the agent is not serving checks yet") end
  local function answer(name, r)
    local o = health:check_json(name)
    if not o then o = { name = name, status = r and r.status or "unknown", message = r and r.message or "check removed" } end
    return o.status == "unhealthy" and 503 or 200, "application/json", util.redact(json.encode(o))
  end
  -- the result may be known at once (a misconfigured check, a dependency that is down): then
  -- it is the answer; else the answer is deferred until the run ends
  local now, deferred
  health:execute(inst, function(i, r)
    if not deferred then now = { i.name, r } return end
    -- the client may be gone, or the server closing: nothing to do then
    pcall(server.answer, server, req.ticket, answer(i.name, r))
  end)
  if now then return answer(now[1], now[2]) end
  deferred = true
  return "defer"
end

-- beagle check: runs every (or each named) check once, prints a line each and calls
-- done(exit code of the worst status). Returns an exit code at once when nothing runs.
function M:run_once(names, done)
  local health = self.health
  local list = {}
  if #names == 0 then
    for _, inst in ipairs(health:sorted()) do if inst.enabled then list[#list + 1] = inst end end
  else
    for _, n in ipairs(names) do
      local inst = health.instances[n]
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
    health:execute(inst, function(i, r)
      results[i.name] = r or i.last
      left = left - 1
      if left == 0 then
        for _, x in ipairs(list) do
          local res = results[x.name]
          if health_mod.rank[res.status] > health_mod.rank[worst] then worst = res.status end
          io.stdout:write(util.redact(("%s: %s (%.0fms)%s\n"):format(x.name, res.status,
            (res.response_time or 0) * 1000, res.message and (" " .. res.message) or "")))
        end
        io.stdout:flush()
        done(health_mod.exit_codes[worst])
      end
    end)
  end
  return nil
end

return M
