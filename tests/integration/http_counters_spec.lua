-- What the HTTP server's connection limits did is in /metrics (issue 14 §3, slowloris): a
-- connection closed for sending nothing counts in beagle_http_connections_timed_out_total, one
-- closed to make room in _evicted_total, and every accept in _accepted_total.
local S = require "support"

local function counter(body, name)
  return tonumber(body:match("\n" .. name .. " ([%d.e+]+)"))
end

describe("the HTTP server's counters", function()
  local agent
  setup(function()
    agent = S.start { config = S.calm_system, env = {
      MONITORING_HTTP_FIRST_BYTE_TIMEOUT = "300ms", MONITORING_HTTP_MAX_CONNECTIONS = "4" } }
  end)
  teardown(function() if agent then agent:stop() end end)

  it("count accepted, timed-out and evicted connections", function()
    -- four silent connections held open by a shell (bash's /dev/tcp), then more than the limit
    local cmd = ("bash -c 'for i in 1 2 3 4 5 6; do exec {fd}<>/dev/tcp/127.0.0.1/%d; done; sleep 1'"):format(agent.port)
    os.execute(cmd)
    local body
    assert.is_truthy(S.wait(function()
      local _, b = agent:get("/metrics")
      body = b
      return (counter(b, "beagle_http_connections_timed_out_total") or 0) >= 1
        and (counter(b, "beagle_http_connections_evicted_total") or 0) >= 2
    end, 10), body)
    assert.is_true(counter(body, "beagle_http_connections_accepted_total") >= 6, body)
  end)
end)
