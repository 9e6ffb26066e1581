-- agent.store_status: what the C store layer knows about each SQLite file the agent opened
-- (core.store_status, "health" in core/store/store.h) as parts of /health/ready and
-- /health/detailed and as the beagle_store_* self-metrics:
--   beagle_store_up{db}                 1 while the file is open and its last write succeeded
--   beagle_store_errors_total{db,op}    failures that were the file's (full disk, I/O, read-only,
--                                       locked, corrupt), by op: open, begin, commit, write, read,
--                                       checkpoint
-- A store is a problem (the agent is degraded) while it is not kept (could not be opened, or was
-- closed by its user), while its writes fail, and, for the rest of the run, after its file was
-- unusable and moved aside.
local util = require "agent.util"

local M = {}

-- the agent's core, or an empty table in a plain luajit (the specs of delivery and health)
local core
local function get_core()
  if not core then
    local ok, c = pcall(require, "agent.core")
    core = ok and type(c) == "table" and c or {}
  end
  return core
end

local OPS = { "open", "begin", "commit", "write", "read", "checkpoint" }

function M.list()
  local c = get_core()
  return c.store_status and c.store_status() or {}
end

-- A number that changes whenever a store's up, durable or replaced state does (cheap to poll).
function M.epoch()
  local c = get_core()
  return c.store_status_epoch and c.store_status_epoch() or 0
end

-- Why s makes the agent degraded, or nil.
local function problem(s)
  if not s.durable then
    return ("not kept: the file cannot be opened (%s)"):format(s.error or "?")
  elseif not s.open then
    -- opened, then closed by its user (a schema it cannot use, say): nothing is kept either
    return "not kept: the file is not open" .. (s.error and (" (last error: " .. s.error .. ")") or "")
  elseif s.failing then
    return ("failing since %s: changes are not kept (%s)"):format(util.iso8601(s.since), s.error or "?")
  elseif s.replaced then
    return ("the file could not be used (%s): moved to %s, started empty"):format(s.error or "?", s.replaced)
  end
end

-- { { db, reason }... } of the stores that are a problem, by db; empty when none.
function M.problems(list)
  local out = {}
  for _, s in ipairs(list or M.list()) do
    local why = problem(s)
    if why then out[#out + 1] = { db = s.db, reason = why } end
  end
  table.sort(out, function(a, b) return a.db < b.db end)
  return out
end

-- The stores as /health/detailed shows them.
function M.detailed(list)
  local out = {}
  for _, s in ipairs(list or M.list()) do
    out[#out + 1] = { db = s.db, path = s.path, up = s.up, durable = s.durable, failing = s.failing,
      since = s.since and util.iso8601(s.since) or nil, error = s.error, replaced = s.replaced,
      problem = problem(s), errors = s.errors }
  end
  table.sort(out, function(a, b) return a.db < b.db end)
  return out
end

-- The counters' values already added to the registry, by db and op.
local counted = {}

-- Sets beagle_store_up and brings beagle_store_errors_total up to the core's counts.
function M.update_metrics(metrics)
  for _, s in ipairs(M.list()) do
    local tags = { db = s.db }
    metrics.set_gauge("beagle_store_up", s.up and 1 or 0, tags)
    local seen = counted[s.db]
    if not seen then seen = {} counted[s.db] = seen end
    for _, op in ipairs(OPS) do
      local n = s.errors[op] or 0
      local d = n - (seen[op] or 0)
      if d > 0 or seen[op] == nil then
        metrics.increment_counter("beagle_store_errors_total", math.max(d, 0), { db = s.db, op = op })
        seen[op] = n
      end
    end
  end
end

return M
