-- The alert engine's durable state in SQLite (core/store/store): alert instances, the notification
-- log, silences and the rules created over the API, in one file under --data, WAL.
--
--   local Store = require "agent.rules.store"
--   local st, err = Store.open(path, { now = fn, synchronous = "normal"|"full", window = 3600 })
--
-- The engine's calls (lua/agent/rules/CONTRACT.md, the reference in memory_store.lua), all
-- methods, all `nil, err` on a SQLite failure and raising on misuse:
--   st:load() -> { instances = { instance... }, notified = { { fingerprint, channel, status, at }... } }
--     `notified`: every non-test row of the last `window` seconds, plus the latest row of each
--     (fingerprint, channel) however old.
--   st:save_instances(list) -> true        one transaction; an instance with deleted = true goes
--   st:log_notification(n) -> id          one notifications row (the whole n as JSON, the outbox
--     payload) and one notification_alerts row per alert, with the alert's own status
--   st:count_notifications(fp, channel, since, status?) -> n     non-test ones only
-- and for the API and housekeeping: delete_instances, last_notification, update_notification,
-- pending_notifications, silences (add_silence, delete_silence, silences, purge_silences,
-- replace_file_silences), API rules (put_api_rule, get_api_rule, delete_api_rule, api_rules),
-- prune, tx, close.
--
-- The outbox of the channels issue is the notifications table: a row is written 'pending'
-- (next_attempt_at = created_at) in the same transaction as the alert state when the caller
-- wraps both in st:tx, and update_notification marks it 'sent', 'failed' or 'expired'.
local json = require "beagle.json"

local M = {}

M.WINDOW = 3600 -- seconds of notification rows load() returns (the hourly limit's window)

-- Schema migrations: MIGRATIONS[v] takes a database from user_version v-1 to v. Append only.
local MIGRATIONS = {
  [[
CREATE TABLE alert_instances(
  fingerprint TEXT PRIMARY KEY NOT NULL,
  rule TEXT NOT NULL,
  labels TEXT NOT NULL DEFAULT '{}',        -- JSON object
  state TEXT NOT NULL CHECK (state IN ('inactive', 'pending', 'firing', 'resolved')),
  value REAL,
  active_at REAL, starts_at REAL, ends_at REAL, last_eval REAL, keep_since REAL,
  annotations TEXT NOT NULL DEFAULT '{}',   -- JSON object
  updated_at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX alert_instances_rule ON alert_instances(rule);

-- One row per notification decided (per channel and group), the delivery unit of the outbox.
CREATE TABLE notifications(
  id INTEGER PRIMARY KEY,
  channel TEXT NOT NULL,
  status TEXT NOT NULL,                     -- the notification's: firing | resolved
  group_key TEXT,
  dedup_key TEXT,                           -- the same on every attempt of this notification
  test INTEGER NOT NULL DEFAULT 0,
  created_at REAL NOT NULL,
  payload TEXT NOT NULL,                    -- JSON of the notification, what a delivery sends
  state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'failed', 'expired')),
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at REAL,
  sent_at REAL,
  last_error TEXT
);
CREATE INDEX notifications_created ON notifications(created_at);
CREATE INDEX notifications_pending ON notifications(next_attempt_at) WHERE state = 'pending';

-- The alerts each notification carries, for the per-alert cooldown and hourly counts.
CREATE TABLE notification_alerts(
  notification_id INTEGER NOT NULL REFERENCES notifications(id) ON DELETE CASCADE,
  fingerprint TEXT NOT NULL,
  status TEXT NOT NULL,                     -- the alert's own status in that notification
  PRIMARY KEY (notification_id, fingerprint)
) WITHOUT ROWID;
CREATE INDEX notification_alerts_fp ON notification_alerts(fingerprint, notification_id);

CREATE TABLE silences(
  id TEXT PRIMARY KEY NOT NULL,
  matchers TEXT NOT NULL,                   -- JSON object: label -> "v" | "glob*" | "~re"
  starts REAL NOT NULL,
  ends REAL NOT NULL,
  comment TEXT,
  created_by TEXT,
  source TEXT NOT NULL CHECK (source IN ('file', 'api')),
  created_at REAL NOT NULL
);
CREATE INDEX silences_ends ON silences(ends);

CREATE TABLE api_rules(
  name TEXT PRIMARY KEY NOT NULL,
  json TEXT NOT NULL,
  created_at REAL NOT NULL
);
]],
  -- 2: the state CHECKs as OR chains. SQLite compiles `x IN (four constants)` in a CHECK into an
  -- ephemeral table built on every INSERT and UPDATE of the row (a B-tree created, its page
  -- zeroed, a statement transaction): two thirds of the instructions of such a statement. The
  -- constraint means the same, and the rows on disk do not change, so the stored CREATE TABLE
  -- text is edited in place (sqlite.org/lang_altertable.html, "otherwise" procedure) rather than
  -- the tables copied (notifications is the parent of notification_alerts, ON DELETE CASCADE).
  function(db, check)
    local ver = check(db:query("PRAGMA schema_version"))[1].schema_version
    check(db:exec("PRAGMA writable_schema = ON"))
    local edits = {
      { "alert_instances", "CHECK (state IN ('inactive', 'pending', 'firing', 'resolved'))",
        "CHECK (state = 'inactive' OR state = 'pending' OR state = 'firing' OR state = 'resolved')" },
      { "notifications", "CHECK (state IN ('pending', 'sent', 'failed', 'expired'))",
        "CHECK (state = 'pending' OR state = 'sent' OR state = 'failed' OR state = 'expired')" },
    }
    for _, e in ipairs(edits) do
      local n = check(db:run("UPDATE sqlite_master SET sql = replace(sql, ?2, ?3) WHERE type = 'table' AND name = ?1"
        .. " AND instr(sql, ?2) > 0", e[1], e[2], e[3]))
      if n ~= 1 then check(nil, ("store: migration 2: the CHECK of %s is not the one expected"):format(e[1])) end
    end
    check(db:exec("PRAGMA schema_version = " .. (ver + 1)))
    check(db:exec("PRAGMA writable_schema = OFF"))
    return true
  end,
  -- 3: two indexes no hot query reads. alert_instances_rule: nothing selects instances by rule.
  -- notifications_created: only load()'s window (once at start, next to a query that reads
  -- every row anyway) and prune filter on created_at. Each cost a B-tree insert per alert in a
  -- mass firing: 11% of the store transaction's instructions (bench/firing_eval.lua).
  [[
DROP INDEX IF EXISTS alert_instances_rule;
DROP INDEX IF EXISTS notifications_created;
]],
}
M.SCHEMA_VERSION = #MIGRATIONS
M.MIGRATIONS = MIGRATIONS -- for the specs: a database at an older version

local fast_json -- the binding's store_json, set by binding()

-- The C binding: "agent.core" inside the agent, the shared library in a plain luajit.
local function binding()
  local ok, core = pcall(require, "agent.core")
  if ok and type(core) == "table" and core.store_open then
    fast_json = core.store_json
    return core.store_open
  end
  local lib = os.getenv("BEAGLE_LIB")
  if lib and lib ~= "" then
    local open = package.loadlib(lib, "luaopen_beagle_store")
    if open then
      local b = open()
      fast_json = b.store_json
      return b.store_open
    end
  end
  return nil, "store: the C core is not linked in and BEAGLE_LIB is not set"
end

-- A failure that a store function turns into `nil, err`; anything else raised is a bug and
-- propagates.
local Fail = {}
local function check(v, err)
  if v == nil then error(setmetatable({ msg = err }, Fail), 0) end
  return v
end

local function unwrap(ok, ...)
  if ok then return ... end
  local e = ...
  if getmetatable(e) == Fail then return nil, e.msg end
  error(e, 0)
end

local Store = {}
Store.__index = Store

-- The results of db:tx(function() return TX_OK, fn() end): fn's results, or raises the failed
-- BEGIN or COMMIT.
local TX_OK = {}
local function tx_results(first, ...)
  if first == TX_OK then return ... end
  return check(nil, (...))
end

-- tx(fn, ...) -> fn's results | nil, err. Runs fn(...) in a transaction (a savepoint when
-- nested): committed when fn returns, rolled back when it raises. A store call inside fn that
-- fails returns nil, err as usual (its own part is already undone); raise to undo the rest.
function Store:tx(fn, ...)
  local db = self.db
  return unwrap(pcall(function(...)
    return tx_results(db:tx(function(...) return TX_OK, fn(...) end, ...))
  end, ...))
end

local function decode(text, what)
  if text == nil then return {} end
  local v, err = json.decode(text)
  if type(v) ~= "table" then check(nil, ("store: bad JSON in %s: %s"):format(what, err or text)) end
  return v
end

-- JSON columns through the C binding's store_json (jsonenc.h: raw, numbers as %.14g without
-- printf, whose %.14g was 3,200 instructions a number and 11% of a mass firing's store work);
-- what it refuses (a function value, a boolean key) goes through beagle.json's encode (the same
-- C codec in its sorted mode, inside the agent), which writes it as text.
local function encode(v)
  if fast_json then
    local s = fast_json(v)
    if s then return s end
  end
  local ok, s = pcall(json.encode, v)
  return check(ok and s or nil, "store: cannot encode: " .. tostring(s))
end

-- db:run with JSON columns given as tables: the binding encodes them as it binds (store_lua.c,
-- the same encoder as store_json, without a Lua string per column). What that encoder refuses
-- is encoded here (beagle.json) and the statement run again.
local function run_json(db, sql, ...)
  local a, b = db:run(sql, ...)
  if a == nil and type(b) == "string" and b:find("store: JSON:", 1, true) == 1 then
    local args = { n = select("#", ...), ... }
    for i = 1, args.n do
      if type(args[i]) == "table" then args[i] = encode(args[i]) end
    end
    return db:run(sql, unpack(args, 1, args.n))
  end
  return a, b
end

local function migrate(self)
  local db = self.db
  local rows = check(db:query("PRAGMA user_version"))
  local v = rows[1].user_version
  if v > #MIGRATIONS then
    check(nil, ("store: the database has schema version %d, newer than this beagle's %d"):format(v, #MIGRATIONS))
  end
  for to = v + 1, #MIGRATIONS do
    check(db:tx(function()
      local m = MIGRATIONS[to]
      if type(m) == "function" then m(db, check) else check(db:exec(m)) end
      check(db:exec("PRAGMA user_version = " .. to))
      return true
    end))
  end
  return true
end

-- open(path, opts) -> store | nil, err. opts: now (seconds, default os.time), synchronous
-- ("normal" default, "full"), window (load's seconds of rows, default M.WINDOW), open (the
-- C binding's store_open, found by default).
function M.open(path, opts)
  opts = opts or {}
  local open, berr = opts.open, nil
  if not open then open, berr = binding() end
  if not open then return nil, berr end
  local db, err = open(path, { synchronous = opts.synchronous })
  if not db then return nil, err end
  local self = setmetatable({ db = db, now = opts.now or os.time, window = opts.window or M.WINDOW }, Store)
  local ok, merr = unwrap(pcall(migrate, self))
  if not ok then
    db:close()
    return nil, merr
  end
  return self
end

function Store:close()
  self.db:close()
end

-- ---- alert instances -------------------------------------------------------------------------

local INSTANCE_COLS = "fingerprint, rule, labels, state, value, active_at, starts_at, ends_at, last_eval,"
  .. " keep_since, annotations, updated_at"

function Store:load()
  local db = self.db
  return unwrap(pcall(function()
    local instances = {}
    for i, r in ipairs(check(db:query("SELECT " .. INSTANCE_COLS .. " FROM alert_instances ORDER BY fingerprint"))) do
      instances[i] = {
        fingerprint = r.fingerprint, name = r.rule, state = r.state, value = r.value,
        labels = decode(r.labels, "labels of " .. r.fingerprint),
        annotations = decode(r.annotations, "annotations of " .. r.fingerprint),
        active_at = r.active_at, starts_at = r.starts_at, ends_at = r.ends_at, last_eval = r.last_eval,
        keep_since = r.keep_since, last_notified = {},
      }
    end
    local notified, seen = {}, {}
    local function add(r)
      local k = r.id .. "\0" .. r.fingerprint
      if seen[k] then return end
      seen[k] = true
      notified[#notified + 1] = { fingerprint = r.fingerprint, channel = r.channel, status = r.status, at = r.at }
    end
    -- the latest row of each (fingerprint, channel): SQLite takes the bare columns from the max row
    for _, r in ipairs(check(db:query(
      "SELECT a.fingerprint, n.channel, a.status, n.created_at AS at, max(n.id) AS id"
      .. " FROM notification_alerts a JOIN notifications n ON n.id = a.notification_id"
      .. " WHERE n.test = 0 GROUP BY a.fingerprint, n.channel"))) do
      add(r)
    end
    for _, r in ipairs(check(db:query(
      "SELECT a.fingerprint, n.channel, a.status, n.created_at AS at, n.id"
      .. " FROM notifications n JOIN notification_alerts a ON a.notification_id = n.id"
      .. " WHERE n.test = 0 AND n.created_at >= ? ORDER BY n.id", self.now() - self.window))) do
      add(r)
    end
    return { instances = instances, notified = notified }
  end))
end

local STATES = { inactive = true, pending = true, firing = true, resolved = true }

local function opt_number(v)
  if type(v) == "number" then return v end
  return nil
end

-- The statements of the hot paths as one string each, made once: the binding finds its
-- prepared statement by the string's address before hashing its text.
local SQL_PUT_INSTANCE = "INSERT OR REPLACE INTO alert_instances(" .. INSTANCE_COLS .. ")"
  .. " VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
local SQL_PUT_NOTIFICATION = "INSERT INTO notifications(channel, status, group_key, dedup_key, test,"
  .. " created_at, payload, state, next_attempt_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)"
local SQL_PUT_NOTIFICATION_ALERT = "INSERT OR IGNORE INTO notification_alerts(notification_id, fingerprint, status)"
  .. " VALUES(?, ?, ?)"

function Store:save_instances(list)
  assert(type(list) == "table", "save_instances: a list of instances expected")
  if #list == 0 then return true end
  local db, now = self.db, self.now()
  return self:tx(function()
    for i, inst in ipairs(list) do
      if type(inst.fingerprint) ~= "string" then error(("store: save_instances: item %d has no fingerprint"):format(i), 0) end
      if inst.deleted then
        check(db:run("DELETE FROM alert_instances WHERE fingerprint = ?", inst.fingerprint))
      else
        if type(inst.name) ~= "string" or not STATES[inst.state] then
          error(("store: save_instances: instance %s needs a name and a state"):format(inst.fingerprint), 0)
        end
        check(run_json(db, SQL_PUT_INSTANCE,
          inst.fingerprint, inst.name, inst.labels or {}, inst.state, opt_number(inst.value),
          opt_number(inst.active_at), opt_number(inst.starts_at), opt_number(inst.ends_at),
          opt_number(inst.last_eval), opt_number(inst.keep_since), inst.annotations or {}, now))
      end
    end
    return true
  end)
end

-- delete_instances(fingerprints) -> number deleted | nil, err
function Store:delete_instances(fps)
  local db = self.db
  return self:tx(function()
    local n = 0
    for _, fp in ipairs(fps) do
      n = n + check(db:run("DELETE FROM alert_instances WHERE fingerprint = ?", fp))
    end
    return n
  end)
end

-- ---- notifications (the log and the outbox) ---------------------------------------------------

-- The payload holds what the row's columns do not: the alerts, and whatever else a notification
-- carries. (Each field in both was encoded twice per notification, the times as floats.)
local COLUMNS = { channel = true, status = true, group_key = true, dedup_key = true, test = true,
  created_at = true, state = true, next_attempt_at = true, id = true }
local function payload_of(n)
  local p = {}
  for k, v in pairs(n) do
    if not COLUMNS[k] then p[k] = v end
  end
  return p
end

-- log_notification(n) -> id | nil, err. n = { channel, status, group_key, dedup_key, test,
-- alerts = { { fingerprint, status... }... }, created_at (default now), state (default
-- "pending"), next_attempt_at (default created_at) }.
local function insert_notification(self, n)
  assert(type(n) == "table" and type(n.channel) == "string", "log_notification: a notification with a channel expected")
  local db = self.db
  local at = opt_number(n.created_at) or self.now()
  local changes, id = run_json(db, SQL_PUT_NOTIFICATION,
    n.channel, n.status or "firing", n.group_key ~= nil and tostring(n.group_key) or nil,
    n.dedup_key ~= nil and tostring(n.dedup_key) or nil, n.test and true or false, at, payload_of(n),
    n.state or "pending", opt_number(n.next_attempt_at) or at)
  check(changes, id)
  for _, a in ipairs(n.alerts or {}) do
    if type(a.fingerprint) == "string" then
      check(db:run(SQL_PUT_NOTIFICATION_ALERT, id, a.fingerprint, a.status or n.status or "firing"))
    end
  end
  return id
end

function Store:log_notification(n)
  return self:tx(insert_notification, self, n)
end

-- log_notifications(list) -> { id... } | nil, err: every notification of the list in one
-- transaction (no savepoint per row), their ids in order.
function Store:log_notifications(list)
  return self:tx(function()
    local ids = {}
    for i, n in ipairs(list) do ids[i] = insert_notification(self, n) end
    return ids
  end)
end

-- count_notifications(fp, channel, since, status?) -> n | nil, err: the non-test notifications
-- created at or after since that carried fp on channel (with that alert status, if given).
function Store:count_notifications(fp, channel, since, status)
  local rows, err = self.db:query("SELECT count(*) AS n FROM notification_alerts a"
    .. " JOIN notifications n ON n.id = a.notification_id WHERE a.fingerprint = ?1 AND n.channel = ?2"
    .. " AND n.created_at >= ?3 AND n.test = 0 AND (?4 IS NULL OR a.status = ?4)",
    fp, channel, since or 0, status)
  if not rows then return nil, err end
  return rows[1].n
end

local function notification_row(r)
  return { id = r.id, channel = r.channel, status = r.status, alert_status = r.alert_status,
    group_key = r.group_key, dedup_key = r.dedup_key, test = r.test == 1, created_at = r.created_at,
    state = r.state, attempts = r.attempts, next_attempt_at = r.next_attempt_at, sent_at = r.sent_at,
    last_error = r.last_error }
end

-- last_notification(fp, channel, status?) -> row | nil (none) | nil, err: the latest non-test
-- notification that carried fp on channel (with that alert status, if given).
function Store:last_notification(fp, channel, status)
  local rows, err = self.db:query("SELECT n.*, a.status AS alert_status FROM notification_alerts a"
    .. " JOIN notifications n ON n.id = a.notification_id WHERE a.fingerprint = ?1 AND n.channel = ?2"
    .. " AND n.test = 0 AND (?3 IS NULL OR a.status = ?3) ORDER BY n.id DESC LIMIT 1", fp, channel, status)
  if not rows then return nil, err end
  return rows[1] and notification_row(rows[1]) or nil
end

-- pending_notifications(now, limit) -> { row with .notification (the decoded payload)... } | nil, err:
-- the outbox rows due at now, oldest first.
function Store:pending_notifications(now, limit)
  local db = self.db
  return unwrap(pcall(function()
    local out = {}
    for i, r in ipairs(check(db:query("SELECT * FROM notifications WHERE state = 'pending'"
      .. " AND next_attempt_at <= ? ORDER BY id LIMIT ?", now or self.now(), limit or 100))) do
      local row = notification_row(r)
      local n = decode(r.payload, "payload of notification " .. r.id)
      -- the columns (rows written before they left the payload have them both ways)
      if n.channel == nil then n.channel = row.channel end
      if n.status == nil then n.status = row.status end
      if n.group_key == nil then n.group_key = row.group_key end
      if n.dedup_key == nil then n.dedup_key = row.dedup_key end
      if n.test == nil then n.test = row.test end
      if n.created_at == nil then n.created_at = row.created_at end
      row.notification = n
      out[i] = row
    end
    return out
  end))
end

local UPDATABLE = { "state", "attempts", "next_attempt_at", "sent_at", "last_error" }
local UPDATABLE_BIT = {}
for i, k in ipairs(UPDATABLE) do UPDATABLE_BIT[k] = 2 ^ (i - 1) end
-- "UPDATE notifications SET ..." per set of fields (a bit each), made once
local update_sql = {}

-- update_notification(id, { state, attempts, next_attempt_at, sent_at, last_error }) -> true | nil, err
function Store:update_notification(id, fields)
  local mask = 0
  for k in pairs(fields) do
    local bit = UPDATABLE_BIT[k]
    if not bit then error("update_notification: no field " .. tostring(k), 2) end
    mask = mask + bit
  end
  if mask == 0 then return true end
  local sql = update_sql[mask]
  if not sql then
    local sets = {}
    for i, k in ipairs(UPDATABLE) do
      if fields[k] ~= nil then sets[#sets + 1] = ("%s = ?%d"):format(k, i) end
    end
    sql = "UPDATE notifications SET " .. table.concat(sets, ", ") .. " WHERE id = ?6"
    update_sql[mask] = sql
  end
  local ok, err = self.db:run(sql, fields.state, fields.attempts, fields.next_attempt_at, fields.sent_at,
    fields.last_error, id)
  if not ok then return nil, err end
  return true
end

-- ---- silences ------------------------------------------------------------------------------------

local function new_id()
  local f = io.open("/dev/urandom", "rb")
  local b = f and f:read(16)
  if f then f:close() end
  if not b or #b < 16 then
    local t = {}
    for i = 1, 16 do t[i] = string.char(math.random(0, 255)) end
    b = table.concat(t)
  end
  local h = b:gsub(".", function(c) return ("%02x"):format(c:byte()) end)
  return ("%s-%s-%s-%s-%s"):format(h:sub(1, 8), h:sub(9, 12), h:sub(13, 16), h:sub(17, 20), h:sub(21, 32))
end

local function put_silence(self, s, source)
  assert(type(s) == "table" and type(s.matchers) == "table", "a silence with matchers expected")
  assert(type(s.starts) == "number" and type(s.ends) == "number", "a silence with starts and ends expected")
  local id = s.id ~= nil and tostring(s.id) or new_id()
  check(self.db:run("INSERT OR REPLACE INTO silences(id, matchers, starts, ends, comment, created_by, source,"
    .. " created_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?)", id, encode(s.matchers), s.starts, s.ends,
    s.comment, s.created_by, source or s.source or "api", opt_number(s.created_at) or self.now()))
  return id
end

-- add_silence{ id?, matchers, starts, ends, comment, created_by, source = "api"|"file" } -> id | nil, err
-- An existing id is replaced (how a silence is edited).
function Store:add_silence(s)
  return unwrap(pcall(put_silence, self, s))
end

-- delete_silence(id) -> true | false (no such silence) | nil, err
function Store:delete_silence(id)
  local n, err = self.db:run("DELETE FROM silences WHERE id = ?", tostring(id))
  if not n then return nil, err end
  return n > 0
end

-- silences(t?) -> list | nil, err: those active at t (starts <= t < ends), or all without t.
function Store:silences(t)
  local db = self.db
  return unwrap(pcall(function()
    local out = {}
    for i, r in ipairs(check(db:query("SELECT * FROM silences WHERE ?1 IS NULL OR (starts <= ?1 AND ends > ?1)"
      .. " ORDER BY starts, id", t))) do
      out[i] = { id = r.id, matchers = decode(r.matchers, "matchers of silence " .. r.id), starts = r.starts,
        ends = r.ends, comment = r.comment, created_by = r.created_by, source = r.source,
        created_at = r.created_at }
    end
    return out
  end))
end

-- purge_silences(t) -> number deleted | nil, err: those that ended at or before t.
function Store:purge_silences(t)
  local n, err = self.db:run("DELETE FROM silences WHERE ends <= ?", t or self.now())
  if not n then return nil, err end
  return n
end

-- replace_file_silences(list) -> true | nil, err: the silences from rule files, after a reload.
function Store:replace_file_silences(list)
  local db = self.db
  return self:tx(function()
    check(db:run("DELETE FROM silences WHERE source = 'file'"))
    for _, s in ipairs(list) do put_silence(self, s, "file") end
    return true
  end)
end

-- ---- rules created over the API ----------------------------------------------------------------

-- put_api_rule(name, rule) -> true | nil, err; rule is a table or its JSON text. An update keeps
-- created_at.
function Store:put_api_rule(name, rule)
  assert(type(name) == "string", "put_api_rule: a name expected")
  local ok, text = pcall(function() return type(rule) == "string" and rule or encode(rule) end)
  if not ok then return unwrap(false, text) end
  local n, err = self.db:run("INSERT INTO api_rules(name, json, created_at) VALUES(?, ?, ?)"
    .. " ON CONFLICT(name) DO UPDATE SET json = excluded.json", name, text, self.now())
  if not n then return nil, err end
  return true
end

local function api_rule_row(r)
  return { name = r.name, rule = decode(r.json, "api rule " .. r.name), created_at = r.created_at }
end

-- get_api_rule(name) -> { name, rule, created_at } | nil (none) | nil, err
function Store:get_api_rule(name)
  local db = self.db
  return unwrap(pcall(function()
    local r = check(db:query("SELECT * FROM api_rules WHERE name = ?", name))[1]
    return r and api_rule_row(r) or nil
  end))
end

-- delete_api_rule(name) -> true | false (none) | nil, err
function Store:delete_api_rule(name)
  local n, err = self.db:run("DELETE FROM api_rules WHERE name = ?", name)
  if not n then return nil, err end
  return n > 0
end

-- api_rules() -> { { name, rule, created_at }... } by name | nil, err
function Store:api_rules()
  local db = self.db
  return unwrap(pcall(function()
    local out = {}
    for i, r in ipairs(check(db:query("SELECT * FROM api_rules ORDER BY name"))) do out[i] = api_rule_row(r) end
    return out
  end))
end

-- ---- housekeeping ------------------------------------------------------------------------------

-- prune(older_than) -> { notifications = n, instances = n, silences = n } | nil, err: deletes the
-- notifications created before older_than (whatever their state: keep older_than beyond the
-- outbox's time-to-live), inactive and resolved instances not updated since, and silences that
-- ended before it.
function Store:prune(older_than)
  assert(type(older_than) == "number", "prune: a time expected")
  local db = self.db
  return self:tx(function()
    return {
      notifications = check(db:run("DELETE FROM notifications WHERE created_at < ?", older_than)),
      instances = check(db:run("DELETE FROM alert_instances WHERE state IN ('inactive', 'resolved')"
        .. " AND updated_at < ?", older_than)),
      silences = check(db:run("DELETE FROM silences WHERE ends < ?", older_than)),
    }
  end)
end

return M
