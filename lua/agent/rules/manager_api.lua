-- The write side of the /alerts API, methods of agent.rules.manager: rules created, replaced
-- and deleted over HTTP (kept in the state store and in a generated rule file that loads like
-- any other), silences created and deleted over HTTP, and POST /alerts/test.
local core = require "agent.core"
local util = require "agent.util"
local json = require "beagle.json"

local M = {}

-- Serialises a declarative rule (no functions) as a Lua literal, for the generated file that
-- holds the rules created over HTTP.
local function literal(v, depth)
  depth = depth or 0
  if depth > 16 then error("rule is nested too deeply") end
  local t = type(v)
  if t == "string" then return ("%q"):format(v) end
  if t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then error("numbers must be finite") end
    return ("%.17g"):format(v)
  end
  if t == "boolean" then return tostring(v) end
  if t ~= "table" then error(("%s values are not allowed in a rule"):format(t)) end
  local parts = {}
  for _, k in ipairs(util.sorted_keys(v)) do
    local key = type(k) == "number" and ("[%d]"):format(k) or ("[%q]"):format(tostring(k))
    parts[#parts + 1] = key .. " = " .. literal(v[k], depth + 1)
  end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

function M:write_api_file()
  if not self.store then return nil, "no state store" end
  local rows, err = self.store:api_rules()
  if not rows then return nil, err end
  local lines = { "-- rules created over POST /alerts/rules; generated, do not edit" }
  for _, r in ipairs(rows) do
    local spec = r.rule
    spec.name = nil
    lines[#lines + 1] = ("alert %q %s"):format(r.name, literal(spec))
  end
  local path = self.data_dir .. "/api_rules.lua"
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
  assert(os.rename(tmp, path))
  self.api_file = path
  return true
end

-- Names travel in URL paths and file names: a rule name is at most this many bytes.
M.MAX_NAME = 256

local function problem_texts(problems)
  local out = json.array()
  for _, p in ipairs(problems) do
    out[#out + 1] = p.line and ("%s:%d: %s"):format(p.file, p.line, p.message) or ("%s: %s"):format(p.file, p.message)
  end
  return out
end

-- Writes (rule) or deletes (nil) the API rule `name` and reloads the API file alone; when the
-- rules would not load, the store goes back to what it held. Returns nil, or status, body.
function M:api_write(name, rule)
  local prev = self.store:get_api_rule(name)
  local ok, err
  if rule then ok, err = self.store:put_api_rule(name, rule)
  else ok, err = self.store:delete_api_rule(name) end
  if not ok then return 500, { error = tostring(err) } end
  local function undo()
    if prev then self.store:put_api_rule(name, prev.rule) else self.store:delete_api_rule(name) end
    pcall(self.write_api_file, self)
  end
  ok, err = pcall(self.write_api_file, self)
  if not ok then
    undo()
    return 500, { error = tostring(err) }
  end
  local problems = self:scan(self.api_file)
  if #problems > 0 then
    undo()
    self:scan(self.api_file)
    return 400, { error = "invalid rule", problems = problem_texts(problems) }
  end
  return nil
end

-- The rule of a POST or PUT body: item (normalised), the spec to store; or status, body.
function M:api_rule_spec(spec, name)
  if not self.store then return nil, 503, { error = "alert state is not kept (no store)" } end
  if type(spec) ~= "table" or spec[1] ~= nil then return nil, 400, { error = "body must be a JSON object" } end
  if name then
    if spec.name == nil or spec.name == json.null then spec.name = name end
    if spec.name ~= name then
      return nil, 400, { error = ("the body names rule %q, the path %q"):format(tostring(spec.name), name) }
    end
  end
  if type(spec.name) == "string" and #spec.name > M.MAX_NAME then
    return nil, 400, { error = ("name is %d bytes long: a rule name is at most %d"):format(#spec.name, M.MAX_NAME) }
  end
  if spec.expr ~= nil then return nil, 400, { error = "expr rules exist only in rule files: no code is accepted over HTTP" } end
  local dsl = require "agent.rules.dsl"
  local item, problems = dsl.normalize(spec.kind == "anomaly" and "anomaly" or "alert", spec, { file = "api" })
  if not item then return nil, 400, { error = "invalid rule", problems = json.array(problems) } end
  local copy = {}
  for k, v in pairs(spec) do if v ~= json.null then copy[k] = v end end
  return item, copy
end

-- POST /alerts/rules: creates a rule; a name that exists is a conflict (PUT replaces).
function M:api_put_rule(spec)
  local item, copy, body = self:api_rule_spec(spec)
  if not item then return copy, body end
  local owner = self.owner and self.owner[item.name]
  if owner or self.store:get_api_rule(item.name) then
    local where = owner and owner ~= self.api_file and (" in " .. owner) or " over the API"
    return 409, { error = ("rule %q already exists%s: PUT /alerts/rules/{name} replaces an API rule")
      :format(item.name, where) }
  end
  local st, b = self:api_write(item.name, copy)
  if st then return st, b end
  return 201, { status = "created", name = item.name }
end

-- PUT /alerts/rules/{name}: creates or replaces an API rule (a rule file's rule is its file's).
function M:api_replace_rule(name, spec)
  local item, copy, body = self:api_rule_spec(spec, name)
  if not item then return copy, body end
  local owner = self.owner and self.owner[name]
  if owner and owner ~= self.api_file then
    return 409, { error = ("rule %q is defined in %s: edit that file"):format(name, owner) }
  end
  local existed = self.store:get_api_rule(name) ~= nil
  local st, b = self:api_write(name, copy)
  if st then return st, b end
  return existed and 200 or 201, { status = existed and "replaced" or "created", name = name }
end

-- DELETE /alerts/rules/{name}
function M:api_delete_rule(name)
  local owner = self.owner and self.owner[name]
  if owner and owner ~= self.api_file then
    return 409, { error = ("rule %q is defined in %s: edit that file"):format(name, owner) }
  end
  if not self.store or not self.store:get_api_rule(name) then return 404, { error = ("no rule named %q"):format(name) } end
  local st, b = self:api_write(name, nil)
  if st then return st, b end
  return 200, { status = "deleted", name = name }
end

-- POST /alerts/test/{name}: evaluates now and sends a test notification for what holds now:
-- history takes a sample first, so a value written a moment ago is what the rule sees.
function M:api_test_rule(name)
  local path = self.owner and self.owner[name]
  local f = path and self.files[path]
  if not f or not f.set then return 404, { error = ("no rule named %q"):format(name) } end
  local script, serr = self:state_of(f)
  if not script then return 422, { error = "evaluation failed: " .. tostring(serr) } end
  if self.sample_now then self.sample_now() end
  local res, err = script:call("__eval_rule", { name = name })
  if not res then return 422, { error = "evaluation failed: " .. tostring(err) } end
  local notes, terr = self.engine:test(name, res.samples or {})
  if not notes then return 422, { error = tostring(terr) } end
  for _, n in ipairs(notes) do n.test = true self:deliver(n) end
  local samples = json.array()
  for _, s in ipairs(res.samples or {}) do samples[#samples + 1] = s end
  return 200, { rule = name, samples = samples, notifications = #notes }
end

function M:silences_json()
  local now = core.wall()
  local out = json.array()
  for _, s in ipairs(self.engine.silences or {}) do
    if (s.ends or math.huge) > now then
      out[#out + 1] = { id = s.id, matchers = s.matchers, starts = s.starts and util.iso8601(s.starts),
        ends = s.ends and util.iso8601(s.ends), comment = s.comment, created_by = s.created_by,
        source = s.file and s.file ~= "api" and "file" or "api", file = s.file ~= "api" and s.file or nil }
    end
  end
  return out
end

-- POST /alerts/silences
function M:api_add_silence(spec)
  if not self.store then return 503, { error = "alert state is not kept (no store)" } end
  local dsl = require "agent.rules.dsl"
  local item, problems = dsl.normalize("silence", spec, { file = "api" })
  if not item then return 400, { error = "invalid silence", problems = json.array(problems) } end
  item.source = "api"
  local id, err = self.store:add_silence(item)
  if not id then return 500, { error = tostring(err) } end
  item.id = id
  self.api_silences[id] = item
  self:apply_silences()
  return 201, { status = "created", id = id }
end

-- DELETE /alerts/silences/{id}
function M:api_delete_silence(id)
  if not self.api_silences[id] then
    return 404, { error = ("no silence %q created over the API (file silences live in their files)"):format(id) }
  end
  if self.store then self.store:delete_silence(id) end
  self.api_silences[id] = nil
  self:apply_silences()
  return 200, { status = "deleted", id = id }
end

function M:apply_silences()
  local _, _, _, silences = self:collect()
  self.engine:set_silences(silences)
  self.engine.silences = silences
end

return M
