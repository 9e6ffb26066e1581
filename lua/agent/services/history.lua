-- The history service: a sample of every series each collection interval and minute rollups
-- flushed to the data directory every 15 s on the threadpool (core/history*.c), which
-- agent.query reads for rules and the API; the last minute reaches the disk at shutdown.
-- The service interface is described at the top of lua/agent/init.lua.
local core = require "agent.core"

local M = {}
M.__index = M

-- new{ settings, metrics, log }
function M.new(d)
  return setmetatable({ settings = d.settings, metrics = d.metrics, log = d.log, timers = {} }, M)
end

-- History that cannot open is not kept; the agent runs on.
function M:start()
  local s = self.settings
  local hist, err = core.history_open(s.data_dir, s.history_raw, s.metrics_retention_days)
  if not hist then
    self.log(3, "history is not kept", { error = err })
    return true
  end
  self.history = hist
  local step = s.metrics_collection_interval
  local function sample()
    -- timestamps on the interval grid compress to a bit each; after a sample_now off the grid,
    -- the next one goes after it (an earlier one would be dropped)
    local ms = math.floor(core.wall() / step) * step * 1000
    if self.last_ms and ms <= self.last_ms then ms = self.last_ms + 1 end
    self.last_ms = ms
    hist:sample(ms)
  end
  sample()
  self.timers.sample = core.timer(step, step, sample)
  self.timers.flush = core.timer(15, 15, function() hist:flush() end)
  return true
end

-- Samples every series now, off the schedule: what a caller (POST /alerts/test) must see of
-- a value written a moment ago.
function M:sample_now()
  if not self.history then return end
  local ms = math.floor(core.wall() * 1000)
  if self.last_ms and ms <= self.last_ms then return end -- sampled this very millisecond
  self.last_ms = ms
  self.history:sample(ms)
end

function M:stop()
  for _, t in pairs(self.timers) do t:stop() end
  self.timers = {}
  return 0
end

-- After the grace: the last samples and the minute being filled reach the disk before we go
-- (not on abort: a second signal stops now).
function M:close(abort)
  if not self.history or abort then return end
  self.history:sample(core.wall() * 1000)
  local ok, ferr = self.history:flush(true)
  if not ok then self.log(3, "final history flush failed", { error = ferr }) end
  self.history:close()
  self.history = nil
end

function M:update_metrics()
  if not self.history then return end
  local m, hs = self.metrics, self.history:stats()
  m.set_gauge("beagle_history_series", hs.series)
  m.set_gauge("beagle_history_memory_bytes", hs.mem_bytes)
  m.set_gauge("beagle_history_pending_rows", hs.pending_rows)
  m.set_gauge("beagle_history_flush_errors", hs.flush_errors)
  m.set_gauge("beagle_history_last_flush_seconds", hs.last_flush_ms / 1000)
end

return M
