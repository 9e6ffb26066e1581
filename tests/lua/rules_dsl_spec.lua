local dsl = require "agent.rules.dsl"

local NOW = 1790000000

local function load(src, extra, opts)
  opts = opts or {}
  opts.now = opts.now or NOW
  return dsl.load("rules/x.lua", src, extra, opts)
end

-- Loads src that must fail and returns its problems.
local function problems(src)
  local set, p = load(src)
  assert.is_nil(set, "expected the file to fail")
  return p
end

local function one(src)
  local set, p = load(src)
  assert.is_table(set, p and table.concat(p, "\n"))
  return set.alerts[1], set
end

local CONDS = "greater_than, less_than, equal, not_equal, greater_equal, less_equal, >, <, ==, !=, >=, <="

describe("dsl.load alerts", function()
  it("normalises the guide's AlertRule fields", function()
    local r, set = one [[
alert "high_cpu_usage" {
  name = "high_cpu_usage", condition = "greater_than", metric = "system.cpu_percent", threshold = 80.0,
  duration_minutes = 5, severity = "warning", message = "CPU usage above 80% for 5 minutes",
  tags = { team = "infra", tier = 1 }, enabled = true,
}]]
    assert.are.same({
      kind = "alert", name = "high_cpu_usage", file = "rules/x.lua", line = 1, enabled = true,
      metric = "system.cpu_percent", matchers = {}, condition = ">", threshold = 80, duration = 300,
      keep_firing_for = 0, severity = "warning", message = "CPU usage above 80% for 5 minutes",
      labels = { team = "infra", tier = "1" },
    }, r)
    assert.are.same({}, set.exprs)
    assert.are.same({}, set.routes)
    assert.are.equal("rules/x.lua", set.file)
  end)

  it("accepts every condition spelling", function()
    local want = { greater_than = ">", less_than = "<", equal = "==", not_equal = "!=", greater_equal = ">=",
      less_equal = "<=", [">"] = ">", ["<"] = "<", ["=="] = "==", ["!="] = "!=", [">="] = ">=", ["<="] = "<=" }
    for spelling, sym in pairs(want) do
      local r = one(('alert "a" { metric = "m", condition = %q, threshold = 1 }'):format(spelling))
      assert.are.equal(sym, r.condition, spelling)
    end
  end)

  it("reads durations as duration_minutes, strings and seconds", function()
    assert.are.equal(600, one('alert "a" { metric = "m", condition = ">", threshold = 1, duration_minutes = 10 }').duration)
    assert.are.equal(90, one('alert "a" { metric = "m", condition = ">", threshold = 1, duration_minutes = 1.5 }').duration)
    assert.are.equal(300, one('alert "a" { metric = "m", condition = ">", threshold = 1, duration = "5m" }').duration)
    assert.are.equal(5400, one('alert "a" { metric = "m", condition = ">", threshold = 1, duration = "1h30m" }').duration)
    assert.are.equal(45, one('alert "a" { metric = "m", condition = ">", threshold = 1, duration = 45 }').duration)
    assert.are.equal(0, one('alert "a" { metric = "m", condition = ">", threshold = 1 }').duration)
    local r = one('alert "a" { metric = "m", condition = ">", threshold = 1, keep_firing_for = "10m", every = "10s", cooldown = "15m" }')
    assert.are.equal(600, r.keep_firing_for)
    assert.are.equal(10, r.every)
    assert.are.equal(900, r.cooldown)
  end)

  it("keeps the optional fields", function()
    local r = one [[
alert "lat" {
  metric = "api.response_time", labels = { endpoint = "/optimize", host = "~batch-.*", code = "!200", n = 5 },
  condition = ">", threshold = 2, clear_threshold = 1.5, severity = "critical",
  summary = "{{ labels.endpoint }} slow", description = "{{ value | humanize }}s",
  channels = { "oncall", "slack" }, max_notifications_per_hour = 3, enabled = false,
}]]
    assert.are.same({ endpoint = "/optimize", host = "~batch-.*", code = "!200", n = "5" }, r.matchers)
    assert.are.equal(1.5, r.clear_threshold)
    assert.are.equal("critical", r.severity)
    assert.are.equal("{{ labels.endpoint }} slow", r.summary)
    assert.are.same({ "oncall", "slack" }, r.channels)
    assert.are.equal(3, r.max_notifications_per_hour)
    assert.is_false(r.enabled)
    assert.are.equal("{{ name }}: {{ value }} > {{ threshold }}", r.message)
  end)

  it("keeps expr functions out of the rule", function()
    local r, set = one [[
alert "ratio" {
  expr = function(q) return q.rate("a", "10m") / q.rate("b", "10m") end,
  condition = ">", threshold = 0.1, duration = "10m", severity = "error",
}]]
    assert.is_true(r.expr)
    assert.is_nil(r.metric)
    assert.is_function(set.exprs.ratio)
    local q = { rate = function(name) return name == "a" and 1 or 4 end }
    assert.are.equal(0.25, set.exprs.ratio(q))
  end)

  it("accepts the guide's call shape alert { name = ... }", function()
    local r = one 'alert { name = "x", metric = "m", condition = "less_than", threshold = 1 }'
    assert.are.equal("x", r.name)
    assert.are.equal("<", r.condition)
  end)

  it("records the caller's line, also through helpers in the file", function()
    local _, set = one [[
-- comment

alert "a" {
  metric = "m",
  condition = ">",
  threshold = 1,
}
local function cpu(host)
  alert("cpu_" .. host) { metric = "m", labels = { host = host }, condition = ">", threshold = 1 }
end
cpu("a")
route {
  channels = { "x" },
}
silence { matchers = { a = "b" }, ends = 1800000000 }
inhibit { source = { a = "b" }, target = { a = "c" } }
anomaly "z" { metric = "m" }
]]
    assert.are.equal(3, set.alerts[1].line)
    assert.are.equal(9, set.alerts[2].line)
    assert.are.equal(12, set.routes[1].line)
    assert.are.equal(15, set.silences[1].line)
    assert.are.equal(16, set.inhibits[1].line)
    assert.are.equal(17, set.alerts[3].line)
  end)

  it("gives the file the sandbox and env_extra, not io or os.execute or debug", function()
    local set = load([[
local t = {}
assert(io == nil and debug == nil and os.execute == nil and require == nil and load == nil)
assert(string.format("%d", 2) == "2" and math.floor(1.5) == 1 and beagle.x == 1)
string.format = nil
alert "a" { metric = "m", condition = ">", threshold = tonumber(env("BEAGLE_RULE_T", "7")) }
assert(os.getenv == nil and string.dump == nil)
]], { beagle = { x = 1 } }, { getenv = function(k) return k == "BEAGLE_RULE_T" and "9" or nil end })
    assert.is_table(set)
    assert.are.equal(9, set.alerts[1].threshold)
    assert.is_function(string.format)
  end)
end)

describe("dsl.load problems", function()
  local cases = {
    { 'alert "high_cpu" { metric = "m", condition = "bigger", threshold = 1 }',
      'rules/x.lua:1: alert "high_cpu": condition "bigger" is not one of ' .. CONDS },
    { 'alert "a" { metric = "m", condition = ">", treshold = 1 }',
      { 'rules/x.lua:1: alert "a": unknown field "treshold" (did you mean threshold?)',
        'rules/x.lua:1: alert "a": needs a threshold' } },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1, frobnicate = true }',
      'rules/x.lua:1: alert "a": unknown field "frobnicate"' },
    { 'alert "a" { "m", metric = "m", condition = ">", threshold = 1 }',
      'rules/x.lua:1: alert "a": unexpected positional value "m" (fields are written name = value)' },
    { 'alert "a" { metric = "m", threshold = 1 }',
      'rules/x.lua:1: alert "a": needs a condition (' .. CONDS .. ")" },
    { 'alert "a" { metric = "m", condition = ">", threshold = "80" }',
      'rules/x.lua:1: alert "a": threshold must be a finite number, got "80"' },
    { 'alert "a" { condition = ">", threshold = 1 }', 'rules/x.lua:1: alert "a": needs exactly one of metric or expr' },
    { 'alert "a" { metric = "m", expr = function() end, condition = ">", threshold = 1 }',
      'rules/x.lua:1: alert "a": needs exactly one of metric or expr' },
    { 'alert "a" { expr = "q.rate(x)", condition = ">", threshold = 1 }',
      'rules/x.lua:1: alert "a": expr must be a function(q) ... end, got "q.rate(x)"' },
    { 'alert "a" { expr = function() end, labels = { a = "b" }, condition = ">", threshold = 1 }',
      'rules/x.lua:1: alert "a": labels matchers need a metric; with expr, select the series inside the function' },
    { 'alert "a" { metric = "system cpu", condition = ">", threshold = 1 }',
      'rules/x.lua:1: alert "a": metric must be a metric name like "system.cpu_percent", got "system cpu"' },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1, duration = "5 minutes" }',
      'rules/x.lua:1: alert "a": duration "5 minutes": "5 minutes" is not a duration (use e.g. "500ms", "30s", "5m", "1h")' },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1, duration = "5m", duration_minutes = 5 }',
      'rules/x.lua:1: alert "a": give duration or duration_minutes, not both' },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1, duration_minutes = -1 }',
      'rules/x.lua:1: alert "a": duration_minutes must not be negative' },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1, every = "0s" }',
      'rules/x.lua:1: alert "a": every must be more than 0' },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1, severity = "page" }',
      'rules/x.lua:1: alert "a": severity "page" is not one of info, warning, error, critical' },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1, enabled = "no" }',
      'rules/x.lua:1: alert "a": enabled must be true or false, got "no"' },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1, message = "{{ valu }}" }',
      'rules/x.lua:1: alert "a": message {{ valu }}: unknown variable "valu" ' ..
        "(use value, threshold, duration, name, severity, labels.<name>)" },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1, summary = "{{ value | pct }}" }',
      'rules/x.lua:1: alert "a": summary {{ value | pct }}: unknown filter "pct" (use humanize, percent, duration, round(n))' },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1, tags = { alertname = "b" } }',
      'rules/x.lua:1: alert "a": tags cannot set alertname (it comes from the rule)' },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1, tags = { ["bad-name"] = "b" } }',
      'rules/x.lua:1: alert "a": tags "bad-name" is not a label name' },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1, channels = "oncall" }',
      'rules/x.lua:1: alert "a": channels must be a list of channel names, got "oncall"' },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1, max_notifications_per_hour = 2.5 }',
      'rules/x.lua:1: alert "a": max_notifications_per_hour must be a whole number >= 0, got 2.5' },
    { 'alert "a" { name = "b", metric = "m", condition = ">", threshold = 1 }',
      'rules/x.lua:1: alert "a": name "b" differs from the declared name "a"' },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1, labels = { host = "~web(" } }',
      'rules/x.lua:1: alert "a": labels.host: regex "web(": unclosed (' },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1, labels = { host = "batch-*" } }',
      'rules/x.lua:1: alert "a": labels.host: "batch-*": * is literal here; write "~batch-.*" for a regex or "=batch-*" for the literal' },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1, labels = "x" }',
      'rules/x.lua:1: alert "a": labels must be a table of label = value, got string' },
    { 'alert "a"', 'rules/x.lua:1: alert "a": has no body: write alert "a" { ... }' },
    { 'alert "a" ("b")', 'rules/x.lua:1: alert "a": expected a table: alert "a" { ... }' },
    { 'alert { metric = "m" }', 'rules/x.lua:1: alert: needs a name: alert "name" { ... }' },
    { 'alert "" { }', 'rules/x.lua:1: alert: needs a name: alert "name" { ... }' },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1 }\nanomaly "a" { metric = "m" }',
      'rules/x.lua:2: anomaly "a": declared twice (first on line 1)' },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1 \n',
      "rules/x.lua:2: '}' expected (to close '{' at line 1) near '<eof>'" },
    { 'alert "a" { metric = "m", condition = ">", threshold = 1 }\nalrt "b" { }',
      "rules/x.lua:2: attempt to call global 'alrt' (a nil value)" },
    { 'local x = env("BEAGLE_RULE_NOPE_NOT_SET")',
      "rules/x.lua:1: env: environment variable BEAGLE_RULE_NOPE_NOT_SET is not set" },
    -- the agent's environment holds the channels' keys: a rule file reads only BEAGLE_RULE_*
    { 'local x = env("PD_KEY", "")', "rules/x.lua:1: env: PD_KEY: rule files read only BEAGLE_RULE_* variables" },
  }
  for i, c in ipairs(cases) do
    it(("case %d: %s"):format(i, type(c[2]) == "table" and c[2][1] or c[2]), function()
      local want = type(c[2]) == "table" and c[2] or { c[2] }
      assert.are.same(want, problems(c[1]))
    end)
  end

  it("validates clear_threshold against the side of the condition", function()
    assert.are.equal(70, one('alert "a" { metric = "m", condition = ">", threshold = 80, clear_threshold = 70 }').clear_threshold)
    assert.are.equal(80, one('alert "a" { metric = "m", condition = ">=", threshold = 80, clear_threshold = 80 }').clear_threshold)
    assert.are.equal(15, one('alert "a" { metric = "m", condition = "less_than", threshold = 10, clear_threshold = 15 }').clear_threshold)
    assert.are.same({ 'rules/x.lua:1: alert "a": clear_threshold 90 must be <= threshold 80 for condition >' },
      problems 'alert "a" { metric = "m", condition = "greater_than", threshold = 80, clear_threshold = 90 }')
    assert.are.same({ 'rules/x.lua:1: alert "a": clear_threshold 5 must be >= threshold 10 for condition <=' },
      problems 'alert "a" { metric = "m", condition = "<=", threshold = 10, clear_threshold = 5 }')
    assert.are.same({ 'rules/x.lua:1: alert "a": clear_threshold does not apply to condition ==' },
      problems 'alert "a" { metric = "m", condition = "equal", threshold = 1, clear_threshold = 1 }')
  end)

  it("reports every problem of a file, in order, and the set is nil", function()
    local p = problems [[
alert "ok" { metric = "m", condition = ">", threshold = 1 }
alert "b" { metric = "m", condition = "bigger", threshold = 1, severity = "loud" }
route { channels = { "x" } }
route { match = { a = "b" }, channels = { "y" } }
]]
    assert.are.same({
      'rules/x.lua:2: alert "b": condition "bigger" is not one of ' .. CONDS,
      'rules/x.lua:2: alert "b": severity "loud" is not one of info, warning, error, critical',
      "rules/x.lua:4: route: is never reached: the route on line 3 has no match and catches everything",
    }, p)
  end)

  it("reports a file it cannot read", function()
    local set, p = dsl.load("/nonexistent/beagle/x.lua")
    assert.is_nil(set)
    assert.matches("^/nonexistent/beagle/x.lua: cannot read: ", p[1])
  end)
end)

describe("dsl.load anomaly", function()
  it("defaults the threshold per method, the window and min_samples", function()
    local _, set = one [[
anomaly "a" { metric = "m" }
anomaly "b" { metric = "m", method = "mad" }
anomaly "c" { metric = "m", method = "ewma", threshold = 4, window = "30m", min_samples = 10, severity = "info" }
]]
    local a, b, c = set.alerts[1], set.alerts[2], set.alerts[3]
    assert.are.same({ "anomaly", "zscore", 3, 3600, 30, ">" }, { a.kind, a.method, a.threshold, a.window, a.min_samples, a.condition })
    assert.are.same({ "mad", 3.5 }, { b.method, b.threshold })
    assert.are.same({ "ewma", 4, 1800, 10, "info" }, { c.method, c.threshold, c.window, c.min_samples, c.severity })
  end)
  it("rejects bad anomaly fields", function()
    assert.are.same({
      'rules/x.lua:1: anomaly "a": unknown field "condition"',
      'rules/x.lua:1: anomaly "a": method "iqr" is not one of zscore, mad, ewma',
      'rules/x.lua:1: anomaly "a": threshold must be more than 0',
      'rules/x.lua:1: anomaly "a": window must be more than 0',
      'rules/x.lua:1: anomaly "a": min_samples must be a whole number >= 3, got 2',
    }, problems 'anomaly "a" { metric = "m", method = "iqr", threshold = 0, window = 0, min_samples = 2, condition = ">" }')
    assert.are.same({ 'rules/x.lua:1: anomaly "a": unknown field "expr"', 'rules/x.lua:1: anomaly "a": needs a metric' },
      problems 'anomaly "a" { expr = function() end }')
  end)
end)

describe("dsl.load routes, silences, inhibits", function()
  it("normalises routes with defaults", function()
    local _, set = one [[
route { match = { severity = "critical", team = "~db|infra" }, channels = { "pagerduty" }, group_by = { "alertname", "host" },
  group_wait = "10s", group_interval = "1m", repeat_interval = "1h", cooldown = "5m", max_notifications_per_hour = 4 }
route { channels = { "slack" } }
]]
    assert.are.same({ file = "rules/x.lua", line = 1, match = { severity = "critical", team = "~db|infra" },
      channels = { "pagerduty" }, group_by = { "alertname", "host" }, group_wait = 10, group_interval = 60,
      repeat_interval = 3600, cooldown = 300, max_notifications_per_hour = 4 }, set.routes[1])
    assert.are.same({ file = "rules/x.lua", line = 3, channels = { "slack" }, group_by = { "alertname" },
      group_wait = 30, group_interval = 300, repeat_interval = 14400 }, set.routes[2])
  end)
  it("rejects bad routes", function()
    assert.are.same({
      'rules/x.lua:1: route: unknown field "continue"',
      'rules/x.lua:1: route: match.sev: regex "a{3,1}": bad bound {3,1}',
      "rules/x.lua:1: route: needs channels = { ... }",
      'rules/x.lua:1: route: group_by "host-name" is not a label name',
      "rules/x.lua:1: route: group_interval must be more than 0",
    }, problems 'route { match = { sev = "~a{3,1}" }, group_by = { "host-name" }, group_interval = 0, continue = true }')
    assert.are.same({ "rules/x.lua:1: route: expected a table: route { ... }" }, problems 'route "x"')
  end)

  it("normalises silences with a stable id", function()
    local src = [[
silence { matchers = { alertname = "high_cpu_usage", host = "batch-*" }, starts = "2026-11-27T08:00:00Z",
  ends = "2026-11-27T10:00:00Z", comment = "batch window", created_by = "ops" }
silence { matchers = { host = "~web-[0-9]+" }, ends = 1900000000 }
silence { id = "fixed", matchers = { host = "x" }, starts = 100, ends = 200 }
]]
    local set = load(src)
    local s1, s2, s3 = set.silences[1], set.silences[2], set.silences[3]
    assert.are.same({ alertname = "high_cpu_usage", host = "batch-*" }, s1.matchers)
    assert.are.equal(1795766400, s1.starts)
    assert.are.equal(1795773600, s1.ends)
    assert.are.equal("batch window", s1.comment)
    assert.are.equal("ops", s1.created_by)
    assert.matches("^%x+$", s1.id)
    assert.are.equal(16, #s1.id)
    assert.are.equal(NOW, s2.starts)
    assert.are.equal("", s2.comment)
    assert.are.equal("file", s2.created_by)
    assert.are_not.equal(s1.id, s2.id)
    assert.are.equal("fixed", s3.id)
    -- the same file loaded later keeps the ids (starts defaulting to now is not part of it)
    local again = load(src, nil, { now = NOW + 500 })
    assert.are.equal(s1.id, again.silences[1].id)
    assert.are.equal(s2.id, again.silences[2].id)
    assert.are.equal(NOW + 500, again.silences[2].starts)
  end)
  it("parses ISO 8601 and epoch times", function()
    assert.are.equal(0, dsl.parse_time("1970-01-01T00:00:00Z"))
    assert.are.equal(951782400, dsl.parse_time("2000-02-29T00:00:00Z"))
    assert.are.equal(951865200.5, dsl.parse_time("2000-03-01T00:00:00.5+01:00"))
    assert.are.equal(1795773600, dsl.parse_time("2026-11-27 10:00:00Z"))
    assert.are.equal(12, dsl.parse_time(12))
    for _, bad in ipairs { "2026-11-27", "2026-11-27T10:00:00", "2026-02-29T00:00:00Z", "2026-13-01T00:00:00Z",
      "tomorrow", -1, {} } do
      assert.is_nil(dsl.parse_time(bad), tostring(bad))
    end
  end)
  it("rejects bad silences", function()
    assert.are.same({
      "rules/x.lua:1: silence: needs matchers = { label = value, ... }",
      'rules/x.lua:1: silence: needs ends (epoch seconds or "2026-11-27T10:00:00Z")',
    }, problems 'silence { comment = "x" }')
    assert.are.same({
      "rules/x.lua:1: silence: matchers must not be empty (it would silence everything)",
      "rules/x.lua:1: silence: ends must be after starts",
    }, problems 'silence { matchers = {}, starts = 200, ends = 100 }')
    assert.are.same({ 'rules/x.lua:1: silence: ends "2h" is not a time like "2026-11-27T10:00:00Z"' },
      problems 'silence { matchers = { a = "b" }, ends = "2h" }')
  end)
  it("keeps a silence that is already over loadable", function()
    local set = load 'silence { matchers = { a = "b" }, ends = 1000 }'
    assert.are.equal(1000, set.silences[1].starts)
  end)

  it("normalises inhibits", function()
    local set = load 'inhibit { source = { severity = "critical" }, target = { severity = "~warning|info" }, equal = { "host" } }'
    assert.are.same({ file = "rules/x.lua", line = 1, source = { severity = "critical" },
      target = { severity = "~warning|info" }, equal = { "host" } }, set.inhibits[1])
    set = load 'inhibit { source = { a = "b" }, target = { a = "c" } }'
    assert.are.same({}, set.inhibits[1].equal)
    assert.are.same({
      "rules/x.lua:1: inhibit: needs source = { label = value, ... }",
      "rules/x.lua:1: inhibit: target must not be empty",
      'rules/x.lua:1: inhibit: equal must be a list of label names, got "host"',
    }, problems 'inhibit { target = {}, equal = "host" }')
  end)
end)

describe("dsl.translate_regex and dsl.match", function()
  local function m(spec, v) return dsl.match({ k = spec }, { k = v }) end

  it("translates the supported subset", function()
    local cases = {
      { "a.*b", { "^a.*b$" } },
      { "(GET|POST)_x", { "^GET%_x$", "^POST%_x$" } },
      { "5..|4..", { "^5..$", "^4..$" } },
      { "[^a-z]+", { "^[^a-z]+$" } },
      { "a{2,3}", { "^aaa?$" } },
      { "a{2,}", { "^aaa*$" } },
      { "a{2}", { "^aa$" } },
      { "[[:digit:]]+", { "^[%d]+$" } },
      { "^a$", { "^a$" } },
      { "[!-#]", { "^[%!%\"%#]$" } },
      { "[]a]", { "^[%]a]$" } },
      { "a\\.b", { "^a%.b$" } },
      { "x|", { "^x$", "^$" } },
      { "", { "^$" } },
    }
    for _, c in ipairs(cases) do
      assert.are.same(c[2], dsl.translate_regex(c[1]), c[1])
    end
  end)
  it("rejects what it cannot translate exactly", function()
    local cases = {
      { "(ab)+", "a quantifier after a group, as in (ab)+, is not supported" },
      { "\\d+", "\\d is not POSIX (write [0-9])" },
      { "\\w", "\\w is not POSIX (write [[:alnum:]_])" },
      { "a**", "a repeated quantifier is not supported" },
      { "*a", "nothing to repeat before *" },
      { "(a", "unclosed (" },
      { "a)", "unmatched )" },
      { "[a", "unclosed [" },
      { "[z-a]", "invalid range z-a" },
      { "[[:word:]]", "unknown character class [:word:]" },
      { "a^b", "^ is only supported at the start" },
      { "a$b", "$ is only supported at the end" },
      { "a{x}", "{ must start a bound such as {2} or {2,5} (write \\{ for a brace)" },
      { "(a|b)(c|d)(e|f)(g|h)(i|j)(k|l)(m|n)", "more than 64 alternatives" },
      { "a\\", "trailing \\" },
    }
    for _, c in ipairs(cases) do
      local p, err = dsl.translate_regex(c[1])
      assert.is_nil(p, c[1])
      assert.are.equal(c[2], err)
    end
  end)
  it("matches exact, negated, regex and glob values", function()
    assert.is_true(m("web", "web"))
    assert.is_false(m("web", "web-1"))
    assert.is_true(m("!web", "db"))
    assert.is_false(m("!web", "web"))
    assert.is_true(m("~web-[0-9]+", "web-12"))
    assert.is_false(m("~web-[0-9]+", "web-"))
    assert.is_false(m("~web", "web-1")) -- anchored: the whole value
    assert.is_true(m("~(GET|POST)", "POST"))
    assert.is_false(m("~(GET|POST)", "PUT"))
    assert.is_true(m("!~5..", "200"))
    assert.is_false(m("!~5..", "503"))
    assert.is_true(m("~a{2,3}", "aaa"))
    assert.is_false(m("~a{2,3}", "aaaa"))
    assert.is_true(m("~[[:upper:]]x?", "Q"))
    assert.is_true(m("~a.c", "a%c"))
    assert.is_false(m("~a%.c", "abc")) -- a Lua % in the regex is a literal %
    assert.is_true(m("batch-*", "batch-7"))
    assert.is_true(m("*-7", "batch-7"))
    assert.is_false(m("batch-*", "web-7"))
    assert.is_true(m("!batch-*", "web-7"))
    assert.is_true(m("=batch-*", "batch-*"))
    assert.is_false(m("=batch-*", "batch-7"))
    assert.is_true(m("=!x", "!x"))
    assert.is_true(m("", nil)) -- a missing label reads ""
    assert.is_true(m("!x", nil))
    assert.is_true(dsl.match(nil, { a = "b" }))
    assert.is_true(dsl.match({}, {}))
    assert.is_true(dsl.match({ a = "1", b = "~x|y" }, { a = 1, b = "y" }))
    assert.is_false(dsl.match({ a = "1", b = "~x|y" }, { a = 1, b = "z" }))
  end)
  it("never raises on a bad matcher", function()
    local ok, err = dsl.match({ k = "~(" }, { k = "(" })
    assert.is_false(ok)
    assert.are.equal('regex "(": unclosed (', err)
    assert.is_table(dsl.check_matchers({ a = "~x+" }))
    local m2, e2 = dsl.check_matchers({ a = "~x++" })
    assert.is_nil(m2)
    assert.are.equal('matchers.a: regex "x++": a repeated quantifier is not supported', e2)
  end)
end)

describe("dsl.normalize (rules and silences from the API)", function()
  it("normalises a declarative rule and refuses expr", function()
    local r = dsl.normalize("alert", { name = "x", metric = "m", condition = ">", threshold = 1 })
    assert.are.equal(">", r.condition)
    local bad, p = dsl.normalize("alert", { name = "x", expr = function() end, condition = ">", threshold = 1 })
    assert.is_nil(bad)
    assert.are.same({ "expr is only allowed in rule files" }, p)
    local s = dsl.normalize("silence", { matchers = { a = "b" }, ends = 2000 }, { now = 1000 })
    assert.are.same({ 1000, 2000, "api" }, { s.starts, s.ends, s.created_by })
  end)
end)

describe("dsl.check_files and format_problems", function()
  local dir = os.tmpname()
  os.remove(dir)
  os.execute("mkdir -p " .. dir)
  teardown(function() os.execute("rm -rf " .. dir) end)
  local function write(name, text)
    local f = assert(io.open(dir .. "/" .. name, "w"))
    f:write(text)
    f:close()
    return dir .. "/" .. name
  end

  it("checks every file and names across files", function()
    local a = write("a.lua", 'alert "x" { metric = "m", condition = ">", threshold = 1 }\n')
    local b = write("b.lua", '\nalert "x" { metric = "m", condition = ">", threshold = 2 }\nalert "y" { metric = "m" }\n')
    local p = dsl.check_files { a, b }
    assert.are.same({ b .. ':3: alert "y": needs a condition (' .. CONDS .. ")", b .. ":3: alert \"y\": needs a threshold" }, p)
    local c = write("c.lua", '\nalert "x" { metric = "m", condition = ">", threshold = 2 }\n')
    assert.are.same({ c .. ':2: alert "x": also declared in ' .. a .. ":1" }, dsl.check_files { a, c })
    assert.are.same({}, dsl.check_files { a })
    assert.are.equal("", dsl.format_problems {})
    assert.are.equal("f:1: a\nf:2: b\n2 problems\n", dsl.format_problems { "f:1: a", "f:2: b" })
    assert.are.equal("f:1: a\n1 problem\n", dsl.format_problems { "f:1: a" })
  end)

  it("loads rules/guide.lua", function()
    local set, p = dsl.load("rules/guide.lua")
    assert.is_table(set, p and table.concat(p, "\n"))
    assert.are.same({}, dsl.check_files { "rules/guide.lua" })
    local cpu, opt = set.alerts[1], set.alerts[2]
    assert.are.same({ "high_cpu_usage", "system.cpu_percent", ">", 80, 300, "warning", true },
      { cpu.name, cpu.metric, cpu.condition, cpu.threshold, cpu.duration, cpu.severity, cpu.enabled })
    assert.are.same({ "optimization_failures", ">", 0.1, 600, "error", false, true },
      { opt.name, opt.condition, opt.threshold, opt.duration, opt.severity, opt.enabled, opt.expr })
    local fn = set.exprs.optimization_failures
    local rates = { ["optimization.started"] = { { labels = { algorithm = "nsga2" }, value = 6 }, { labels = {}, value = 4 } },
      ["optimization.failures"] = { { labels = {}, value = 2 } } }
    local q = { rate_all = function(name) return rates[name] or {} end }
    assert.are.equal(0.2, fn(q))
    rates["optimization.started"] = {}
    assert.are.same({}, fn(q))
  end)
end)
