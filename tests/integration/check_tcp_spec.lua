-- The tcp check against listeners on loopback started here (Python): a probe answered in
-- pieces over several reads, a reply that never matches before the peer closes, a stream that
-- runs past max_bytes, a server that never answers, a closed port; the connect-time gauge.
local S = require "support"

-- Listeners, their ports printed as one JSON line: pieces (answers "PING\r\n" with "+PO", then
-- "NG\r\n" 200 ms later), closer (answers anything with "-ERR nope\r\n" and closes), stream
-- (sends "x" forever), silent (accepts and never writes).
local SERVER = [==[
import json, socket, threading, time

def serve(handler):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(128)
    def loop():
        while True:
            c, _ = s.accept()
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
    return s.getsockname()[1]

def pieces(c):
    buf = b""
    while b"\r\n" not in buf:
        d = c.recv(100)
        if not d: return c.close()
        buf += d
    if buf.startswith(b"PING"):
        c.sendall(b"+PO"); time.sleep(0.2); c.sendall(b"NG\r\n")
    time.sleep(2); c.close()

def closer(c):
    c.recv(100); c.sendall(b"-ERR nope\r\n"); c.close()

def stream(c):
    try:
        while True: c.sendall(b"x" * 64); time.sleep(0.01)
    except OSError: c.close()

def silent(c):
    time.sleep(30); c.close()

ports = {n: serve(f) for n, f in [("pieces", pieces), ("closer", closer), ("stream", stream), ("silent", silent)]}
print(json.dumps(ports), flush=True)
while True: time.sleep(3600)
]==]

describe("tcp check", function()
  local agent, svc

  setup(function()
    local dir = S.tmpdir()
    S.write(dir .. "/srv.py", SERVER)
    svc = S.service(("exec python3 %q"):format(dir .. "/srv.py"))
    local ports = S.wait(function() return S.json(svc.output():match("^[^\n]+") or "") end, 10)
    assert(ports, "tcp test server did not start: " .. svc.output())
    agent = S.start {
      config = S.calm_system .. ([[
local function c(name, t) t.plugin = "tcp" t.retries = 0 t.interval = t.interval or "5s" check(name)(t) end
c("plain", { port = %d })
c("probe", { port = %d, send = "PING\r\n", expect = "^%%+PONG\r\n" })
c("closer", { port = %d, send = "PING\r\n", expect = "^%%+PONG" })
c("stream", { port = %d, expect = "y", max_bytes = 100 })
c("silent", { port = %d, expect = ".", interval = "1s" })
c("refused", { port = %d })
]]):format(ports.pieces, ports.pieces, ports.closer, ports.stream, ports.silent, S.free_port()),
    }
  end)

  teardown(function()
    if agent then agent:stop() end
    if svc then svc.stop() end
  end)

  local function expect(name, status, message)
    local o = agent:wait_check(name, function(c) return c.runs and c.runs > 0 end, 20)
    assert.is_truthy(o, "check " .. name .. " did not run:\n" .. agent:logtext())
    assert.are.equal(status, o.status, name .. ": " .. tostring(o.message))
    if message then
      assert.is_truthy(tostring(o.message):find(message, 1, true), name .. ": " .. tostring(o.message))
    end
    return o
  end

  it("connects, and records the connect time as a gauge", function()
    local o = expect("plain", "healthy", "connected in ")
    assert.is_number(o.details.connect_time)
    local _, body = agent:get("/metrics")
    assert.is_truthy(body:find('\ncheck_tcp_connect_seconds{check="plain"} [%d%.e+-]+\n'), body)
  end)

  it("reads a reply that comes in pieces until the pattern matches", function()
    local o = expect("probe", "healthy", "connected in ")
    assert.are.equal(7, o.details.reply_bytes)
    assert.is_true(o.details.reply_time >= 0.15, tostring(o.details.reply_time))
  end)

  it("is unhealthy when the peer closes before the reply matches", function()
    expect("closer", "unhealthy", 'reply does not match "^%+PONG" after 11 bytes and the connection closed')
  end)

  it("stops reading at max_bytes", function()
    expect("stream", "unhealthy", 'reply does not match "y" after 100 bytes (max_bytes)')
  end)

  it("is ended by the timeout when nothing comes", function()
    expect("silent", "unhealthy", "timeout")
  end)

  it("is unhealthy on a closed port", function()
    expect("refused", "unhealthy", "connection refused")
  end)

  it("refuses a wrong port or max_bytes at load, naming the file and line, the check and the option", function()
    for _, case in ipairs {
      { 'check "bad_port" { plugin = "tcp", port = 70000 }', "option port: 70000 is not a TCP port (1..65535)" },
      { 'check "zero_port" { plugin = "tcp", port = 0 }', "option port: 0 is not a TCP port (1..65535)" },
      { 'check "bad_bytes" { plugin = "tcp", port = 80, max_bytes = 0 }', "option max_bytes: 0 is outside 1..16777216" },
    } do
      local name = case[1]:match('check "([^"]+)"')
      assert.are.equal(('beagle.lua:%d: check "%s": %s'):format(S.calm_lines + 1, name, case[2]),
        S.refused(case[1] .. "\n"))
    end
  end)

  it("refuses a reload that adds an instance with a wrong port, and keeps the old config running", function()
    local good = S.read(agent.config)
    local line = select(2, good:gsub("\n", "")) + 1
    S.write(agent.config, good .. 'check "bad_reload" { plugin = "tcp", port = 70000 }\n')
    local st, body = agent:post("/-/reload", "")
    S.write(agent.config, good)
    assert.are.equal(422, st, body)
    local e = S.json(body).errors[1] -- { file, line, message }
    assert.are.equal(agent.config, e.file)
    assert.are.equal(line, e.line)
    assert.is_truthy(e.message:find('check "bad_reload": option port: 70000 is not a TCP port', 1, true), e.message)
    assert.is_nil((agent:check("bad_reload") or {}).name)
    local runs = agent:check("plain").runs
    assert.is_truthy(agent:wait_check("plain", function(c) return c.runs > runs end, 15), agent:logtext())
    st, body = agent:post("/-/reload", "")
    assert.are.equal(200, st, body)
  end)
end)
