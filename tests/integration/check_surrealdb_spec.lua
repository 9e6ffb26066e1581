-- The surrealdb check (the monitoring guide's database health example) against a local HTTP
-- stub that answers as SurrealDB's HTTP API does: GET /health, POST /sql with Basic auth and
-- the namespace/database headers, a JSON list of statement results ({"status": "OK", "time",
-- "result"} or "ERR"), 401 with SurrealDB's error object for bad credentials. The stub is
-- written here (Python 3 standard library) and told what to do through POST /_control.
local S = require "support"
local json = require "cjson"

local STUB = [=[
import base64, json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

state = {"delay": 0.0, "health": 200, "sql_status": "OK", "down": False}
requests = []
lock = threading.Lock()
USER, PASSWORD = "root", "s3cret"

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def answer(self, code, body, ctype="application/json"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n).decode() if n else ""

    def record(self, body):
        with lock:
            requests.append({"method": self.command, "path": self.path, "body": body,
                             "headers": {k.lower(): v for k, v in self.headers.items()}})

    def do_GET(self):
        if self.path == "/_requests":
            with lock:
                return self.answer(200, json.dumps(requests))
        self.record("")
        time.sleep(state["delay"])
        if self.path == "/health":
            return self.answer(state["health"], "", "text/plain")
        self.answer(404, "")

    def do_POST(self):
        body = self.body()
        if self.path == "/_control":
            state.update(json.loads(body))
            with lock:
                requests.clear()
            return self.answer(200, json.dumps(state))
        self.record(body)
        time.sleep(state["delay"])
        if self.path != "/sql":
            return self.answer(404, "")
        want = "Basic " + base64.b64encode((USER + ":" + PASSWORD).encode()).decode()
        if self.headers.get("Authorization") != want:
            return self.answer(401, json.dumps({"code": 401, "details": "Authentication failed",
                "description": "Your authentication details are invalid. Reauthenticate using valid authentication parameters.",
                "information": "There was a problem with authentication"}))
        if state["sql_status"] != "OK":
            return self.answer(200, json.dumps([{"result": "Specify a namespace to use", "status": "ERR", "time": "5.1µs"}]))
        return self.answer(200, json.dumps([{"result": [{"current_time": "2026-12-08T03:00:00.123456Z"}],
                                             "status": "OK", "time": "38.2µs"}]))

srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
]=]

describe("surrealdb check", function()
  local stub, url, agent
  setup(function()
    local dir = S.tmpdir()
    S.write(dir .. "/surreal_stub.py", STUB)
    local svc, port = S.receiver(("exec python3 %q"):format(dir .. "/surreal_stub.py"), "surrealdb stub")
    stub, url = svc, "http://127.0.0.1:" .. port
    local function check(name, to, rest)
      return ('check "%s" { plugin = "surrealdb", url = "%s", interval = "1h", retries = 0, %s }\n'):format(name, to, rest)
    end
    agent = S.start {
      config = S.calm_system
        .. check("surreal", url, 'user = "root", password = "s3cret", namespace = "darwin", database = "monitoring"')
        .. check("bad_auth", url, 'user = "root", password = "wrong"')
        .. check("closed", ("http://127.0.0.1:%d"):format(S.free_port()), 'user = "root"'),
    }
    -- the first scheduled runs are done (a ?run=1 during one would join it, not start another)
    for _, name in ipairs { "surreal", "bad_auth", "closed" } do
      assert(agent:wait_check(name, function(c) return c.runs and c.runs > 0 end, 10), name .. " did not run")
    end
  end)
  teardown(function()
    if agent then agent:stop() end
    if stub then stub.stop() end
  end)

  local function control(t)
    local st = S.http("POST", url .. "/_control", json.encode(t), { "Content-Type: application/json" })
    assert.are.equal(200, st)
  end
  local function requests()
    local _, body = S.http("GET", url .. "/_requests")
    return json.decode(body)
  end
  local function run(name)
    local st, body = S.http("GET", agent.url .. "/health/" .. name .. "?run=1")
    local o = S.json(body)
    assert.is_table(o, ("HTTP %d %s"):format(st, body))
    return o
  end

  it("GETs /health, then POSTs SELECT time::now() with Basic auth and the NS/DB headers", function()
    control { delay = 0, health = 200, sql_status = "OK" }
    local o = run("surreal")
    assert.are.equal("healthy", o.status, o.message)
    assert.truthy(o.message:find("^Database is healthy"), o.message)
    assert.are.equal("2026-12-08T03:00:00.123456Z", o.details.server_time)
    assert.is_number(o.details.response_time)
    local reqs = requests()
    assert.are.equal(2, #reqs)
    assert.are.equal("GET", reqs[1].method)
    assert.are.equal("/health", reqs[1].path)
    local q = reqs[2]
    assert.are.equal("POST", q.method)
    assert.are.equal("/sql", q.path)
    assert.are.equal("SELECT time::now() AS current_time;", q.body)
    assert.are.equal("Basic cm9vdDpzM2NyZXQ=", q.headers.authorization)
    assert.are.equal("darwin", q.headers["surreal-ns"])
    assert.are.equal("monitoring", q.headers["surreal-db"])
    assert.are.equal("darwin", q.headers.ns)
    assert.are.equal("monitoring", q.headers.db)
    assert.are.equal("application/json", q.headers.accept)
  end)

  it("reports SurrealDB's own words for bad credentials and a failed statement", function()
    control { delay = 0, health = 200, sql_status = "OK" }
    local o = run("bad_auth")
    assert.are.equal("unhealthy", o.status)
    assert.are.equal("POST /sql: HTTP 401: There was a problem with authentication", o.message)
    control { sql_status = "ERR" }
    o = run("surreal")
    assert.are.equal("unhealthy", o.status)
    assert.are.equal("POST /sql: status ERR: Specify a namespace to use", o.message)
  end)

  it("is unhealthy when /health fails or nothing listens", function()
    control { delay = 0, health = 500, sql_status = "OK" }
    local o = run("surreal")
    assert.are.equal("unhealthy", o.status)
    assert.are.equal("GET /health: HTTP 500", o.message)
    assert.are.equal(1, #requests()) -- no query after a failed /health
    o = run("closed")
    assert.are.equal("unhealthy", o.status)
    assert.truthy(o.message:find("^GET /health: "), o.message)
  end)

  it("is degraded when the server answers slower than slow", function()
    control { delay = 0.6, health = 200, sql_status = "OK" } -- two requests: 1.2 s
    local o = run("surreal")
    assert.are.equal("degraded", o.status, o.message)
    assert.truthy(o.message:find("^Database responding slowly: 1%.%d+s"), o.message)
    assert.is_true(o.details.response_time > 1)
    control { delay = 0 }
  end)

  it("refuses a URL that is not http:// or https:// at load, naming the file and line", function()
    assert.are.equal(('beagle.lua:%d: check "db": option url: "127.0.0.1:8000" is not an http:// or https:// URL')
      :format(S.calm_lines + 1), S.refused('check "db" { plugin = "surrealdb", url = "127.0.0.1:8000" }\n'))
  end)
end)
