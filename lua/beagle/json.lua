-- JSON for the agent's responses: cjson decodes; encoding is ours so that an empty list is
-- "[]" (mark it with json.array(t)), keys come out sorted (stable, diff-friendly output),
-- and NaN/Inf become null instead of an error.
local cjson = require "cjson"

local M = {}

local array_mt = { __json_array = true }
function M.array(t) return setmetatable(t or {}, array_mt) end

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n",
  ["\r"] = "\\r", ["\t"] = "\\t" }
local function esc(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or ("\\u%04x"):format(c:byte())
  end) .. '"'
end

local encode
local function encode_into(v, out, depth)
  local t = type(v)
  if t == "string" then out[#out + 1] = esc(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then out[#out + 1] = "null"
    elseif v % 1 == 0 and v > -1e15 and v < 1e15 then out[#out + 1] = ("%d"):format(v)
    else out[#out + 1] = ("%.17g"):format(v):gsub(",", ".") end
  elseif t == "boolean" then out[#out + 1] = v and "true" or "false"
  elseif t == "table" then
    if depth > 64 then error("json: nesting too deep") end
    local mt = getmetatable(v)
    if (mt and mt.__json_array) or #v > 0 or (next(v) == nil and mt == array_mt) then
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode_into(v[i], out, depth + 1)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do keys[#keys + 1] = tostring(k) end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = esc(k)
        out[#out + 1] = ":"
        local val = v[k]
        if val == nil then val = v[tonumber(k)] end
        encode_into(val, out, depth + 1)
      end
      out[#out + 1] = "}"
    end
  elseif v == nil or v == cjson.null then out[#out + 1] = "null"
  else out[#out + 1] = esc(tostring(v)) end
end

function encode(v)
  local out = {}
  encode_into(v, out, 0)
  return table.concat(out)
end
M.encode = encode

-- One JSON codec: where the C encoder (core/base/jsonenc.c, the same bytes) is at hand, encode is
-- it, raising as the Lua one does. The agent's state has it as agent.core.json_encode; a plugin's
-- state gets it from the sandbox (with_encoder). The Lua encoder above is what runs in a plain
-- luajit, and the reference tests/c/test_jsonenc.c holds the C encoder to.
function M.with_encoder(c_encode)
  local m = {}
  for k, v in pairs(M) do m[k] = v end
  m.encode = function(v)
    local s, err = c_encode(v)
    if s == nil then error(err, 2) end
    return s
  end
  m.with_encoder = nil
  return m
end
do
  local ok, core = pcall(require, "agent.core")
  if ok and type(core) == "table" and core.json_encode then
    M.encode = M.with_encoder(core.json_encode).encode
  end
end

-- decode(s) -> value | nil, err
function M.decode(s)
  local ok, v = pcall(cjson.decode, s)
  if not ok then return nil, (tostring(v):gsub("^.-: ", "")) end
  return v
end

M.null = cjson.null
return M
