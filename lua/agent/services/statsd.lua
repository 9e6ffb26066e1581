-- The StatsD service: the UDP/TCP StatsD and DogStatsD listener (core/statsd*.c feeds the
-- registry without entering Lua), its set flushes and its self-metrics.
-- The service interface is described at the top of lua/agent/init.lua.
local core = require "agent.core"
local settings_mod = require "agent.settings"

local M = {}
M.__index = M

-- new{ settings, metrics }
function M.new(d)
  return setmetatable({ settings = d.settings, metrics = d.metrics }, M)
end

-- A listener that cannot start is fatal: nil, err.
function M:start()
  local s = self.settings
  if s.statsd_address == "off" then return true end
  local sd, err = core.statsd_start(s.statsd_address)
  if not sd then return nil, err end
  self.statsd = sd
  -- a set's value is its distinct count per collection interval
  self.timer = core.timer(s.metrics_collection_interval, s.metrics_collection_interval,
    function() sd:flush_sets() end)
  return true
end

-- "host:port" it listens on, or "off".
function M:address()
  if not self.statsd then return "off" end
  local host = settings_mod.split_address(self.settings.statsd_address)
  return ("%s:%d"):format(host, (self.statsd:ports()))
end

function M:stop()
  if self.statsd then self.statsd:stop() self.statsd = nil end
  if self.timer then self.timer:stop() self.timer = nil end
  return 0
end

function M:update_metrics()
  if not self.statsd then return end
  local st = self.statsd:stats()
  self.metrics.set_gauge("beagle_statsd_tcp_clients", st.tcp_clients)
  self.metrics.set_gauge("beagle_statsd_kernel_drops", st.kernel_drops)
  self.metrics.set_gauge("beagle_statsd_set_bytes", st.set_bytes)
  -- data lost before the registry (truncated datagrams, refused clients, set values past
  -- the sets' memory cap): a counter, fed the growth since the last refresh
  local lost = st.dropped - (self.dropped_seen or 0)
  if lost > 0 then self.metrics.increment_counter("beagle_statsd_dropped_total", lost) end
  self.dropped_seen = st.dropped
end

return M
