-- agent.instances: what the kinds whose instances are declared in the config (channels,
-- backends) share around their plugins: the options a declaration gives its plugin (without
-- the keys the agent reads itself), a reload's dry check of every declaration, a new version
-- of a plugin file validating every instance of it, and how a send's run answers.
--
--   kind = { name = "channel", keys = { plugin = true, ... }, plugin_of = fn(name, spec) -> plugin,
--            build = fn(name, spec, line, dry) -> conf | nil, err, mask = fn(name, text) -> text }
local util = require "agent.util"

local M = {}

-- The plugin's own options of a declaration: spec without the instance keys.
function M.given(spec, keys)
  local out = {}
  for k, v in pairs(spec or {}) do
    if not keys[k] then out[k] = v end
  end
  return out
end

local function problem(kind, path, c, name, err)
  return ("%s:%d: %s %q: %s"):format(path or "config", c.line, kind.name, name, err)
end
M.problem = problem

-- Every declaration of a new config built against the loaded plugins, validated only (nothing
-- changes). Returns the problems ("file:line: <kind> "x": reason"), sorted by name.
function M.check_config(kind, config, path)
  local problems = {}
  for _, name in ipairs(util.sorted_keys(config)) do
    local c = config[name]
    local ok, conf, err = pcall(kind.build, name, c.spec, c.line, true)
    if not ok then err = conf end
    if not ok or not conf then problems[#problems + 1] = problem(kind, path, c, name, kind.mask(name, err)) end
  end
  return problems
end

-- A fresh version of plugin `plugin` must validate every declared instance of it; a swap-in
-- state keeps each instance's options from here (sends then name only the instance).
function M.validate_plugin(kind, config, path, plugin, script, meta)
  if meta.kind ~= kind.name then return true end
  for name, c in pairs(config) do
    if kind.plugin_of(name, c.spec) == plugin then
      local ok, err = script:call("__configure", { name = name, given = M.given(c.spec, kind.keys) })
      if not ok then
        return nil, ("%s %q (%s:%d) does not validate against the new version: %s")
          :format(kind.name, name, path or "config", c.line, kind.mask(name, err))
      end
    end
  end
  return true
end

-- The callback of a send's run (`__send`, `__send_batch`): done(true), or done(false, the
-- error with the instance's secrets masked, { retry_after, permanent }). seen(res), when given,
-- reads the answer first (a backend's skipped samples).
function M.send_result(done, mask, seen)
  return function(fine, res)
    if fine and type(res) == "table" then
      if seen then seen(res) end
      if res.ok then return done(true) end
      return done(false, mask(res.error), { retry_after = res.retry_after, permanent = res.permanent })
    end
    done(false, mask(res))
  end
end

return M
