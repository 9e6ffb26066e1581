-- A fake loop for the queue specs: a clock that moves only when advanced, and timers that fire
-- in time order when it is (those they create too).
local M = {}

function M.new()
  local L = { t = 1000, timers = {}, seq = 0 }
  function L.now() return L.t end
  function L.timer(delay, fn, every)
    L.seq = L.seq + 1
    local h = { at = L.t + delay, fn = fn, every = every, seq = L.seq }
    function h.stop() h.stopped = true end
    L.timers[#L.timers + 1] = h
    return h
  end
  -- runs every timer due up to t + dt (and those they create), in order
  function L.advance(dt)
    local target = L.t + dt
    while true do
      local best
      for _, h in ipairs(L.timers) do
        if not h.stopped and h.at <= target and (not best or h.at < best.at or (h.at == best.at and h.seq < best.seq)) then
          best = h
        end
      end
      if not best then break end
      L.t = math.max(L.t, best.at)
      if best.every then best.at = best.at + best.every else best.stopped = true end
      best.fn()
    end
    L.t = target
    local live = {}
    for _, h in ipairs(L.timers) do if not h.stopped then live[#live + 1] = h end end
    L.timers = live
  end
  return L
end

return M
