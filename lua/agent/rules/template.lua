-- Alert message templates: `message`, `summary` and `description` of a rule.
--
--   "CPU at {{ value | round(1) }}% on {{ labels.host }} for {{ duration }}"
--
-- Variables: value, threshold, duration (seconds; shown as "5m 3s" when it has no filter),
-- name, severity, labels.<label> (a label the alert lacks renders as ""). Filters, applied
-- left to right: humanize (1234 -> "1.234k", 0.0012 -> "1.2m"), percent (0.123 -> "12.3%"),
-- duration (303 -> "5m 3s"), round(n) (n decimals, default 0). Anything else between {{ and }}
-- is a load-time error from check(); render() never raises.
local M = {}

local VARS = { value = true, threshold = true, duration = true, name = true, severity = true }

local function num(v, filter)
  local n = tonumber(v)
  if n == nil then return nil, ("filter %s needs a number, got %s"):format(filter, v == nil and "nothing" or tostring(v)) end
  return n
end

local function fmt_num(n)
  if n ~= n then return "NaN" end
  if n == math.huge then return "+Inf" end
  if n == -math.huge then return "-Inf" end
  if n == math.floor(n) and math.abs(n) < 1e15 then return ("%d"):format(n) end
  return ("%.14g"):format(n)
end

local BIG = { "k", "M", "G", "T", "P", "E", "Z", "Y" }
local SMALL = { "m", "u", "n", "p", "f", "a", "z", "y" }

-- Like Prometheus' humanize: SI prefixes and 4 significant digits.
local function humanize(n)
  if n == 0 or n ~= n or n == math.huge or n == -math.huge then return fmt_num(n) end
  local a, i = math.abs(n), 0
  if a >= 1 then
    while a >= 1000 and i < #BIG do a, n, i = a / 1000, n / 1000, i + 1 end
    return ("%.4g%s"):format(n, BIG[i] or "")
  end
  while a < 1 and i < #SMALL do a, n, i = a * 1000, n * 1000, i + 1 end
  return ("%.4g%s"):format(n, SMALL[i] or "")
end

local function fmt_duration(s)
  if s ~= s or s == math.huge or s == -math.huge then return fmt_num(s) end
  local sign = ""
  if s < 0 then sign, s = "-", -s end
  if s == 0 then return "0s" end
  if s < 1 then return ("%s%gms"):format(sign, math.floor(s * 1000 + 0.5)) end
  s = math.floor(s * 1000 + 0.5) / 1000
  local parts = {}
  for _, u in ipairs { { "d", 86400 }, { "h", 3600 }, { "m", 60 } } do
    if s >= u[2] then
      local k = math.floor(s / u[2])
      parts[#parts + 1] = k .. u[1]
      s = s - k * u[2]
    end
  end
  s = math.floor(s * 1000 + 0.5) / 1000
  if s > 0 then parts[#parts + 1] = ("%gs"):format(s) end
  return sign .. table.concat(parts, " ")
end

local FILTERS = {
  humanize = function(v)
    local n, err = num(v, "humanize")
    if not n then return nil, err end
    return humanize(n)
  end,
  percent = function(v)
    local n, err = num(v, "percent")
    if not n then return nil, err end
    return ("%.4g%%"):format(n * 100)
  end,
  duration = function(v)
    local n, err = num(v, "duration")
    if not n then return nil, err end
    return fmt_duration(n)
  end,
  round = function(v, digits)
    local n, err = num(v, "round")
    if not n then return nil, err end
    if n ~= n or n == math.huge or n == -math.huge then return fmt_num(n) end
    local m = 10 ^ digits
    local r = math.floor(n * m + 0.5) / m
    return ("%." .. digits .. "f"):format(r)
  end,
}

local FILTER_LIST = "humanize, percent, duration, round(n)"
local VAR_LIST = "value, threshold, duration, name, severity, labels.<name>"

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- One {{ ... }} body -> { var = "value" | label = "host", filters = { {name, arg}... } }
local function parse_expr(body)
  local pieces = {}
  for p in (body .. "|"):gmatch("([^|]*)|") do pieces[#pieces + 1] = trim(p) end
  local head = pieces[1]
  local e = { filters = {} }
  if head == "" then return nil, "empty {{ }}" end
  local label = head:match("^labels%.([%a_][%w_]*)$")
  if label then
    e.label = label
  elseif VARS[head] then
    e.var = head
  else
    return nil, ("unknown variable %q (use %s)"):format(head, VAR_LIST)
  end
  for i = 2, #pieces do
    local f = pieces[i]
    local name, args = f:match("^([%a_][%w_]*)%s*(%b())$")
    if not name then name = f:match("^([%a_][%w_]*)$") end
    if not name or not FILTERS[name] then
      return nil, ("unknown filter %q (use %s)"):format(f, FILTER_LIST)
    end
    local arg
    if name == "round" then
      if args then
        local inner = trim(args:sub(2, -2))
        arg = inner == "" and 0 or tonumber(inner:match("^%d+$") or "")
        if not arg or arg > 15 then
          return nil, ("round(%s): the argument must be a whole number of decimals from 0 to 15"):format(inner)
        end
      else
        arg = 0
      end
    elseif args then
      return nil, ("filter %s takes no argument"):format(name)
    end
    e.filters[#e.filters + 1] = { name, arg }
  end
  return e
end

local cache, cached = {}, 0

-- compile(text) -> list of literal strings and expression tables | nil, err
local function compile(text)
  if type(text) ~= "string" then return nil, "template must be a string" end
  local c = cache[text]
  if c then return c end
  local parts, pos = {}, 1
  while true do
    local s, e = text:find("{{", pos, true)
    if not s then
      if pos <= #text then parts[#parts + 1] = text:sub(pos) end
      break
    end
    if s > pos then parts[#parts + 1] = text:sub(pos, s - 1) end
    local close = text:find("}}", e + 1, true)
    if not close then return nil, ("unclosed {{ at character %d"):format(s) end
    local ex, err = parse_expr(text:sub(e + 1, close - 1))
    if not ex then return nil, ("{{%s}}: %s"):format(text:sub(e + 1, close - 1), err) end
    parts[#parts + 1] = ex
    pos = close + 2
  end
  if cached >= 1000 then cache, cached = {}, 0 end
  cache[text], cached = parts, cached + 1
  return parts
end

-- check(text) -> true | nil, err. For load-time validation of a rule's templates.
function M.check(text)
  local c, err = compile(text)
  if not c then return nil, err end
  return true
end

local function eval(ex, ctx)
  local v
  if ex.label then
    local labels = type(ctx.labels) == "table" and ctx.labels or {}
    v = labels[ex.label]
    if v == nil then v = "" end
  else
    v = ctx[ex.var]
  end
  if #ex.filters == 0 then
    if v == nil then return "" end
    if ex.var == "duration" and type(v) == "number" then return fmt_duration(v) end
    if type(v) == "number" then return fmt_num(v) end
    return tostring(v)
  end
  for _, f in ipairs(ex.filters) do
    local err
    v, err = FILTERS[f[1]](v, f[2])
    if v == nil then return nil, err end
  end
  return v
end

-- render(text, ctx) -> string | nil, err. ctx = { value, threshold, duration, name, severity,
-- labels = {...} }; never raises.
function M.render(text, ctx)
  local parts, err = compile(text)
  if not parts then return nil, err end
  ctx = type(ctx) == "table" and ctx or {}
  local out = {}
  for i, p in ipairs(parts) do
    if type(p) == "string" then
      out[i] = p
    else
      local ok, s, e = pcall(eval, p, ctx)
      if not ok then return nil, tostring(s) end
      if s == nil then return nil, e end
      out[i] = s
    end
  end
  return table.concat(out)
end

M.humanize = humanize
M.format_duration = fmt_duration

return M
