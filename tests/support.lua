-- Helpers for integration specs: start build/beagle on a free port with its own temporary
-- directories, talk HTTP to it with curl, write plugin files, wait for conditions.
local json = require "cjson"

local S = {}

S.bin = os.getenv("BEAGLE_BIN") or "build/beagle"
S.src = os.getenv("BEAGLE_SOURCE_DIR") or "."

-- sh(cmd) -> output (stdout and stderr), exit code. LuaJIT's popen close does not report
-- the exit code, so the shell prints it last.
local function sh(cmd)
  local p = io.popen("{ " .. cmd .. "\n} 2>&1; echo \"__rc=$?\"")
  local out = p:read("*a")
  p:close()
  local body, code = out:match("^(.-)__rc=(%d+)%s*$")
  return body or out, tonumber(code) or -1
end
S.sh = sh

-- Temporary directories and files go under BEAGLE_TEST_TMP (tests/run_spec.sh makes one per
-- spec and removes it when the spec passes), else /tmp.
S.tmp_root = os.getenv("BEAGLE_TEST_TMP") or "/tmp"

function S.tmpdir()
  local out, code = sh(("mktemp -d %q 2>&1"):format(S.tmp_root .. "/beagle-test.XXXXXX"))
  -- a failed mktemp's message is no directory (files were once written into the working tree
  -- under a name made of it, when BEAGLE_TEST_TMP named a directory that did not exist)
  assert(code == 0, ("S.tmpdir: mktemp failed under %s (BEAGLE_TEST_TMP): %s"):format(S.tmp_root, out))
  return (out:gsub("%s+$", ""))
end

local tmp_seq = 0
-- A fresh file name (the file is not created) under S.tmp_root.
function S.tmpname()
  tmp_seq = tmp_seq + 1
  return ("%s/tmp-%d-%d-%d"):format(S.tmp_root, os.time(), math.random(1e9), tmp_seq)
end

function S.write(path, content)
  local tmp = path .. ".tmp" .. math.random(1e9)
  local f = assert(io.open(tmp, "w"))
  f:write(content)
  f:close()
  assert(os.rename(tmp, path))
end

function S.read(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function S.sleep(s) os.execute(("sleep %.3f"):format(s)) end

function S.now()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("*a"))
  p:close()
  return t
end

-- wait(fn, timeout): polls fn until it returns a truthy value; returns it or nil.
function S.wait(fn, timeout, step)
  local deadline = S.now() + (timeout or 5)
  repeat
    local v = fn()
    if v then return v end
    S.sleep(step or 0.05)
  until S.now() > deadline
  return nil
end

-- HTTP through curl: returns status, body, headers (raw).
function S.http(method, url, body, headers)
  local hfile = S.tmpname()
  local bfile = S.tmpname()
  local cmd = ("curl -s -m 5 -X %s -D %s -o %s -w '%%{http_code}'"):format(method, hfile, bfile)
  for _, h in ipairs(headers or {}) do cmd = cmd .. (" -H %q"):format(h) end
  local inf
  if body then
    inf = S.tmpname()
    local f = io.open(inf, "w")
    f:write(body)
    f:close()
    cmd = cmd .. " --data-binary @" .. inf
  end
  local out = sh(cmd .. " " .. ("%q"):format(url))
  if inf then os.remove(inf) end
  local status = tonumber(out:match("(%d+)%s*$")) or 0
  local b, h = S.read(bfile) or "", S.read(hfile) or ""
  os.remove(hfile)
  os.remove(bfile)
  return status, b, h
end

function S.json(s)
  local ok, v = pcall(json.decode, s)
  if ok then return v end
  return nil
end

-- A config line that keeps the built-in system check healthy on a busy test machine (the
-- thresholds are out of reach), so that specs about other things do not flake.
S.calm_system = [[
check "system" { plugin = "system", cpu_degraded = 101, cpu_unhealthy = 102, memory_degraded = 101,
  memory_unhealthy = 102, disk_degraded = 101, disk_unhealthy = 102, inode_degraded = 101,
  inode_unhealthy = 102, swap_degraded = 101, swap_unhealthy = 102, load_degraded = 1e9,
  load_unhealthy = 2e9, fd_degraded = 101, fd_unhealthy = 102 }
]]

local Agent = {}
Agent.__index = Agent

-- start{ args = {...}, config = "lua text", env = {K=V}, plugins = dir } -> agent
function S.start(o)
  o = o or {}
  local a = setmetatable({ dir = S.tmpdir() }, Agent)
  a.log = a.dir .. "/agent.log"
  a.data = a.dir .. "/data"
  local args = { "run", "--listen", "127.0.0.1:0", "--data", a.data, "--statsd", o.statsd or "127.0.0.1:0" }
  if o.config then
    a.config = a.dir .. "/beagle.lua"
    S.write(a.config, o.config)
    args[#args + 1] = "-c"
    args[#args + 1] = a.config
  end
  if o.plugins then
    args[#args + 1] = "--plugins"
    args[#args + 1] = o.plugins
  end
  for _, x in ipairs(o.args or {}) do args[#args + 1] = x end
  local env = ""
  for k, v in pairs(o.env or {}) do env = env .. ("%s=%q "):format(k, v) end
  local quoted = {}
  for i, x in ipairs(args) do quoted[i] = ("%q"):format(x) end
  local cmd = ("cd %q && %s exec %q %s > %q 2>&1 & echo $!"):format(a.dir, env, S.bin,
    table.concat(quoted, " "), a.log)
  a.pid = tonumber((sh(cmd)))
  a.port = S.wait(function()
    local log = S.read(a.log) or ""
    return tonumber(log:match('msg="beagle started".-listen=127%.0%.0%.1:(%d+)'))
      or tonumber(log:match('"msg":"beagle started".-"listen":"127%.0%.0%.1:(%d+)"'))
  end, 10)
  if not a.port then
    -- one that hangs (a FIFO it reads, a loop) must not outlive the spec
    if a:alive() then a:signal("KILL") end
    error("agent did not start:\n" .. (S.read(a.log) or ""))
  end
  a.statsd_port = tonumber((S.read(a.log) or ""):match("statsd=127%.0%.0%.1:(%d+)"))
  a.url = "http://127.0.0.1:" .. a.port
  return a
end

-- statsd(lines): sends one UDP datagram to the agent's StatsD port.
function Agent:statsd(payload)
  local f = S.tmpname()
  S.write(f, payload)
  local out, code = sh(("bash -c 'cat %q > /dev/udp/127.0.0.1/%d'"):format(f, self.statsd_port))
  os.remove(f)
  assert(code == 0, out)
end

-- statsd_tcp(lines): sends lines over one TCP connection and closes it.
function Agent:statsd_tcp(payload)
  local f = S.tmpname()
  S.write(f, payload)
  local out, code = sh(("bash -c 'exec 3<>/dev/tcp/127.0.0.1/%d; cat %q >&3; exec 3>&-'"):format(self.statsd_port, f))
  os.remove(f)
  assert(code == 0, out)
end

function Agent:get(path, headers) return S.http("GET", self.url .. path, nil, headers) end
function Agent:post(path, body, headers) return S.http("POST", self.url .. path, body, headers) end

function Agent:get_json(path)
  local st, body = self:get(path)
  return st, S.json(body), body
end

-- A process that exited may linger as a zombie (nobody reaps it here): that is not alive.
function Agent:alive()
  local st = S.read("/proc/" .. self.pid .. "/stat")
  return st ~= nil and not st:match("^%d+ %b() Z")
end

function Agent:signal(sig) sh(("kill -%s %d"):format(sig, self.pid)) end

-- stop(): SIGTERM, wait for the exit; returns true when it exited within the timeout.
function Agent:stop(timeout)
  if not self.pid then return true end
  self:signal("TERM")
  local gone = S.wait(function() return not self:alive() end, timeout or 8)
  if not gone then self:signal("KILL") end
  self.pid = nil
  return gone ~= nil
end

function Agent:logtext() return S.read(self.log) or "" end

-- backend(name) -> the backend's entry of /health/detailed, or nil
function Agent:backend(name)
  local _, d = self:get_json("/health/detailed")
  for _, b in ipairs(d and d.backends or {}) do
    if b.name == name then return b end
  end
end

-- check(name) -> the /health/{name} object, or nil
function Agent:check(name)
  local _, o = self:get_json("/health/" .. name)
  return o
end

-- wait_check(name, pred, timeout): waits until pred(obj) is true for /health/{name}.
function Agent:wait_check(name, pred, timeout)
  return S.wait(function()
    local o = self:check(name)
    if o and o.name and pred(o) then return o end
  end, timeout or 5)
end

-- service(cmd) -> { pid, out, stop }: a background process (exec'd by the shell), its output
-- in a file.
function S.service(cmd)
  local d = S.tmpdir()
  local out = d .. "/out"
  local pid = tonumber((sh(("{ %s; } > %q 2>&1 & echo $!"):format(cmd, out))))
  local svc = { pid = pid, out = out, dir = d }
  function svc.stop()
    if svc.pid then sh("kill " .. svc.pid .. " 2>/dev/null") svc.pid = nil end
  end
  function svc.output() return S.read(out) or "" end
  return svc
end

-- free_port() -> a TCP port nobody listens on right now (the kernel's pick, released).
function S.free_port()
  local out = sh("python3 -c 'import socket; s=socket.socket(); s.bind((\"127.0.0.1\", 0)); print(s.getsockname()[1])'")
  return tonumber(out:match("(%d+)"))
end

-- receiver(cmd, what) -> svc, port: a test receiver started with cmd, which prints the port it
-- listens on as its first line (the HTTP sink, tests/receivers/*); fails naming `what`.
function S.receiver(cmd, what)
  local svc = S.service(cmd)
  local port = S.wait(function() return tonumber(svc.output():match("^(%d+)")) end, 10)
  if not port then error(what .. " did not start: " .. svc.output(), 2) end
  return svc, port
end

-- The OTLP receiver (tests/receivers/otlp_receiver.js) reads every body with OpenTelemetry's own
-- schema: npm @opentelemetry/otlp-transformer, installed at test time outside the tree.
-- otlp_transformer() -> the generated root's path, or nil and why when npm cannot get it.
local OTLP_NPM_DIR = os.getenv("BEAGLE_OTLP_NPM_DIR") or "/tmp/beagle-npm-otlp-transformer"
local OTLP_ROOT = OTLP_NPM_DIR .. "/node_modules/@opentelemetry/otlp-transformer/build/src/generated/root.js"
function S.otlp_transformer()
  if S.read(OTLP_ROOT) then return OTLP_ROOT end
  local out, code = S.sh(("command -v node >/dev/null && command -v npm >/dev/null && mkdir -p %q && "
    .. "timeout 300 npm install --prefix %q --no-audit --no-fund --silent "
    .. "@opentelemetry/otlp-transformer@0.57.2 @opentelemetry/api@1.9.0 2>&1"):format(OTLP_NPM_DIR, OTLP_NPM_DIR))
  if S.read(OTLP_ROOT) then return OTLP_ROOT end
  return nil, ("npm could not install @opentelemetry/otlp-transformer (exit %s): %s"):format(tostring(code), out)
end

-- otlp_receiver(root) -> r: svc, port, base (its URL without a path), requests() (what it wrote:
-- path, status, decoded body...), stop(). The specs add their own readers over requests().
function S.otlp_receiver(root)
  local out = S.tmpdir() .. "/requests.jsonl"
  local svc, port = S.receiver(("exec node %q %q %q"):format(S.src .. "/tests/receivers/otlp_receiver.js", out, root),
    "otlp receiver")
  return { svc = svc, port = port, base = ("http://127.0.0.1:%d"):format(port),
    requests = function() return S.jsonl(out) end, stop = function() svc.stop() end }
end

-- jsonl(path) -> the JSON objects of a JSON-lines file a receiver writes, in order
function S.jsonl(path)
  local t = {}
  for line in (S.read(path) or ""):gmatch("[^\n]+") do t[#t + 1] = json.decode(line) end
  return t
end

-- sink() -> the HTTP sink of tests/http_sink.py: url, control{status, delay, retry_after, down},
-- requests() (each with method, path, headers, body, time), reset(), stop().
function S.sink()
  local d = S.tmpdir()
  local svc, port = S.receiver(("exec python3 %q %q"):format(S.src .. "/tests/http_sink.py", d .. "/requests.jsonl"),
    "http sink")
  local sink = { url = "http://127.0.0.1:" .. port, port = port, svc = svc }
  function sink.control(t)
    local st = S.http("POST", sink.url .. "/_control", json.encode(t), { "Content-Type: application/json" })
    assert(st == 200, "sink control failed: " .. st)
  end
  function sink.requests()
    local st, body = S.http("GET", sink.url .. "/_requests")
    assert(st == 200, "sink requests failed: " .. st)
    return json.decode(body)
  end
  function sink.reset() S.http("POST", sink.url .. "/_reset", "{}") end
  function sink.stop() svc.stop() end
  return sink
end

-- alertmanager() -> { url, svc }: a real Alertmanager (Debian's prometheus-alertmanager), one
-- node (no cluster), on a free port, with a receiver that drops everything; ready when returned.
function S.alertmanager()
  local port = S.free_port()
  local dir = S.tmpdir()
  S.write(dir .. "/am.yml", "route:\n  receiver: blackhole\nreceivers:\n- name: blackhole\n")
  local svc = S.service(("exec prometheus-alertmanager --config.file=%q --storage.path=%q"
    .. " --web.listen-address=127.0.0.1:%d --cluster.listen-address="):format(dir .. "/am.yml", dir .. "/data", port))
  local url = "http://127.0.0.1:" .. port
  assert(S.wait(function() return (S.http("GET", url .. "/-/ready")) == 200 end, 15),
    "alertmanager did not start: " .. svc.output())
  return { url = url, svc = svc, port = port }
end

-- epoch(iso) -> seconds of an RFC 3339 time in UTC, as both beagle and Alertmanager write it
-- (days from the civil date: Howard Hinnant's algorithm)
function S.epoch(iso)
  local y, mo, d, h, mi, s = iso:match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):([%d%.]+)")
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * ((mo + 9) % 12) + 2) / 5) + d - 1
  local days = era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(s)
end

-- refused(config text[, plugins dir]) -> the error line ("beagle.lua:N: check ...: ...") of an
-- agent that refuses its config at load: it runs `beagle run` on that config (after
-- S.calm_system, so its line numbers count from S.calm_lines + 1) and expects it to exit 1 at
-- once with "beagle: <error>" (an agent that starts is killed after 20s and fails the test).
S.calm_lines = select(2, S.calm_system:gsub("\n", ""))
function S.refused(config, plugins)
  local dir = S.tmpdir()
  S.write(dir .. "/beagle.lua", S.calm_system .. config)
  local out, code = sh(("cd %q && timeout 20 %q run --listen 127.0.0.1:0 --data data --statsd off -c beagle.lua%s"):format(
    dir, S.bin, plugins and (" --plugins %q"):format(plugins) or ""))
  local line = out:match("\nbeagle: ([^\n]*)") or out:match("^beagle: ([^\n]*)")
  assert(code == 1 and line, ("expected the agent to refuse its config, it exited %d:\n%s"):format(code, out))
  return line
end

return S
