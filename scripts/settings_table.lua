-- Prints the settings reference table of docs/configuration.md from lua/agent/settings.lua:
--   LUA_PATH="lua/?.lua;;" luajit scripts/settings_table.lua
local s = require "agent.settings"
local util = require "agent.util"
for _, n in ipairs(util.sorted_keys(s.schema)) do
  local d = s.schema[n]
  local def = d.default
  if d.kind == "duration" then def = util.format_duration(def) end
  if type(def) == "string" then def = ("%q"):format(def) end
  local kind = d.kind == "enum" and table.concat(d.values, " \\| ") or d.kind
  print(("| `%s` | `MONITORING_%s` | %s | `%s` | %s |"):format(n, n:upper(), kind, tostring(def), d.help))
end
