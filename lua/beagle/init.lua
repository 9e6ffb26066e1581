-- The `beagle` table that plugins and rules see: plugin constructors, option schemas,
-- metrics with the guide's names, spans (beagle.span & co.), and logging. Loaded by trusted code inside every plugin's own
-- lua_State; each plugin gets a copy of it (lua/agent/sandbox.lua), so what one changes in its
-- copy reaches neither the agent's code nor another plugin.
local util = require "agent.util"

local beagle = { _VERSION = "0.1.0" }

local bg = rawget(_G, "__bg") -- C functions of the plugin state (absent in plain luajit)

beagle.parse_duration = util.parse_duration

-- Option types a plugin may declare, with their checks. Each returns value or nil, err.
local types = {}
function types.string(v) if type(v) == "string" then return v end return nil, "must be a string" end
function types.number(v)
  if type(v) == "number" and v == v then return v end
  return nil, "must be a number"
end
function types.integer(v)
  if type(v) == "number" and v % 1 == 0 then return v end
  return nil, "must be a whole number"
end
function types.boolean(v) if type(v) == "boolean" then return v end return nil, "must be true or false" end
function types.duration(v) return util.parse_duration(v) end
-- A string that must never be shown: logged, /health/detailed and error messages show "***".
function types.secret(v)
  if type(v) == "string" then return v end
  return nil, "must be a string (a secret: env \"NAME\" or secret_file \"path\")"
end
function types.table(v) if type(v) == "table" then return v end return nil, "must be a table" end
-- A single string or number stands for a list of one (expect_status = 200 or { 200, 204 }).
function types.list(v)
  if type(v) == "table" then return v end
  if type(v) == "string" or (type(v) == "number" and v == v) then return { v } end
  return nil, "must be a list"
end
beagle.option_types = types

-- Normalises an options declaration ({ url = "string", timeout = { "duration", default = "5s",
-- description = "..." } }) into name -> { type, default, required, description }.
-- Raises on a malformed declaration: that is the plugin author's mistake.
local function normalize_options(decl, where)
  local out = {}
  if decl == nil then return out end
  if type(decl) ~= "table" then error(where .. ": options must be a table", 3) end
  for name, spec in pairs(decl) do
    if type(name) ~= "string" then error(where .. ": option names must be strings", 3) end
    if type(spec) == "string" then spec = { spec } end
    if type(spec) ~= "table" then error(("%s: option %q must be a type name or a table"):format(where, name), 3) end
    local t = spec[1] or spec.type
    if not types[t] then
      error(("%s: option %q has unknown type %q (use string, secret, number, integer, boolean, duration, table or list)")
        :format(where, name, tostring(t)), 3)
    end
    local o = { type = t, description = spec.description or spec.desc, optional = spec.optional == true }
    if spec.default ~= nil then
      local v, err = types[t](spec.default)
      if v == nil then error(("%s: default of option %q %s"):format(where, name, err), 3) end
      o.default = spec.default
    end
    o.required = o.default == nil and not o.optional
    out[name] = o
  end
  return out
end
beagle.normalize_options = normalize_options

-- Keys every check instance may set besides the plugin's own options.
beagle.instance_keys = {
  plugin = true, interval = true, timeout = true, retries = true, critical = true,
  tags = true, enabled = true, description = true, budget = true, memory = true,
  depends_on = true, flap_threshold = true, flap_window = true,
}

-- Validates an instance's options against a normalised schema. Returns the typed options
-- or nil, err naming the option.
function beagle.validate_options(schema, given)
  given = given or {}
  local out = {}
  for name in pairs(given) do
    if not schema[name] and not beagle.instance_keys[name] then
      local known = util.sorted_keys(schema)
      return nil, ("unknown option %q (options: %s)"):format(tostring(name),
        #known > 0 and table.concat(known, ", ") or "none")
    end
  end
  for name, o in pairs(schema) do
    local v = given[name]
    if v == nil then v = o.default end
    if v == nil then
      if o.required then return nil, ("option %q is required (%s)"):format(name, o.type) end
    else
      local tv, err = types[o.type](v)
      if tv == nil then
        -- a secret's value never goes into a message, even a wrong one
        return nil, ("option %q = %s: %s"):format(name, o.type == "secret" and "***" or tostring(v), err)
      end
      out[name] = tv
    end
  end
  return out
end

local kinds = { check = "run", backend = "send", channel = "send" }

local function constructor(kind)
  return function(def)
    local where = "beagle." .. kind
    if type(def) ~= "table" then error(where .. " expects a table", 2) end
    if type(def.name) ~= "string" or not def.name:match("^[%w_%-%.]+$") then
      error(where .. ": name must be a string of letters, digits, '_', '-' or '.'", 2)
    end
    local fn = kinds[kind]
    -- a backend may instead have the guide's MetricBackend methods, called per sample
    local guide = kind == "backend" and def.send == nil
      and (def.send_counter or def.send_gauge or def.send_histogram) ~= nil
    if guide then
      for _, m in ipairs { "send_counter", "send_gauge", "send_histogram" } do
        if def[m] ~= nil and type(def[m]) ~= "function" then
          error(("%s %q: %s must be a function"):format(where, def.name, m), 2)
        end
      end
    elseif type(def[fn]) ~= "function" then
      error(("%s %q: %s must be a function%s"):format(where, def.name, fn,
        kind == "backend" and " (or give send_counter, send_gauge and send_histogram)" or ""), 2)
    end
    if def.batch_size ~= nil and (type(def.batch_size) ~= "number" or def.batch_size < 0 or def.batch_size % 1 ~= 0) then
      error(("%s %q: batch_size must be a whole number >= 0 (0: a collection in one batch)"):format(where, def.name), 2)
    end
    def.options = normalize_options(def.options, ("%s %q"):format(where, def.name))
    for _, k in ipairs { "interval", "timeout", "resend" } do
      if def[k] ~= nil then
        local d, err = util.parse_duration(def[k])
        if not d then error(("%s %q: %s %s"):format(where, def.name, k, err), 2) end
        def[k] = d
      end
    end
    if def.retries ~= nil and (type(def.retries) ~= "number" or def.retries < 0 or def.retries % 1 ~= 0) then
      error(("%s %q: retries must be a whole number >= 0"):format(where, def.name), 2)
    end
    if def.validate ~= nil and type(def.validate) ~= "function" then
      error(("%s %q: validate must be a function"):format(where, def.name), 2)
    end
    if def.automatic ~= nil and type(def.automatic) ~= "boolean" then
      error(("%s %q: automatic must be a boolean"):format(where, def.name), 2)
    end
    def.kind = kind
    return setmetatable(def, { __beagle_plugin = kind })
  end
end

beagle.check = constructor("check")
beagle.backend = constructor("backend")
beagle.channel = constructor("channel")

function beagle.is_plugin(t)
  local mt = type(t) == "table" and getmetatable(t)
  return mt and mt.__beagle_plugin or nil
end

-- Logging: beagle.log.info("msg", { key = value }).
local levels = { debug = 0, info = 1, warn = 2, error = 3 }
beagle.log = {}
for name, lvl in pairs(levels) do
  beagle.log[name] = function(msg, fields)
    -- URL credentials and the plugin's secret options never reach the log (util.redact)
    local f = {}
    if type(fields) == "table" then
      for k, v in pairs(fields) do
        if type(k) == "string" then f[k] = util.redact(tostring(v)) end
      end
    end
    msg = util.redact(tostring(msg))
    if bg then bg.log(lvl, msg, f)
    else io.stderr:write(("level=%s msg=%q\n"):format(name, tostring(msg))) end
  end
end

-- Metrics with the guide's names and fast handles: the plugin environment (lua/agent/sandbox.lua)
-- fills these in on first use from agent.metrics' plugin API, whose handles reach only their own
-- series. The FFI declarations cost each plugin state ~100 KB, and most channels and checks never
-- touch a metric.
beagle.metric_keys = { counter = true, gauge = true, histogram = true, increment_counter = true,
  set_gauge = true, record_histogram = true, timer = true, time = true, quantile = true, now = true }

-- Tracing with the guide's names (its "Distributed Tracing"), filled in the same way from
-- agent.trace's plugin API on first use:
--   beagle.span(name, attrs, fn)      runs fn(span) in a child span of the current one and
--                                     returns fn's results; fn's error ends the span with
--                                     status error and an exception event (type, message, Lua
--                                     traceback), then is raised again as it was
--   beagle.trace_operation(name, attrs[, fn])  the same; without fn, a started span that is
--                                     current until span:finish() (or the run's end)
--   beagle.trace_optimization(id[, fn])  trace_operation("optimization_run", {optimization_id})
--   beagle.instrument(name, fn)       fn wrapped: every call is a span named name
-- A span: set_attribute(k, v) (string, number, boolean, or a list of one of those),
-- set_attributes(t), add_event(name, attrs), record_exception(err), set_status("ok" | "error",
-- msg), trace_id(), span_id(), traceparent(), is_recording(), finish(). Inside a trace that is
-- not sampled every span is one shared no-op span that costs nothing. ctx.http requests carry
-- the current span (traceparent), and beagle.log lines written inside a span carry its ids.
beagle.trace_keys = { span = true, trace_operation = true, trace_optimization = true, instrument = true }

-- Outside a plugin state (specs, tools in plain luajit) the same functions load on first use
-- here; in a plugin state the sandbox gives each plugin a copy of this table with its own
-- loader.
setmetatable(beagle, { __index = function(t, k)
  if not beagle.trace_keys[k] then return nil end
  local api = require("agent.trace").plugin_api()
  for name in pairs(beagle.trace_keys) do rawset(t, name, api[name]) end
  return rawget(t, k)
end })

return beagle