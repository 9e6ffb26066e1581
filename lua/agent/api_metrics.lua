-- The metrics routes of the guide's API that take input: POST /metrics/custom.
local json = require "beagle.json"

local M = {}

local types = { counter = "increment_counter", gauge = "set_gauge", histogram = "record_histogram" }

local function check_name(name)
  if type(name) ~= "string" or name == "" then return "name must be a non-empty string" end
  local mapped = name:gsub("[%.%-]", "_")
  if not mapped:match("^[%a_:][%w_:]*$") then
    return ("name %q cannot be mapped to a Prometheus name (letters, digits, '_', ':', '.', '-'; not starting with a digit)")
      :format(name)
  end
end

local function check_tags(tags)
  if tags == nil or tags == json.null then return nil end
  if type(tags) ~= "table" or #tags > 0 then return "tags must be an object of name: value" end
  for k, v in pairs(tags) do
    local key = tostring(k):gsub("[%.%-]", "_")
    if not key:match("^[%a_][%w_]*$") or key:match("^__") then
      return ("tag %q is not a valid label name"):format(tostring(k))
    end
    local tv = type(v)
    if tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
      return ("tag %q must be a string, number or boolean"):format(tostring(k))
    end
  end
end

-- Checks one item's shape. Returns nil or a reason.
function M.check_item(it)
  if type(it) ~= "table" or #it > 0 then return "each metric must be an object {name, type, value, tags}" end
  local why = check_name(it.name)
  if why then return why end
  if not types[it.type] then return ("type must be counter, gauge or histogram, not %s"):format(json.encode(it.type)) end
  local v = it.value
  if type(v) ~= "number" or v ~= v or v == math.huge or v == -math.huge then
    return "value must be a finite number"
  end
  if it.type == "counter" and v < 0 then return "a counter cannot decrease (value < 0)" end
  return check_tags(it.tags)
end

local function normalize_tags(tags)
  if tags == nil or tags == json.null then return nil end
  local t = {}
  for k, v in pairs(tags) do t[tostring(k):gsub("[%.%-]", "_")] = tostring(v) end
  return t
end

-- handle(metrics, body, partial) -> status, table
function M.custom(metrics, body, partial)
  local doc, err = json.decode(body)
  if doc == nil then
    return 400, { error = "body is not valid JSON: " .. tostring(err), status = 400 }
  end
  local items = doc
  if type(doc) ~= "table" then
    return 400, { error = "body must be a metric object or an array of them", status = 400 }
  end
  if doc.name ~= nil or next(doc) == nil then items = { doc } end
  local errors, good = json.array(), {}
  for i, it in ipairs(items) do
    local why = M.check_item(it)
    if why then errors[#errors + 1] = { index = i - 1, reason = why }
    else good[#good + 1] = { index = i - 1, item = it } end
  end
  if #errors > 0 and not partial then
    return 400, { error = "invalid metrics: nothing was recorded", status = 400, errors = errors }
  end
  local accepted = 0
  for _, g in ipairs(good) do
    local it = g.item
    local ok, why = metrics[types[it.type]](it.name, it.value, normalize_tags(it.tags))
    if ok then accepted = accepted + 1
    else errors[#errors + 1] = { index = g.index, reason = tostring(why) } end
  end
  table.sort(errors, function(a, b) return a.index < b.index end)
  if #errors > 0 and (accepted == 0 or not partial) then
    -- only the registry can tell a type clash or a full series budget; those items are the
    -- ones listed, and the rest were recorded
    return 400, { error = accepted == 0 and "invalid metrics: nothing was recorded"
      or "some metrics were rejected by the registry", status = 400, accepted = accepted, errors = errors }
  end
  return 200, { status = #errors > 0 and "partial" or "ok", accepted = accepted, errors = errors }
end

return M
