-- StatsD and DogStatsD into a running agent, over UDP and TCP.
local S = require "support"

describe("StatsD ingest", function()
  local agent
  setup(function() agent = S.start { config = S.calm_system } end)
  teardown(function() if agent then agent:stop() end end)

  local function metrics()
    local _, body = agent:get("/metrics")
    return body
  end

  local function wait_for(text)
    return S.wait(function() return metrics():find(text, 1, true) end, 10)
  end

  it("listens on the statsd_address setting", function()
    assert.is_number(agent.statsd_port)
  end)

  it("takes counters, gauges, timers, histograms, sets and tags over UDP", function()
    agent:statsd(table.concat({
      "shop.orders:3|c",
      "shop.orders:1|c|@0.5",
      "shop.queue:10|g",
      "shop.queue:-4|g",
      "shop.checkout:250|ms",
      "shop.size:2.5|h|#region:eu",
      "shop.users:alice|s",
      "shop.users:bob|s",
      "shop.users:alice|s",
      "shop.hits:1|c|#region:eu,tier:gold",
    }, "\n"))
    assert.is_truthy(wait_for("shop_orders_total 5\n"), metrics())
    local m = metrics()
    assert.is_truthy(m:find("\nshop_queue 6\n", 1, true))
    assert.is_truthy(m:find("shop_checkout_seconds_sum 0.25\n", 1, true))
    assert.is_truthy(m:find('shop_size_count{region="eu"} 1\n', 1, true))
    assert.is_truthy(m:find("\nshop_users 2\n", 1, true))
    assert.is_truthy(m:find('shop_hits_total{region="eu",tier="gold"} 1\n', 1, true))
  end)

  it("skips bad lines, counts them, and keeps the rest of the packet", function()
    agent:statsd("good.one:1|c\nbroken line\nbad.type:1|x\nneg.counter:-1|c\ngood.two:2|c\n")
    assert.is_truthy(wait_for("good_two_total 2\n"))
    local m = metrics()
    assert.is_truthy(m:find("good_one_total 1\n", 1, true))
    assert.is_truthy(m:find("beagle_statsd_bad_lines_total 3\n", 1, true), m)
  end)

  it("takes newline-separated lines over TCP", function()
    agent:statsd_tcp("tcp.lines:7|c\ntcp.level:1.5|g\n")
    assert.is_truthy(wait_for("tcp_lines_total 7\n"))
    assert.is_truthy(metrics():find("\ntcp_level 1.5\n", 1, true))
  end)

  it("can be turned off", function()
    local off = S.start { statsd = "off" }
    local log = off:logtext()
    off:stop()
    assert.is_truthy(log:find("statsd=off", 1, true), log)
  end)
end)
