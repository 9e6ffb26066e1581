-- Rule files (rules/*.lua): loads one file in a sandbox and turns what it declares into the
-- normalised set of CONTRACT.md, or into every problem found, each as "file:line: what: why".
--
--   alert "high_cpu_usage" { metric = "system.cpu_percent", condition = "greater_than",
--     threshold = 80, duration_minutes = 5, severity = "warning", tags = { team = "infra" },
--     labels = { host = "~web-.*" } }
--   anomaly "latency" { metric = "api.response_time", method = "mad", window = "1h" }
--   route { match = { severity = "critical" }, channels = { "pagerduty" } }
--   silence { matchers = { host = "batch-*" }, ends = "2026-11-27T10:00:00Z", comment = "..." }
--   inhibit { source = { severity = "critical" }, target = { severity = "warning" }, equal = { "host" } }
--
-- `tags` vs `labels`: the guide's `tags` are static labels added to every alert instance
-- (rule.labels); `labels` select the metric's series (rule.matchers), one instance per series.
--
-- Matcher values (labels, match, matchers, source, target):
--   "v"      equal;  "!v" not equal;  "=v" the literal v (to write a leading ! ~ = or a *)
--   "~re"    the whole value matches the regex;  "!~re" it does not;  a missing label reads ""
--   "a*b"    a glob (only * is special): in silences, routes and inhibits, all matched in Lua;
--            not in an alert's `labels`, which go to the C history where * is literal.
-- Regexes are POSIX extended, restricted to what translates exactly to Lua patterns, so the C
-- history (regcomp) and Lua (dsl.match) agree: literals, ".", bracket expressions ([abc],
-- [^a-z], [[:digit:]] and the other POSIX classes), the quantifiers * + ? {n} {n,} {n,m} after
-- one of those, "\" before punctuation, alternation a|b at the top level or in groups (a|b)c
-- without a quantifier, and a leading ^ / trailing $ (implicit anyway). Anything else, such as
-- (ab)+, \d or a backreference, is a load-time error.
local util = require "agent.util"
local template = require "agent.rules.template"

local bit = require "bit"

local M = {}

local function show(v)
  if type(v) == "string" then return ("%q"):format(v) end
  return tostring(v)
end

-- matchers (syntax, regex translation, globs) live in agent.rules.matchers
local matchers = require "agent.rules.matchers"
M.translate_regex, M.match, M.check_matchers = matchers.translate_regex, matchers.match, matchers.check_matchers
local label_name_ok, check_matchers = matchers.label_name_ok, matchers.check_matchers_kind

---------------------------------------------------------------------------------------------
-- Values

local CONDITIONS = {
  greater_than = ">", less_than = "<", equal = "==", not_equal = "!=", greater_equal = ">=",
  less_equal = "<=", [">"] = ">", ["<"] = "<", ["=="] = "==", ["!="] = "!=", [">="] = ">=", ["<="] = "<=",
}
local CONDITION_LIST = "greater_than, less_than, equal, not_equal, greater_equal, less_equal, >, <, ==, !=, >=, <="
local SEVERITIES = { info = true, warning = true, error = true, critical = true }
local METHODS = { zscore = 3, mad = 3.5, ewma = 3 }
M.CONDITIONS, M.SEVERITIES, M.ANOMALY_THRESHOLDS = CONDITIONS, SEVERITIES, METHODS

local function days_from_civil(y, m, d)
  y = m <= 2 and y - 1 or y
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (m + (m > 2 and -3 or 9)) + 2) / 5) + d - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

-- parse_time(v) -> epoch seconds | nil, err. Numbers are epoch seconds; strings are ISO 8601
-- "2026-11-27T10:00:00Z" (fraction and a +hh:mm offset allowed).
function M.parse_time(v)
  if type(v) == "number" then
    if v ~= v or v < 0 or v == math.huge then return nil, "must be epoch seconds" end
    return v
  end
  if type(v) ~= "string" then return nil, "must be epoch seconds or a time like \"2026-11-27T10:00:00Z\"" end
  local y, mo, d, h, mi, s, frac, tz = v:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)[T ](%d%d):(%d%d):(%d%d)(%.?%d*)(.*)$")
  if not y then return nil, ("%q is not a time like \"2026-11-27T10:00:00Z\""):format(v) end
  y, mo, d, h, mi, s = tonumber(y), tonumber(mo), tonumber(d), tonumber(h), tonumber(mi), tonumber(s)
  local mdays = { 31, (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) and 29 or 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 }
  if mo < 1 or mo > 12 or d < 1 or d > mdays[mo] or h > 23 or mi > 59 or s > 60 then
    return nil, ("%q is not a valid date and time"):format(v)
  end
  if frac == "." then return nil, ("%q is not a time like \"2026-11-27T10:00:00Z\""):format(v) end
  local off = 0
  if tz ~= "Z" then
    local sign, oh, om = tz:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil, ("%q needs a time zone: Z or +hh:mm"):format(v) end
    off = (tonumber(oh) * 3600 + tonumber(om) * 60) * (sign == "+" and 1 or -1)
  end
  return days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s + (tonumber("0" .. frac) or 0) - off
end

-- Two FNV-1a 32-bit hashes side by side: a stable 16-hex-digit id.
local function fnv_step(h, c)
  h = bit.bxor(h, c)
  return bit.tobit(bit.lshift(h, 24) + h * 0x193) -- h * 16777619 mod 2^32
end

local function hash(s)
  local a, b = bit.tobit(0x811c9dc5), bit.tobit(0x050c5d1f)
  for i = 1, #s do
    local c = s:byte(i)
    a, b = fnv_step(a, c), fnv_step(b, c)
  end
  return bit.tohex(a) .. bit.tohex(b)
end
M.hash = hash

local function edit_distance(a, b)
  local prev = {}
  for j = 0, #b do prev[j] = j end
  for i = 1, #a do
    local cur = { [0] = i }
    for j = 1, #b do
      cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a:byte(i) == b:byte(j) and 0 or 1))
    end
    prev = cur
  end
  return prev[#b]
end

local function suggest(k, fields)
  local best, bd = nil, 3
  for f in pairs(fields) do
    local d = edit_distance(k, f)
    if d < bd then best, bd = f, d end
  end
  return best and (" (did you mean %s?)"):format(best) or ""
end

---------------------------------------------------------------------------------------------
-- Field checkers: each takes (v, ctx) and returns the normalised value, or nil, reason.

local function dur(v, positive)
  local s, err = util.parse_duration(v)
  if not s then return nil, ("%s: %s"):format(show(v), err) end
  if positive and s <= 0 then return nil, "must be more than 0" end
  return s
end

local function finite(v)
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
    return nil, ("must be a finite number, got %s"):format(show(v))
  end
  return v
end

local function count(v, min)
  if type(v) ~= "number" or v ~= math.floor(v) or v < min or v == math.huge then
    return nil, ("must be a whole number >= %d, got %s"):format(min, show(v))
  end
  return v
end

local function string_list(v, what, nonempty)
  if type(v) ~= "table" then return nil, ("must be a list of %s, got %s"):format(what, show(v)) end
  local out = {}
  for k in pairs(v) do
    if type(k) ~= "number" or k ~= math.floor(k) or k < 1 or k > #v then
      return nil, ("must be a list of %s like { \"a\", \"b\" }"):format(what)
    end
  end
  for i, s in ipairs(v) do
    if type(s) ~= "string" or s == "" then return nil, ("must be a list of %s; item %d is %s"):format(what, i, show(s)) end
    out[i] = s
  end
  if nonempty and #out == 0 then return nil, "must not be empty" end
  return out
end

local function tmpl(v)
  if type(v) ~= "string" then return nil, ("must be a string, got %s"):format(show(v)) end
  local ok, err = template.check(v)
  if not ok then return nil, err end
  return v
end

local COMMON = {
  { "channels", function(v) return string_list(v, "channel names") end },
  { "cooldown", function(v) return dur(v) end },
  { "max_notifications_per_hour", function(v) return count(v, 0) end },
}

local RULE_FIELDS = {
  name = true, enabled = true, metric = true, labels = true, condition = true, threshold = true,
  clear_threshold = true, duration = true, duration_minutes = true, keep_firing_for = true,
  every = true, severity = true, message = true, summary = true, description = true, tags = true,
  channels = true, cooldown = true, max_notifications_per_hour = true,
}
local ALERT_FIELDS, ANOMALY_FIELDS = { expr = true }, { method = true, window = true, min_samples = true }
for k in pairs(RULE_FIELDS) do ALERT_FIELDS[k], ANOMALY_FIELDS[k] = true, true end
ANOMALY_FIELDS.condition = nil
local ROUTE_FIELDS = { match = true, channels = true, group_by = true, group_wait = true, group_interval = true,
  repeat_interval = true, cooldown = true, max_notifications_per_hour = true }
local SILENCE_FIELDS = { id = true, matchers = true, starts = true, ends = true, comment = true, created_by = true }
local INHIBIT_FIELDS = { source = true, target = true, equal = true }

-- Reports unknown fields; returns a checker `get(field, fn)` that records a problem when fn
-- rejects the value and returns the normalised value otherwise.
local function fields(spec, allowed, bad)
  local keys = util.sorted_keys(spec)
  for _, k in ipairs(keys) do
    if not allowed[k] then
      if type(k) == "string" then
        bad(("unknown field %q%s"):format(k, suggest(k, allowed)))
      else
        bad(("unexpected positional value %s (fields are written name = value)"):format(show(spec[k])))
      end
    end
  end
  return function(k, fn, ...)
    local v = spec[k]
    if v == nil then return nil end
    local r, err = fn(v, ...)
    if r == nil then
      local named = err:sub(1, #k) == k and err:sub(#k + 1, #k + 1):match("[%.: ]")
      bad(named and err or ("%s %s"):format(k, err))
    end
    return r
  end
end

-- rule(kind, name, spec, bad, opts) -> normalised rule, expr function (problems go to bad)
local function rule(kind, name, spec, bad, opts)
  local allowed = kind == "alert" and ALERT_FIELDS or ANOMALY_FIELDS
  local get = fields(spec, allowed, bad)
  local r = { kind = kind, name = name, enabled = true, matchers = {}, keep_firing_for = 0,
    severity = "warning", labels = {} }
  if spec.name ~= nil and spec.name ~= name then
    bad(("name %s differs from the declared name %q"):format(show(spec.name), name))
  end
  local enabled = get("enabled", function(v)
    if type(v) ~= "boolean" then return nil, "must be true or false, got " .. show(v) end
    return v
  end)
  if enabled ~= nil then r.enabled = enabled end

  r.metric = get("metric", function(v)
    if type(v) ~= "string" or not v:match("^[%a_][%w_.:]*$") then
      return nil, ("must be a metric name like \"system.cpu_percent\", got %s"):format(show(v))
    end
    return v
  end)
  local expr = spec.expr
  if kind == "alert" then
    if expr ~= nil and type(expr) ~= "function" then
      bad("expr must be a function(q) ... end, got " .. show(expr)); expr = nil
    elseif expr ~= nil and opts.no_expr then
      bad("expr is only allowed in rule files"); expr = nil
    end
    if (spec.metric == nil) == (spec.expr == nil) then bad("needs exactly one of metric or expr") end
    r.expr = expr and true or nil
  elseif spec.metric == nil then
    bad("needs a metric")
  end

  local m = get("labels", check_matchers, false, "labels")
  if m then
    r.matchers = m
    if expr then bad("labels matchers need a metric; with expr, select the series inside the function") end
  end

  if kind == "alert" then
    if spec.condition == nil then bad("needs a condition (" .. CONDITION_LIST .. ")") end
    r.condition = get("condition", function(v)
      local c = CONDITIONS[v]
      if not c then return nil, ("%s is not one of %s"):format(show(v), CONDITION_LIST) end
      return c
    end)
    if spec.threshold == nil then bad("needs a threshold") end
    r.threshold = get("threshold", finite)
  else
    r.condition = ">"
    r.method = get("method", function(v)
      if not METHODS[v] then return nil, ("%s is not one of zscore, mad, ewma"):format(show(v)) end
      return v
    end) or "zscore"
    r.threshold = get("threshold", function(v)
      local t, err = finite(v)
      if t and t <= 0 then return nil, "must be more than 0" end
      return t, err
    end) or METHODS[r.method] or 3
    r.window = get("window", dur, true) or 3600
    r.min_samples = get("min_samples", count, 3) or 30
  end

  r.clear_threshold = get("clear_threshold", finite)
  if r.clear_threshold and r.threshold and r.condition then
    local c, t, ct = r.condition, r.threshold, r.clear_threshold
    if (c == ">" or c == ">=") and ct > t then
      bad(("clear_threshold %s must be <= threshold %s for condition %s"):format(show(ct), show(t), c))
    elseif (c == "<" or c == "<=") and ct < t then
      bad(("clear_threshold %s must be >= threshold %s for condition %s"):format(show(ct), show(t), c))
    elseif c == "==" or c == "!=" then
      bad(("clear_threshold does not apply to condition %s"):format(c))
    end
  end

  if spec.duration ~= nil and spec.duration_minutes ~= nil then bad("give duration or duration_minutes, not both") end
  r.duration = get("duration", dur) or get("duration_minutes", function(v)
    local n, err = finite(v)
    if n and n < 0 then return nil, "must not be negative" end
    return n and n * 60, err
  end) or 0
  r.keep_firing_for = get("keep_firing_for", dur) or 0
  r.every = get("every", dur, true)

  r.severity = get("severity", function(v)
    if not SEVERITIES[v] then return nil, ("%s is not one of info, warning, error, critical"):format(show(v)) end
    return v
  end) or "warning"

  local tags = get("tags", function(v)
    if type(v) ~= "table" then return nil, "must be a table of label = value, got " .. show(v) end
    local out = {}
    for k, x in pairs(v) do
      if not label_name_ok(k) then return nil, ("%s is not a label name"):format(show(k)) end
      if k == "alertname" or k == "severity" then return nil, ("cannot set %s (it comes from the rule)"):format(k) end
      if type(x) == "number" or type(x) == "boolean" then x = tostring(x) end
      if type(x) ~= "string" then return nil, ("%s must be a string, got %s"):format(k, show(x)) end
      out[k] = x
    end
    return out
  end)
  if tags then r.labels = tags end

  local default_msg
  if kind == "alert" then
    default_msg = ("{{ name }}: {{ value }} %s {{ threshold }}"):format(r.condition or "?")
  else
    default_msg = "{{ name }}: {{ value }} is an outlier (score above {{ threshold }})"
  end
  r.message = get("message", tmpl) or default_msg
  r.summary = get("summary", tmpl)
  r.description = get("description", tmpl)
  for _, c in ipairs(COMMON) do r[c[1]] = get(c[1], c[2]) end
  return r, expr
end

local function route(spec, bad)
  local get = fields(spec, ROUTE_FIELDS, bad)
  local r = { match = get("match", check_matchers, true, "match") }
  if spec.channels == nil then bad("needs channels = { ... }") end
  r.channels = get("channels", string_list, "channel names", true)
  r.group_by = get("group_by", function(v)
    local l, err = string_list(v, "label names")
    if not l then return nil, err end
    for _, s in ipairs(l) do
      if s ~= "..." and not label_name_ok(s) then return nil, ("%s is not a label name"):format(show(s)) end
    end
    return l
  end) or { "alertname" }
  r.group_wait = get("group_wait", dur) or 30
  r.group_interval = get("group_interval", dur, true) or 300
  r.repeat_interval = get("repeat_interval", dur, true) or 14400
  r.cooldown = get("cooldown", dur)
  r.max_notifications_per_hour = get("max_notifications_per_hour", count, 0)
  return r
end

local function silence(spec, bad, opts)
  local get = fields(spec, SILENCE_FIELDS, bad)
  local s = {}
  if spec.matchers == nil then bad("needs matchers = { label = value, ... }") end
  s.matchers = get("matchers", check_matchers, true, "matchers")
  if s.matchers and next(s.matchers) == nil then bad("matchers must not be empty (it would silence everything)") end
  if spec.ends == nil then bad("needs ends (epoch seconds or \"2026-11-27T10:00:00Z\")") end
  s.ends = get("ends", M.parse_time)
  s.starts = get("starts", M.parse_time)
  if s.starts and s.ends and s.ends <= s.starts then bad("ends must be after starts") end
  local text = function(v)
    if type(v) ~= "string" then return nil, "must be a string, got " .. show(v) end
    return v
  end
  s.comment = get("comment", text) or ""
  s.created_by = get("created_by", text) or opts.created_by or "file"
  s.id = get("id", text)
  if not s.id and s.matchers then
    local parts = { opts.file or "" }
    for _, k in ipairs(util.sorted_keys(s.matchers)) do parts[#parts + 1] = k .. "=" .. s.matchers[k] end
    parts[#parts + 1] = "starts=" .. tostring(spec.starts or "")
    parts[#parts + 1] = "ends=" .. tostring(spec.ends or "")
    s.id = hash(table.concat(parts, "\0"))
  end
  -- Without starts a silence is active from load time; one already over stays loadable.
  s.starts = s.starts or math.min(opts.now, s.ends or opts.now)
  return s
end

local function inhibit(spec, bad)
  local get = fields(spec, INHIBIT_FIELDS, bad)
  local r = {}
  for _, k in ipairs { "source", "target" } do
    if spec[k] == nil then bad(("needs %s = { label = value, ... }"):format(k)) end
    r[k] = get(k, check_matchers, true, k)
    if r[k] and next(r[k]) == nil then bad(k .. " must not be empty") end
  end
  r.equal = get("equal", function(v)
    local l, err = string_list(v, "label names")
    if not l then return nil, err end
    for _, s in ipairs(l) do
      if not label_name_ok(s) then return nil, ("%s is not a label name"):format(show(s)) end
    end
    return l
  end) or {}
  return r
end

-- normalize(kind, spec, opts) -> item | nil, problems. For rules and silences that do not come
-- from a file (the HTTP API): kind is "alert", "anomaly", "route", "silence" or "inhibit";
-- opts = { name (rules), now, created_by, file, line }. expr is refused.
function M.normalize(kind, spec, opts)
  opts = opts or {}
  local problems = {}
  local function bad(msg) problems[#problems + 1] = msg end
  if type(spec) ~= "table" then return nil, { kind .. ": expected a table" } end
  local item
  local o = { no_expr = true, now = opts.now or os.time(), created_by = opts.created_by or "api", file = opts.file }
  if kind == "alert" or kind == "anomaly" then
    local name = opts.name or spec.name
    if type(name) ~= "string" or name == "" then return nil, { kind .. ": needs a name" } end
    item = rule(kind, name, spec, bad, o)
  elseif kind == "route" then item = route(spec, bad)
  elseif kind == "silence" then item = silence(spec, bad, o)
  elseif kind == "inhibit" then item = inhibit(spec, bad)
  else error("normalize: unknown kind " .. tostring(kind), 2) end
  if #problems > 0 then return nil, problems end
  item.file, item.line = opts.file, opts.line
  return item
end

---------------------------------------------------------------------------------------------
-- Loading files

local function sandbox_base()
  local function copy(t)
    local r = {}
    for k, v in pairs(t) do r[k] = v end
    r.dump = nil
    return r
  end
  return {
    string = copy(string), table = copy(table), math = copy(math), bit = copy(bit),
    os = { time = os.time, date = os.date, clock = os.clock },
    pairs = pairs, ipairs = ipairs, next = next, select = select, type = type, tostring = tostring,
    tonumber = tonumber, assert = assert, error = error, pcall = pcall, unpack = unpack,
    setmetatable = setmetatable, rawget = rawget, rawset = rawset,
    rawequal = rawequal,
  }
end

-- load(path, src?, env_extra?, opts?) -> set | nil, problems
--   src        the file's text (read from path when nil)
--   env_extra  more globals for the file (e.g. beagle)
--   opts       { now = epoch s (silence starts default), getenv = os.getenv, env = the base
--              environment (the plugin sandbox's; a minimal one of its own when nil) }
-- The file's chunk and every function it defines run with the JIT off, so that a plugin state's
-- count hook (budget, deadline, slices) fires in them. env("NAME") reads only variables named
-- BEAGLE_RULE_*: the agent's environment also holds the channels' keys.
M.ENV_PREFIX = "BEAGLE_RULE_"
function M.load(path, src, env_extra, opts)
  opts = opts or {}
  if src == nil then
    local f, err = io.open(path, "r")
    if not f then return nil, { ("%s: cannot read: %s"):format(path, err) } end
    src = f:read("*a")
    f:close()
  end
  local chunk, err = load(src, "@" .. path, "t")
  if not chunk then return nil, { err } end
  if jit then jit.off(chunk, true) end

  local now = opts.now or os.time()
  local getenv = opts.getenv or os.getenv
  local source = "@" .. path
  local set = { file = path, alerts = {}, routes = {}, silences = {}, inhibits = {}, exprs = {} }
  local problems, names, pending, catch_all = {}, {}, {}, nil

  -- The line in this file that called the declaration (helpers defined in the file count too).
  local function caller_line()
    local lvl, first = 3, nil
    while true do
      local info = debug.getinfo(lvl, "Sl")
      if not info then return first or 0 end
      first = first or info.currentline
      if info.source == source then return info.currentline end
      lvl = lvl + 1
    end
  end

  local function reporter(line, what)
    return function(msg) problems[#problems + 1] = ("%s:%d: %s: %s"):format(path, line, what, msg) end
  end

  local function add_rule(kind, name, spec, line)
    local before = #problems
    local bad = reporter(line, ("%s %q"):format(kind, name))
    if type(spec) ~= "table" then
      bad(("expected a table: %s %q { ... }"):format(kind, name))
      return
    end
    if names[name] then
      bad(("declared twice (first on line %d)"):format(names[name]))
      return
    end
    names[name] = line
    local r, expr = rule(kind, name, spec, bad, { now = now })
    if #problems > before then return end
    r.file, r.line = path, line
    set.alerts[#set.alerts + 1] = r
    if expr then set.exprs[name] = expr end
  end

  local function declare(kind)
    return function(name)
      local line = caller_line()
      if type(name) == "table" then -- alert { name = "x", ... }, the guide's AlertRule shape
        local spec = name
        if type(spec.name) ~= "string" or spec.name == "" then
          reporter(line, kind)("needs a name: " .. kind .. ' "name" { ... }')
          return
        end
        add_rule(kind, spec.name, spec, line)
        return
      end
      if type(name) ~= "string" or name == "" then
        reporter(line, kind)("needs a name: " .. kind .. ' "name" { ... }')
        return function() end
      end
      local key = {}
      pending[key] = { kind = kind, name = name, line = line }
      return function(spec)
        pending[key] = nil
        add_rule(kind, name, spec, line)
      end
    end
  end

  local function item(kind, into, fn)
    return function(spec)
      local line = caller_line()
      local before = #problems
      local bad = reporter(line, kind)
      if type(spec) ~= "table" then
        bad(("expected a table: %s { ... }"):format(kind))
        return
      end
      local it = fn(spec, bad, { now = now, file = path })
      if kind == "route" then
        if catch_all then
          bad(("is never reached: the route on line %d has no match and catches everything"):format(catch_all))
        elseif it.match == nil or next(it.match) == nil then
          catch_all = line
        end
      end
      if #problems > before then return end
      it.file, it.line = path, line
      into[#into + 1] = it
    end
  end

  local env = opts.env or sandbox_base()
  env.alert = declare("alert")
  env.anomaly = declare("anomaly")
  env.route = item("route", set.routes, route)
  env.silence = item("silence", set.silences, silence)
  env.inhibit = item("inhibit", set.inhibits, inhibit)
  env.env = function(var, default)
    if type(var) ~= "string" or var:sub(1, #M.ENV_PREFIX) ~= M.ENV_PREFIX then
      reporter(caller_line(), "env")(("%s: rule files read only %s* variables"):format(tostring(var), M.ENV_PREFIX))
      return default
    end
    local v = getenv(var)
    if v == nil then
      if default == nil then reporter(caller_line(), "env")(("environment variable %s is not set"):format(tostring(var))) end
      return default
    end
    return v
  end
  for k, v in pairs(env_extra or {}) do env[k] = v end
  setfenv(chunk, env)
  local ok, e = pcall(chunk)
  if not ok then problems[#problems + 1] = tostring(e) end

  local left = {}
  for _, p in pairs(pending) do left[#left + 1] = p end
  table.sort(left, function(a, b) return a.line < b.line end)
  for _, p in ipairs(left) do
    reporter(p.line, ("%s %q"):format(p.kind, p.name))(("has no body: write %s %q { ... }"):format(p.kind, p.name))
  end
  if #problems > 0 then return nil, problems end
  return set
end

-- check_files(paths, env_extra?, opts?) -> problems (empty when all is well); also reports an
-- alert name declared in two files.
function M.check_files(paths, env_extra, opts)
  local problems, seen = {}, {}
  for _, path in ipairs(paths) do
    local set, errs = M.load(path, nil, env_extra, opts)
    if set then
      for _, r in ipairs(set.alerts) do
        local first = seen[r.name]
        if first then
          problems[#problems + 1] = ("%s:%d: %s %q: also declared in %s:%d"):format(path, r.line, r.kind, r.name,
            first.file, first.line)
        else
          seen[r.name] = r
        end
      end
    else
      for _, p in ipairs(errs) do problems[#problems + 1] = p end
    end
  end
  return problems
end

-- format_problems(problems) -> text, one problem a line, with a count at the end.
function M.format_problems(problems)
  if #problems == 0 then return "" end
  return table.concat(problems, "\n") .. ("\n%d problem%s\n"):format(#problems, #problems == 1 and "" or "s")
end

return M
