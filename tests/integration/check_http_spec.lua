-- The http check against real servers on loopback, started here: a plain HTTP server, an
-- HTTPS one with a certificate of a CA made here (openssl), and one that also requires a client
-- certificate. Status sets, methods, bodies and headers, body text and JSON expectations,
-- redirects within and beyond the limit, slowness, TLS verification and mutual TLS, the phase
-- timings in the details and as gauges, and option errors.
local S = require "support"

-- The test server (Python's standard library): /ok, /status/N, /redirect/N (N hops to /redirect/0),
-- /json/<status>, /slow/<seconds>, /echo (method, body and X-Token back as JSON). Its arguments:
-- none (HTTP), cert key (HTTPS), cert key ca (HTTPS requiring a client certificate of ca).
local SERVER = [==[
import json, socket, ssl, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def answer(self, status, body, ctype="text/plain", extra=None):
        b = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(b)))
        for k, v in (extra or {}).items(): self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD": self.wfile.write(b)
    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode("utf-8", "replace") if n else ""
        p = self.path.split("?")[0]
        parts = p.strip("/").split("/")
        if p == "/ok": return self.answer(200, "all good here")
        if parts[0] == "status": return self.answer(int(parts[1]), "status " + parts[1])
        if parts[0] == "redirect":
            k = int(parts[1])
            if k == 0: return self.answer(200, "landed")
            return self.answer(302, "", extra={"Location": "/redirect/%d" % (k - 1)})
        if parts[0] == "json":
            return self.answer(200, json.dumps({"data": {"status": parts[1] if len(parts) > 1 else "ok",
                "items": [{"id": 7}, {"id": 8}], "up": True}}), "application/json")
        if parts[0] == "slow":
            time.sleep(float(parts[1]))
            return self.answer(200, "slowly")
        if p == "/echo":
            return self.answer(200, json.dumps({"method": self.command, "body": body,
                "token": self.headers.get("X-Token"), "client": getattr(self, "peer_cn", None)}), "application/json")
        return self.answer(404, "no such path")
    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any

class Server(ThreadingHTTPServer):
    request_queue_size = 256  # every check starts at once: a backlog of 5 drops SYNs (1 s retries)
    daemon_threads = True

def main():
    args = sys.argv[1:]
    srv = Server(("127.0.0.1", 0), H)
    if args:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args[0], args[1])
        if len(args) > 2:
            ctx.load_verify_locations(args[2])
            ctx.verify_mode = ssl.CERT_REQUIRED
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()

main()
]==]

local function sh_ok(cmd)
  local out, code = S.sh(cmd)
  assert(code == 0, cmd .. "\n" .. out)
  return out
end

-- A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate, in dir.
local function make_pki(dir)
  sh_ok(([[cd %q && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 -subj /CN=beagle-test-ca 2>&1 &&
openssl req -new -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost 2>&1 &&
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > srv.ext &&
openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 20 -extfile srv.ext 2>&1 &&
openssl req -new -newkey rsa:2048 -nodes -keyout cli.key -out cli.csr -subj /CN=beagle-probe 2>&1 &&
openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cli.pem -days 20 2>&1]]):format(dir))
end

describe("http check", function()
  local agent, plain, tls, mtls, dir
  local refused

  setup(function()
    dir = S.tmpdir()
    S.write(dir .. "/srv.py", SERVER)
    make_pki(dir)
    local port
    plain, port = S.receiver(("exec python3 %q"):format(dir .. "/srv.py"), "http test server")
    local base = "http://127.0.0.1:" .. port
    local tport, mport
    tls, tport = S.receiver(("exec python3 %q %q %q"):format(dir .. "/srv.py", dir .. "/srv.pem", dir .. "/srv.key"),
      "https test server")
    mtls, mport = S.receiver(("exec python3 %q %q %q %q"):format(dir .. "/srv.py", dir .. "/srv.pem", dir .. "/srv.key",
      dir .. "/ca.pem"), "mutual TLS test server")
    local https, mhttps = "https://127.0.0.1:" .. tport, "https://localhost:" .. mport
    refused = S.free_port()
    local ca, cert, key = dir .. "/ca.pem", dir .. "/cli.pem", dir .. "/cli.key"
    agent = S.start {
      config = S.calm_system .. ([[
local base, https, mhttps = %q, %q, %q
local ca, cert, key = %q, %q, %q
local function c(name, t) t.plugin = "http" t.retries = 0 t.interval = t.interval or "5s" check(name)(t) end
c("ok", { url = base .. "/ok", expect_body_contains = "good", expect_body = "^all %%a+ here$" })
c("set_204", { url = base .. "/status/204", expect_status = { 200, 204 } })
c("set_503", { url = base .. "/status/503", expect_status = { 200, 204 } })
c("class_2xx", { url = base .. "/status/201", expect_status = "2xx" })
c("wrong_200", { url = base .. "/status/500" })
c("contains_no", { url = base .. "/ok", expect_body_contains = "a%%" })
c("pattern_no", { url = base .. "/ok", expect_body = "^bad" })
c("post", { url = base .. "/echo", method = "POST", body = "hello there", headers = { ["X-Token"] = "t0k" },
  expect_json = { method = "POST", body = "hello there", token = "t0k" } })
c("put", { url = base .. "/echo", method = "PUT", expect_json = { method = "PUT", body = "" } })
c("json_ok", { url = base .. "/json/ok", expect_json = { ["data.status"] = "ok", ["$.data.items[1].id"] = 8,
  ["data.up"] = true, ["data.items"] = "*" } })
c("json_bad", { url = base .. "/json/degraded", expect_json = { ["data.status"] = "ok" } })
c("json_missing", { url = base .. "/json/ok", expect_json = { ["data.items[5].id"] = 1 } })
c("json_not", { url = base .. "/ok", expect_json = { ["data.status"] = "ok" } })
c("redirects", { url = base .. "/redirect/3" })
c("too_many", { url = base .. "/redirect/4", max_redirects = 3 })
c("no_follow", { url = base .. "/redirect/2", follow = false, expect_status = 302 })
c("no_follow_200", { url = base .. "/redirect/2", follow = false })
c("slow", { url = base .. "/slow/1.2", slow = "300ms", timeout = "8s" })
c("refused", { url = "http://127.0.0.1:%d/" })
c("https_ca", { url = https .. "/json/ok", ca_file = ca, expect_json = { ["data.status"] = "ok" } })
c("https_unverified", { url = https .. "/ok" })
c("https_insecure", { url = https .. "/ok", insecure = true })
c("mtls_ok", { url = mhttps .. "/ok", ca_file = ca, client_cert = cert, client_key = key })
c("mtls_no_cert", { url = mhttps .. "/ok", ca_file = ca })
]]):format(base, https, mhttps, ca, cert, key, refused),
      env = { MONITORING_PLUGIN_TLS_FILES = cert .. "," .. key },
    }
  end)

  teardown(function()
    if agent then agent:stop() end
    for _, s in ipairs { plain, tls, mtls } do if s then s.stop() end end
  end)

  local function result(name, pred)
    local o = agent:wait_check(name, pred or function(c) return c.runs and c.runs > 0 end, 20)
    assert.is_truthy(o, "check " .. name .. " did not run:\n" .. agent:logtext())
    return o
  end
  local function expect(name, status, message)
    local o = result(name)
    assert.are.equal(status, o.status, name .. ": " .. tostring(o.message))
    if message then
      assert.is_truthy(tostring(o.message):find(message, 1, true), name .. ": " .. tostring(o.message))
    end
    return o
  end

  it("is healthy on the expected status and body, with each phase's time in the details", function()
    local o = expect("ok", "healthy", "status 200 in ")
    assert.are.equal(200, o.details.status)
    assert.are.equal(#"all good here", o.details.bytes)
    for _, p in ipairs { "dns", "connect", "tls", "first_byte", "total" } do
      assert.is_number(o.details[p .. "_time"], p)
      assert.is_true(o.details[p .. "_time"] >= 0, p)
    end
    assert.are.equal(0, o.details.tls_time) -- plain HTTP
    assert.is_true(o.details.total_time >= o.details.first_byte_time)
  end)

  it("records the phase times as gauges", function()
    result("ok")
    local _, body = agent:get("/metrics")
    for _, p in ipairs { "dns", "connect", "tls", "first_byte", "total" } do
      local v = body:match(('\ncheck_http_%s_seconds{check="ok"} ([%%d%%.e+-]+)\n'):format(p))
      assert.is_truthy(tonumber(v), "no check_http_" .. p .. "_seconds in /metrics:\n" .. body)
    end
  end)

  it("takes a status, a list of statuses, or a class", function()
    expect("set_204", "healthy", "status 204")
    expect("set_503", "unhealthy", "status 503, expected one of 200, 204")
    expect("class_2xx", "healthy", "status 201")
    expect("wrong_200", "unhealthy", "status 500, expected 200")
  end)

  it("checks the body's text and pattern", function()
    expect("contains_no", "unhealthy", 'body does not contain "a%"')
    expect("pattern_no", "unhealthy", 'body does not match "^bad"')
  end)

  it("sends the method, body and headers", function()
    expect("post", "healthy")
    expect("put", "healthy")
  end)

  it("checks JSON fields by path", function()
    expect("json_ok", "healthy")
    expect("json_bad", "unhealthy", 'json data.status is "degraded", expected "ok"')
    expect("json_missing", "unhealthy", "json data.items[5].id: no such field")
    expect("json_not", "unhealthy", "body is not JSON")
  end)

  it("follows redirects up to max_redirects, and judges the redirect itself with follow = false", function()
    local o = expect("redirects", "healthy")
    assert.are.equal(3, o.details.redirects)
    assert.truthy(tostring(o.details.url):find("/redirect/0$"), tostring(o.details.url))
    o = expect("too_many", "unhealthy")
    assert.are.equal("more than 3 redirects (the limit)", o.message)
    expect("no_follow", "healthy", "status 302")
    expect("no_follow_200", "unhealthy", "status 302, expected 200")
  end)

  it("is degraded above slow", function()
    local o = expect("slow", "degraded", "slow: ")
    assert.is_true(o.details.time >= 1.2, tostring(o.details.time))
  end)

  it("is unhealthy without an answer", function()
    local o = expect("refused", "unhealthy")
    assert.is_truthy(o.message:lower():find("refused", 1, true) or o.message:lower():find("connect", 1, true), o.message)
  end)

  it("refuses a wrong option at load, naming the file and line, the check and the option", function()
    local u = 'url = "http://127.0.0.1:1/"'
    for _, case in ipairs {
      { 'check "bad_status" { plugin = "http", ' .. u .. ', expect_status = { 200, 99 } }',
        'option expect_status: item 2 (99) is not a status 100..599 or a class such as "2xx"' },
      { 'check "bad_path" { plugin = "http", ' .. u .. ', expect_json = { ["data[x]"] = 1 } }',
        'option expect_json: bad [ at 5 in "data[x]" (use [0] or ["key"])' },
      { 'check "bad_redirects" { plugin = "http", ' .. u .. ', max_redirects = 51 }',
        "option max_redirects: 51 is outside 0..50" },
      { 'check "bad_body" { plugin = "http", ' .. u .. ', max_body = 0 }',
        "option max_body: 0 is not a number of bytes >= 1" },
      { 'check "bad_key" { plugin = "http", ' .. u .. ', client_key = "/k.pem" }',
        "option client_key: given without client_cert" },
      { 'check "bad_url" { plugin = "http", url = "127.0.0.1:8080/health" }',
        'option url: "127.0.0.1:8080/health" is not an http:// or https:// URL' },
    } do
      local name = case[1]:match('check "([^"]+)"')
      assert.are.equal(('beagle.lua:%d: check "%s": %s'):format(S.calm_lines + 1, name, case[2]),
        S.refused(case[1] .. "\n"))
    end
  end)

  it("verifies TLS with a CA file, fails without it, and skips verification when insecure", function()
    local o = expect("https_ca", "healthy")
    assert.is_true(o.details.tls_time > 0, tostring(o.details.tls_time))
    o = expect("https_unverified", "unhealthy")
    assert.is_truthy(o.message:lower():find("certificate", 1, true), o.message)
    expect("https_insecure", "healthy")
  end)

  it("presents a client certificate to a server that requires one", function()
    expect("mtls_ok", "healthy")
    expect("mtls_no_cert", "unhealthy")
  end)

  it("refuses a reload that adds an instance with a wrong option, and keeps the old config running", function()
    local good = S.read(agent.config)
    local line = select(2, good:gsub("\n", "")) + 1
    S.write(agent.config, good .. 'check "bad_reload" { plugin = "http", url = "http://127.0.0.1:1/", max_redirects = 99 }\n')
    local st, body = agent:post("/-/reload", "")
    S.write(agent.config, good)
    assert.are.equal(422, st, body)
    local e = S.json(body).errors[1] -- { file, line, message }
    assert.are.equal(agent.config, e.file)
    assert.are.equal(line, e.line)
    assert.is_truthy(e.message:find('check "bad_reload": option max_redirects: 99 is outside 0..50', 1, true), e.message)
    assert.is_nil((agent:check("bad_reload") or {}).name)
    local runs = result("ok").runs
    assert.is_truthy(agent:wait_check("ok", function(c) return c.runs > runs end, 15), agent:logtext())
  end)
end)
