-- A plugin's I/O is bounded by its own limits (issue 14 §3): a response body is gathered in C
-- only up to the memory the plugin has left, whatever max_body it asks for (a 1 GiB max_body
-- took the agent to 2.1 GB before the limit tripped). read_file's bounds are
-- tests/c/test_script_io.c's.
local S = require "support"

describe("plugin I/O bounds", function()
  local agent, files, dir
  setup(function()
    local www = S.tmpdir()
    S.sh(("truncate -s 32M %q/big.bin"):format(www))
    files = S.service(("exec python3 -u -m http.server 0 --bind 127.0.0.1 --directory %q"):format(www))
    local port = S.wait(function() return tonumber(files.output():match("port (%d+)")) end, 10)
    assert(port, "http.server did not start: " .. files.output())
    dir = S.tmpdir()
    S.write(dir .. "/bigbody.lua", [[
return beagle.check {
  name = "bigbody",
  options = { port = { "integer" } },
  retries = 0, interval = "1h",
  run = function(opt, ctx)
    local res, err = ctx.http.get("http://127.0.0.1:" .. opt.port .. "/big.bin", { max_body = 2 ^ 30 })
    if res then return ctx.unhealthy("got " .. #res.body .. " bytes") end
    return ctx.healthy(err)
  end,
}
]])
    agent = S.start {
      plugins = dir,
      config = S.calm_system .. ([[
check "big" { plugin = "bigbody", port = %d, memory = "4MB", timeout = "20s" }
]]):format(port),
    }
  end)
  teardown(function()
    if agent then agent:stop() end
    if files then files.stop() end
  end)

  it("stops a response body at the memory the plugin has left, whatever its max_body", function()
    local o = agent:wait_check("big", function(c) return c.runs and c.runs > 0 end, 25)
    assert.is_truthy(o, "the check ran")
    assert.are.equal("healthy", o.status, o.message)
    assert.is_truthy(o.message:find("^response body exceeds the %d+ bytes of memory the plugin has left$"), o.message)
    local n = tonumber(o.message:match("(%d+)"))
    assert.is_true(n <= 4 * 1024 * 1024, o.message)
  end)
end)
