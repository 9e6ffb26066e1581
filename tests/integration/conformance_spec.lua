-- Every plugin in the repository (plugins/ and examples/plugins/) is documented and checked
-- the same way (Telegraf's habit, docs/plugins.md "Documenting a plugin"): it loads in the
-- sandbox of the real agent; each option has a type, a description, and a default unless it is
-- required or marked optional; it has a page docs/plugins/<name>.md whose options table matches
-- the file and whose sample configuration, with an instance given only the required options,
-- the agent's `beagle check` accepts (validation only: nothing runs, nothing is sent). The same
-- steps run on plugins made wrong on purpose, so that the test is seen to fail when it should.
local S = require "support"

local TYPES = { string = true, secret = true, number = true, integer = true, boolean = true,
  duration = true, table = true, list = true }
local KINDS = { checks = "check", channels = "channel", backends = "backend" }

-- the plugin files below root: paths relative to it, sorted
local function plugin_files(root)
  local out = S.sh(("cd %q && find plugins examples/plugins -name '*.lua' -type f | LC_ALL=C sort"):format(root))
  local files = {}
  for line in out:gmatch("[^\n]+") do files[#files + 1] = line end
  return files
end

-- The table a plugin file hands to its constructor, as written (before the library normalises
-- it): loaded in plain LuaJIT with the public library, the constructors only recording.
-- Returns def, kind or nil, err.
local function declaration(path)
  local chunk, err = loadfile(path)
  if not chunk then return nil, err end
  local real = require "beagle"
  local got
  local function record(kind) return function(def) got = { kind = kind, def = def } return def end end
  local beagle = setmetatable({ check = record("check"), channel = record("channel"),
    backend = record("backend") }, { __index = real })
  setfenv(chunk, setmetatable({ beagle = beagle }, { __index = _G }))
  local ok, perr = pcall(chunk)
  if not ok then return nil, tostring(perr) end
  if not got or type(got.def) ~= "table" then return nil, "does not return beagle.check/channel/backend { ... }" end
  return got.def, got.kind
end

-- An option's declaration ("string" or { "string", default = ..., optional = true,
-- description = "..." }) -> { type, default, optional, required, description }
local function option(spec)
  if type(spec) == "string" then spec = { spec } end
  if type(spec) ~= "table" then return {} end
  local o = { type = spec[1] or spec.type, default = spec.default, optional = spec.optional == true,
    description = spec.description }
  o.required = o.default == nil and not o.optional
  return o
end

-- A value as written in a config file.
local function literal(v)
  local t = type(v)
  if t == "string" then return '"' .. v:gsub('[\\"]', "\\%0"):gsub("\n", "\\n") .. '"' end
  if t ~= "table" then return tostring(v) end
  local keys, parts = {}, {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do
    parts[#parts + 1] = type(k) == "number" and literal(v[k]) or ("%s = %s"):format(k, literal(v[k]))
  end
  return #parts == 0 and "{}" or "{ " .. table.concat(parts, ", ") .. " }"
end

-- A value of each type that validates, for the required options of the defaults instance.
local PLACEHOLDER = { string = "x", secret = "x", number = 1, integer = 1, boolean = true,
  duration = "1s", table = {}, list = { "x" } }

-- A page's parts: title, intro (its first paragraph), sections (heading -> text).
local function parse_page(text)
  local page = { title = text:match("^# ([^\n]+)\n"), sections = {}, order = {} }
  page.intro = text:match("^# [^\n]*\n+(.-)\n\n") or text:match("^# [^\n]*\n+(.-)\n## ")
  local current
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local h = line:match("^## (.-)%s*$")
    if h then
      current = h
      page.sections[h] = page.sections[h] or {}
      page.order[#page.order + 1] = h
    elseif current then
      local s = page.sections[current]
      s[#s + 1] = line
    end
  end
  for h, lines in pairs(page.sections) do page.sections[h] = table.concat(lines, "\n") end
  return page
end

-- The rows of the options table: name -> { type, default, description }
local function option_rows(section)
  local rows, header = {}, false
  for line in section:gmatch("[^\n]+") do
    if line:match("^|%s*name%s*|%s*type%s*|%s*default%s*|%s*description%s*|%s*$") then header = true end
    local name, t, default, desc = line:match("^|%s*`([^`]+)`%s*|%s*([^|]-)%s*|%s*([^|]-)%s*|%s*(.-)%s*|%s*$")
    if name then rows[name] = { type = t, default = default, description = desc } end
  end
  return rows, header
end

-- The problems of one plugin file (an empty list when it conforms), and what the agent needs
-- to validate it: { name, kind, sample, defaults = config text of the defaults instance,
-- validates = the plugin has its own validate(opt) }.
local function conformance(root, rel, docs)
  local problems, info = {}, {}
  local function bad(fmt, ...) problems[#problems + 1] = rel .. ": " .. fmt:format(...) end
  local def, kind = declaration(root .. "/" .. rel)
  if not def then bad("does not load in plain LuaJIT: %s", tostring(kind)) return problems, info end
  local name = def.name
  info.name, info.kind = name, kind
  info.validates = type(def.validate) == "function"
  if rel:match("([^/]+)%.lua$") ~= name then bad("name %q does not match the file name", tostring(name)) end
  local dir = rel:match("([^/]+)/[^/]+$")
  if KINDS[dir] and KINDS[dir] ~= kind then bad("a %s in %s/", kind, dir) end
  if type(def.description) ~= "string" or def.description:match("^%s*$") then bad("has no description") end

  local options = {}
  if def.options ~= nil and type(def.options) ~= "table" then bad("options is not a table") end
  for oname, spec in pairs(type(def.options) == "table" and def.options or {}) do
    local o = option(spec)
    options[oname] = o
    if not TYPES[o.type] then bad("option %q has no valid type (%s)", oname, tostring(o.type)) end
    if type(o.description) ~= "string" or o.description:match("^%s*$") then
      bad("option %q has no description", oname)
    end
  end

  local page_path = ("%s/%s.md"):format(docs, tostring(name))
  local text = S.read(page_path)
  if not text then bad("has no page %s", page_path) return problems, info end
  local page = parse_page(text)
  if page.title ~= name then bad("%s: the title is not \"# %s\"", page_path, tostring(name)) end
  if not page.intro or #page.intro < 40 or page.intro:match("^[#|`]") then
    bad("%s: no description paragraph under the title", page_path)
  end
  local opt_section = page.sections["Options"]
  if not opt_section then
    bad("%s: no \"## Options\" section", page_path)
  else
    local rows, header = option_rows(opt_section)
    if next(options) == nil then
      if next(rows) then bad("%s: lists options the plugin does not have", page_path) end
      if not opt_section:lower():find("no options", 1, true) then
        bad("%s: a plugin without options must say \"no options\"", page_path)
      end
    elseif not header then
      bad("%s: no options table | name | type | default | description |", page_path)
    end
    for oname, o in pairs(options) do
      local r = rows[oname]
      if not r then
        bad("%s: option %q is not in the options table", page_path, oname)
      else
        if r.type ~= o.type then bad("%s: option %q is a %s, the page says %s", page_path, oname, tostring(o.type), r.type) end
        if r.description == "" then bad("%s: option %q has no description in the table", page_path, oname) end
        if o.default ~= nil then
          local want = literal(o.default)
          if r.default:match("^`([^`]*)`") ~= want then
            bad("%s: option %q defaults to `%s`, the page says %s", page_path, oname, want, r.default)
          end
        elseif o.required and r.default ~= "required" then
          bad("%s: option %q is required, the page says %s", page_path, oname, r.default)
        elseif o.optional and not r.default:match("^optional") then
          bad("%s: option %q is optional (no default), the page says %s", page_path, oname, r.default)
        end
      end
    end
    for oname in pairs(rows) do
      if not options[oname] then bad("%s: lists option %q, which the plugin does not have", page_path, oname) end
    end
  end
  local sample_section = page.sections["Sample configuration"] or ""
  info.sample = sample_section:match("```lua\n(.-)\n```")
  if not info.sample then
    bad("%s: no ```lua block under \"## Sample configuration\"", page_path)
  elseif not info.sample:find(('plugin%%s*=%%s*"%s"'):format(name:gsub("%p", "%%%0"))) then
    bad("%s: the sample configuration does not declare plugin = %q", page_path, name)
  end
  local reports = page.sections["What it reports"] or page.sections["What it sends"]
  if not reports or reports:match("^%s*$") then
    bad("%s: no \"## What it reports\" (or \"## What it sends\") section", page_path)
  end

  local given = {}
  for _, oname in ipairs((function()
    local ks = {}
    for k in pairs(options) do ks[#ks + 1] = k end
    table.sort(ks)
    return ks
  end)()) do
    local o = options[oname]
    if o.required and PLACEHOLDER[o.type] ~= nil then
      given[#given + 1] = ("%s = %s"):format(oname, literal(PLACEHOLDER[o.type]))
    end
  end
  info.defaults = ('%s "conformance_defaults_%s" { plugin = %q%s }'):format(kind, name, name,
    #given > 0 and ", " .. table.concat(given, ", ") or "")
  return problems, info
end

-- The agent's verdict on a config file: `beagle check` loads every plugin and validates every
-- check and channel instance before it runs anything; asked for a check that does not exist,
-- it then stops without running or sending. Variables the config reads with env "X" are set.
local NONE = "__conformance_none__"
local function agent_accepts(config, plugin_dirs)
  local dir = S.tmpdir()
  S.write(dir .. "/beagle.lua", config)
  local env = ""
  for var in config:gmatch('env%s*%(?%s*["\']([%w_]+)["\']') do env = env .. ("%s=conformance-value "):format(var) end
  local args = ""
  for _, d in ipairs(plugin_dirs) do args = args .. (" --plugins %q"):format(d) end
  local out, code = S.sh(("cd %q && %s%q check -c beagle.lua%s %s"):format(dir, env, S.bin, args, NONE))
  local ok = code == 3 and out:find(('no check named "%s"'):format(NONE), 1, true) ~= nil
  return ok, out
end

local function find_plugin(list, rel)
  for _, p in ipairs(list or {}) do
    if type(p.file) == "string" and p.file:sub(-#rel - 1) == "/" .. rel then return p end
  end
end

-- Plugins made wrong on purpose, each with the problem the test must find. They live in a
-- plugin directory of their own (FIX/plugins/checks) with their pages in FIX/docs.
local FIXTURES = {
  good = {
    plugin = [[return beagle.check { name = "good", description = "a conforming plugin",
  options = { url = { "string", description = "where" }, n = { "integer", default = 3, description = "how many" },
    label = { "string", optional = true, description = "a label" } },
  run = function(_, ctx) return ctx.healthy("ok") end }
]],
    page = [[# good

The `good` check plugin is made to conform, for the conformance test that checks itself.

## Options

| name | type | default | description |
|---|---|---|---|
| `url` | string | required | where |
| `n` | integer | `3` | how many |
| `label` | string | optional | a label |

## Sample configuration

```lua
check "g" { plugin = "good", url = env "GOOD_URL", n = 5 }
```

## What it reports

healthy, always.
]],
  },
  no_page = {
    plugin = [[return beagle.check { name = "no_page", description = "has no page",
  options = { url = { "string", description = "where" } }, run = function(_, ctx) return ctx.healthy() end }
]],
    expect = { "has no page" },
  },
  no_description = {
    plugin = [[return beagle.check { name = "no_description",
  options = { url = "string", n = { "integer", default = 1 } }, run = function(_, ctx) return ctx.healthy() end }
]],
    page = [[# no_description

The `no_description` check plugin lacks descriptions in its file, and only there.

## Options

| name | type | default | description |
|---|---|---|---|
| `url` | string | required | where |
| `n` | integer | `1` | how many |

## Sample configuration

```lua
check "nd" { plugin = "no_description", url = "http://127.0.0.1:1/" }
```

## What it reports

healthy, always.
]],
    expect = { "has no description", 'option "url" has no description', 'option "n" has no description' },
  },
  bad_sample = {
    plugin = [[return beagle.check { name = "bad_sample", description = "its sample does not validate",
  options = { port = { "integer", description = "a port" } }, run = function(_, ctx) return ctx.healthy() end }
]],
    page = [[# bad_sample

The `bad_sample` check plugin is documented with a sample configuration the agent rejects.

## Options

| name | type | default | description |
|---|---|---|---|
| `port` | integer | required | a port |

## Sample configuration

```lua
check "bs" { plugin = "bad_sample", port = "eighty", colour = "blue" }
```

## What it reports

healthy, always.
]],
    invalid_sample = true,
  },
  wrong_table = {
    plugin = [[return beagle.check { name = "wrong_table", description = "its page does not match the file",
  options = { slow = { "duration", default = "1s", description = "slow" }, host = { "string", description = "host" },
    extra = { "boolean", default = false, description = "extra" } },
  run = function(_, ctx) return ctx.healthy() end }
]],
    page = [[# wrong_table

The `wrong_table` check plugin has a page whose options table disagrees with the file.

## Options

| name | type | default | description |
|---|---|---|---|
| `slow` | duration | `"2s"` | slow |
| `host` | number | `"localhost"` | host |
| `gone` | string | optional | an option the file does not have |

## Sample configuration

```lua
check "wt" { plugin = "wrong_table", host = "h" }
```
]],
    expect = { 'option "slow" defaults to `"1s"`', 'option "host" is a string', 'option "host" is required',
      'option "extra" is not in the options table', 'lists option "gone"', 'no "## What it reports"' },
  },
  escapes = {
    -- the sandbox has no io: this file cannot load in the agent
    plugin = [[local f = io.open("/etc/hostname")
return beagle.check { name = "escapes", description = "reads a file at load time",
  run = function(_, ctx) return ctx.healthy(f and "read" or "not read") end }
]],
    page = [[# escapes

The `escapes` check plugin touches `io` when it loads, which the sandbox does not have.

## Options

The plugin has no options.

## Sample configuration

```lua
check "esc" { plugin = "escapes" }
```

## What it reports

Nothing: it does not load.
]],
    fails_to_load = true,
  },
}

describe("plugin conformance", function()
  local root = S.src
  local files = plugin_files(root)
  local fix, agent, detailed = S.tmpdir(), nil, nil

  setup(function()
    assert(os.execute(("mkdir -p %q %q"):format(fix .. "/plugins/checks", fix .. "/docs")) == 0)
    for name, f in pairs(FIXTURES) do
      S.write(("%s/plugins/checks/%s.lua"):format(fix, name), f.plugin)
      if f.page then S.write(("%s/docs/%s.md"):format(fix, name), f.page) end
    end
    -- one agent loads every plugin of the repository and every fixture in its sandbox
    agent = S.start { config = S.calm_system, plugins = root .. "/examples/plugins",
      args = { "--plugins", fix .. "/plugins" } }
    local _, o, body = agent:get_json("/health/detailed")
    assert(o and o.plugins, "no /health/detailed: " .. tostring(body))
    detailed = o.plugins
  end)

  teardown(function()
    if agent then agent:stop() end
  end)

  it("finds the built-in and the example plugins", function()
    local seen = {}
    for _, f in ipairs(files) do seen[f] = true end
    for _, f in ipairs { "plugins/checks/system.lua", "plugins/checks/http.lua", "plugins/checks/tcp.lua",
      "plugins/channels/webhook.lua", "plugins/channels/slack.lua", "plugins/channels/pagerduty.lua",
      "plugins/channels/alertmanager.lua", "plugins/channels/email.lua", "plugins/channels/log.lua",
      "examples/plugins/checks/file_age.lua", "examples/plugins/channels/custom_webhook.lua" } do
      assert.is_true(seen[f] == true, f .. " was not found")
    end
  end)

  for _, rel in ipairs(files) do
    describe(rel, function()
      it("loads in the agent's sandbox", function()
        local p = find_plugin(detailed, rel)
        assert.is_table(p, rel .. " is not listed in /health/detailed")
        assert.are.equal("loaded", p.state, rel .. ": " .. tostring(p.error))
        assert.is_nil(p.error)
      end)

      it("has typed, described options and a page that matches the file", function()
        local problems = conformance(root, rel, root .. "/docs/plugins")
        assert.are.same({}, problems)
      end)

      it("has a sample configuration, and an instance with its defaults, that the agent accepts", function()
        local problems, info = conformance(root, rel, root .. "/docs/plugins")
        assert.is_string(info.sample, table.concat(problems, "\n"))
        local ok, out = agent_accepts(info.sample .. "\n", { root .. "/examples/plugins" })
        assert.is_true(ok, "beagle check rejected the sample of docs/plugins/" .. info.name .. ".md:\n" .. out)
        ok, out = agent_accepts(info.sample .. "\n" .. info.defaults .. "\n", { root .. "/examples/plugins" })
        -- a plugin's own validate may refuse placeholders ("x" is no absolute path), but only
        -- by naming the option, on the instance's line
        local refused = info.validates and out:find(('\nbeagle: beagle.lua:%d: %s "conformance_defaults_%s": options? ')
          :format(select(2, info.sample:gsub("\n", "")) + 2, info.kind, info.name))
        assert.is_true(ok or refused ~= nil, "beagle check rejected the instance with the defaults of "
          .. info.name .. ":\n" .. out)
      end)
    end)
  end

  it("every page under docs/plugins/ is a plugin's, and docs/plugins.md links to each", function()
    local names = {}
    for _, rel in ipairs(files) do names[rel:match("([^/]+)%.lua$")] = rel end
    local index = S.read(root .. "/docs/plugins.md")
    local channels = S.read(root .. "/docs/channels.md")
    local out = S.sh(("ls %q"):format(root .. "/docs/plugins"))
    for page in out:gmatch("([^\n]+)%.md") do
      assert.is_string(names[page], "docs/plugins/" .. page .. ".md documents no plugin")
    end
    for name, rel in pairs(names) do
      assert.is_truthy(index:find("(plugins/" .. name .. ".md)", 1, true), "docs/plugins.md does not link " .. name)
      if rel:match("/channels/") then
        assert.is_truthy(channels:find("(plugins/" .. name .. ".md)", 1, true), "docs/channels.md does not link " .. name)
      end
    end
  end)

  it("accepts examples/beagle.lua, the example configuration", function()
    local ok, out = agent_accepts(assert(S.read(root .. "/examples/beagle.lua")), { root .. "/examples/plugins" })
    assert.is_true(ok, out)
  end)

  describe("fails on plugins made wrong on purpose", function()
    local function run_fixture(name)
      return conformance(fix, "plugins/checks/" .. name .. ".lua", fix .. "/docs")
    end

    it("passes a conforming one", function()
      local problems, info = run_fixture("good")
      assert.are.same({}, problems)
      local ok, out = agent_accepts(info.sample .. "\n" .. info.defaults .. "\n", { fix .. "/plugins" })
      assert.is_true(ok, out)
      assert.are.equal("loaded", find_plugin(detailed, "plugins/checks/good.lua").state)
    end)

    for name, f in pairs(FIXTURES) do
      if f.expect then
        it("finds what is wrong with " .. name, function()
          local text = table.concat(run_fixture(name), "\n")
          for _, want in ipairs(f.expect) do
            assert.is_truthy(text:find(want, 1, true), ("%q not found in:\n%s"):format(want, text))
          end
        end)
      end
    end

    it("rejects a sample configuration that does not validate", function()
      local problems, info = run_fixture("bad_sample")
      assert.are.same({}, problems)
      local ok, out = agent_accepts(info.sample .. "\n", { fix .. "/plugins" })
      assert.is_false(ok)
      assert.is_truthy(out:find('check "bs"', 1, true), out)
      assert.is_falsy(out:find("no check named", 1, true), out)
      -- the instance with only the required options is fine: the sample alone is at fault
      assert.is_true((agent_accepts(info.defaults .. "\n", { fix .. "/plugins" })))
    end)

    it("rejects a plugin the sandbox cannot load", function()
      local p = find_plugin(detailed, "plugins/checks/escapes.lua")
      assert.is_table(p)
      assert.are.equal("failed", p.state)
      assert.is_truthy(tostring(p.error):find("io", 1, true), tostring(p.error))
      local _, info = run_fixture("escapes")
      assert.is_false((agent_accepts(info.sample .. "\n", { fix .. "/plugins" })))
    end)
  end)
end)
