-- What the unit specs of the check plugins share: a plugin file loaded with the public beagle
-- library (its constructor normalises the options, as in the agent), and the options its
-- validate sees for an instance (the agent's own validate_options: types checked, defaults in).
local beagle = require "beagle"

local F = {}

local src = os.getenv("BEAGLE_SOURCE_DIR") or "."

-- load_check(name) -> the table plugins/checks/<name>.lua returns
function F.load_check(name)
  local chunk = assert(loadfile(src .. "/plugins/checks/" .. name .. ".lua"))
  setfenv(chunk, setmetatable({ beagle = beagle }, { __index = _G }))
  return chunk()
end

-- opts(P, given) -> given with the defaults filled in and the types checked (an error raises)
function F.opts(P, given) return assert(beagle.validate_options(P.options, given)) end

return F
