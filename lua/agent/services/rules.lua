-- The rules service: the alert rule files (the built-in rules/ and --rules DIR), each in a
-- sandboxed state (agent.rules.manager loads, evaluates and persists them), and the /alerts
-- routes. The rules start with the agent (`beagle run`), not with `beagle check`.
-- The service interface is described at the top of lua/agent/init.lua.
local json = require "beagle.json"
local router = require "agent.router"

local M = {}
M.__index = M

-- new{ dirs, settings, metrics, log }
function M.new(d)
  return setmetatable({ dirs = d.dirs, settings = d.settings, metrics = d.metrics, log = d.log }, M)
end

-- Rules that fail to start leave the agent running without them (the routes answer 503).
function M:start()
  local s = self.settings
  local rm, err = require("agent.rules.manager").new { dirs = self.dirs, settings = s, metrics = self.metrics,
    log = self.log, data_dir = s.data_dir, memory_limit = s.plugin_memory_limit_mb * 1024 * 1024 }
  if not rm then
    self.log(3, "alert rules are off", { error = tostring(err) })
    return true
  end
  self.manager = rm
  rm:scan()
  rm:watch(s.reload_debounce)
  return true
end

function M:reload() return self.manager and self.manager:scan() or 0 end

function M:stop()
  if self.manager then self.manager:stop() end
  return 0
end

function M:update_metrics()
  if self.manager then self.manager:update_metrics() end
end

function M:detail() return "rules", self.manager and self.manager:files_json() or nil end

local function off() return router.err_json(503, "alert rules are off") end

-- A read route: fn(manager) -> key, value of the success body.
local function read(self, fn)
  return function()
    if not self.manager then return off() end
    local key, value = fn(self.manager)
    return 200, "application/json", json.encode { status = "success", [key] = value }
  end
end

-- A write route: auth, then fn(manager, req, capture) -> status, table.
local function write(self, fn)
  return function(req, cap)
    local ok, st, msg = router.authorized(self.settings, req)
    if not ok then return router.err_json(st, msg) end
    if not self.manager then return off() end
    local code, o = fn(self.manager, req, cap)
    if code >= 400 then o.status = code end
    return code, "application/json", json.encode(o)
  end
end

-- A write whose body is a JSON document: fn(manager, doc) -> status, table.
local function write_json(self, fn)
  return write(self, function(rm, req)
    local spec, jerr = json.decode(req.body)
    if spec == nil then return 400, { error = "body is not valid JSON: " .. tostring(jerr) } end
    return fn(rm, spec)
  end)
end

function M:routes()
  return {
    { "GET", "^/alerts/?$", read(self, function(rm) return "alerts", rm:alerts_json() end) },
    { "GET", "^/alerts/rules/?$", read(self, function(rm) return "rules", rm:rules_json() end) },
    { "POST", "^/alerts/rules/?$", write_json(self, function(rm, spec) return rm:api_put_rule(spec) end) },
    { "DELETE", "^/alerts/rules/([^/]+)$", write(self, function(rm, _, name) return rm:api_delete_rule(name) end) },
    { "POST", "^/alerts/test/([^/]+)$", write(self, function(rm, _, name) return rm:api_test_rule(name) end) },
    { "GET", "^/alerts/silences/?$", read(self, function(rm) return "silences", rm:silences_json() end) },
    { "POST", "^/alerts/silences/?$", write_json(self, function(rm, spec) return rm:api_add_silence(spec) end) },
    { "DELETE", "^/alerts/silences/([^/]+)$", write(self, function(rm, _, id) return rm:api_delete_silence(id) end) },
  }
end

return M
