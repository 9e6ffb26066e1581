-- The outbox's SQLite statements one kind at a time, for instruction counts (callgrind is stable
-- where seconds on this shared VM are not):
--   for k in noop inst notif na upd; do
--     D=$(mktemp -d) BEAGLE_LIB=build-bench/libbeagle_core.so LUA_PATH="lua/?.lua;;" \
--       valgrind --tool=callgrind --callgrind-out-file=/dev/null luajit bench/store_statements.lua $k
--   done
-- Each run opens a fresh store in $D (schema migrated as the agent does) and executes N (5000)
-- statements of its kind in one transaction: inst = the engine's alert_instances upsert, notif =
-- an outbox row (a 700-byte payload), na = its notification_alerts row, upd = the "sent" mark.
-- na and upd first run the statements they depend on (notif; notif + na): subtract those runs.
-- Per statement = (Collected(kind) - Collected(prerequisites or noop)) / N.
local Store = require("agent.rules.store")
local phase = arg[1] or "inst"
local N = tonumber(arg[2] or 5000)
local st = assert(Store.open(assert(os.getenv("D"), "set D to an empty directory") .. "/state.db", {}))
local db = st.db
local payload = '{"x":"' .. ("y"):rep(700) .. '"}'
local function fp(i) return ("%016x"):format((i * 2654435761) % 2 ^ 52) end
local STMT = {
  inst = function(i)
    return "INSERT OR REPLACE INTO alert_instances(fingerprint, rule, labels, state, value, active_at,"
      .. " starts_at, ends_at, last_eval, keep_since, annotations, updated_at) VALUES(?,?,?,?,?,?,?,?,?,?,?,?)",
      fp(i), "tput", '{"alertname":"tput","k":"' .. i .. '"}', "firing", 50, 1e9, 1e9, nil, 1e9, nil,
      '{"message":"x"}', 1e9
  end,
  notif = function(i)
    return "INSERT INTO notifications(channel, status, group_key, dedup_key, test, created_at, payload,"
      .. " state, next_attempt_at) VALUES(?,?,?,?,?,?,?,?,?)",
      "sink", "firing", "gk" .. i, ("%016x"):format(i * 31337), false, 1e9 + i * 1e-4, payload, "pending",
      1e9 + i * 1e-4
  end,
  na = function(i)
    return "INSERT OR IGNORE INTO notification_alerts(notification_id, fingerprint, status) VALUES(?,?,?)",
      i, fp(i), "firing"
  end,
  upd = function(i)
    return "UPDATE notifications SET state = ?, sent_at = ?, attempts = ? WHERE id = ?", "sent", 1e9, 1, i
  end,
  noop = function() return "SELECT 1" end,
}
local function go(kind)
  assert(STMT[kind], "kind: noop, inst, notif, na or upd")
  assert(st:tx(function()
    for i = 1, N do assert(db:run(STMT[kind](i))) end
    return true
  end))
end
if phase == "na" or phase == "upd" then go("notif") end
if phase == "upd" then go("na") end
local t0 = os.clock()
go(phase)
print(("%s: %d statements, %.2f us each (CPU time; see the header for instruction counts)"):format(
  phase, N, (os.clock() - t0) / N * 1e6))
