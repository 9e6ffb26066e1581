-- Runs a Nagios-compatible plugin (any program that follows the Nagios plugin API): its exit
-- code is the status, the first line of its output the message, its performance data gauges.

-- Units of measure of the Nagios plugin guidelines -> factor to the base unit, and that unit.
local UNITS = {
  [""] = { 1, "" }, s = { 1, "s" }, ms = { 1e-3, "s" }, us = { 1e-6, "s" },
  ["%"] = { 1, "%" }, c = { 1, "c" },
  B = { 1, "B" }, KB = { 1024, "B" }, MB = { 1024 ^ 2, "B" }, GB = { 1024 ^ 3, "B" }, TB = { 1024 ^ 4, "B" },
}

local function number(s)
  if s == nil or s == "" then return nil end
  return tonumber((s:gsub(",", ".")))
end

-- One value field "12.5ms" -> value in base units, unit; nil, why when it is not a number.
local function value_of(field)
  local num, uom = field:match("^([-+]?[%d%.,]*%d[eE]?[-+]?%d*)(.*)$")
  local v = number(num)
  if not v then return nil, "not a number" end
  if not uom:match("^[%a%%/]*$") then return nil, ("bad unit %q"):format(uom) end
  local u = UNITS[uom]
  if u then return v * u[1], u[2], u[1] end
  return v, uom, 1 -- a unit the guidelines do not list: kept as it is, unconverted
end

-- Splits perfdata text into its items ("label=value;warn;crit;min;max"), single-quoted labels
-- holding spaces, '' a quote. Returns { {label, data} or {bad = text} ... }.
local function tokens(text)
  local out, i, n = {}, 1, #text
  while true do
    i = text:find("%S", i)
    if not i then break end
    local label
    local start = i
    if text:sub(i, i) == "'" then
      local parts, j = {}, i + 1
      while true do
        local q = text:find("'", j, true)
        if not q then j = nil break end
        parts[#parts + 1] = text:sub(j, q - 1)
        if text:sub(q + 1, q + 1) == "'" then parts[#parts + 1] = "'" j = q + 2
        else j = q + 1 break end
      end
      if j and text:sub(j, j) == "=" then label, i = table.concat(parts), j + 1 end
    else
      local eq = text:match("^[^%s=]+()=", i)
      if eq then label, i = text:sub(start, eq - 1), eq + 1 end
    end
    local stop = (text:find("%s", i) or n + 1) - 1
    if label then
      out[#out + 1] = { label = label, data = text:sub(i, stop) }
    else
      stop = (text:find("%s", start) or n + 1) - 1
      out[#out + 1] = { bad = text:sub(start, stop) }
    end
    i = stop + 1
  end
  return out
end

-- parse_perfdata(text) -> items, skipped: items { label, value (base units), unit, warn, crit
-- (range strings), min, max (base units) }; skipped lists the malformed items' text and why.
local function parse_perfdata(text)
  local items, skipped = {}, {}
  for _, t in ipairs(tokens(text or "")) do
    if t.bad then
      skipped[#skipped + 1] = { text = t.bad, why = "no label=value" }
    elseif t.label == "" then
      skipped[#skipped + 1] = { text = "=" .. t.data, why = "empty label" }
    else
      local f = {}
      for field in (t.data .. ";"):gmatch("([^;]*);") do f[#f + 1] = field end
      local v, unit, factor = value_of(f[1] or "")
      if f[1] == "U" then
        skipped[#skipped + 1] = { text = t.label .. "=" .. t.data, why = "value undetermined (U)" }
      elseif not v then
        skipped[#skipped + 1] = { text = t.label .. "=" .. t.data, why = unit }
      else
        local min, max = number(f[4]), number(f[5])
        items[#items + 1] = {
          label = t.label, value = v, unit = unit,
          warn = f[2] ~= "" and f[2] or nil, crit = f[3] ~= "" and f[3] or nil,
          min = min and min * factor, max = max and max * factor,
        }
      end
    end
  end
  return items, skipped
end

-- parse_output(stdout) -> message (first line before '|'), long output lines, perfdata text.
-- The plugin guidelines' long form: after the first line, a '|' starts perfdata that runs to
-- the end of the output.
local function parse_output(out)
  out = (out or ""):gsub("\r", "")
  local first, rest = out:match("^([^\n]*)\n?(.*)$")
  local message, perf = first:match("^([^|]*)|?(.*)$")
  local long, more = {}, {}
  local in_perf = false
  for line in (rest .. "\n"):gmatch("([^\n]*)\n") do
    if in_perf then more[#more + 1] = line
    else
      local text, p = line:match("^([^|]*)|(.*)$")
      if text then
        in_perf = true
        if text:find("%S") then long[#long + 1] = text end
        more[#more + 1] = p
      elseif line ~= "" then
        long[#long + 1] = line
      end
    end
  end
  message = message:match("^%s*(.-)%s*$")
  return message, long, perf .. " " .. table.concat(more, " ")
end

-- A label as a part of a metric name: letters, digits and '_' (anything else becomes '_').
local function name_part(s)
  s = s:gsub("[^%w_]+", "_")
  if #s > 100 then s = s:sub(1, 100) end
  return s
end

local STATUS = { [0] = "healthy", "degraded", "unhealthy", "unknown" }

return beagle.check {
  name = "command",
  description = "run a Nagios-compatible plugin: exit code as status, output as message, perfdata as gauges",
  options = {
    command = { "list", description = "argv: the program (listed in plugin_exec_allow) and its arguments; a string with shell = true" },
    shell = { "boolean", default = false, description = "run command, one string, through /bin/sh -c" },
    metrics = { "boolean", default = true, description = "record performance data as gauges check.<name>.<label>" },
  },
  parse_perfdata = parse_perfdata,
  parse_output = parse_output,
  -- at load (and reload): what the option types cannot say
  validate = function(opt)
    if opt.shell then
      if #opt.command ~= 1 or type(opt.command[1]) ~= "string" then
        return "option command: shell = true takes command as one string"
      end
    else
      if #opt.command == 0 then return "option command: empty" end
      if #opt.command == 1 and type(opt.command[1]) == "string" and opt.command[1]:find("%s") then
        return "option command: a string with spaces: give an argv list, or set shell = true"
      end
    end
  end,
  run = function(opt, ctx)
    local argv
    if opt.shell then
      argv = { "/bin/sh", "-c", opt.command[1] }
    else
      argv = {}
      for i = 1, #opt.command do argv[i] = opt.command[i] end
    end
    local p, err = ctx.exec(argv)
    if not p then return ctx.unknown(err) end
    local message, long, perftext = parse_output(p.stdout)
    local items, skipped = parse_perfdata(perftext)
    local details = { code = p.code, perfdata = {} }
    if #long > 0 then details.long_output = table.concat(long, "\n") end
    local prefix = "check." .. name_part(ctx.name) .. "."
    for _, it in ipairs(items) do
      details.perfdata[it.label] = it.value
      if opt.metrics then
        local ok, gerr = pcall(beagle.set_gauge, prefix .. name_part(it.label), it.value)
        if not ok then skipped[#skipped + 1] = { text = it.label, why = tostring(gerr) } end
      end
    end
    if #skipped > 0 then
      details.perfdata_skipped = #skipped
      local s = {}
      for i, k in ipairs(skipped) do s[i] = ("%s (%s)"):format(k.text, k.why) end
      details.perfdata_errors = table.concat(s, "; ")
    end
    if message == "" then
      message = (p.stderr or ""):match("^%s*([^\n]-)%s*\n") or (p.stderr or ""):match("^%s*(.-)%s*$") or ""
    end
    if p.signal and p.signal ~= 0 then
      return ctx.unhealthy(("killed by signal %d%s"):format(p.signal, message ~= "" and ": " .. message or ""), details)
    end
    local status = STATUS[p.code]
    if not status then
      return ctx.unknown(("exit code %s%s"):format(tostring(p.code), message ~= "" and ": " .. message or ""), details)
    end
    if message == "" then message = ("exit code %d"):format(p.code) end
    return ctx[status](message, details)
  end,
}
