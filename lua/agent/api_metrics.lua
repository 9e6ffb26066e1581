-- The metrics routes of the guide's API that take input: POST /metrics/custom.
--
-- A body is one metric object or an array of them. The whole batch is checked before anything
-- is recorded: first each item on its own (shape, UTF-8, names, tags, values), then against
-- the registry (type clashes, the series limits, counting the new series the batch itself
-- adds), so that "nothing was recorded" is true when it is said. With ?partial=true the items
-- that pass on their own are recorded as far as the registry takes them, and the others
-- listed. Every error names the item's index (from 0);
-- names and tags are quoted in messages with anything that is not printable UTF-8 escaped,
-- so an error body is valid UTF-8 JSON whatever was sent.
local cjson_strict = require("cjson").new()
local ffi = require "ffi"
local json = require "beagle.json"

-- JSON as RFC 8259 has it: no hex, Infinity or NaN literals (cjson's default takes 0x10 as 16)
cjson_strict.decode_invalid_numbers(false)
cjson_strict.decode_max_depth(16)

local M = {}

local types = { counter = "increment_counter", gauge = "set_gauge", histogram = "record_histogram" }
local MAX_TAGS = 16 -- BG_METRICS_MAX_LABELS
local MAX_NAME = 200

-- The length of the valid UTF-8 sequence at byte i of s (no overlongs, surrogates or code
-- points past U+10FFFF), or nil.
local function utf8_len(s, i)
  local c = s:byte(i)
  if c < 0x80 then return 1 end
  local n, lo, hi
  if c >= 0xC2 and c <= 0xDF then n, lo, hi = 2, 0x80, 0xBF
  elseif c == 0xE0 then n, lo, hi = 3, 0xA0, 0xBF
  elseif c == 0xED then n, lo, hi = 3, 0x80, 0x9F
  elseif c >= 0xE1 and c <= 0xEF then n, lo, hi = 3, 0x80, 0xBF
  elseif c == 0xF0 then n, lo, hi = 4, 0x90, 0xBF
  elseif c == 0xF4 then n, lo, hi = 4, 0x80, 0x8F
  elseif c >= 0xF1 and c <= 0xF3 then n, lo, hi = 4, 0x80, 0xBF
  else return nil end
  local c2 = s:byte(i + 1)
  if not c2 or c2 < lo or c2 > hi then return nil end
  for k = i + 2, i + n - 1 do
    local ck = s:byte(k)
    if not ck or ck < 0x80 or ck > 0xBF then return nil end
  end
  return n
end

-- nil when s is valid UTF-8, else the (1-based) position of its first bad byte.
local function bad_utf8(s)
  local i, n = 1, #s
  while i <= n do
    local l = utf8_len(s, i)
    if not l then return i end
    i = i + l
  end
end

-- s for a message: at most max bytes, quotes, backslashes and control characters escaped,
-- and bytes that are not UTF-8 written \xNN, so the message is valid UTF-8.
local function clean(s, max)
  local out, i, n = {}, 1, #s
  while i <= n and i <= max do
    local l = utf8_len(s, i)
    local c = s:byte(i)
    if not l then out[#out + 1] = ("\\x%02X"):format(c) l = 1
    elseif c == 34 or c == 92 then out[#out + 1] = "\\" .. string.char(c)
    elseif c < 32 or c == 127 then out[#out + 1] = ("\\x%02X"):format(c)
    else out[#out + 1] = s:sub(i, i + l - 1) end
    i = i + l
  end
  if n > max then out[#out + 1] = "..." end
  return table.concat(out)
end

-- s with each byte that is not part of valid UTF-8 written \xNN: the registry's messages cut
-- names at 64 bytes, which may split a character.
local function utf8_safe(s)
  if not bad_utf8(s) then return s end
  local out, i = {}, 1
  while i <= #s do
    local l = utf8_len(s, i)
    if l then out[#out + 1] = s:sub(i, i + l - 1) else out[#out + 1] = ("\\x%02X"):format(s:byte(i)) end
    i = i + (l or 1)
  end
  return table.concat(out)
end

-- s quoted for a message, cut to 64 bytes.
local function show(s) return '"' .. clean(s, 64) .. '"' end
M.show = show

local function is_object(t)
  return type(t) == "table" and #t == 0
end

local function check_name(name)
  if name == nil then return "name is required" end
  if type(name) ~= "string" then return ("name must be a string, not %s"):format(json.encode(name)) end
  if name == "" then return "name is empty" end
  local at = bad_utf8(name)
  if at then return ("name %s is not valid UTF-8 (byte %d)"):format(show(name), at) end
  if #name > MAX_NAME then return ("name %s is longer than %d bytes"):format(show(name), MAX_NAME) end
  local mapped = name:gsub("[%.%-]", "_")
  if not mapped:match("^[%a_:][%w_:]*$") then
    return ("name %s cannot be mapped to a Prometheus name (letters, digits, '_', ':', '.', '-'; not starting with a digit)")
      :format(show(name))
  end
  if mapped:match("^beagle_") then
    return ("name %s: beagle_* names are reserved for the agent's own metrics"):format(show(name))
  end
end

-- The tags as labels (keys mapped, values as strings), or nil and why not.
local function check_tags(tags)
  if tags == nil or tags == json.null then return {} end
  if type(tags) ~= "table" or #tags > 0 then return nil, "tags must be an object of name: value" end
  local labels, from, n = {}, {}, 0
  for k, v in pairs(tags) do
    local at = bad_utf8(k)
    if at then return nil, ("tag %s is not valid UTF-8 (byte %d)"):format(show(k), at) end
    local key = k:gsub("[%.%-]", "_")
    if not key:match("^[%a_][%w_]*$") or key:match("^__") then
      return nil, ("tag %s is not a valid label name"):format(show(k))
    end
    if from[key] then
      local a, b = from[key], k
      if b < a then a, b = b, a end
      return nil, ("tags %s and %s both become label %s"):format(show(a), show(b), show(key))
    end
    local tv = type(v)
    if tv == "number" then
      if v ~= v or v == math.huge or v == -math.huge then
        return nil, ("tag %s must be a finite number"):format(show(k))
      end
      v = v % 1 == 0 and v > -1e15 and v < 1e15 and ("%d"):format(v) or tostring(v)
    elseif tv == "boolean" then
      v = tostring(v)
    elseif tv ~= "string" then
      return nil, ("tag %s must be a string, number or boolean"):format(show(k))
    else
      at = bad_utf8(v)
      if at then return nil, ("tag %s: value %s is not valid UTF-8 (byte %d)"):format(show(k), show(v), at) end
    end
    n = n + 1
    if n > MAX_TAGS then return nil, ("more than %d tags"):format(MAX_TAGS) end
    from[key], labels[key] = k, v
  end
  return labels
end

-- Checks one item on its own. Returns its labels, or nil and why not.
function M.check_item(it)
  if not is_object(it) then return nil, "each metric must be an object {name, type, value, tags}" end
  local why = check_name(it.name)
  if why then return nil, why end
  if it.type == nil then return nil, "type is required (counter, gauge or histogram)" end
  if not types[it.type] then
    return nil, ("type must be counter, gauge or histogram, not %s"):format(show(json.encode(it.type)))
  end
  local v = it.value
  if v == nil then return nil, "value is required" end
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
    return nil, "value must be a finite number"
  end
  if it.type == "counter" and v < 0 then return nil, "a counter cannot decrease (value < 0)" end
  return check_tags(it.tags)
end

-- The index of the item that byte pos of body falls in: 0 in an object, in an array the
-- commas outside strings at depth 1 before pos; nil for anything else.
local function item_at(body, pos)
  if body:match("^%s*{") then return 0 end
  if not body:match("^%s*%[") then return nil end
  local depth, index, i, n = 0, 0, 1, math.min(pos, #body)
  while i <= n do
    local c = body:sub(i, i)
    if c == '"' then
      i = i + 1
      while i <= n and body:sub(i, i) ~= '"' do
        if body:sub(i, i) == "\\" then i = i + 1 end
        i = i + 1
      end
    elseif c == "[" or c == "{" then depth = depth + 1
    elseif c == "]" or c == "}" then depth = depth - 1
    elseif c == "," and depth == 1 then index = index + 1 end
    i = i + 1
  end
  return index
end

-- The body as a list of items, or nil and why not (and the index of the item at fault).
local function items_of(body)
  local first = body:match("^%s*(.)")
  local ok, doc = pcall(cjson_strict.decode, body)
  if not ok then
    local msg = tostring(doc)
    local at = tonumber(msg:match("at character (%d+)"))
    return nil, "body is not valid JSON: " .. clean(msg, 200), at and item_at(body, at)
  end
  if first == "[" and type(doc) == "table" then
    if #doc == 0 then return nil, "the array is empty: no metrics to record" end
    return doc
  end
  if first == "{" then return { doc } end
  return nil, "body must be a metric object or an array of them"
end

-- What recording into a series (kind "counter", "gauge" or "histogram", name, labels as
-- strings) would meet, creating nothing (bg_series_probe through agent.metrics' cdef):
-- "exists", "new" with how many more series fit in its family and in the registry, or nil
-- and why the registry would refuse its name, labels or type.
local KINDS = { counter = 0, gauge = 1, histogram = 2 }
local probe_out, errbuf, kvbuf
function M.probe(metrics, kind, name, labels)
  if not probe_out then
    probe_out, errbuf = ffi.new("bg_series_probe_t"), ffi.new("char[256]")
    kvbuf = ffi.new("const char *[?]", 2 * MAX_TAGS)
  end
  local n, kv = 0, {}
  for k, v in pairs(labels or {}) do
    if n == MAX_TAGS then return nil, ("more than %d tags"):format(MAX_TAGS) end
    kv[2 * n + 1], kv[2 * n + 2] = k, v
    n = n + 1
  end
  for i = 1, 2 * n do kvbuf[i - 1] = kv[i] end
  local r = metrics.C.bg_series_probe(metrics.registry, KINDS[kind], name, kvbuf, n, probe_out, errbuf, 256)
  if r < 0 then return nil, ffi.string(errbuf) end
  return r == 1 and "exists" or "new", tonumber(probe_out.family_room), tonumber(probe_out.total_room)
end

-- A key for one series of the batch, and one for its family, to count what it adds.
local function keys(it, labels)
  local base = it.name:gsub("[%.%-]", "_")
  if it.type == "counter" then base = base:gsub("_total$", "") end
  local ks = {}
  for k in pairs(labels) do ks[#ks + 1] = k end
  table.sort(ks)
  local parts = { base }
  for i, k in ipairs(ks) do parts[i + 1] = k .. "=" .. labels[k] end
  return table.concat(parts, "\0"), base
end

-- Checks the items that passed on their own against the registry, in order, counting the
-- series the batch itself creates. Adds an error per refused item; returns the items that fit.
local function check_registry(metrics, good, errors)
  local fits, added, fam_added, fam_type, total_added = {}, {}, {}, {}, 0
  for _, g in ipairs(good) do
    local it = g.item
    local skey, fkey = keys(it, g.labels)
    local state, fam_room, total_room = M.probe(metrics, it.type, it.name, g.labels)
    local why
    if not state then
      why = utf8_safe(fam_room) -- the registry's reason
    elseif fam_type[fkey] and fam_type[fkey] ~= it.type then
      why = ("metric %s is a %s earlier in this batch, not a %s"):format(show(it.name), fam_type[fkey], it.type)
    elseif state == "new" and not added[skey] then
      if (fam_added[fkey] or 0) >= fam_room then
        why = ("series limit reached for metric %s"):format(show(it.name))
      elseif total_added >= total_room then
        why = "total series limit reached"
      end
    end
    if why then
      errors[#errors + 1] = { index = g.index, reason = why }
    else
      fam_type[fkey] = it.type
      if state == "new" and not added[skey] then
        added[skey] = true
        fam_added[fkey] = (fam_added[fkey] or 0) + 1
        total_added = total_added + 1
      end
      fits[#fits + 1] = g
    end
  end
  return fits
end

local function by_index(a, b) return a.index < b.index end

-- custom(metrics, body, partial) -> status, table
function M.custom(metrics, body, partial)
  local items, err, at = items_of(body or "")
  if not items then
    local o = { error = err, status = 400, accepted = 0 }
    if at then
      o.errors = json.array { { index = at, reason = err:gsub("^body is not valid JSON: ", "not valid JSON: ") } }
    end
    return 400, o
  end
  local errors, good = json.array(), {}
  for i = 1, #items do
    local labels, why = M.check_item(items[i])
    if labels then good[#good + 1] = { index = i - 1, item = items[i], labels = labels }
    else errors[#errors + 1] = { index = i - 1, reason = why } end
  end
  -- all or nothing: the registry's checks too, before recording (with ?partial=true the
  -- registry refuses what does not fit as it comes, and counts those drops)
  if #errors == 0 and not partial then good = check_registry(metrics, good, errors) end
  if #errors > 0 and not partial then
    table.sort(errors, by_index)
    return 400, { error = ("%d of %d metrics are invalid: nothing was recorded"):format(#errors, #items),
      status = 400, accepted = 0, errors = errors }
  end
  local accepted, failed = 0, 0
  for _, g in ipairs(good) do
    local it = g.item
    local ok, why = metrics[types[it.type]](it.name, it.value, g.labels)
    if ok then accepted = accepted + 1
    else
      failed = failed + 1
      errors[#errors + 1] = { index = g.index, reason = utf8_safe(tostring(why)) }
    end
  end
  table.sort(errors, by_index)
  if accepted == 0 then
    return 400, { error = "no metric was valid: nothing was recorded", status = 400, accepted = 0, errors = errors }
  end
  if failed > 0 and not partial then -- checked above, so not expected: say exactly what happened
    return 400, { error = ("%d of %d metrics were recorded; the items listed were not"):format(accepted, #items),
      status = 400, accepted = accepted, errors = errors }
  end
  return 200, { status = #errors > 0 and "partial" or "ok", accepted = accepted, errors = errors }
end

return M
