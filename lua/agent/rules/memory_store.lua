-- agent.rules.memory_store: the reference store of agent.rules.engine, in memory, for tests and
-- as the contract of the SQLite one (agent.rules.store). Engine.memory_store() makes one.
local M = {}

local function copy(t)
  if type(t) ~= "table" then return t end
  local c = {}
  for k, v in pairs(t) do c[k] = copy(v) end
  return c
end

-- What a store keeps of an instance: its public fields (not the engine's links and marks).
local FIELDS = { "fingerprint", "name", "labels", "state", "value", "active_at", "starts_at", "ends_at",
  "last_eval", "keep_since", "last_notified", "annotations" }

local function copy_instance(inst)
  local c = {}
  for _, k in ipairs(FIELDS) do c[k] = copy(inst[k]) end
  return c
end

-- A store answers these calls:
--   load() -> { instances = { instance copy... }, notified = { { fingerprint, channel, status, at }... } }
--     `notified` must hold, per fingerprint and channel, at least the rows of the last hour and
--     the latest row (restores cooldown, hourly counts and "already notified").
--   save_instances(list) -> true | nil, err   one transaction; a copy with deleted = true is removed.
--   log_notification(n) -> id | true | nil, err    one row per alert of n: (fingerprint, channel,
--     alert.status, n.created_at), called before the notification is delivered; a number is
--     kept as n.id (the outbox row).
--   tx(fn) -> fn's results | nil, err (optional)  the instances and the notification rows of one
--     step are written in one transaction.
--   log_notifications(list) -> { id... } | nil, err (optional)  many rows at once.
--   count_notifications(fingerprint, channel, since, status?) -> n
function M.new()
  local st = { instances = {}, notifications = {} }
  function st.load(self)
    local list = {}
    for _, i in pairs(self.instances) do list[#list + 1] = copy(i) end
    table.sort(list, function(a, b) return a.fingerprint < b.fingerprint end)
    local rows = {}
    for _, n in ipairs(self.notifications) do
      for _, a in ipairs(n.alerts or {}) do
        rows[#rows + 1] = { fingerprint = a.fingerprint, channel = n.channel, status = a.status, at = n.created_at }
      end
    end
    return { instances = list, notified = rows }
  end
  function st.save_instances(self, list)
    for _, i in ipairs(list) do
      self.instances[i.fingerprint] = (not i.deleted) and copy_instance(i) or nil
    end
    return true
  end
  function st.log_notification(self, n)
    if not n.test then self.notifications[#self.notifications + 1] = copy(n) end
    return #self.notifications
  end
  function st.count_notifications(self, fp, channel, since, status)
    local c = 0
    for _, n in ipairs(self.notifications) do
      if n.channel == channel and n.created_at >= since then
        for _, a in ipairs(n.alerts or {}) do
          if a.fingerprint == fp and (status == nil or a.status == status) then c = c + 1 end
        end
      end
    end
    return c
  end
  return st
end

return M
