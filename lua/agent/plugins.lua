-- The plugin manager (agent side). Finds plugin files in the built-in and drop-in
-- directories, loads each into its own lua_State (core.script_new), and on a change loads the
-- new version into a fresh state, swapping it in only when it loads and every instance that
-- uses it still validates. A file that fails leaves the old version running.
local core = require "agent.core"
local util = require "agent.util"

local M = {}
M.__index = M

local kind_dirs = { checks = "check", backends = "backend", channels = "channel" }

-- new{ dirs = { path, ... }, memory_limit = bytes, exec_allow = { program path, ... },
-- tls_allow = { file or directory/ path, ... }, log = fn,
--      on_change = fn(name, rec|nil),
--      validate = fn(name, script) -> true | nil, err, metrics = metrics module }
function M.new(o)
  local self = setmetatable({
    dirs = o.dirs, memory_limit = o.memory_limit, exec_allow = o.exec_allow or {}, tls_allow = o.tls_allow or {},
    on_change = o.on_change or function() end,
    validate = o.validate or function() return true end, log = o.log, metrics = o.metrics,
    by_name = {},  -- name -> rec (loaded)
    by_file = {},  -- path -> rec (loaded or failed)
    watches = {},
    load_failures = 0,
  }, M)
  -- rec.script of a parked plugin: loaded again on first use (park_unused)
  self.rec_mt = { __index = function(rec, k)
    if k == "script" and rec.parked then return self:revive(rec) end
  end }
  return self
end

-- Every plugin file under the configured directories: path -> expected kind (or nil).
function M:files()
  local found = {}
  for _, dir in ipairs(self.dirs) do
    local list = core.listdir(dir)
    if list then
      for _, e in ipairs(list) do
        if e.dir and kind_dirs[e.name] then
          local sub = core.listdir(dir .. "/" .. e.name)
          for _, f in ipairs(sub or {}) do
            if not f.dir and f.name:match("%.lua$") and not f.name:match("^%.") then
              found[dir .. "/" .. e.name .. "/" .. f.name] = kind_dirs[e.name]
            end
          end
        elseif not e.dir and e.name:match("%.lua$") and not e.name:match("^%.") then
          found[dir .. "/" .. e.name] = false
        end
      end
    end
  end
  return found
end

function M:fail(path, err, rec)
  self.load_failures = self.load_failures + 1
  local name = rec and rec.name or util.basename(path):gsub("%.lua$", "")
  if self.metrics then
    self.metrics.increment_counter("beagle_plugin_load_failures_total", 1, { plugin = name })
  end
  self.log(3, "plugin failed to load", { file = path, error = err,
    kept = rec and rec.state == "loaded" and "previous version" or "nothing" })
  if rec and rec.state == "loaded" then
    rec.error = err
    rec.error_at = core.wall()
  else
    self.by_file[path] = { name = name, file = path, state = "failed", error = err, error_at = core.wall() }
  end
  return nil, err
end

-- Loads (or reloads) one file. Returns rec or nil, err. park: a first version gives up its
-- state at once (the first scan: no instance is built yet, and most plugins never get one;
-- states kept until park_unused made start-up's heap peak ~3.5 MB, and its fragments stayed).
function M:load(path, expected_kind, force, park)
  local src, rerr = util.read_source(path)
  if not src then
    if not rerr then return self:unload(path) end
    return self:fail(path, rerr, self.by_file[path])
  end
  local old = self.by_file[path]
  if old and old.source == src and not force then return old end
  local script, err = core.script_new { name = util.basename(path), memory_limit = self.memory_limit }
  if not script then return self:fail(path, err, old) end
  local meta
  meta, err = script:call("__load", { path = path, src = src, exec_allow = self.exec_allow, tls_allow = self.tls_allow })
  if not meta then
    script:close(true)
    return self:fail(path, err, old)
  end
  if expected_kind and meta.kind ~= expected_kind then
    script:close(true)
    return self:fail(path, ("%s returns a %s, but this directory holds %ss"):format(path, meta.kind, expected_kind), old)
  end
  local other = self.by_name[meta.name]
  if other and other.file ~= path then
    script:close(true)
    return self:fail(path, ("plugin name %q is already taken by %s"):format(meta.name, other.file), old)
  end
  -- a new version must keep every instance valid; a first version reports bad instances
  -- on the instances themselves
  local ok, verr = true, nil
  if old and old.state == "loaded" then ok, verr = self.validate(meta.name, script, meta) end
  if not ok then
    script:close(true)
    return self:fail(path, verr, old)
  end
  local parked = park and not (old and old.state == "loaded")
  if parked then
    script:close(false, true) -- freed now: nothing runs in it
  else
    script:call("__collect")
  end
  local rec = setmetatable({
    name = meta.name, kind = meta.kind, file = path, state = "loaded", meta = meta,
    script = not parked and script or nil, parked = parked or nil,
    source = src, loaded_at = core.wall(), version = (old and old.version or 0) + 1,
  }, self.rec_mt)
  if old and old.state == "loaded" then
    if old.name ~= rec.name then self.by_name[old.name] = nil end
    -- the old version's instances close; in-flight runs finish (each has its deadline); then
    -- the state is freed
    local old_script = rawget(old, "script")
    if old_script then
      self:close_instances(old)
      old_script:close(false)
    end
  end
  self.by_file[path] = rec
  self.by_name[rec.name] = rec
  self.log(1, old and "plugin reloaded" or "plugin loaded",
    { plugin = rec.name, kind = rec.kind, file = path, version = tostring(rec.version) })
  self.on_change(rec.name, rec, old and old.state == "loaded" and old or nil)
  return rec
end

-- Calls the plugin's close(opt, ctx) for every instance of a state that goes away (or the
-- one named); a failure is logged, never kept.
function M:close_instances(rec, name)
  local script = rawget(rec, "script")
  if not script then return end -- parked: no instance is configured in it
  local ok, v, err = pcall(script.call, script, "__close", { name = name })
  if not ok or v == nil then
    self.log(2, "plugin close failed", { plugin = rec.name, instance = name, error = tostring(ok and err or v) })
  end
end

-- A plugin no instance uses (no check or channel of it declared, nor an automatic one) keeps
-- its metadata and source but not its lua_State: six channel plugins and the http and tcp
-- checks cost an idle agent ~1 MB otherwise. The first use (rec.script) loads it again from
-- the kept source, into a fresh state.
function M:park_unused()
  local parked = 0
  for _, rec in pairs(self.by_file) do
    local script = rawget(rec, "script")
    if rec.state == "loaded" and script and script:active() == 0 then
      local ok, used = pcall(script.call, script, "__in_use")
      if ok and used == false then
        script:close(false)
        rec.script = nil
        rec.parked = true
        parked = parked + 1
      end
    end
  end
  -- the states are freed by the loop's next turn (script.c's reaper); their pages go back then
  if parked > 0 and core.timer and core.release_memory then
    local t
    t = core.timer(0.05, 0, function()
      t:stop()
      core.release_memory()
    end)
  end
end

function M:revive(rec)
  local script, err = core.script_new { name = util.basename(rec.file), memory_limit = self.memory_limit }
  local meta
  if script then
    meta, err = script:call("__load", { path = rec.file, src = rec.source, exec_allow = self.exec_allow,
      tls_allow = self.tls_allow })
  end
  if not meta then
    if script then script:close(true) end
    -- the kept source loaded once: this is out of memory or the like, and the use fails
    error(("plugin %s could not be loaded again: %s"):format(rec.name, tostring(err)), 2)
  end
  script:call("__collect")
  rec.parked = nil
  rawset(rec, "script", script)
  self.log(0, "plugin state loaded for its first use", { plugin = rec.name })
  return script
end

function M:unload(path)
  local rec = self.by_file[path]
  if not rec then return nil, "not loaded" end
  self.by_file[path] = nil
  if rec.state == "loaded" then
    if self.by_name[rec.name] == rec then self.by_name[rec.name] = nil end
    self:close_instances(rec)
    local script = rawget(rec, "script")
    if script then script:close(false) end
    rec.parked = nil
    rec.state = "removed"
    self.log(1, "plugin removed", { plugin = rec.name, file = path })
    self.on_change(rec.name, nil, rec)
  end
  return true
end

-- Loads new and changed files, unloads removed ones. Returns the number of failures. park:
-- new files keep no state until their first use (see load).
function M:scan(force, park)
  local files = self:files()
  local failures = 0
  for path in pairs(self.by_file) do
    if files[path] == nil then self:unload(path) end
  end
  for _, path in ipairs(util.sorted_keys(files)) do
    local rec = self:load(path, files[path] or nil, force, park)
    if not rec or rec.error then failures = failures + 1 end
  end
  return failures
end

-- Watches every plugin directory; a change rescans after the debounce.
function M:watch(debounce)
  local dirs = {}
  for _, dir in ipairs(self.dirs) do
    dirs[#dirs + 1] = dir
    for sub in pairs(kind_dirs) do dirs[#dirs + 1] = dir .. "/" .. sub end
  end
  for _, d in ipairs(dirs) do
    if core.listdir(d) then
      local w, err = core.watch(d, debounce, function() self:scan(false) end)
      if w then self.watches[#self.watches + 1] = w
      else self.log(2, "cannot watch plugin directory", { dir = d, error = err }) end
    end
  end
end

function M:stop_watching()
  for _, w in ipairs(self.watches) do w:stop() end
  self.watches = {}
end

function M:get(name) return self.by_name[name] end

-- For /health/detailed: every file with its state.
function M:list()
  local out = {}
  for _, path in ipairs(util.sorted_keys(self.by_file)) do
    local r = self.by_file[path]
    out[#out + 1] = {
      name = r.name, file = r.file, kind = r.kind, state = r.state, error = r.error,
      version = r.version, parked = r.parked or nil,
      memory_bytes = rawget(r, "script") and r.script:memory() or (r.parked and 0) or nil,
      description = r.meta and r.meta.description or nil,
    }
  end
  return out
end

function M:close_all(force)
  for _, r in pairs(self.by_file) do
    local script = rawget(r, "script")
    if script and r.state == "loaded" then self:close_instances(r) end
    if script then script:close(force) end
  end
end

return M
