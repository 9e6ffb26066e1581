-- beagle rules replay: rules against stored rollups, with the notification policy applied.
local query = require "agent.query"
local replay = require "agent.rules.replay"

local function tmpdir()
  local p = io.popen("mktemp -d /tmp/beagle-replay.XXXXXX")
  local d = p:read("*l")
  p:close()
  return d
end

describe("rules replay", function()
  it("prints when a rule would have fired, resolved and notified over stored history", function()
    local dir = tmpdir()
    local q = assert(query.open { data_dir = dir, raw = "1h" })
    local t_end = 1700000000 + 7200
    for t = t_end - 7200, t_end, 15 do
      local rel = t - (t_end - 7200)
      local v = (rel >= 3600 and rel < 5400) and 95 or 50 -- hot from 1h to 1h30m
      q.append('cpu_load{host="a"}', t * 1000, v)
    end
    assert.is_true(q.flush())
    q.close()
    local rules = dir .. "/hot.lua"
    local f = assert(io.open(rules, "w"))
    f:write([[
route { channels = { "log" }, group_wait = "0s" }
alert "hot" { metric = "cpu.load", condition = ">", threshold = 80, duration = "5m", severity = "warning" }
]])
    f:close()
    local lines = {}
    local out = { write = function(_, ...) for _, x in ipairs { ... } do lines[#lines + 1] = x end end }
    assert.is_true(replay.run({ files = { rules }, data_dir = dir, since = 7200, step = 60, now = t_end }, out))
    local text = table.concat(lines)
    assert.is_truthy(text:find("firing   hot{host=\"a\",severity=\"warning\"}", 1, true), text)
    assert.is_truthy(text:find("resolved hot", 1, true), text)
    assert.is_truthy(text:find("notify   firing", 1, true), text)
    assert.is_truthy(text:find("notify   resolved", 1, true), text)
    assert.is_truthy(text:find("1 firing episodes, 2 notifications", 1, true), text)
    os.execute("rm -rf " .. dir)
  end)
end)
