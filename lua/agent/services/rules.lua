-- The rules service: the alert rule files (the built-in rules/ and --rules DIR), each in a
-- sandboxed state (agent.rules.manager loads, evaluates and persists them), and the /alerts
-- routes. The rules start with the agent (`beagle run`), not with `beagle check`.
-- The service interface is described at the top of lua/agent/init.lua.
local json = require "beagle.json"
local util = require "agent.util"
local router = require "agent.router"

local M = {}
M.__index = M

-- new{ dirs, settings, metrics, log, sample_now = fn() }
function M.new(d)
  return setmetatable({ dirs = d.dirs, settings = d.settings, metrics = d.metrics, log = d.log,
    sample_now = d.sample_now }, M)
end

local function problem_text(p)
  return p.line and ("%s:%d: %s"):format(p.file, p.line, p.message) or ("%s: %s"):format(p.file, p.message)
end

-- An engine that cannot start leaves the agent running without rules (the routes answer 503);
-- a rule file that does not load (or an alert name declared twice) stops the start, as a bad
-- config file does.
function M:start()
  local s = self.settings
  local rm, err = require("agent.rules.manager").new { dirs = self.dirs, settings = s, metrics = self.metrics,
    log = self.log, data_dir = s.data_dir, memory_limit = s.plugin_memory_limit_mb * 1024 * 1024,
    sample_now = self.sample_now }
  if not rm then
    self.log(3, "alert rules are off", { error = tostring(err) })
    return true
  end
  self.manager = rm
  -- the engine's modules are loaded; their parse garbage goes before the rule files load, so
  -- the agent state's peak (which its allocator keeps) stays one step lower: the LuaJIT arena
  -- of an idle agent 812 KiB in 6 of 6 agents, against 940 KiB in 4 of 6 without
  collectgarbage()
  local problems = rm:scan()
  if #problems > 0 then
    local lines = {}
    for i, p in ipairs(problems) do lines[i] = problem_text(p) end
    rm:stop()
    self.manager = nil
    return nil, table.concat(lines, "\n")
  end
  rm:watch(s.reload_debounce)
  return true
end

-- A reload in two steps (lua/agent/init.lua): prepare loads every changed rule file into a
-- fresh state and returns the problems; commit swaps the whole set in, discard drops it.
function M:prepare()
  if not self.manager then return {} end
  self.staged, self.problems, self.fresh = self.manager:prepare()
  return self.problems
end

function M:commit()
  if self.manager and self.staged then self.manager:commit(self.staged) end
  self.staged, self.problems, self.fresh = nil, nil, nil
end

function M:discard()
  if self.manager and self.staged then self.manager:discard(self.problems, self.fresh) end
  self.staged, self.problems, self.fresh = nil, nil, nil
end

function M:stop()
  if self.manager then self.manager:stop() end
  return 0
end

function M:update_metrics()
  if self.manager then self.manager:update_metrics() end
end

function M:detail() return "rules", self.manager and self.manager:files_json() or nil end

local function off() return router.err_json(503, "alert rules are off") end

-- A name captured from the path, percent-decoded (a rule "a b" is /alerts/rules/a%20b).
local function path_name(cap)
  local name, err = util.url_decode(cap)
  if not name then return nil, 400, { error = "bad rule name in the path: " .. err } end
  if #name > 256 then return nil, 400, { error = ("name is %d bytes long: a rule name is at most 256"):format(#name) } end
  return name
end

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
    { "PUT", "^/alerts/rules/([^/]+)$", write(self, function(rm, req, cap)
      local name, st, o = path_name(cap)
      if not name then return st, o end
      local spec, jerr = json.decode(req.body)
      if spec == nil then return 400, { error = "body is not valid JSON: " .. tostring(jerr) } end
      return rm:api_replace_rule(name, spec)
    end) },
    { "DELETE", "^/alerts/rules/([^/]+)$", write(self, function(rm, _, cap)
      local name, st, o = path_name(cap)
      if not name then return st, o end
      return rm:api_delete_rule(name)
    end) },
    { "POST", "^/alerts/test/([^/]+)$", write(self, function(rm, _, cap)
      local name, st, o = path_name(cap)
      if not name then return st, o end
      return rm:api_test_rule(name)
    end) },
    { "GET", "^/alerts/silences/?$", read(self, function(rm) return "silences", rm:silences_json() end) },
    { "POST", "^/alerts/silences/?$", write_json(self, function(rm, spec) return rm:api_add_silence(spec) end) },
    { "DELETE", "^/alerts/silences/([^/]+)$", write(self, function(rm, _, id) return rm:api_delete_silence(id) end),
      "/alerts/silences/{id}" },
  }
end

return M
