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

-- read_source(path) -> text | nil[, err]: a plugin's or rule file's source, read as plugins read
-- their files (agent.core's read_file): a FIFO or device dropped in a directory is refused
-- instead of holding the loop. A missing file is nil without err. Agent-side only.
function M.read_source(path)
  local src, err = require("agent.core").read_file(path, 16 * 1024 * 1024)
  if src then return src end
  if err == nil or err:find("No such file or directory", 1, true) then return nil end
  return nil, err
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

-- url_decode("a%20b") -> "a b": a path segment's percent-escapes ("+" stays "+"); nil, err for a
-- "%" not followed by two hex digits.
function M.url_decode(s)
  if s:gsub("%%%x%x", ""):find("%", 1, true) then
    return nil, ("%q has a %% that is not followed by two hex digits"):format(s)
  end
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

-- problem("file:12: message", default_file) -> { file, line, message }: the shape reload and
-- load errors are reported in (a text without a "file:line: " prefix is the default file's).
function M.problem(text, default_file)
  text = tostring(text)
  local file, line, msg = text:match("^([^\n]-):(%d+): (.*)$")
  if file and not file:find("%s") then
    -- Lua shortens a long chunk name to "...tail": the file it came from is the whole name
    if default_file and file:sub(1, 3) == "..." and default_file:sub(-(#file - 3)) == file:sub(4) then
      file = default_file
    end
    return { file = file, line = tonumber(line), message = msg }
  end
  return { file = default_file, message = text }
end

-- ---- secrets --------------------------------------------------------------------------------
-- What redact() hides: the values of options of type secret (each owner, a channel or check
-- service, sets its list), the userinfo of any URL (scheme://user:pass@) and the values of query
-- keys that carry credentials. Every Lua route's body, every agent log line and every reload
-- error goes through it; a secret shorter than MIN_SECRET bytes is not searched for (it would
-- mask ordinary words), so secrets should be longer.
local MIN_SECRET = 4
local secret_sets, secret_list = {}, {}
local SECRET_KEYS = {
  key = true, apikey = true, api_key = true, ["api-key"] = true, token = true, access_token = true,
  auth = true, auth_token = true, authorization = true, secret = true, client_secret = true,
  password = true, passwd = true, pass = true, pwd = true, sig = true, signature = true,
  private_token = true, session = true, sessionid = true, credential = true,
  credentials = true, ["x-api-key"] = true, routing_key = true, integration_key = true,
}
M.SECRET_QUERY_KEYS = SECRET_KEYS

-- set_secrets(owner, { value, ... }): the secrets of one owner, replacing its previous list.
M.secrets_version = 0
function M.set_secrets(owner, list)
  secret_sets[owner] = list
  local all, seen = {}, {}
  for _, l in pairs(secret_sets) do
    for _, v in ipairs(l) do
      if type(v) == "string" and #v >= MIN_SECRET and not seen[v] then
        seen[v] = true
        all[#all + 1] = v
      end
    end
  end
  table.sort(all, function(a, b) return #a > #b end)
  secret_list = all
  M.secrets_version = M.secrets_version + 1 -- text redacted before may need it again
end

local function plain_replace(text, sec)
  local from, out = 1, {}
  while true do
    local i, j = text:find(sec, from, true)
    if not i then break end
    out[#out + 1] = text:sub(from, i - 1)
    out[#out + 1] = "***"
    from = j + 1
  end
  if #out == 0 then return text end
  out[#out + 1] = text:sub(from)
  return table.concat(out)
end

-- redact(text) -> text with every known secret, URL userinfo and credential query value as ***.
function M.redact(text)
  if type(text) ~= "string" then text = tostring(text) end
  for _, sec in ipairs(secret_list) do text = plain_replace(text, sec) end
  if text:find("://", 1, true) then
    text = text:gsub("(%a[%w+.-]*://)([^/?#@%s\"'<>\\]+)@", "%1***@")
  end
  if text:find("=", 1, true) then
    text = text:gsub("([?&;])([%w_.%-]+)=([^&#;%s\"'<>\\]+)", function(sep, k, v)
      if SECRET_KEYS[k:lower()] and v ~= "***" then return sep .. k .. "=***" end
    end)
  end
  return text
end

return M
