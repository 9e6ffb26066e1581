-- What channel plugins share: the reading of an HTTP answer (ctx.response), timestamps
-- (ctx.iso8601, RFC 5322 dates, HTTP dates), and the parts of a notification every payload
-- is made of (severity, message, tags, a title line, the guide's payload of one alert).
-- Pure Lua, no I/O: the sandbox exposes response and iso8601 on the ctx of a channel, and
-- plugins require the rest (require "beagle.channel_util").
local M = {}

local floor, ceil = math.floor, math.ceil

-- Tables made at their final size, not grown key by key from {} (a rehash at each power of
-- two). LuaJIT's table.new and OpenResty's table.nkeys; plain Lua fallbacks elsewhere.
local tnew, nkeys
do
  local ok, f = pcall(require, "table.new")
  tnew = ok and f or function() return {} end
  local ok2, g = pcall(require, "table.nkeys")
  nkeys = ok2 and g or function(t)
    local n = 0
    for _ in pairs(t) do n = n + 1 end
    return n
  end
end

-- copy(t[, extra]) -> a shallow copy of t, with room for `extra` more keys. (A loop here is
-- compiled; the same loop in a plugin's own code runs in the interpreter.)
function M.copy(t, extra)
  local c = tnew(0, nkeys(t) + (extra or 0))
  for k, v in pairs(t) do c[k] = v end
  return c
end

-- ---- calendar ----------------------------------------------------------------------------
-- Proleptic Gregorian days <-> civil dates (H. Hinnant's algorithms): os.time would read the
-- local time zone, and these must be UTC everywhere.

local function days_from_civil(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mp = m > 2 and m - 3 or m + 9
  local doy = floor((153 * mp + 2) / 5) + d - 1
  local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
  return era * 146097 + doe - 719468
end

local function civil_from_days(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local d = doy - floor((153 * mp + 2) / 5) + 1
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m, d
end

-- epoch seconds -> y, m, d, hh, mm, ss, ms, weekday (0 = Sunday); ms rounded, not truncated,
-- so that 0.25 stays 250 whatever the float error.
local function breakdown(t)
  local ms_total = floor(t * 1000 + 0.5)
  local secs = floor(ms_total / 1000)
  local ms = ms_total - secs * 1000
  local days = floor(secs / 86400)
  local rem = secs - days * 86400
  local y, m, d = civil_from_days(days)
  return y, m, d, floor(rem / 3600), floor(rem % 3600 / 60), rem % 60, ms, (days + 4) % 7
end

-- iso8601(1764300000.25) -> "2025-11-28T03:20:00.250Z" (RFC 3339, UTC, milliseconds).
-- The last time formatted is kept: a notification's timestamp and starts_at are usually the
-- same instant, and so are those of every alert one evaluation fired (plugin code runs in the
-- interpreter, where one formatting is ~4k instructions).
local iso_t, iso_s
function M.iso8601(t)
  t = tonumber(t) or 0
  if t == iso_t then return iso_s end
  local y, m, d, hh, mm, ss, ms = breakdown(t)
  iso_t, iso_s = t, ("%04d-%02d-%02dT%02d:%02d:%02d.%03dZ"):format(y, m, d, hh, mm, ss, ms)
  return iso_s
end

local DAYS = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" }
local MONTHS = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" }
local MONTH_NUM = {}
for i, name in ipairs(MONTHS) do MONTH_NUM[name] = i end

-- rfc5322_date(t) -> "Fri, 28 Nov 2025 03:20:00 +0000" (the Date header of an email).
function M.rfc5322_date(t)
  local y, m, d, hh, mm, ss, _, wd = breakdown(floor(tonumber(t) or 0))
  return ("%s, %02d %s %04d %02d:%02d:%02d +0000"):format(DAYS[wd + 1], d, MONTHS[m], y, hh, mm, ss)
end

local function to_epoch(y, mon, d, hh, mm, ss)
  local m = MONTH_NUM[mon]
  y, d, hh, mm, ss = tonumber(y), tonumber(d), tonumber(hh), tonumber(mm), tonumber(ss)
  if not m or d < 1 or d > 31 or hh > 23 or mm > 59 or ss > 60 then return nil end
  return days_from_civil(y, m, d) * 86400 + hh * 3600 + mm * 60 + ss
end

-- parse_http_date(s) -> epoch seconds | nil. The three forms RFC 9110 5.6.7 says a recipient
-- must accept: IMF-fixdate, RFC 850 (two-digit year) and asctime.
function M.parse_http_date(s)
  if type(s) ~= "string" then return nil end
  s = s:match("^%s*(.-)%s*$")
  local d, mon, y, hh, mm, ss = s:match("^%a+, (%d%d?) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if d then return to_epoch(y, mon, d, hh, mm, ss) end
  d, mon, y, hh, mm, ss = s:match("^%a+, (%d%d)%-(%a%a%a)%-(%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  if d then
    y = tonumber(y)
    return to_epoch(y < 70 and 2000 + y or 1900 + y, mon, d, hh, mm, ss)
  end
  mon, d, hh, mm, ss, y = s:match("^%a+ (%a%a%a) +(%d%d?) (%d%d):(%d%d):(%d%d) (%d%d%d%d)$")
  if mon then return to_epoch(y, mon, d, hh, mm, ss) end
  return nil
end

-- retry_after(header, now) -> seconds to wait (>= 0) | nil when absent or unreadable.
function M.retry_after(v, now)
  if type(v) ~= "string" then return nil end
  local delta = v:match("^%s*(%d+)%s*$")
  if delta then return tonumber(delta) end
  local at = M.parse_http_date(v)
  if not at then return nil end
  return math.max(0, ceil(at - (now or os.time())))
end

-- ---- text --------------------------------------------------------------------------------

-- truncate(s, max) -> s cut to at most max bytes, ending in "..." when cut, never inside a
-- UTF-8 sequence.
function M.truncate(s, max)
  s = tostring(s or "")
  if #s <= max then return s end
  local cut = max - 3
  -- back off over continuation bytes, then over the lead byte they belonged to
  while cut > 0 and s:byte(cut + 1) and s:byte(cut + 1) >= 0x80 and s:byte(cut + 1) < 0xC0 do cut = cut - 1 end
  return s:sub(1, cut) .. "..."
end

-- One line that is safe in a log or an error message: control characters become spaces.
function M.one_line(s)
  return (tostring(s or ""):gsub("%c", " "):gsub("%s+", " "):match("^%s*(.-)%s*$"))
end

-- ---- ctx.response --------------------------------------------------------------------------

local function describe(status, body)
  local snippet = M.one_line(type(body) == "string" and body:sub(1, 200) or "")
  -- a cut UTF-8 sequence at the end would make the log line invalid UTF-8
  snippet = snippet:gsub("[\192-\255][\128-\191]*$", function(seq)
    local lead = seq:byte(1)
    local need = lead >= 0xF0 and 4 or lead >= 0xE0 and 3 or 2
    return #seq == need and seq or ""
  end)
  if snippet == "" then return ("HTTP %d"):format(status) end
  return ("HTTP %d: %s"):format(status, snippet)
end

-- response(res, err [, now]) -> true | nil, err [, info]. The usual reading of an HTTP answer
-- (CHANNELS.md): 2xx accepted; 429 and 503 retried after Retry-After when it says; 408 and
-- other 5xx retried; other 4xx permanent; no response is err. `now` (epoch seconds, default
-- os.time()) only matters for a Retry-After that is a date.
function M.response(res, err, now)
  if res == nil then return nil, tostring(err or "no response") end
  local status = tonumber(res.status)
  if not status then return nil, "the response has no HTTP status" end
  if status >= 200 and status < 300 then return true end
  local why = describe(status, res.body)
  if status == 429 or status == 503 then
    local h = type(res.headers) == "table" and res.headers or {}
    return nil, why, { retry_after = M.retry_after(h["retry-after"], now) }
  end
  if status == 408 or status >= 500 then return nil, why end
  if status >= 400 then return nil, why, { permanent = true } end
  -- 1xx and 3xx (redirects are not followed): not accepted, and maybe not forever
  return nil, why
end

-- ---- notifications -----------------------------------------------------------------------

M.SEVERITY_RANK = { info = 1, warning = 2, error = 3, critical = 4 }

-- severity_of(n) -> the highest severity label among the alerts ("warning" when none has one;
-- a severity the rules do not know ranks below info).
-- mask(text, secrets) -> text with every occurrence of each secret (a list of strings) as ***.
-- Longer secrets are masked first, so that one containing another goes whole.
-- RFC 4648 base64 of s; url = true: the URL and file name safe alphabet ("-_" for "+/").
local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
local B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
function M.base64(s, url)
  local alphabet = url and B64URL or B64
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local q = { math.floor(n / 262144), math.floor(n / 4096) % 64, math.floor(n / 64) % 64, n % 64 }
    for k = 1, 4 do out[#out + 1] = alphabet:sub(q[k] + 1, q[k] + 1) end
    if not c then out[#out] = "=" end
    if not b then out[#out - 1] = "=" end
  end
  return table.concat(out)
end

-- The configured headers over ours: one of the same name, whatever its case, replaces ours
-- (a table of name = value, changed in place and returned).
function M.merge_headers(ours, configured)
  for k, v in pairs(configured or {}) do
    for name in pairs(ours) do
      if name:lower() == tostring(k):lower() then ours[name] = nil end
    end
    ours[k] = tostring(v)
  end
  return ours
end

-- OTLP/HTTP as its specification asks a client to speak it, once for otlp_metrics, otlp_traces,
-- otlp_logs and logfire: POST the encoded body (JSON, gzipped when o.gzip) to url. A 2xx is
-- success, and a partialSuccess that rejected items (o.rejected: "rejectedSpans",
-- "rejectedLogRecords", "rejectedDataPoints") is logged with the receiver's errorMessage, never
-- sent again; 429, 502, 503 and 504 are retried (after Retry-After when the receiver sent one);
-- every other answer is final. o: { gzip, headers (the instance's, over ours), auth (an
-- Authorization value or nil), user_agent, label (errors and the log line start with it:
-- "otlp", "logfire"), rejected, what ("spans") }. Returns what a backend's send returns.
local OTLP_RETRY = { [429] = true, [502] = true, [503] = true, [504] = true }
function M.otlp_post(ctx, url, body, o)
  local label = o.label or "otlp"
  local headers = { ["Content-Type"] = "application/json", ["User-Agent"] = o.user_agent, Authorization = o.auth }
  if o.gzip then headers["Content-Encoding"] = "gzip" end
  M.merge_headers(headers, o.headers) -- configured headers replace ours of the same name
  local res, err = ctx.http.post(url, body, { headers = headers })
  if not res then return nil, label .. ": " .. tostring(err) end
  if res.status >= 200 and res.status < 300 then
    local ok, doc = pcall(ctx.json.decode, res.body or "")
    local ps = ok and type(doc) == "table" and doc.partialSuccess
    local n = type(ps) == "table" and tonumber(ps[o.rejected]) or 0
    if n > 0 then
      ctx.log.warn(("%s receiver rejected %s"):format(label, o.what or "items"),
        { rejected = tostring(n), error = tostring(ps.errorMessage or ""):sub(1, 300) })
    end
    return true
  end
  local _, why, info = ctx.response(res, err) -- Retry-After, when the receiver sent one
  if OTLP_RETRY[res.status] then return nil, label .. ": " .. tostring(why), info end
  return nil, label .. ": " .. tostring(why), { permanent = true }
end

-- The Authorization header's value for HTTP basic auth (RFC 7617).
function M.basic_auth(user, password)
  return "Basic " .. M.base64((user or "") .. ":" .. (password or ""))
end

-- s percent-encoded for a URL's path segment or query value: everything but RFC 3986's
-- unreserved characters.
function M.url_escape(s)
  return (tostring(s):gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

function M.mask(text, secrets)
  text = tostring(text)
  if not secrets or #secrets == 0 then return text end
  local list = {}
  for i, sec in ipairs(secrets) do list[i] = sec end
  table.sort(list, function(a, b) return #a > #b end)
  for _, sec in ipairs(list) do
    if sec ~= "" then
      local from = 1
      while true do
        local i, j = text:find(sec, from, true)
        if not i then break end
        text = text:sub(1, i - 1) .. "***" .. text:sub(j + 1)
        from = i + 3
      end
    end
  end
  return text
end

function M.severity_of(n)
  local best, rank
  for _, a in ipairs(n.alerts or {}) do
    local s = a.labels and a.labels.severity
    if s ~= nil then
      local r = M.SEVERITY_RANK[s] or 0
      if rank == nil or r > rank then best, rank = tostring(s), r end
    end
  end
  return best or "warning"
end

-- The alert's human text: its message annotation, else summary, description, name.
function M.message_of(a)
  local an = a.annotations or {}
  local m = an.message or an.summary or an.description
  if m == nil or m == "" then return tostring(a.name or (a.labels or {}).alertname or "alert") end
  return tostring(m)
end

-- The guide's tags: the alert's labels without alertname and severity.
function M.tags_of(a)
  local labels = a.labels or {}
  local t = tnew(0, nkeys(labels))
  for k, v in pairs(labels) do
    if k ~= "alertname" and k ~= "severity" then t[k] = tostring(v) end
  end
  return t
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(x, y) return tostring(x) < tostring(y) end)
  return ks
end
M.sorted_keys = sorted_keys

-- format_labels(t) -> "host=web-1, team=infra" (sorted).
function M.format_labels(t)
  local parts = {}
  for _, k in ipairs(sorted_keys(t or {})) do parts[#parts + 1] = ("%s=%s"):format(k, tostring(t[k])) end
  return table.concat(parts, ", ")
end

function M.format_value(v)
  if type(v) ~= "number" then return v == nil and "" or tostring(v) end
  if v ~= v then return "NaN" end
  if v == math.huge or v == -math.huge then return v > 0 and "+Inf" or "-Inf" end
  if v % 1 == 0 and math.abs(v) < 1e15 then return ("%d"):format(v) end
  return ("%.6g"):format(v)
end

-- The time an alert's current state began: ends_at once resolved, else starts_at.
function M.alert_time(a, n)
  local status = a.status or n.status
  if status == "resolved" and a.ends_at then return a.ends_at end
  return a.starts_at or a.active_at or n.created_at or 0
end

-- names(n) -> the distinct alert names, in the order of the alerts.
function M.names(n)
  local out, seen = {}, {}
  for _, a in ipairs(n.alerts or {}) do
    local name = tostring(a.name or (a.labels or {}).alertname or "alert")
    if not seen[name] then seen[name], out[#out + 1] = true, name end
  end
  return out
end

-- title(n) -> "[FIRING] high_cpu_usage", "[RESOLVED:3] disk_full, high_cpu_usage" (the count
-- of alerts in the notification's status when above one), "[TEST] " first for a test.
function M.title(n)
  local status = n.status or "firing"
  local count = 0
  for _, a in ipairs(n.alerts or {}) do
    if (a.status or status) == status then count = count + 1 end
  end
  local t = ("[%s%s] %s"):format(status:upper(), count > 1 and ":" .. count or "", table.concat(M.names(n), ", "))
  if n.test then t = "[TEST] " .. t end
  return t
end

-- expand(template, n) -> the template with {{ var }} replaced: status, STATUS, title, name,
-- names, count, severity, channel, message, labels.<name> (of the first alert). An unknown
-- variable is left as written, so the mistake shows.
function M.expand(template, n)
  local a = (n.alerts or {})[1] or {}
  local vars = {
    status = n.status, STATUS = tostring(n.status or ""):upper(), title = M.title(n),
    name = a.name, names = table.concat(M.names(n), ", "), count = #(n.alerts or {}),
    severity = M.severity_of(n), channel = n.channel, message = M.message_of(a),
  }
  return (tostring(template):gsub("{{%s*([%w_%.]+)%s*}}", function(k)
    local label = k:match("^labels%.(.+)$")
    if label then return tostring((a.labels or {})[label] or "") end
    if vars[k] == nil then return nil end
    return tostring(vars[k])
  end))
end

local function strings(t)
  t = t or {}
  local out = tnew(0, nkeys(t))
  for k, v in pairs(t) do out[tostring(k)] = tostring(v) end
  return out
end
M.strings = strings

-- t itself when every key and value is already a string (an alert's labels and annotations
-- always are), else strings(t): plugin code runs in the interpreter, and a copy per alert was
-- a fifth of a webhook payload's cost.
local function as_strings(t)
  if t == nil then return {} end
  for k, v in pairs(t) do
    if type(k) ~= "string" or type(v) ~= "string" then return strings(t) end
  end
  return t
end

-- alert_payload(ctx, a, n) -> the guide's payload of one alert (alert_name, severity, message,
-- timestamp, tags) with status, labels, annotations, value, starts_at, ends_at, fingerprint, and
-- trace_id (the trace of the evaluation that fired it) when it has one.
-- Absent times and values are JSON null (ctx.json.null). labels and annotations are the alert's
-- own tables when they hold only strings (the notification is the run's own copy).
local function time_or_null(ctx, null, t)
  if t == nil then return null end
  return ctx.iso8601(t)
end

function M.alert_payload(ctx, a, n)
  local null = ctx.json and ctx.json.null
  local labels = a.labels or {}
  local value = a.value
  if value == nil then value = null end
  return {
    alert_name = tostring(a.name or labels.alertname or "alert"),
    severity = tostring(labels.severity or "warning"),
    message = M.message_of(a),
    timestamp = ctx.iso8601(M.alert_time(a, n)),
    tags = M.tags_of(a),
    status = a.status or n.status,
    labels = as_strings(labels),
    annotations = as_strings(a.annotations),
    value = value,
    starts_at = time_or_null(ctx, null, a.starts_at),
    ends_at = time_or_null(ctx, null, a.ends_at),
    fingerprint = a.fingerprint == nil and null or tostring(a.fingerprint),
    trace_id = type(a.trace_id) == "string" and a.trace_id or nil,
  }
end

return M
