-- The state store under faults (issue 14 §2): nothing is sent that was not first committed,
-- and a store that fails or cannot be used is visible.
--   * Writes failing: the agent runs with a file-size limit (prlimit; SIGXFSZ is ignored, so a
--     write past it fails with EFBIG, as on a full disk) while new alerts keep firing. No notification
--     reaches the channel without its outbox row committed; the failure is logged once with
--     SQLite's error, counted in beagle_store_errors_total, and /health/ready, /health/detailed
--     and beagle_store_up say so; once the limit is lifted the held notifications commit and go
--     out, and the store recovers.
--   * Files that cannot be used (garbage, truncated, a directory in its place) are moved aside
--     with a timestamp and a fresh one made, said in the same three places; an empty file is a
--     new database; in a read-only directory the agent runs without durability and says so.
local S = require "support"
local cjson = require "cjson"

local function metric(text, name, labels)
  for line in text:gmatch("[^\n]+") do
    local n, l, v = line:match("^([%w_]+){(.-)} (%S+)$")
    if n == name and l == labels then return tonumber(v) end
  end
end

local function count(hay, needle)
  local n, i = 0, 1
  while true do
    local a, b = hay:find(needle, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

local function pre_create(path)
  local Store = require "agent.rules.store"
  local st = assert(Store.open(path))
  st:close()
end

describe("notifications under a failing state store", function()
  local sink, agent, rules, data, wrapper

  setup(function()
    sink = S.sink()
    rules = S.tmpdir()
    data = S.tmpdir()
    S.write(rules .. "/flip.lua", [[
route { channels = { "hook" }, group_by = { "alertname", "k" }, group_wait = "0s", group_interval = "0.2s",
  repeat_interval = "1h" }
alert "flippy" { metric = "flip.value", condition = ">", threshold = 10, duration = "0s", every = "0.2s",
  severity = "warning", message = "flip {{ labels.k }}" }
]])
    -- the schema is there before the limit: the agent's own writes are what fails
    pre_create(data .. "/state.db")
    -- a file-size limit for the agent only, lifted later with prlimit --pid
    wrapper = S.tmpdir() .. "/beagle-limited"
    -- (SIGXFSZ ignored here as well as by the agent: a disk that fills kills no process)
    S.write(wrapper, ("#!/bin/sh\ntrap '' XFSZ\nexec prlimit --fsize=65536:unlimited %q \"$@\"\n"):format(S.bin))
    S.sh("chmod +x " .. wrapper)
  end)

  teardown(function()
    if agent then agent:stop() end
    if sink then sink.stop() end
  end)

  local function set(k, v)
    agent:post("/metrics/custom", cjson.encode { name = "flip.value", type = "gauge", value = v, tags = { k = k } },
      { "Content-Type: application/json" })
  end

  -- dedup key -> row state, of every notification row committed so far (read beside the agent)
  local function committed()
    local Store = require "agent.rules.store"
    local st = assert(Store.open(data .. "/state.db"))
    local rows = assert(st.db:query("SELECT dedup_key, state FROM notifications WHERE channel = 'hook' AND test = 0"))
    st:close()
    local keys = {}
    for _, r in ipairs(rows) do keys[r.dedup_key] = r.state end
    return keys, #rows
  end

  local function delivered()
    local keys, n = {}, 0
    for _, r in ipairs(sink.requests()) do
      if r.path == "/flip" then
        keys[r.headers["idempotency-key"]] = cjson.decode(r.body)
        n = n + 1
      end
    end
    return keys, n
  end

  local function sent_uncommitted()
    local rows, n = committed()
    local out = {}
    local got, m = delivered()
    for key in pairs(got) do
      if not rows[key] then out[#out + 1] = key end
    end
    return out, n, m
  end

  it("sends only committed notifications, says the store fails, and delivers once it recovers", function()
    local bin = S.bin
    S.bin = wrapper
    local ok, a = pcall(S.start, {
      env = { MONITORING_METRICS_COLLECTION_INTERVAL = "0.1" },
      args = { "--rules", rules, "--data", data },
      config = S.calm_system .. ([[
notification_backoff_initial = "0.05s"
notification_backoff_max = "0.5s"
alert_cooldown_minutes = 0
alert_max_notifications_per_hour = 100000
channel "hook" { plugin = "webhook", url = "%s/flip" }
]]):format(sink.url),
    })
    S.bin = bin
    assert(ok, a)
    agent = a

    -- a new alert fires every 0.3 s: far more commits than 64 KiB of WAL holds
    local N = 24
    for k = 1, N do
      set(tostring(k), 50)
      S.sleep(0.3)
    end
    -- nothing went out that is not in the outbox
    local bad, ncommitted, ndelivered = sent_uncommitted()
    print(("while failing: %d committed, %d delivered"):format(ncommitted, ndelivered))
    assert.are.same({}, bad)
    local failing = S.wait(function() return agent:logtext():find("store is failing", 1, true) end, 20)
    assert.is_truthy(failing, agent:logtext())

    -- said once, with SQLite's error, counted, and shown
    local log = agent:logtext()
    -- (history.db may fail too, at its flush: said on a line of its own)
    local state_lines = {}
    for line in log:gmatch("[^\n]+") do
      if line:find("store is failing", 1, true) and line:find("db=state", 1, true) then
        state_lines[#state_lines + 1] = line
      end
    end
    assert.are.equal(1, #state_lines, log)
    assert.is_truthy(log:match('store is failing[^\n]*db=state[^\n]*error="[^"]*disk I/O error') or
      log:match('store is failing[^\n]*db=state[^\n]*error="[^"]*disk is full'), log)
    local _, text = agent:get("/metrics")
    assert.are.equal(0, metric(text, "beagle_store_up", 'db="state"'), text)
    local errs = (metric(text, "beagle_store_errors_total", 'db="state",op="commit"') or 0)
      + (metric(text, "beagle_store_errors_total", 'db="state",op="write"') or 0)
    assert.is_true(errs >= 1, text)
    local st, ready = agent:get_json("/health/ready")
    local ready_ok = S.wait(function()
      st, ready = agent:get_json("/health/ready")
      return ready and ready.status == "degraded"
    end, 10)
    assert.is_truthy(ready_ok, cjson.encode(ready or {}))
    assert.are.equal(200, st)
    assert.are.equal("state", ready.stores[1].db)
    local _, detailed = agent:get_json("/health/detailed")
    assert.are.equal("degraded", detailed.status)
    local state
    for _, s in ipairs(detailed.stores) do if s.db == "state" then state = s end end
    assert.is_true(state.failing)
    assert.is_false(state.up)
    assert.is_truthy(state.error)

    -- room again: what was held commits, goes out, and the store says it recovered
    S.sh(("prlimit --pid %d --fsize=unlimited:unlimited"):format(agent.pid))
    local recovered = S.wait(function() return agent:logtext():find("store recovered", 1, true) end, 20)
    assert.is_truthy(recovered, agent:logtext())
    local all_firing = S.wait(function()
      local rows = committed()
      local got = delivered()
      local firing = {}
      for key, body in pairs(got) do
        if rows[key] then
          for _, al in ipairs(body.alerts or {}) do
            if al.status == "firing" then firing[al.labels.k] = true end
          end
        end
      end
      local _, o = agent:get_json("/health/detailed")
      local drained = false
      for _, c in ipairs(o and o.channels or {}) do
        if c.name == "hook" then drained = c.pending == 0 and c.in_flight == 0 end
      end
      for k = 1, N do if not firing[tostring(k)] then return false end end
      return drained
    end, 30)
    assert.is_truthy(all_firing, agent:logtext())
    bad, ncommitted, ndelivered = sent_uncommitted()
    assert.are.same({}, bad)
    print(("after recovery: %d committed, %d delivered"):format(ncommitted, ndelivered))
    _, text = agent:get("/metrics")
    assert.are.equal(1, metric(text, "beagle_store_up", 'db="state"'), text)
    assert.is_truthy(S.wait(function()
      local _, r = agent:get_json("/health/ready")
      return r and r.status == "ready"
    end, 10))
    agent:signal("KILL")
    S.wait(function() return not agent:alive() end, 3)
    agent.pid = nil
    agent = nil
  end)
end)

describe("state files that cannot be used", function()
  local agent

  after_each(function()
    if agent then agent:stop() end
    agent = nil
  end)

  local function start(data)
    return S.start { args = { "--data", data }, config = S.calm_system }
  end

  local function ready(a)
    local r
    S.wait(function()
      local _, o = a:get_json("/health/ready")
      r = o
      return o and o.status ~= "not ready"
    end, 15)
    return r
  end

  local function store_of(a)
    local _, o = a:get_json("/health/detailed")
    for _, s in ipairs(o and o.stores or {}) do
      if s.db == "state" then return s, o end
    end
  end

  local function add_rule(a, name)
    local st, body = a:post("/alerts/rules", cjson.encode { name = name, condition = "greater_than",
      metric = "system.disk_percent", threshold = 99, duration_minutes = 5, severity = "warning",
      message = "disk" })
    assert.are.equal(201, st, body)
  end

  local function has_rule(a, name)
    local _, o = a:get_json("/alerts/rules")
    for _, r in ipairs(o and o.rules or {}) do if r.name == name then return true end end
    return false
  end

  local cases = {
    { "garbage where the header is", function(p) S.write(p, ("not a database "):rep(600)) end },
    { "a truncated file", function(p)
      local Store = require "agent.rules.store"
      local st = assert(Store.open(p))
      for i = 1, 200 do assert(st:put_api_rule("r" .. i, { name = "r" .. i, pad = ("x"):rep(500) })) end
      st:close()
      local f = assert(io.open(p, "rb"))
      local head = f:read(4096 + 512)
      f:close()
      S.write(p, head)
    end },
    { "a directory in its place", function(p) assert(os.execute(("mkdir -p %q/x"):format(p)) == 0) end },
  }

  for _, c in ipairs(cases) do
    it("moves " .. c[1] .. " aside, starts a fresh one, and says so", function()
      local data = S.tmpdir()
      c[2](data .. "/state.db")
      agent = start(data)
      local r = ready(agent)
      assert.are.equal("degraded", r.status, cjson.encode(r))
      assert.are.equal("state", r.stores[1].db)
      local s, detailed = store_of(agent)
      assert.is_truthy(s, cjson.encode(detailed))
      assert.is_true(s.up)
      assert.is_truthy(s.replaced and s.replaced:find("/state.db.broken-", 1, true), cjson.encode(s))
      assert.are.equal("degraded", detailed.status)
      local moved = S.sh(("ls -d %q/state.db.broken-*"):format(data))
      assert.is_truthy(moved:find("state.db.broken-", 1, true), moved)
      local log = agent:logtext()
      assert.are.equal(1, count(log, "moved aside"), log)
      local _, text = agent:get("/metrics")
      assert.are.equal(1, metric(text, "beagle_store_up", 'db="state"'), text)
      assert.are.equal(1, metric(text, "beagle_store_errors_total", 'db="state",op="open"'), text)
      -- the fresh file keeps what the API creates
      add_rule(agent, "kept_rule")
      agent:stop()
      agent = start(data)
      assert.is_true(has_rule(agent, "kept_rule"))
      assert.are.equal("ready", ready(agent).status)
      assert.is_nil(store_of(agent).replaced)
    end)
  end

  it("moves a history.db it cannot use aside too, and says so", function()
    local data = S.tmpdir()
    S.write(data .. "/history.db", ("not a database "):rep(600))
    agent = start(data)
    local r = ready(agent)
    assert.are.equal("degraded", r.status, cjson.encode(r))
    local _, o = agent:get_json("/health/detailed")
    local h
    for _, s in ipairs(o.stores) do if s.db == "history" then h = s end end
    assert.is_truthy(h, cjson.encode(o.stores))
    assert.is_true(h.up)
    assert.is_truthy(h.replaced and h.replaced:find("/history.db.broken-", 1, true), cjson.encode(h))
    assert.is_nil(agent:logtext():find("history is not kept", 1, true))
    local _, text = agent:get("/metrics")
    assert.are.equal(1, metric(text, "beagle_store_up", 'db="history"'), text)
  end)

  it("keeps a state.db from a newer beagle as it is, and says its state is not kept", function()
    local data = S.tmpdir()
    local Store = require "agent.rules.store"
    local st = assert(Store.open(data .. "/state.db"))
    assert(st.db:exec("PRAGMA user_version = 999"))
    st:close()
    agent = start(data)
    local r = ready(agent)
    assert.are.equal("degraded", r.status, cjson.encode(r))
    local s = store_of(agent)
    assert.is_false(s.up)
    assert.is_nil(s.replaced)
    assert.is_truthy(agent:logtext():find("newer than this beagle", 1, true))
    assert.are.equal("", S.sh(("ls %q | grep broken || true"):format(data)))
  end)

  it("takes an empty file as a new database", function()
    local data = S.tmpdir()
    S.write(data .. "/state.db", "")
    agent = start(data)
    assert.are.equal("ready", ready(agent).status)
    add_rule(agent, "in_empty")
    agent:stop()
    agent = start(data)
    assert.is_true(has_rule(agent, "in_empty"))
    assert.are.equal(0, count(agent:logtext(), "moved aside"))
  end)

  -- permissions do not stop root: as root the agent runs as nobody (setpriv), from a directory
  -- of its own under /tmp that holds what it reads (a copy of the binary, of lua/, plugins/ and
  -- rules/, and its config): the checkout may sit under a directory only root can enter (a
  -- fresh CI clone in a mktemp -d does)
  it("runs without durability in a read-only directory, and says so", function()
    local root = S.sh("id -u"):match("^0%s") ~= nil
    local bin, base = S.bin, nil
    local data, start_opts
    if root then
      base = S.sh("mktemp -d /tmp/beagle-nobody.XXXXXX"):match("%S+")
      local src = assert(os.getenv("BEAGLE_SOURCE_DIR"), "BEAGLE_SOURCE_DIR is not set")
      S.sh(("chmod 0755 %q && cp %q %q/beagle && mkdir %q/home && cp -r %q/lua %q/plugins %q/rules %q/home/")
        :format(base, S.bin, base, base, src, src, src, base))
      S.write(base .. "/beagle.lua", S.calm_system)
      local wrapper = base .. "/beagle-nobody"
      S.write(wrapper, ("#!/bin/sh\nBEAGLE_HOME=%q exec setpriv --reuid=65534 --regid=65534 --clear-groups %q \"$@\"\n")
        :format(base .. "/home", base .. "/beagle"))
      S.sh(("chmod -R a+rX %q && chmod 0755 %q"):format(base, wrapper))
      data = base .. "/data"
      assert(os.execute(("mkdir %q"):format(data)) == 0)
      start_opts = { args = { "--data", data, "-c", base .. "/beagle.lua" } }
      S.bin = wrapper
    else
      data = S.tmpdir()
      start_opts = { args = { "--data", data }, config = S.calm_system }
    end
    S.write(data .. "/state.db", ("not a database "):rep(600))
    assert(os.execute(("chmod 0555 %q"):format(data)) == 0)
    local ok, a = pcall(S.start, start_opts)
    S.bin = bin
    if not ok and base then os.execute(("chmod 0755 %q; rm -rf %q"):format(data, base)) end
    assert(ok, a)
    agent = a
    local r = ready(agent)
    assert.are.equal("degraded", r.status, cjson.encode(r))
    local s = store_of(agent)
    assert.is_false(s.durable)
    assert.is_false(s.up)
    local _, text = agent:get("/metrics")
    assert.are.equal(0, metric(text, "beagle_store_up", 'db="state"'), text)
    assert.is_truthy(agent:logtext():find("running without it", 1, true))
    agent:stop()
    os.execute(("chmod 0755 %q"):format(data))
    if base then os.execute(("rm -rf %q"):format(base)) end
  end)
end)
