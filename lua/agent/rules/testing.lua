-- `beagle rules test`: unit tests for rule files, after `promtool test rules`. A test file
-- returns a table:
--
--   return {
--     rule_files = { "high_cpu.lua" },          -- relative to the test file; default: the
--                                               -- companion (x_test.lua -> x.lua)
--     evaluation_interval = "1m",
--     tests = {
--       { name = "fires after 5 minutes above 80",
--         interval = "1m",                      -- spacing of the input samples
--         enable = { "rule_shipped_disabled" }, -- optional
--         input_series = {
--           { series = 'system.cpu_percent{host="a"}', values = "50+10x10" },  -- 50 60 ... 150
--           { series = 'system.cpu_percent{host="b"}', values = "10x10" },
--         },
--         alert_rule_test = {
--           { eval_time = "10m", alertname = "high_cpu_usage",
--             exp_alerts = { { exp_labels = { host = "a", severity = "warning" },
--                              exp_annotations = { message = "CPU usage above 80%" } } } },
--         } },
--     },
--   }
--
-- Values: "a+bxn" is a, a+b, ..., a+n*b; "a-bxn" likewise down; "axn" is a repeated n+1
-- times; "_" leaves a step empty; plain numbers are single samples, space-separated.
local util = require "agent.util"
local dsl = require "agent.rules.dsl"
local rule_eval = require "agent.rules.eval"
local Engine = require "agent.rules.engine"
local query = require "agent.query"
local settings = require "agent.settings"

-- anomaly methods -> agent.query score functions

local M = {}

local T0 = 1700000000000 -- ms: a fixed, realistic epoch for test time zero

-- Expands a promtool-style values string. Returns a list (false for "_") or nil, err.
function M.expand(values)
  local out = {}
  for tok in tostring(values):gmatch("%S+") do
    if tok == "_" then
      out[#out + 1] = false
    else
      local a, sign, b, n = tok:match("^([%-%d%.eE]+)([%+%-])([%d%.eE]+)x(%d+)$")
      if a then
        local step = tonumber(b) * (sign == "-" and -1 or 1)
        for i = 0, tonumber(n) do out[#out + 1] = tonumber(a) + i * step end
      else
        local v, reps = tok:match("^([%-%d%.eE]+)x(%d+)$")
        if v then
          for _ = 0, tonumber(reps) do out[#out + 1] = tonumber(v) end
        elseif tonumber(tok) then
          out[#out + 1] = tonumber(tok)
        else
          return nil, ("%q is not a value (use 1, 1+2x10, 5x3 or _)"):format(tok)
        end
      end
    end
  end
  return out
end

-- 'name{k="v",k2="v2"}' -> history key with the name mapped the exposition way.
function M.series_key(series)
  local name, body = series:match("^%s*([%w_%.:%-]+)%s*{(.*)}%s*$")
  if not name then name, body = series:match("^%s*([%w_%.:%-]+)%s*$"), "" end
  if not name then return nil, ("%q is not a series (name{label=\"value\"})"):format(series) end
  local labels = {}
  for k, v in body:gmatch('([%w_]+)%s*=%s*"([^"]*)"') do labels[#labels + 1] = ('%s="%s"'):format(k, v) end
  table.sort(labels)
  name = name:gsub("[%.%-]", "_")
  if #labels == 0 then return name end
  return name .. "{" .. table.concat(labels, ",") .. "}"
end

-- Loads rule files into one set (alerts, routes, inhibits, silences, exprs). Returns it or
-- nil, problems.
function M.load_rule_files(files)
  local merged = { alerts = {}, routes = {}, inhibits = {}, silences = {}, exprs = {} }
  for _, p in ipairs(files) do
    local set, problems = dsl.load(p)
    if not set then return nil, problems or { p .. ": cannot load" } end
    for _, k in ipairs { "alerts", "routes", "inhibits", "silences" } do
      for _, x in ipairs(set[k] or {}) do merged[k][#merged[k] + 1] = x end
    end
    for k, fn in pairs(set.exprs or {}) do merged.exprs[k] = fn end
  end
  return merged
end

-- The samples a rule sees through q (agent.rules.eval: the same code as the agent's).
M.evaluate_rule = rule_eval.rule

local function fmt_labels(l)
  local keys = util.sorted_keys(l or {})
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = ('%s="%s"'):format(k, tostring(l[k])) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function subset(want, got)
  for k, v in pairs(want or {}) do
    if tostring((got or {})[k]) ~= tostring(v) then return false end
  end
  return true
end

-- Runs one test case; returns a list of failure texts.
local function run_case(case, set, eval_interval, where)
  local fails = {}
  local q = assert(query.open { raw = "30d" })
  local interval = util.parse_duration(case.interval or "1m")
  for _, s in ipairs(case.input_series or {}) do
    local key, err = M.series_key(s.series or "")
    local vals, verr = M.expand(s.values or "")
    if not key or not vals then
      fails[#fails + 1] = ("%s: %s"):format(where, err or verr)
    else
      for i, v in ipairs(vals) do
        if v then q.append(key, T0 + math.floor((i - 1) * interval * 1000), v) end
      end
    end
  end
  local now = T0 / 1000
  local sent = {}
  local defaults = settings.defaults()
  local template_ok, template = pcall(require, "agent.rules.template")
  local engine = Engine.new {
    now = function() return now end, settings = defaults, match = dsl.match,
    render = template_ok and function(t, ctx) return template.render(t, ctx) or t end or nil,
    notify = function(n) sent[#sent + 1] = n end,
  }
  -- a test may switch on rules that ship disabled: enable = { "name", ... }
  local enable, alerts = {}, {}
  for _, n in ipairs(case.enable or {}) do enable[n] = true end
  for i, r in ipairs(set.alerts) do
    if enable[r.name] and r.enabled == false then r = util.copy(r) r.enabled = true end
    alerts[i] = r
  end
  engine:set_rules(alerts, set.routes, set.inhibits)
  engine:set_silences(set.silences or {})
  local tests = case.alert_rule_test or {}
  table.sort(tests, function(a, b) return util.parse_duration(a.eval_time) < util.parse_duration(b.eval_time) end)
  local t = 0
  for _, at in ipairs(tests) do
    local target = util.parse_duration(at.eval_time)
    while t <= target + 1e-9 do
      now = T0 / 1000 + t
      q.at(T0 + math.floor(t * 1000))
      for _, r in ipairs(alerts) do
        if r.enabled ~= false then
          local ok, samples = pcall(M.evaluate_rule, r, set.exprs or {}, q)
          if ok then engine:evaluate(r.name, samples)
          else engine:evaluate(r.name, nil, tostring(samples)) end
        end
      end
      engine:tick()
      t = t + eval_interval
    end
    t = t - eval_interval
    local got = {}
    for _, a in ipairs(engine:alerts()) do
      if a.state == "firing" and a.name == at.alertname then got[#got + 1] = a end
    end
    local want = at.exp_alerts or {}
    local used, missing = {}, {}
    for _, w in ipairs(want) do
      local found
      for i, g in ipairs(got) do
        if not used[i] and subset(w.exp_labels, g.labels) and subset(w.exp_annotations, g.annotations) then
          found = i
          break
        end
      end
      if found then used[found] = true else missing[#missing + 1] = w end
    end
    local extra = {}
    for i, g in ipairs(got) do if not used[i] then extra[#extra + 1] = g end end
    if #missing > 0 or #extra > 0 then
      local lines = { ("%s: alertname %q at %s:"):format(where, at.alertname, at.eval_time) }
      for _, w in ipairs(missing) do
        lines[#lines + 1] = ("  - expected  labels %s annotations %s"):format(fmt_labels(w.exp_labels), fmt_labels(w.exp_annotations))
      end
      for _, g in ipairs(extra) do
        lines[#lines + 1] = ("  + got       labels %s annotations %s"):format(fmt_labels(g.labels), fmt_labels(g.annotations))
      end
      fails[#fails + 1] = table.concat(lines, "\n")
    end
    t = t + eval_interval
  end
  q.close()
  return fails
end

-- Runs one test file; writes a report to out. Returns ok, failures.
function M.run_file(path, out)
  local chunk, err = loadfile(path)
  if not chunk then
    out:write(path, ": ", err, "\n")
    return false
  end
  if jit then jit.off(chunk, true) end -- so that a caller's count hook fires in its loops
  setfenv(chunk, {})
  local ok, spec = pcall(chunk)
  if not ok or type(spec) ~= "table" then
    out:write(path, ": ", ok and "the test file must return a table" or tostring(spec), "\n")
    return false
  end
  local dir = path:match("^(.*)/[^/]*$") or "."
  local files = {}
  for i, f in ipairs(spec.rule_files or {}) do files[i] = f:sub(1, 1) == "/" and f or dir .. "/" .. f end
  if not spec.rule_files then files[1] = path:gsub("_test%.lua$", ".lua") end
  local merged, problems = M.load_rule_files(files)
  if not merged then
    out:write(table.concat(problems, "\n"), "\n")
    return false
  end
  local eval_interval = util.parse_duration(spec.evaluation_interval or "1m")
  local cases = spec.tests or { spec }
  local failures = {}
  for i, case in ipairs(cases) do
    local where = ("%s: test %s"):format(path, case.name and ("%q"):format(case.name) or tostring(i))
    for _, f in ipairs(run_case(case, merged, eval_interval, where)) do failures[#failures + 1] = f end
  end
  if #failures == 0 then
    out:write(("%s: %d test%s passed\n"):format(path, #cases, #cases == 1 and "" or "s"))
    return true
  end
  out:write("FAILED ", path, "\n", table.concat(failures, "\n"), "\n")
  return false, failures
end

function M.run_files(paths, out)
  local all = true
  for _, p in ipairs(paths) do
    if not M.run_file(p, out) then all = false end
  end
  return all
end

return M
