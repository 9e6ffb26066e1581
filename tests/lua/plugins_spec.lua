-- Conformance: every plugin in the repository follows the conventions (Telegraf-style): it
-- returns one plugin table with a name that matches its file, a description, and options
-- that each have a type and a description; its options validate with their defaults.
local beagle = require "beagle"

local function plugin_files()
  local p = io.popen("ls plugins/*/*.lua examples/plugins/*/*.lua 2>/dev/null")
  local files = {}
  for line in p:lines() do files[#files + 1] = line end
  p:close()
  return files
end

describe("every repository plugin", function()
  local files = plugin_files()
  it("exists", function() assert.is_true(#files >= 3) end)
  for _, file in ipairs(files) do
    it(file .. " follows the plugin conventions", function()
      local chunk = assert(loadfile(file))
      setfenv(chunk, setmetatable({ beagle = beagle }, { __index = _G }))
      local p = chunk()
      local kind = beagle.is_plugin(p)
      assert.is_truthy(kind, "does not return a plugin")
      local dir = file:match("plugins/(%w+)/")
      assert.are.equal(dir, kind .. "s")
      assert.are.equal(file:match("([^/]+)%.lua$"), p.name)
      assert.is_string(p.description)
      for name, o in pairs(p.options) do
        assert.is_string(o.description, name .. " has no description")
      end
      if kind == "check" then
        -- required options get a placeholder of their type; the rest use their defaults
        local given = {}
        local placeholder = { string = "x", integer = 1, number = 1, boolean = true, duration = "1s", list = { "x" } }
        for name, o in pairs(p.options) do
          if o.required then given[name] = placeholder[o.type] end
        end
        assert.is_truthy(beagle.validate_options(p.options, given))
      end
    end)
  end
end)
