-- Label matchers of rule files, silences, routes and inhibits: the values' syntax (see
-- dsl.lua's header), the POSIX ERE subset translated exactly to Lua patterns (so the C history's
-- regcomp and Lua agree), globs, and matching label sets. Pure Lua; dsl.lua re-exports match,
-- check_matchers and translate_regex.
local M = {}

local function show(v)
  if type(v) == "string" then return ("%q"):format(v) end
  return tostring(v)
end

---------------------------------------------------------------------------------------------
-- Regex translation (POSIX ERE subset -> Lua patterns)

local MAX_ALTS = 64

local CLASSES = {
  alpha = "%a", digit = "%d", alnum = "%w", upper = "%u", lower = "%l", space = "%s",
  punct = "%p", xdigit = "%x", cntrl = "%c", blank = " \t",
}

local function lit(c)
  if c:match("%p") then return "%" .. c end
  return c
end

local function byte_range(a, b)
  local t = {}
  for x = a:byte(), b:byte() do t[#t + 1] = lit(string.char(x)) end
  return table.concat(t)
end

-- Parses a bracket expression starting after "[" at i; returns the Lua set and the index
-- after "]".
local function bracket(re, i)
  local neg = false
  if re:sub(i, i) == "^" then neg, i = true, i + 1 end
  local items, first = {}, true
  while true do
    local c = re:sub(i, i)
    if c == "" then return nil, "unclosed [" end
    if c == "]" and not first then break end
    first = false
    if c == "[" and re:sub(i + 1, i + 1) == ":" then
      local name, nxt = re:match("^%[:(%a+):%]()", i)
      if not name then return nil, "bad character class (write [[:digit:]])" end
      if name == "graph" then
        items[#items + 1] = byte_range("!", "~")
      elseif name == "print" then
        items[#items + 1] = byte_range(" ", "~")
      elseif CLASSES[name] then
        items[#items + 1] = CLASSES[name]
      else
        return nil, ("unknown character class [:%s:]"):format(name)
      end
      i = nxt
    elseif c == "[" and (re:sub(i + 1, i + 1) == "." or re:sub(i + 1, i + 1) == "=") then
      return nil, "collating elements [. .] and [= =] are not supported"
    else
      local d = re:sub(i + 2, i + 2)
      if re:sub(i + 1, i + 1) == "-" and d ~= "]" and d ~= "" then
        if d < c then return nil, ("invalid range %s-%s"):format(c, d) end
        if c:match("%w") and d:match("%w") then
          items[#items + 1] = c .. "-" .. d
        else
          items[#items + 1] = byte_range(c, d)
        end
        i = i + 3
      else
        items[#items + 1] = lit(c)
        i = i + 1
      end
    end
  end
  return "[" .. (neg and "^" or "") .. table.concat(items) .. "]", i + 1
end

local ESCAPE_HINT = { d = "[0-9]", w = "[[:alnum:]_]", s = "[[:space:]]", D = "[^0-9]",
  W = "[^[:alnum:]_]", S = "[^[:space:]]" }

local function cross(a, b)
  if #a * #b > MAX_ALTS then return nil, ("more than %d alternatives"):format(MAX_ALTS) end
  local r = {}
  for _, x in ipairs(a) do
    for _, y in ipairs(b) do r[#r + 1] = x .. y end
  end
  return r
end

-- Parses alternatives from i until ")" (depth > 0) or the end; returns the list of Lua
-- pattern bodies and the index of the stopping character.
local function alternation(re, i, depth)
  local alts, cur, start = {}, { "" }, true
  while true do
    local c = re:sub(i, i)
    if c == "" or c == ")" then
      if c == ")" and depth == 0 then return nil, "unmatched )" end
      if c == "" and depth > 0 then return nil, "unclosed (" end
      for _, x in ipairs(cur) do alts[#alts + 1] = x end
      if #alts > MAX_ALTS then return nil, ("more than %d alternatives"):format(MAX_ALTS) end
      return alts, i
    elseif c == "|" then
      for _, x in ipairs(cur) do alts[#alts + 1] = x end
      cur, start, i = { "" }, true, i + 1
    elseif c == "^" then
      if not (start and depth == 0) then return nil, "^ is only supported at the start" end
      i = i + 1
    elseif c == "$" then
      local n = re:sub(i + 1, i + 1)
      if depth > 0 or (n ~= "" and n ~= "|") then return nil, "$ is only supported at the end" end
      i = i + 1
    elseif c == "(" then
      local inner, j = alternation(re, i + 1, depth + 1)
      if not inner then return nil, j end
      i = j + 1
      local q = re:sub(i, i)
      if q == "*" or q == "+" or q == "?" or q == "{" then
        return nil, "a quantifier after a group, as in (ab)" .. q .. ", is not supported"
      end
      local err
      cur, err = cross(cur, inner)
      if not cur then return nil, err end
      start = false
    elseif c == "*" or c == "+" or c == "?" or c == "{" then
      return nil, ("nothing to repeat before %s"):format(c)
    else
      local atom
      if c == "." then
        atom, i = ".", i + 1
      elseif c == "[" then
        local j
        atom, j = bracket(re, i + 1)
        if not atom then return nil, j end
        i = j
      elseif c == "\\" then
        local e = re:sub(i + 1, i + 1)
        if e == "" then return nil, "trailing \\" end
        if e:match("%w") then
          local hint = ESCAPE_HINT[e] and (" (write " .. ESCAPE_HINT[e] .. ")") or ""
          return nil, ("\\%s is not POSIX%s"):format(e, hint)
        end
        atom, i = lit(e), i + 2
      else
        atom, i = lit(c), i + 1
      end
      local q, piece = re:sub(i, i), atom
      if q == "*" or q == "+" or q == "?" then
        piece, i = atom .. q, i + 1
      elseif q == "{" then
        local lo, comma, hi, nxt = re:match("^{(%d+)(,?)(%d*)}()", i)
        if not lo then return nil, "{ must start a bound such as {2} or {2,5} (write \\{ for a brace)" end
        lo = tonumber(lo)
        hi = comma == "" and lo or (hi == "" and -1 or tonumber(hi))
        if lo > 255 or hi > 255 or (hi >= 0 and hi < lo) then return nil, "bad bound {" .. re:sub(i + 1, nxt - 2) .. "}" end
        piece = atom:rep(lo) .. (hi < 0 and atom .. "*" or (atom .. "?"):rep(hi - lo))
        i = nxt
      end
      local q2 = re:sub(i, i)
      if piece ~= atom and (q2 == "*" or q2 == "+" or q2 == "?" or q2 == "{") then
        return nil, "a repeated quantifier is not supported"
      end
      for k, x in ipairs(cur) do cur[k] = x .. piece end
      start = false
    end
  end
end

-- translate_regex(re) -> list of anchored Lua patterns (a value matches if any does) | nil, err
function M.translate_regex(re)
  if type(re) ~= "string" then return nil, "regex must be a string" end
  local alts, err = alternation(re, 1, 0)
  if not alts then return nil, err end
  for k, a in ipairs(alts) do alts[k] = "^" .. a .. "$" end
  return alts
end

local function glob_pattern(g)
  local parts = {}
  for piece in (g .. "*"):gmatch("([^*]*)%*") do parts[#parts + 1] = (piece:gsub("%p", "%%%0")) end
  return "^" .. table.concat(parts, ".*") .. "$"
end

local function any_match(pats, v)
  for _, p in ipairs(pats) do
    if v:find(p) then return true end
  end
  return false
end

-- compile_matcher(spec, glob) -> function(value) -> bool | nil, err
local function compile_matcher(spec, glob)
  if type(spec) == "number" or type(spec) == "boolean" then spec = tostring(spec) end
  if type(spec) ~= "string" then return nil, ("matcher value must be a string, got %s"):format(type(spec)) end
  local neg = spec:sub(1, 1) == "!"
  if neg then spec = spec:sub(2) end
  local test
  if spec:sub(1, 1) == "~" then
    local pats, err = M.translate_regex(spec:sub(2))
    if not pats then return nil, ("regex %q: %s"):format(spec:sub(2), err) end
    test = function(v) return any_match(pats, v) end
  elseif spec:sub(1, 1) == "=" then
    local want = spec:sub(2)
    test = function(v) return v == want end
  elseif spec:find("*", 1, true) then
    if not glob then
      return nil, ("%q: * is literal here; write \"~%s\" for a regex or \"=%s\" for the literal"):format(
        spec, (spec:gsub("%*", ".*")), spec)
    end
    local p = glob_pattern(spec)
    test = function(v) return v:find(p) ~= nil end
  else
    test = function(v) return v == spec end
  end
  if neg then return function(v) return not test(v) end end
  return test
end

local mcache, mcached = {}, 0

local function cached_matcher(spec)
  local f = mcache[spec]
  if f then return f end
  local err
  f, err = compile_matcher(spec, true)
  if not f then return nil, err end
  if mcached >= 4096 then mcache, mcached = {}, 0 end
  mcache[spec], mcached = f, mcached + 1
  return f
end

-- match(matchers, labels) -> bool [, err]: every matcher holds (globs allowed). Never raises;
-- an invalid matcher matches nothing and returns false, err.
function M.match(matchers, labels)
  if matchers == nil then return true end
  labels = labels or {}
  for k, spec in pairs(matchers) do
    local key = type(spec) == "number" and spec or tostring(spec)
    local f, err = cached_matcher(key)
    if not f then return false, err end
    local v = labels[k]
    if v == nil then v = "" end
    if not f(tostring(v)) then return false end
  end
  return true
end

local function label_name_ok(k) return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil end

-- check_matchers(m, glob) -> normalised copy | nil, err (the first problem).
local function check_matchers(m, glob, what)
  if type(m) ~= "table" then return nil, ("%s must be a table of label = value, got %s"):format(what, type(m)) end
  local out = {}
  for k, v in pairs(m) do
    if not label_name_ok(k) then return nil, ("%s: %s is not a label name"):format(what, show(k)) end
    if type(v) == "number" or type(v) == "boolean" then v = tostring(v) end
    local ok, err = compile_matcher(v, glob)
    if not ok then return nil, ("%s.%s: %s"):format(what, k, err) end
    out[k] = v
  end
  return out
end

function M.check_matchers(m, glob) return check_matchers(m, glob ~= false, "matchers") end

M.label_name_ok = label_name_ok
M.check_matchers_kind = check_matchers

return M
