-- agent.backend_store: the buffers of backends declared with `spill = true`, kept in
-- <data_dir>/backends.db so that a restart (or a crash) loses nothing already collected. Each
-- batch is a row written when it is collected (its samples as bytes: core/export/batch.h
-- bg_batch_encode) and deleted when it leaves the buffer; after a restart the backend's queue
-- resumes the rows, oldest first. The rows are the queue's persistence adapter (agent.queue).
-- A trace or log backend's rows are span or log batches (core/trace/trace.h's
-- bg_span_batch_encode), marked by their signal.
local core = require "agent.core"

local M = {}
M.__index = M

local SCHEMA = [[
CREATE TABLE IF NOT EXISTS batches (
  id INTEGER PRIMARY KEY,
  backend TEXT NOT NULL,
  created_at REAL NOT NULL,
  samples INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at REAL NOT NULL DEFAULT 0,
  last_error TEXT,
  payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS batches_backend ON batches (backend, id);
]]

-- open(path, log) -> store | nil, err
function M.open(path, log)
  local db, moved = core.store_open(path)
  if not db then return nil, moved end
  if moved then log(2, "backend buffer file was unusable: moved aside, a new one made", { moved = moved }) end
  local ok, err = db:exec(SCHEMA)
  if not ok then
    db:close()
    return nil, err
  end
  -- files written before trace and log backends have no signal column (NULL: metrics)
  local cols = db:query("PRAGMA table_info(batches)") or {}
  local has = false
  for _, c in ipairs(cols) do if c.name == "signal" then has = true end end
  if not has then
    ok, err = db:exec("ALTER TABLE batches ADD COLUMN signal TEXT")
    if not ok then
      db:close()
      return nil, err
    end
  end
  return setmetatable({ db = db, log = log }, M)
end

-- Writes the batches of one collection (items with payload, weight, created_at); sets each
-- item's id. Returns true or nil, err (the items then wait in memory only).
function M:add(backend, items)
  local db = self.db
  local ok, res, err = pcall(db.tx, db, function()
    for _, e in ipairs(items) do
      local _, id = assert(db:run("INSERT INTO batches (backend, created_at, samples, payload, signal)"
        .. " VALUES (?, ?, ?, ?, ?)", backend, e.created_at, e.weight, e.payload:encode(), e.signal))
      e.id = id
    end
    return true
  end)
  if not ok or not res then
    for _, e in ipairs(items) do e.id = nil end
    return nil, ok and err or res
  end
  return true
end

-- Every row of a backend (removed from the config).
function M:forget(backend) return self.db:run("DELETE FROM batches WHERE backend = ?", backend) end

-- Rows of backends no longer declared are dropped at start; returns how many samples.
function M:forget_others(names)
  local rows = self.db:query("SELECT backend, SUM(samples) AS n FROM batches GROUP BY backend") or {}
  local gone = 0
  for _, r in ipairs(rows) do
    if not names[r.backend] then
      self.db:run("DELETE FROM batches WHERE backend = ?", r.backend)
      gone = gone + (r.n or 0)
      self.log(2, "buffered batches of a backend no longer declared dropped", { backend = r.backend,
        samples = tostring(r.n) })
    end
  end
  return gone
end

-- The queue's persistence adapter for one backend; fields(e) adds what its items carry.
function M:adapter(backend, fields)
  local db, log = self.db, self.log
  return {
    pending = function(_, limit)
      local rows, err = db:query("SELECT id, created_at, samples, attempts, next_attempt_at, last_error, payload,"
        .. " signal FROM batches WHERE backend = ? ORDER BY id LIMIT ?", backend, limit)
      if not rows then return nil, err end
      local items = {}
      for _, r in ipairs(rows) do
        local sig = type(r.signal) == "string" and r.signal or nil
        local b, why
        if sig then
          local ok
          ok, b, why = pcall(core.trace_batch_decode, sig, r.payload or "")
          if not ok then b, why = nil, b end
        else
          b, why = core.batch_decode(r.payload or "")
        end
        if b then
          -- a metric collection is a fence (each series in order); spans and records need none
          local e = { target = backend, id = r.id, payload = b, weight = b:size(), created_at = r.created_at,
            fence = not sig and r.created_at or nil, signal = sig, attempts = r.attempts, next_at = r.next_attempt_at,
            last_error = r.last_error }
          fields(e)
          items[#items + 1] = e
        else
          -- bytes it cannot trust: the row goes, said once per row
          db:run("DELETE FROM batches WHERE id = ?", r.id)
          log(3, "a buffered batch cannot be read: dropped", { backend = backend, id = tostring(r.id),
            samples = tostring(r.samples), error = why })
        end
      end
      return items
    end,
    update = function(_, id, f)
      if f.state then return db:run("DELETE FROM batches WHERE id = ?", id) end
      return db:run("UPDATE batches SET attempts = COALESCE(?, attempts), next_attempt_at = COALESCE(?, next_attempt_at),"
        .. " last_error = COALESCE(?, last_error) WHERE id = ?", f.attempts, f.next_attempt_at, f.last_error, id)
    end,
    tx = function(_, fn)
      local ok, res, err = pcall(db.tx, db, fn)
      if not ok then return nil, res end
      return res, err
    end,
  }
end

function M:close() self.db:close() end

return M
