-- Real database servers for the database checks' integration specs: PostgreSQL, Redis and
-- MariaDB (Debian's postgresql, redis-server, mariadb-server, scripts/deps.sh test), each on
-- 127.0.0.1 on a free port, with its files in a temporary directory. Each returns a server
-- object: port, pid() (the process that accepts connections, for SIGSTOP), pause(),
-- resume(), stop(), output() (its log, for assertion messages).
local S = require "support"

local D = {}

local root = S.sh("id -u"):match("^%s*0%s*$") ~= nil

-- The servers and their tools run without what an ASan build preloads into the specs' LuaJIT.
local CLEAN = "env -u LD_PRELOAD -u ASAN_OPTIONS -u LSAN_OPTIONS -u BEAGLE_CHILD_ASAN_OPTIONS "

local function need(path, what)
  if not S.read(path) and select(2, S.sh(("test -x %q"):format(path))) ~= 0 then
    error(("%s is missing: install %s (scripts/deps.sh test)"):format(path, what), 3)
  end
end

-- gone(pid): the process has exited (a zombie nobody has reaped yet counts as gone)
local function gone(pid)
  local st = S.read("/proc/" .. pid .. "/stat")
  return st == nil or st:match("^%d+ %b() Z") ~= nil
end

local function server(svc, pidfn, stopfn)
  local s = { svc = svc }
  function s.pid() return pidfn() end
  function s.pause() S.sh("kill -STOP " .. s.pid()) end
  function s.resume() S.sh("kill -CONT " .. s.pid()) end
  function s.output() return svc.output() end
  function s.stop()
    if s.stopped then return end
    s.stopped = true
    local pid = s.pid()
    if pid then S.sh("kill -CONT " .. pid .. " 2>/dev/null") end
    stopfn(pid)
    if pid then
      S.wait(function() return gone(pid) end, 10)
      S.sh("kill -KILL " .. pid .. " 2>/dev/null")
    end
    svc.stop()
  end
  return s
end

-- Waits until something accepts connections on 127.0.0.1:port (bash's /dev/tcp).
local function listening(port, timeout)
  return S.wait(function()
    return select(2, S.sh(("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d' 2>/dev/null"):format(port))) == 0
  end, timeout or 20, 0.1)
end

-- ---- PostgreSQL ----------------------------------------------------------------------------

D.PG_BIN = os.getenv("BEAGLE_PG_BIN") or "/usr/lib/postgresql/15/bin"

-- postgres{ hba = "lines of pg_hba.conf", sql = "statements run as postgres once it is up" }
-- -> server, with bin, dir and psql(sql) -> output, code. The superuser is `postgres`,
-- trusted on the Unix socket (in dir) only: the hba lines decide what TCP clients meet.
function D.postgres(o)
  o = o or {}
  need(D.PG_BIN .. "/postgres", "postgresql")
  local dir = S.tmpdir()
  local as = CLEAN .. (root and "runuser -u postgres -- " or "")
  local own_tmp
  if root then
    S.sh(("chown postgres %q && chmod 700 %q"):format(dir, dir))
    -- the postgres user must reach it: a tree under /root (mode 700) is not reachable
    if select(2, S.sh(("runuser -u postgres -- test -w %q"):format(dir))) ~= 0 then
      S.sh(("rm -rf %q"):format(dir))
      dir = (S.sh("mktemp -d /tmp/beagle-pg.XXXXXX"):gsub("%s+$", ""))
      S.sh(("chown postgres %q && chmod 700 %q"):format(dir, dir))
      own_tmp = dir
    end
  end
  local data = dir .. "/data"
  local out, code = S.sh(("%s%q/initdb -D %q -U postgres -A trust --no-sync --no-instructions -E UTF8"):format(as, D.PG_BIN, data))
  if code ~= 0 then error("initdb failed: " .. out, 2) end
  S.write(data .. "/pg_hba.conf", "local all all trust\n" .. (o.hba or "host all all 127.0.0.1/32 trust\n"))
  if root then S.sh(("chown postgres %q"):format(data .. "/pg_hba.conf")) end
  local port = S.free_port()
  -- setpriv execs (runuser forks and waits, and stops itself when its child is stopped: a
  -- SIGSTOPped postmaster would leave it stopped, its child never reaped)
  local exec_as = CLEAN .. (root and "setpriv --reuid=postgres --regid=postgres --init-groups -- " or "")
  local svc = S.service(("exec %s%q/postgres -D %q -p %d -k %q -c listen_addresses=127.0.0.1 -c fsync=off"
    .. " -c shared_buffers=8MB -c max_connections=20 -c logging_collector=off"):format(exec_as, D.PG_BIN, data, port, dir))
  local s = server(svc, function() return svc.pid end, function(p)
    if p then S.sh("kill -INT " .. p) end
    if own_tmp then
      if p then S.wait(function() return gone(p) end, 10) end
      S.sh(("rm -rf %q"):format(own_tmp))
    end
  end)
  s.port, s.dir, s.bin = port, dir, D.PG_BIN
  function s.psql(sql)
    local f = dir .. "/q.sql"
    S.write(f, sql)
    if root then S.sh(("chown postgres %q"):format(f)) end
    return S.sh(("%s%q/psql -X -q -v ON_ERROR_STOP=1 -h %q -p %d -U postgres -d postgres -f %q"):format(as, D.PG_BIN,
      dir, port, f))
  end
  local up = S.wait(function() return select(2, s.psql("SELECT 1")) == 0 end, 30, 0.1)
  if not up then
    s.stop()
    error("postgres did not start: " .. svc.output(), 2)
  end
  if o.sql then
    local qout, qcode = s.psql(o.sql)
    if qcode ~= 0 then s.stop() error("psql failed: " .. qout, 2) end
  end
  return s
end

-- ---- Redis ---------------------------------------------------------------------------------

-- redis{ conf = "extra redis.conf lines" } -> server
function D.redis(o)
  o = o or {}
  need("/usr/bin/redis-server", "redis-server")
  local dir = S.tmpdir()
  local port = S.free_port()
  S.write(dir .. "/redis.conf", ("port %d\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir %s\ndaemonize no\n%s")
    :format(port, dir, o.conf or ""))
  local svc = S.service(("exec %sredis-server %q"):format(CLEAN, dir .. "/redis.conf"))
  local s = server(svc, function() return svc.pid end, function(p) if p then S.sh("kill -TERM " .. p) end end)
  s.port, s.dir = port, dir
  if not listening(port) then
    s.stop()
    error("redis-server did not start: " .. svc.output(), 2)
  end
  return s
end

-- ---- MariaDB -------------------------------------------------------------------------------

-- mariadb() -> server: a fresh data directory (mariadb-install-db), the server on a free port.
function D.mariadb()
  need("/usr/sbin/mariadbd", "mariadb-server")
  local dir = S.tmpdir()
  local data = dir .. "/data"
  local user = root and " --user=root" or ""
  local out, code = S.sh((CLEAN .. "mariadb-install-db --no-defaults --datadir=%q --auth-root-authentication-method=normal"
    .. " --skip-test-db --skip-name-resolve%s"):format(data, user))
  if code ~= 0 then error("mariadb-install-db failed: " .. out, 2) end
  local port = S.free_port()
  local svc = S.service(("exec " .. CLEAN .. "/usr/sbin/mariadbd --no-defaults --datadir=%q --socket=%q --port=%d"
    .. " --bind-address=127.0.0.1 --skip-name-resolve --innodb-buffer-pool-size=8M --pid-file=%q%s"):format(data,
    dir .. "/sock", port, dir .. "/pid", user))
  local s = server(svc, function() return svc.pid end, function(p) if p then S.sh("kill -TERM " .. p) end end)
  s.port, s.dir = port, dir
  if not listening(port, 30) then
    s.stop()
    error("mariadbd did not start: " .. svc.output(), 2)
  end
  return s
end

-- ---- a hostile server ------------------------------------------------------------------------

local HOSTILE = [=[
import socket, sys, threading
greeting, unit = bytes.fromhex(sys.argv[1]), bytes.fromhex(sys.argv[2])
chunk = unit * (65536 // len(unit) + 1) if unit else b""
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(16)
print(srv.getsockname()[1], flush=True)
def serve(c):
    try:
        c.sendall(greeting)
        while chunk:
            c.sendall(chunk)
        c.recv(65536)
    except OSError:
        pass
    finally:
        c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
]=]

-- hostile(greeting, unit) -> { port, stop() }: a TCP server that sends `greeting` to every
-- client at once, then, when `unit` is given, that unit over and over for as long as the client
-- reads (else it waits for the client to go).
function D.hostile(greeting, unit)
  local dir = S.tmpdir()
  S.write(dir .. "/hostile.py", HOSTILE)
  local function hex(b) return (b:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
  local svc, port = S.receiver(("exec %spython3 %q %q %q"):format(CLEAN, dir .. "/hostile.py", hex(greeting),
    hex(unit or "")), "hostile server")
  return { port = port, stop = svc.stop }
end

-- ---- running a check now -------------------------------------------------------------------

local json = require "cjson"

-- run(agent, name) -> the check's fresh result (GET /health/{name}?run=1: status, message,
-- details, response_time).
function D.run(agent, name)
  local st, body = S.http("GET", agent.url .. "/health/" .. name .. "?run=1")
  local ok, o = pcall(json.decode, body)
  assert(ok and type(o) == "table", ("GET /health/%s?run=1: HTTP %d %s"):format(name, st, body))
  return o
end

-- settle(agent, names): waits until each check's first scheduled run is done, so that a
-- ?run=1 starts a run of its own instead of joining that one.
function D.settle(agent, names)
  for _, name in ipairs(names) do
    assert(agent:wait_check(name, function(c) return c.runs and c.runs > 0 end, 15), name .. " did not run")
  end
end

-- backlog(port) -> connections waiting in the accept queue of the listener on 127.0.0.1:port
-- (ss's Recv-Q of a listening socket), or nil when ss cannot tell.
local function backlog(port)
  local out, code = S.sh(("ss -Hltn 'sport = :%d'"):format(port))
  if code ~= 0 then return nil end
  return tonumber(out:match("^%S+%s+(%d+)"))
end

-- run_paused(agent, name, server, seconds) -> the result of a run of the check made while the
-- server is stopped (SIGSTOP): connections wait in its listen queue, unanswered. The server is
-- resumed `seconds` after the check's connection reached that queue.
function D.run_paused(agent, name, srv, seconds)
  local out = S.tmpname()
  srv.pause()
  local ok, err = pcall(function()
    local before = backlog(srv.port) or 0
    S.sh(("{ curl -s -m 60 %q > %q; } >/dev/null 2>&1 &"):format(agent.url .. "/health/" .. name .. "?run=1", out))
    S.wait(function() local n = backlog(srv.port) return n == nil or n > before end, 20, 0.02)
    S.sleep(seconds)
  end)
  srv.resume()
  assert(ok, err)
  local body = S.wait(function()
    local b = S.read(out)
    return b and b:find("}%s*$") and b
  end, 60)
  os.remove(out)
  assert(body, "no answer to ?run=1 of " .. name)
  return json.decode(body)
end

-- ---- for the protocol unit specs (tests/lua/*_proto_spec.lua) ---------------------------------

-- load_plugin(name) -> the table a plugin file hands to beagle.check (its exposed parsers and
-- session), loaded in plain LuaJIT.
function D.load_plugin(name)
  local chunk = assert(loadfile(S.src .. "/plugins/checks/" .. name .. ".lua"))
  setfenv(chunk, setmetatable({ beagle = { check = function(def) return def end } }, { __index = _G }))
  return chunk()
end

-- fake_conn{ reply = function(written, conn) ... end, chunks = { ... } } -> a conn as
-- ctx.tcp.connect returns: read() hands out the queued chunks one by one, then nil, "eof"
-- (or calls o.more(conn) for the next chunk when it is given: an endless server);
-- write(data) records data and calls reply(data, conn), which may queue answers with
-- conn.push(chunk). conn.written: all that was written; conn.reads: read() calls.
function D.fake_conn(o)
  o = o or {}
  local c = { queue = {}, written = {}, reads = 0 }
  for _, ch in ipairs(o.chunks or {}) do c.queue[#c.queue + 1] = ch end
  function c.push(ch) c.queue[#c.queue + 1] = ch end
  function c:read()
    self.reads = self.reads + 1
    if self.reads > 100000 then error("read() called 100000 times: the session does not end") end
    if #self.queue > 0 then return table.remove(self.queue, 1) end
    if o.more then
      local ch = o.more(self)
      if ch then return ch end
    end
    return nil, o.err or "eof"
  end
  function c:write(data)
    self.written[#self.written + 1] = data
    if o.reply then o.reply(data, self) end
    return true
  end
  function c:close() self.closed = true end
  return c
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
function D.b64encode(s)
  return ((s:gsub(".", function(x)
    local r, b = "", x:byte()
    for i = 8, 1, -1 do r = r .. (b % 2 ^ i - b % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end) .. "0000"):gsub("%d%d%d?%d?%d?%d?", function(x)
    if #x < 6 then return "" end
    local c = 0
    for i = 1, 6 do c = c + (x:sub(i, i) == "1" and 2 ^ (6 - i) or 0) end
    return B64:sub(c + 1, c + 1)
  end) .. ({ "", "==", "=" })[#s % 3 + 1])
end
function D.b64decode(s)
  if s:find("[^%w%+/=]") then return nil, "not base64" end
  s = s:gsub("=", "")
  return (s:gsub(".", function(x)
    local r, f = "", (B64:find(x, 1, true) - 1)
    for i = 6, 1, -1 do r = r .. (f % 2 ^ i - f % 2 ^ (i - 1) > 0 and "1" or "0") end
    return r
  end):gsub("%d%d%d?%d?%d?%d?%d?%d?", function(x)
    if #x ~= 8 then return "" end
    local c = 0
    for i = 1, 8 do c = c + (x:sub(i, i) == "1" and 2 ^ (8 - i) or 0) end
    return string.char(c)
  end))
end

-- test_crypto() -> a ctx.crypto made of libcrypto through ffi (the tests' own reference,
-- independent of the agent's), with random(n) deterministic unless told otherwise.
function D.test_crypto()
  local ffi = require "ffi"
  pcall(ffi.cdef, [[
    typedef struct evp_md_st EVP_MD;
    const EVP_MD *EVP_md5(void);
    const EVP_MD *EVP_sha256(void);
    int EVP_Digest(const void *data, size_t count, unsigned char *md, unsigned int *size, const EVP_MD *type, void *impl);
    unsigned char *HMAC(const EVP_MD *evp_md, const void *key, int key_len, const unsigned char *d, size_t n,
      unsigned char *md, unsigned int *md_len);
    int PKCS5_PBKDF2_HMAC(const char *pass, int passlen, const unsigned char *salt, int saltlen, int iter,
      const EVP_MD *digest, int keylen, unsigned char *out);
  ]])
  local C = ffi.load("crypto")
  local function digest(md, s)
    local out, n = ffi.new("unsigned char[64]"), ffi.new("unsigned int[1]")
    assert(C.EVP_Digest(s, #s, out, n, md, nil) == 1)
    return ffi.string(out, n[0])
  end
  local function hex(s) return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) end
  return {
    md5_hex = function(s) return hex(digest(C.EVP_md5(), s)) end,
    sha256 = function(s) return digest(C.EVP_sha256(), s) end,
    hmac_sha256 = function(k, s)
      local out, n = ffi.new("unsigned char[64]"), ffi.new("unsigned int[1]")
      C.HMAC(C.EVP_sha256(), k, #k, s, #s, out, n)
      return ffi.string(out, n[0])
    end,
    pbkdf2_sha256 = function(p, salt, iter, len)
      local out = ffi.new("unsigned char[?]", len)
      assert(C.PKCS5_PBKDF2_HMAC(p, #p, salt, #salt, iter, C.EVP_sha256(), len, out) == 1)
      return ffi.string(out, len)
    end,
    random = function(n) return ("\7"):rep(n) end,
    base64_encode = D.b64encode,
    base64_decode = D.b64decode,
  }
end

return D
