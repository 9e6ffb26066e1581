-- Loads the agent's configuration file (beagle.lua, itself Lua) into a plain description:
-- settings, and the check, channel and backend instances it declares, each with its line.
--
--   settings { health_check_interval = "30s" }     -- or top-level: listen = "0.0.0.0:8001"
--   check "api" { plugin = "http", url = "http://127.0.0.1:8000/health", interval = "30s" }
--   channel "oncall" { plugin = "pagerduty", routing_key = env "PD_KEY" }
--   backend "prom" { plugin = "remote_write", url = "http://127.0.0.1:9090/api/v1/write" }
local settings = require "agent.settings"

local M = {}

local function line_of(level)
  local info = debug.getinfo(level, "Sl")
  return info and info.currentline or 0
end

-- load(path) -> config | nil, err. config = { settings = {name = {value, line}}, checks = {...},
-- channels = {...}, backends = {...} } with raw (unvalidated) instance tables.
function M.load(path, getenv)
  getenv = getenv or os.getenv
  local cfg = { path = path, settings = {}, checks = {}, channels = {}, backends = {}, order = {} }
  local f, err = io.open(path, "r")
  if not f then return nil, ("cannot read config %s: %s"):format(path, err) end
  local src = f:read("*a")
  f:close()
  local chunk
  chunk, err = load(src, "@" .. path, "t")
  if not chunk then return nil, err end

  local problems = {}
  local function problem(line, msg) problems[#problems + 1] = ("%s:%d: %s"):format(path, line, msg) end

  local function set(name, value, line)
    if not settings.schema[name] then
      problem(line, ("unknown setting %q"):format(tostring(name)))
      return
    end
    local v, why = settings.coerce(name, value, false)
    if v == nil then
      local shown = type(value) == "string" and ("%q"):format(value) or tostring(value)
      if settings.schema[name].secret then shown = "***" end -- a secret's value never goes into a message
      problem(line, ("%s = %s: %s"):format(name, shown, why))
      return
    end
    cfg.settings[name] = { value = v, line = line }
  end

  local function declare(kind, into)
    return function(name)
      local line = line_of(3)
      if type(name) ~= "string" or name == "" then
        problem(line, kind .. " needs a name: " .. kind .. ' "name" { ... }')
        return function() end
      end
      return function(t)
        if type(t) ~= "table" then
          problem(line, ("%s %q: expected a table { ... }"):format(kind, name))
          return
        end
        if into[name] then
          problem(line, ("%s %q is declared twice (first on line %d)"):format(kind, name, into[name].line))
          return
        end
        into[name] = { name = name, line = line, spec = t }
        cfg.order[#cfg.order + 1] = { kind = kind, name = name }
      end
    end
  end

  local env = {
    check = declare("check", cfg.checks),
    channel = declare("channel", cfg.channels),
    backend = declare("backend", cfg.backends),
    settings = function(t)
      local line = line_of(3)
      if type(t) ~= "table" then problem(line, "settings expects a table { ... }") return end
      for k, v in pairs(t) do set(k, v, line) end
    end,
    env = function(var, default)
      local v = getenv(var)
      if v == nil then
        if default == nil then problem(line_of(3), ("environment variable %s is not set"):format(var)) end
        return default
      end
      return v
    end,
    -- a secret kept in a file (a Kubernetes/Docker secret mount): its content, without the
    -- trailing newline; the path is relative to the config file's directory
    secret_file = function(p)
      local line = line_of(3)
      if type(p) ~= "string" or p == "" then
        problem(line, 'secret_file needs a path: secret_file "/run/secrets/pd_key"')
        return nil
      end
      local full = p
      if not p:match("^/") then full = (path:match("^(.*)/[^/]*$") or ".") .. "/" .. p end
      local sf, serr = io.open(full, "r")
      if not sf then
        problem(line, ("secret_file %q cannot be read: %s"):format(p, tostring(serr)))
        return nil
      end
      local v = sf:read("*a") or ""
      sf:close()
      v = v:gsub("\r?\n$", "")
      if v == "" then problem(line, ("secret_file %q is empty"):format(p)) end
      return v
    end,
    tonumber = tonumber, tostring = tostring, pairs = pairs, ipairs = ipairs, string = string,
    table = table, math = math, os = { getenv = getenv, time = os.time },
  }
  setmetatable(env, {
    __newindex = function(_, k, v) set(k, v, line_of(3)) end,
    __index = function(_, k)
      if settings.schema[k] and cfg.settings[k] then return cfg.settings[k].value end
      return nil
    end,
  })
  setfenv(chunk, env)
  local ok, e = pcall(chunk)
  if not ok then return nil, tostring(e) end
  if #problems > 0 then return nil, table.concat(problems, "\n") end
  return cfg
end

return M
