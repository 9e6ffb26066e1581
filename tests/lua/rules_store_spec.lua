-- beagle.rules.store on a real SQLite file (the C binding from BEAGLE_LIB), with a fake clock:
-- the engine's calls end to end, silences, API rules, the outbox columns, pruning, schema
-- versions, and a child process killed with SIGKILL after its commit.
local Store = require("agent.rules.store")

local T0 = 1700000000

local function tmpdir()
  local p = io.popen("mktemp -d /tmp/beagle-store-spec.XXXXXX")
  local d = p:read("*l")
  p:close()
  return d
end

local function instance(o)
  local i = { fingerprint = "fp1", name = "high_cpu", labels = { alertname = "high_cpu", host = "a" },
    state = "firing", value = 91.5, active_at = T0, starts_at = T0 + 60, last_eval = T0 + 120,
    annotations = { message = "CPU 91.5" } }
  for k, v in pairs(o or {}) do i[k] = v end
  return i
end

local function notification(o)
  local n = { channel = "oncall", status = "firing", group_key = "{}:{alertname=\"high_cpu\"}",
    dedup_key = "dk-1", test = false, created_at = T0 + 60,
    alerts = { { fingerprint = "fp1", name = "high_cpu", status = "firing" } } }
  for k, v in pairs(o or {}) do n[k] = v end
  return n
end

describe("agent.rules.store", function()
  local dir, path, clock, st

  local function open()
    return assert(Store.open(path, { now = function() return clock end }))
  end

  before_each(function()
    dir = tmpdir()
    path = dir .. "/state.db"
    clock = T0
    st = open()
  end)

  after_each(function()
    if st then st:close() end
    os.execute("rm -rf " .. dir)
  end)

  describe("open", function()
    it("creates the schema at the current version, in WAL mode", function()
      assert.equals(3, Store.SCHEMA_VERSION)
      assert.equals(3, st.db:query("PRAGMA user_version")[1].user_version)
      assert.equals("wal", st.db:query("PRAGMA journal_mode")[1].journal_mode)
      assert.equals(1, st.db:query("PRAGMA synchronous")[1].synchronous)
      local names = {}
      for _, r in ipairs(st.db:query("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")) do
        names[#names + 1] = r.name
      end
      assert.same({ "alert_instances", "api_rules", "notification_alerts", "notifications", "silences" }, names)
      -- the indexes the queries use, and no other: each one is a B-tree write per row
      local idx = {}
      for _, r in ipairs(st.db:query("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL ORDER BY name")) do
        idx[#idx + 1] = r.name
      end
      assert.same({ "notification_alerts_fp", "notifications_pending", "silences_ends" }, idx)
    end)

    it("reopens an existing database without migrating it again", function()
      st:save_instances({ instance() })
      st:close()
      st = open()
      assert.equals(1, #st:load().instances)
    end)

    it("migrates a version 1 database: rows kept, state CHECKs without an IN list", function()
      st:close()
      os.remove(path)
      local raw = assert(package.loadlib(os.getenv("BEAGLE_LIB"), "luaopen_beagle_store"))().store_open
      local db = assert(raw(path, {}))
      assert(db:exec(Store.MIGRATIONS[1]))
      assert(db:exec("PRAGMA user_version = 1"))
      assert(db:run("INSERT INTO alert_instances(fingerprint, rule, state, updated_at) VALUES('fp1', 'r', 'firing', 1)"))
      assert(db:run("INSERT INTO notifications(id, channel, status, created_at, payload) VALUES(7, 'c', 'firing', 1, '{}')"))
      assert(db:run("INSERT INTO notification_alerts(notification_id, fingerprint, status) VALUES(7, 'fp1', 'firing')"))
      db:close()
      st = open()
      assert.equals(3, st.db:query("PRAGMA user_version")[1].user_version)
      assert.equals(1, #st:load().instances)
      -- the child rows survive (nothing was dropped, so ON DELETE CASCADE never ran)
      assert.equals(1, st.db:query("SELECT count(*) AS n FROM notification_alerts")[1].n)
      assert.equals(1, st.db:query("SELECT count(*) AS n FROM notifications WHERE state = 'pending'")[1].n)
      -- same constraint, no ephemeral table per statement
      for _, t in ipairs { "alert_instances", "notifications" } do
        local sql = st.db:query("SELECT sql FROM sqlite_master WHERE name = ?", t)[1].sql
        assert.is_nil(sql:find(" IN (", 1, true), sql)
        assert.truthy(sql:find("state = 'pending' OR", 1, true), sql)
      end
      local ops = st.db:query("EXPLAIN UPDATE notifications SET state = ? WHERE id = ?", "sent", 7)
      for _, op in ipairs(ops) do assert.are_not.equal("OpenEphemeral", op.opcode) end
      assert.is_nil((st.db:run("UPDATE notifications SET state = 'bogus' WHERE id = 7")))
      assert.is_nil((st.db:run("UPDATE alert_instances SET state = 'bogus'")))
      assert(st.db:run("UPDATE notifications SET state = 'sent' WHERE id = 7"))
      assert.equals("ok", st.db:query("PRAGMA integrity_check")[1].integrity_check)
    end)

    it("refuses a database from a newer beagle", function()
      st.db:exec("PRAGMA user_version = 99")
      st:close()
      st = nil
      local s, err = Store.open(path)
      assert.is_nil(s)
      assert.matches("schema version 99, newer than this beagle's 3", err, 1, true)
    end)

    it("reports what SQLite says about a bad path", function()
      local s, err = Store.open("/nonexistent-dir/state.db")
      assert.is_nil(s)
      assert.matches("^store: /nonexistent%-dir/state.db: unable to open", err)
    end)

    it("takes synchronous = full", function()
      local s = assert(Store.open(dir .. "/full.db", { synchronous = "full" }))
      assert.equals(2, s.db:query("PRAGMA synchronous")[1].synchronous)
      s:close()
    end)
  end)

  describe("the engine's calls", function()
    it("saves and loads instances with every field", function()
      assert.is_true(st:save_instances({ instance(), instance { fingerprint = "fp2", state = "pending",
        starts_at = false, value = 0 / 0, labels = {}, annotations = {}, keep_since = T0 + 100 } }))
      local data = st:load()
      assert.equals(2, #data.instances)
      local a, b = data.instances[1], data.instances[2]
      assert.same({ fingerprint = "fp1", name = "high_cpu", labels = { alertname = "high_cpu", host = "a" },
        state = "firing", value = 91.5, active_at = T0, starts_at = T0 + 60, last_eval = T0 + 120,
        annotations = { message = "CPU 91.5" }, last_notified = {} }, a)
      assert.equals("pending", b.state)
      assert.is_nil(b.value) -- NaN is stored as NULL
      assert.is_nil(b.starts_at)
      assert.equals(T0 + 100, b.keep_since)
      assert.same({}, b.labels)
      assert.same({}, b.annotations)
      assert.same({}, data.notified)
    end)

    it("updates in place and removes an instance marked deleted, in one transaction", function()
      st:save_instances({ instance(), instance { fingerprint = "fp2" } })
      clock = T0 + 500
      st:save_instances({ instance { state = "resolved", ends_at = T0 + 500 }, { fingerprint = "fp2", deleted = true } })
      local data = st:load()
      assert.equals(1, #data.instances)
      assert.equals("resolved", data.instances[1].state)
      assert.equals(T0 + 500, data.instances[1].ends_at)
      assert.equals(T0 + 500, st.db:query("SELECT updated_at FROM alert_instances")[1].updated_at)
      -- a bad instance raises, and nothing of its batch is kept
      assert.has_error(function() st:save_instances({ instance { fingerprint = "fp3" }, { fingerprint = "x" } }) end)
      assert.equals(1, #st:load().instances)
      assert.is_true(st:save_instances({}))
    end)

    it("logs notifications, one row per alert, and counts them per fingerprint and channel", function()
      local id = assert(st:log_notification(notification()))
      assert.equals(1, id)
      st:log_notification(notification { created_at = T0 + 120, channel = "slack" })
      st:log_notification(notification { created_at = T0 + 180, status = "resolved",
        alerts = { { fingerprint = "fp1", status = "resolved" }, { fingerprint = "fp2", status = "firing" } } })
      st:log_notification(notification { created_at = T0 + 200, test = true })
      assert.equals(2, st:count_notifications("fp1", "oncall", T0))
      assert.equals(1, st:count_notifications("fp1", "oncall", T0 + 61))
      assert.equals(1, st:count_notifications("fp1", "oncall", T0, "firing"))
      assert.equals(1, st:count_notifications("fp1", "oncall", T0, "resolved"))
      assert.equals(1, st:count_notifications("fp2", "oncall", T0, "firing")) -- its own status
      assert.equals(1, st:count_notifications("fp1", "slack", T0))
      assert.equals(0, st:count_notifications("fp1", "email", T0))
      local last = st:last_notification("fp1", "oncall")
      assert.equals(3, last.id)
      assert.equals("resolved", last.status)
      assert.equals("pending", last.state)
      assert.equals(T0 + 180, last.created_at)
      assert.equals("firing", st:last_notification("fp1", "oncall", "firing").alert_status)
      assert.is_nil(st:last_notification("fp9", "oncall"))
      -- the payload holds what the columns don't: the alerts (and anything else n carries)
      local row = st.db:query("SELECT payload, dedup_key FROM notifications WHERE id = 1")[1]
      local payload = require("cjson").decode(row.payload)
      assert.equals("dk-1", row.dedup_key)
      assert.is_nil(payload.dedup_key)
      assert.is_nil(payload.channel)
      assert.equals("fp1", payload.alerts[1].fingerprint)
    end)

    it("logs a list of notifications in one go, ids in order, all or nothing", function()
      local ids = assert(st:log_notifications { notification(), notification { channel = "slack" } })
      assert.same({ 1, 2 }, ids)
      assert.equals(1, st:count_notifications("fp1", "slack", T0))
      -- one bad notification: none of the list is kept
      assert.has_error(function() st:log_notifications { notification { channel = "x" }, { alerts = {} } } end)
      assert.equals(0, st:count_notifications("fp1", "x", T0))
      assert.equals(2, st.db:query("SELECT count(*) AS n FROM notifications")[1].n)
    end)

    it("loads the notification log: the last hour, plus the latest row of each fingerprint and channel", function()
      st:log_notification(notification { created_at = T0 })               -- old, superseded
      st:log_notification(notification { created_at = T0 + 100 })         -- old, the latest on oncall
      st:log_notification(notification { created_at = T0 + 50, channel = "slack" }) -- latest on slack
      st:log_notification(notification { created_at = T0 + 4000 })        -- in the hour
      st:log_notification(notification { created_at = T0 + 4100, status = "resolved",
        alerts = { { fingerprint = "fp1", status = "resolved" } } })
      st:log_notification(notification { created_at = T0 + 4200, test = true })
      clock = T0 + 4300
      local rows = st:load().notified
      table.sort(rows, function(a, b) return a.at < b.at end)
      assert.same({
        { fingerprint = "fp1", channel = "slack", status = "firing", at = T0 + 50 },
        { fingerprint = "fp1", channel = "oncall", status = "firing", at = T0 + 4000 },
        { fingerprint = "fp1", channel = "oncall", status = "resolved", at = T0 + 4100 },
      }, rows)
      clock = T0 + 3650
      assert.equals(4, #st:load().notified) -- T0 + 100 is now within the hour too
    end)

    it("binds JSON columns as tables; what the binding's encoder refuses is encoded another way", function()
      -- a boolean key: the binding says no, and the store falls back (cjson, then beagle.json)
      local inst = instance()
      inst.annotations = { message = "m", [true] = "odd key" }
      assert(st:save_instances({ inst }))
      local n = notification()
      n.extra = { handler = print, [false] = 1 } -- a function value and a boolean key
      local id = assert(st:log_notification(n))
      local row = st.db:query("SELECT payload FROM notifications WHERE id = ?", id)[1]
      assert.truthy(row.payload:find('"alerts":', 1, true), row.payload)
      assert.equals("m", st:load().instances[1].annotations.message)
      -- the binding itself: a table parameter is its JSON text, a refusal is nil, err
      assert(st.db:run("INSERT INTO api_rules(name, json, created_at) VALUES(?, ?, 1)", "t", { a = { 1, 2 } }))
      assert.equals('{"a":[1,2]}', st.db:query("SELECT json FROM api_rules WHERE name = 't'")[1].json)
      local ok, err = st.db:run("INSERT INTO api_rules(name, json, created_at) VALUES(?, ?, 1)", "u", { f = print })
      assert.is_nil(ok)
      assert.matches("^store: JSON: parameter 2:", err)
      assert.equals(0, st.db:query("SELECT count(*) AS n FROM api_rules WHERE name = 'u'")[1].n)
    end)

    it("returns nil, err for a row SQLite refuses", function()
      local n, err = st:log_notification(notification { status = "bogus", state = "nope" })
      assert.is_nil(n)
      assert.matches("^store: CHECK constraint failed", err)
      assert.equals(0, st.db:query("SELECT count(*) AS n FROM notifications")[1].n)
    end)

    it("writes state and notifications atomically with tx", function()
      assert.has_error(function()
        st:tx(function()
          assert(st:save_instances({ instance() }))
          assert(st:log_notification(notification()))
          error("undo", 0)
        end)
      end, "undo")
      assert.same({}, st:load().instances)
      assert.equals(0, st:count_notifications("fp1", "oncall", 0))
      local id = st:tx(function()
        assert(st:save_instances({ instance() }))
        return st:log_notification(notification())
      end)
      assert.equals(1, id)
      assert.equals(1, #st:load().instances)
    end)
  end)

  describe("outbox columns", function()
    it("lists the due rows and records attempts", function()
      local id1 = st:log_notification(notification())
      local id2 = st:log_notification(notification { created_at = T0 + 100 })
      local due = st:pending_notifications(T0 + 60)
      assert.equals(1, #due)
      assert.equals(id1, due[1].id)
      -- the whole notification again, columns and payload
      local n = due[1].notification
      assert.same({ "dk-1", "oncall", "firing", false, T0 + 60 }, { n.dedup_key, n.channel, n.status, n.test, n.created_at })
      assert.equals(notification().group_key, n.group_key)
      assert.equals("fp1", n.alerts[1].fingerprint)
      assert.is_true(st:update_notification(id1, { state = "sent", attempts = 1, sent_at = T0 + 61 }))
      assert.is_true(st:update_notification(id2, { attempts = 1, next_attempt_at = T0 + 200, last_error = "503" }))
      assert.same({}, st:pending_notifications(T0 + 150))
      due = st:pending_notifications(T0 + 200)
      assert.equals(id2, due[1].id)
      assert.equals("503", due[1].last_error)
      assert.has_error(function() st:update_notification(id2, { payload = "x" }) end)
    end)

    it("reads rows whose payload is the whole notification (written before the columns left it)", function()
      assert(st.db:run("INSERT INTO notifications(channel, status, group_key, dedup_key, created_at, payload,"
        .. " next_attempt_at) VALUES('oncall', 'resolved', 'g-col', 'dk-col', ?, ?, ?)", T0, require("cjson").encode {
          channel = "oncall", status = "resolved", group_key = "g-old", dedup_key = "dk-old", test = false,
          created_at = T0, alerts = { { fingerprint = "fp9", status = "resolved" } } }, T0))
      local n = st:pending_notifications(T0)[1].notification
      -- the payload's own fields win, as they did
      assert.same({ "dk-old", "g-old", "resolved", "fp9" }, { n.dedup_key, n.group_key, n.status, n.alerts[1].fingerprint })
    end)
  end)

  describe("silences", function()
    it("adds, lists the active ones, edits, deletes and purges", function()
      local id = assert(st:add_silence { matchers = { alertname = "high_cpu", host = "batch-*" }, starts = T0,
        ends = T0 + 3600, comment = "maintenance", created_by = "ops" })
      assert.matches("^%x+%-%x+%-%x+%-%x+%-%x+$", id)
      st:add_silence { id = "s2", matchers = { host = "~db.*" }, starts = T0 + 7200, ends = T0 + 9000 }
      assert.equals(2, #st:silences())
      local active = st:silences(T0 + 10)
      assert.equals(1, #active)
      assert.same({ id = id, matchers = { alertname = "high_cpu", host = "batch-*" }, starts = T0, ends = T0 + 3600,
        comment = "maintenance", created_by = "ops", source = "api", created_at = T0 }, active[1])
      assert.same({}, st:silences(T0 + 3600)) -- ends is exclusive
      st:add_silence { id = id, matchers = { alertname = "high_cpu" }, starts = T0, ends = T0 + 60 }
      assert.same({ alertname = "high_cpu" }, st:silences(T0 + 10)[1].matchers)
      assert.equals(1, st:purge_silences(T0 + 100))
      assert.is_true(st:delete_silence("s2"))
      assert.is_false(st:delete_silence("s2"))
      assert.same({}, st:silences())
    end)

    it("replaces the silences from rule files and keeps the API ones", function()
      st:add_silence { id = "api1", matchers = { a = "1" }, starts = T0, ends = T0 + 60 }
      st:replace_file_silences({ { id = "f1", matchers = { b = "1" }, starts = T0, ends = T0 + 60 } })
      st:replace_file_silences({ { id = "f2", matchers = { c = "1" }, starts = T0, ends = T0 + 60 } })
      local ids = {}
      for _, s in ipairs(st:silences()) do ids[#ids + 1] = s.id .. ":" .. s.source end
      assert.same({ "api1:api", "f2:file" }, ids)
    end)
  end)

  describe("API rules", function()
    it("puts, gets, lists and deletes, keeping created_at on update", function()
      assert.is_true(st:put_api_rule("disk_full", { metric = "disk.used", condition = ">", threshold = 90 }))
      clock = T0 + 10
      assert.is_true(st:put_api_rule("disk_full", '{"metric":"disk.used","condition":">","threshold":95}'))
      st:put_api_rule("a_rule", { metric = "x" })
      local r = st:get_api_rule("disk_full")
      assert.same({ metric = "disk.used", condition = ">", threshold = 95 }, r.rule)
      assert.equals(T0, r.created_at)
      local names = {}
      for _, x in ipairs(st:api_rules()) do names[#names + 1] = x.name end
      assert.same({ "a_rule", "disk_full" }, names)
      assert.is_true(st:delete_api_rule("disk_full"))
      assert.is_false(st:delete_api_rule("disk_full"))
      assert.is_nil(st:get_api_rule("disk_full"))
    end)
  end)

  describe("prune", function()
    it("drops old notifications with their alert rows, old resolved instances and ended silences", function()
      st:log_notification(notification { created_at = T0 })
      st:log_notification(notification { created_at = T0 + 1000 })
      st:save_instances({ instance { fingerprint = "old", state = "resolved" }, instance { fingerprint = "live" } })
      st:add_silence { id = "s", matchers = { a = "1" }, starts = T0, ends = T0 + 10 }
      clock = T0 + 2000
      st:save_instances({ instance { fingerprint = "new", state = "resolved" } })
      local n = st:prune(T0 + 500)
      assert.same({ notifications = 1, instances = 1, silences = 1 }, n)
      assert.equals(1, st.db:query("SELECT count(*) AS n FROM notification_alerts")[1].n)
      assert.equals(2, #st:load().instances)
    end)
  end)

  describe("crash", function()
    local function child(script)
      local f = assert(io.open(dir .. "/child.lua", "w"))
      f:write(script)
      f:close()
      -- the child inherits LUA_PATH and BEAGLE_LIB
      return os.execute("luajit " .. dir .. "/child.lua " .. path .. " 2>" .. dir .. "/child.err")
    end

    it("keeps what a process committed before kill -9, and nothing of its open transaction", function()
      st:close()
      st = nil
      local rc = child([[
        local ffi = require("ffi")
        ffi.cdef("int kill(int pid, int sig); int getpid(void);")
        local Store = require("agent.rules.store")
        local st = assert(Store.open(arg[1], { now = function() return 1700000100 end }))
        assert(st:tx(function()
          assert(st:save_instances({ { fingerprint = "fp1", name = "high_cpu", labels = { host = "a" },
            state = "firing", value = 95, active_at = 1700000000, starts_at = 1700000060 } }))
          assert(st:log_notification({ channel = "oncall", status = "firing", dedup_key = "dk",
            created_at = 1700000060, alerts = { { fingerprint = "fp1", status = "firing" } } }))
          return true
        end))
        -- a second transaction, still open when the process dies
        st.db:tx(function()
          st:save_instances({ { fingerprint = "fp2", name = "other", state = "pending" } })
          st:log_notification({ channel = "oncall", alerts = { { fingerprint = "fp1" } } })
          ffi.C.kill(ffi.C.getpid(), 9)
        end)
        os.exit(3)
      ]])
      assert.is_not.equal(0, rc)
      local f = io.open(dir .. "/child.err")
      local errs = f:read("*a")
      f:close()
      assert.is_nil(errs:find("luajit:"), errs) -- killed, not failed (the shell may say "Killed")
      st = open()
      local data = st:load()
      assert.equals(1, #data.instances)
      assert.equals("firing", data.instances[1].state)
      assert.equals(1700000060, data.instances[1].starts_at)
      assert.equals(1700000000, data.instances[1].active_at)
      assert.equals(1, st:count_notifications("fp1", "oncall", 0))
      assert.equals(1, #st:pending_notifications(1700000060))
    end)
  end)

  describe("with the engine", function()
    local ok_engine, Engine = pcall(require, "agent.rules.engine")
    local it_engine = ok_engine and it or pending

    it_engine("resumes firing and pending alerts after a restart, without notifying twice", function()
      local rules = {
        { kind = "alert", name = "high_cpu", enabled = true, metric = "system.cpu.percent", condition = ">",
          threshold = 80, duration = 0, keep_firing_for = 0, severity = "warning", message = "CPU", labels = {} },
        { kind = "alert", name = "slow", enabled = true, metric = "system.cpu.percent", condition = ">",
          threshold = 80, duration = 300, keep_firing_for = 0, severity = "warning", message = "slow", labels = {} },
      }
      local routes = { { group_by = { "alertname" }, group_wait = 0, group_interval = 60, repeat_interval = 14400 } }
      local sent = {}
      local function engine()
        return Engine.new { now = function() return clock end, store = st,
          settings = { alert_cooldown_minutes = 15, alert_max_notifications_per_hour = 10 },
          notify = function(n) sent[#sent + 1] = n end }
      end
      local e = engine()
      e:set_rules(rules, routes)
      e:evaluate("high_cpu", { { labels = { host = "a" }, value = 90 } })
      clock = T0 + 120
      e:evaluate("slow", { { labels = { host = "a" }, value = 90 } })
      assert.equals(1, #sent)
      assert.equals(0, e.store_errors)
      -- restart: a new engine on the same file, reopened
      st:close()
      st = open()
      sent = {}
      clock = T0 + 180
      local e2 = engine()
      e2:set_rules(rules, routes)
      local a = e2:alerts()
      assert.equals(2, #a)
      assert.equals("firing", a[1].state)
      assert.equals(T0, a[1].starts_at)
      assert.equals("pending", a[2].state)
      assert.equals(T0 + 120, a[2].active_at)
      clock = T0 + 240
      e2:evaluate("high_cpu", { { labels = { host = "a" }, value = 90 } })
      assert.equals(0, #sent)
      clock = T0 + 420
      e2:evaluate("slow", { { labels = { host = "a" }, value = 90 } })
      assert.equals(1, #sent)
      assert.equals("slow", sent[1].alerts[1].name)
      assert.equals(0, e2.store_errors)
    end)
  end)
end)
