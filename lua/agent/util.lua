-- Small helpers shared by the agent and the plugin sandbox: durations, copies, sorting.
local M = {}

local units = { ms = 0.001, s = 1, m = 60, h = 3600, d = 86400 }

-- parse_duration("500ms") -> 0.5; numbers are seconds. Returns nil, err on bad input.
function M.parse_duration(v)
  if type(v) == "number" then
    if v ~= v or v < 0 or v == math.huge then return nil, "must be a non-negative number of seconds" end
    return v
  end
  if type(v) ~= "string" then return nil, "must be a duration like \"500ms\", \"30s\" or \"5m\"" end
  local total, pos, matched = 0, 1, false
  while pos <= #v do
    local num, unit, nxt = v:match("^(%d+%.?%d*)(%a+)()", pos)
    if not num or not units[unit] then
      return nil, ("%q is not a duration (use e.g. \"500ms\", \"30s\", \"5m\", \"1h\")"):format(v)
    end
    total = total + tonumber(num) * units[unit]
    pos, matched = nxt, true
  end
  if not matched then return nil, "empty duration" end
  return total
end

local sizes = { b = 1, kb = 1024, kib = 1024, mb = 1024 ^ 2, mib = 1024 ^ 2, gb = 1024 ^ 3, gib = 1024 ^ 3 }

-- parse_size("16MB") -> 16777216; numbers are bytes. KB, MB and GB count in 1024s, like
-- plugin_memory_limit_mb (KiB, MiB, GiB are the same; case does not matter). Returns a whole
-- number of bytes, or nil, err on bad input.
function M.parse_size(v)
  local n
  if type(v) == "number" then
    n = v
  elseif type(v) == "string" then
    local num, unit = v:match("^%s*(%d+%.?%d*)%s*(%a*)%s*$")
    local mult = num and sizes[unit == "" and "b" or unit:lower()]
    if not mult then return nil, ("%q is not a size (use bytes or e.g. \"512KB\", \"16MB\", \"1GB\")"):format(v) end
    n = tonumber(num) * mult
  else
    return nil, "must be a number of bytes or a size like \"16MB\""
  end
  if n ~= n or n < 0 or n == math.huge then return nil, "must be a non-negative number of bytes" end
  return math.floor(n)
end

function M.format_duration(s)
  if s < 1 then return ("%dms"):format(math.floor(s * 1000 + 0.5)) end
  if s < 60 or s % 60 ~= 0 then return ("%gs"):format(s) end
  if s < 3600 or s % 3600 ~= 0 then return ("%gm"):format(s / 60) end
  return ("%gh"):format(s / 3600)
end

function M.copy(t, seen)
  if type(t) ~= "table" then return t end
  seen = seen or {}
  if seen[t] then return seen[t] end
  local r = {}
  seen[t] = r
  for k, v in pairs(t) do r[M.copy(k, seen)] = M.copy(v, seen) end
  return r
end

function M.sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

-- read_file(path) -> contents | nil (missing or unreadable)
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- "a, b,c" -> { "a", "b", "c" } (empty items left out)
function M.split_list(s)
  local out = {}
  for item in tostring(s or ""):gmatch("[^,]+") do
    item = item:match("^%s*(.-)%s*$")
    if item ~= "" then out[#out + 1] = item end
  end
  return out
end

function M.basename(path) return (path:match("([^/]+)$")) or path end

-- RFC 3339 UTC with milliseconds, for timestamps in JSON.
function M.iso8601(t)
  local secs = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", secs) .. (".%03dZ"):format(math.floor((t - secs) * 1000))
end

return M
