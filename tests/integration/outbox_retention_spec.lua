-- The state store keeps notification rows for notification_retention_days (never less than
-- notification_ttl): older ones go when the agent starts and every hour after, whatever their
-- state, and nothing younger is touched.
local S = require "support"
local Store = require "agent.rules.store"

describe("notification retention", function()
  local agent
  after_each(function()
    if agent then agent:stop() end
    agent = nil
  end)

  local function start(data, days)
    return S.start {
      env = { MONITORING_NOTIFICATION_RETENTION_DAYS = tostring(days) },
      args = { "--data", data },
      config = S.calm_system,
    }
  end

  local function count(data, where)
    local st = assert(Store.open(data .. "/state.db"))
    local n = st.db:query("SELECT count(*) AS n FROM notifications WHERE " .. where)[1].n
    local fp = st.db:query("SELECT count(*) AS n FROM notification_alerts WHERE fingerprint = 'old'")[1].n
    st:close()
    return n, fp
  end

  it("prunes rows older than the retention at start, and keeps the rest", function()
    local data = S.tmpdir() .. "/data"
    -- a first run makes the store; then rows of 3 days, 20 hours and a minute ago
    agent = start(data, 1)
    agent:stop()
    agent = nil
    local now = os.time()
    local st = assert(Store.open(data .. "/state.db"))
    for _, row in ipairs {
      { "old", now - 3 * 86400, "sent" }, { "old", now - 3 * 86400 + 5, "expired" },
      { "recent", now - 20 * 3600, "sent" }, { "new", now - 60, "sent" },
    } do
      assert(st:log_notification { channel = "log", status = "firing", dedup_key = row[1] .. row[2],
        group_key = "g", created_at = row[2], state = row[3],
        alerts = { { fingerprint = row[1], status = "firing" } } })
    end
    st:close()
    assert.same({ 4, 2 }, { count(data, "1") })

    agent = start(data, 1)
    local pruned = S.wait(function() return (count(data, "1")) == 2 end, 10)
    assert.is_truthy(pruned, agent:logtext())
    -- the day-old rows went, with their alerts (ON DELETE CASCADE); the others stay
    assert.same({ 0, 0 }, { count(data, "dedup_key LIKE 'old%'") })
    assert.same({ 1, 1 }, { (count(data, "dedup_key LIKE 'recent%'")), (count(data, "dedup_key LIKE 'new%'")) })
    assert.truthy(agent:logtext():find("state store pruned", 1, true), agent:logtext())
  end)
end)
