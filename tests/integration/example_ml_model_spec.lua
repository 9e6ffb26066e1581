-- The example ml_model check (examples/plugins/checks/ml_model.lua) in a running agent against
-- a stub model server on 127.0.0.1 (TensorFlow Serving's REST shape): a model that predicts
-- at once is healthy, one that takes 1.5 s is degraded, one that fails or is gone unhealthy.
local S = require "support"

local STUB = [==[
import json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        req = json.loads(body)
        if self.path == "/v1/models/slow:predict":
            time.sleep(1.5)
        if self.path == "/v1/models/broken:predict":
            out, status = {"error": "model not loaded"}, 500
        elif self.headers.get("Content-Type") != "application/json":
            out, status = {"error": "not JSON"}, 415
        else:
            out, status = {"predictions": [[0.9, 0.1] for _ in req["instances"]]}, 200
        data = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
]==]

describe("example ml_model check against a stub model server", function()
  local agent, stub
  setup(function()
    local dir = S.tmpdir()
    S.write(dir .. "/stub.py", STUB)
    local port = S.free_port()
    stub = S.service(("exec python3 %q %d"):format(dir .. "/stub.py", port))
    local base = "http://127.0.0.1:" .. port
    assert(S.wait(function() return S.http("POST", base .. "/v1/models/ok:predict", '{"instances": [[1]]}',
      { "Content-Type: application/json" }) == 200 end, 10), "the stub model server did not start: " .. stub.output())
    local gone = S.free_port()
    agent = S.start {
      plugins = S.src .. "/examples/plugins",
      config = S.calm_system .. ([==[
check "model_ok" { plugin = "ml_model", url = "%s/v1/models/ok:predict", input = '{"instances": [[1], [2]]}',
  count = 2, interval = "2s", retries = 0 }
check "model_slow" { plugin = "ml_model", url = "%s/v1/models/slow:predict", interval = "5s", timeout = "4s", retries = 0 }
check "model_broken" { plugin = "ml_model", url = "%s/v1/models/broken:predict", interval = "2s", retries = 0 }
check "model_gone" { plugin = "ml_model", url = "http://127.0.0.1:%d/v1/models/m:predict", interval = "2s", retries = 0 }
]==]):format(base, base, base, gone),
    }
  end)
  teardown(function()
    if agent then agent:stop() end
    if stub then stub.stop() end
  end)

  local function result(name)
    local o = agent:wait_check(name, function(c) return c.runs and c.runs > 0 end, 15)
    assert.is_truthy(o, "check " .. name .. " did not run:\n" .. agent:logtext())
    return o
  end

  it("is healthy when the model predicts in time", function()
    local o = result("model_ok")
    assert.are.equal("healthy", o.status, o.message)
    assert.truthy(o.message:find("^Model answered 2 predictions in [%d.]+s$"), o.message)
    assert.are.equal(2, o.details.predictions)
    local _, body = agent:get("/metrics")
    assert.truthy(body:find('\nml_model_response_time_seconds{model="model_ok"} [%d.e+-]+\n'), body:sub(1, 2000))
  end)

  it("is degraded when the model takes longer than slow", function()
    local o = result("model_slow")
    assert.are.equal("degraded", o.status, o.message)
    assert.truthy(o.message:find("^Model latency 1%.[5-9]%ds exceeds threshold 1%.00s$")
      or o.message:find("^Model latency [2-3]%.%d%ds exceeds threshold 1%.00s$"), o.message)
  end)

  it("is unhealthy when the model fails or is not there", function()
    local o = result("model_broken")
    assert.are.equal("unhealthy", o.status)
    assert.are.equal("Model check failed: status 500", o.message)
    o = result("model_gone")
    assert.are.equal("unhealthy", o.status)
    assert.truthy(o.message:find("^Model check failed: "), o.message)
  end)
end)
