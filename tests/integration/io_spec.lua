-- Coroutine I/O from plugins: ctx.http, ctx.tcp, ctx.exec and ctx.sleep, each resumed by the
-- loop. A second agent serves as the peer.
local S = require "support"

describe("plugin I/O", function()
  local peer, agent, dir
  setup(function()
    peer = S.start { config = S.calm_system }
    local p = peer.port
    dir = S.tmpdir()
    S.write(dir .. "/probe_io.lua", ([[
return beagle.check {
  name = "probe_io",
  options = { port = { "integer", default = %d } },
  retries = 0, interval = "1h",
  run = function(opt, ctx)
    local d = {}
    -- POST with a body and a header
    local res, err = ctx.http.post("http://127.0.0.1:" .. opt.port .. "/-/reload", "", { headers = { ["X-Probe"] = "1" } })
    if not res then return ctx.unhealthy("post: " .. err) end
    d.post_status = res.status
    d.content_type = res.headers["content-type"]
    -- every name lowercased, values trimmed, the status line not a header
    local names = {}
    for k, v in pairs(res.headers) do
      if k ~= k:lower() or v:find("^%%s") or v:find("%%s$") or k:find("^HTTP/") then names[#names + 1] = "bad:" .. k end
      names[#names + 1] = k
    end
    table.sort(names)
    d.header_names = table.concat(names, ",")
    -- a raw HTTP request over TCP
    local conn, cerr = ctx.tcp.connect("127.0.0.1", opt.port)
    if not conn then return ctx.unhealthy("tcp: " .. cerr) end
    assert(conn:write("GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
    local reply = ""
    while true do
      local chunk = conn:read()
      if not chunk then break end
      reply = reply .. chunk
    end
    conn:close()
    d.tcp_reply = reply:match("^(HTTP/1.1 %%d+)")
    d.tcp_body = reply:match("\r\n\r\n(.*)$")
    -- a process
    local p = ctx.exec { "/bin/sh", "-c", "echo out; echo err >&2; exit 3" }
    d.exec_code, d.exec_stdout, d.exec_stderr = p.code, p.stdout, p.stderr
    local missing, merr = ctx.exec { "/no/such/program" }
    d.exec_missing = missing == nil and merr or "spawned?"
    -- a sleep, and I/O from inside a plugin's own coroutine
    local t0 = ctx.now()
    ctx.sleep(0.1)
    d.slept = ctx.now() - t0
    local co = coroutine.wrap(function()
      local r = ctx.http.get("http://127.0.0.1:" .. opt.port .. "/health/live")
      coroutine.yield(r and r.status)
      return "done"
    end)
    d.nested_status = co()
    d.nested_end = co()
    return ctx.healthy("io ok", d)
  end,
}
]]):format(p))
    S.write(dir .. "/slow_exec.lua", [[
return beagle.check { name = "slow_exec", retries = 0, interval = "1h", timeout = "1500ms",
  run = function(opt, ctx)
    ctx.exec { "/bin/sh", "-c", "echo $$ > ]] .. dir .. [[/pid; exec sleep 30" }
    return ctx.healthy()
  end }
]])
    agent = S.start {
      plugins = dir,
      config = S.calm_system .. ([[
plugin_exec_allow = "/bin/sh, /no/such/program"
check "web" { plugin = "http", url = "http://127.0.0.1:%d/health/live", expect_body = "alive" }
check "web_missing" { plugin = "http", url = "http://127.0.0.1:%d/nope", retries = 0 }
check "web_refused" { plugin = "http", url = "http://127.0.0.1:1/", retries = 1 }
check "port" { plugin = "tcp", port = %d }
check "port_probe" { plugin = "tcp", port = %d, send = "GET /health/live HTTP/1.0\r\n\r\n", expect = "^HTTP/1.1 200" }
]]):format(p, p, p, p),
    }
  end)
  teardown(function()
    if agent then agent:stop() end
    if peer then peer:stop() end
  end)

  local function result(name)
    return agent:wait_check(name, function(c) return c.runs and c.runs > 0 end, 8)
  end

  it("runs the http check against a live endpoint", function()
    local o = result("web")
    assert.are.equal("healthy", o.status, o.message)
    assert.are.equal(200, o.details.status)
  end)

  it("reports an unexpected status and a refused connection as unhealthy", function()
    local o = result("web_missing")
    assert.are.equal("unhealthy", o.status)
    assert.are.equal("status 404, expected 200", o.message)
    o = result("web_refused")
    assert.are.equal("unhealthy", o.status)
    assert.are.equal(2, o.attempts)
    assert.is_truthy(o.message:lower():find("connect", 1, true), o.message)
  end)

  it("runs the tcp check, with and without a probe", function()
    assert.are.equal("healthy", result("port").status)
    local o = result("port_probe")
    assert.are.equal("healthy", o.status, o.message)
  end)

  it("gives plugins http, tcp, exec and sleep that yield to the loop", function()
    local o = result("probe_io")
    assert.are.equal("healthy", o.status, o.message)
    local d = o.details
    assert.are.equal(200, d.post_status)
    assert.are.equal("application/json", d.content_type)
    assert.is_nil(d.header_names:find("bad:", 1, true), d.header_names)
    assert.truthy(d.header_names:find("content-length", 1, true), d.header_names)
    assert.are.equal("HTTP/1.1 200", d.tcp_reply)
    assert.are.equal('{"status":"alive"}', d.tcp_body)
    assert.are.equal(3, d.exec_code)
    assert.are.equal("out\n", d.exec_stdout)
    assert.are.equal("err\n", d.exec_stderr)
    assert.is_truthy(d.exec_missing:find("no such file", 1, true), d.exec_missing)
    assert.is_true(d.slept >= 0.09 and d.slept < 1, tostring(d.slept))
    assert.are.equal(200, d.nested_status)
    assert.are.equal("done", d.nested_end)
  end)

  it("kills a process that outlives its run's timeout", function()
    local o = result("slow_exec")
    assert.are.equal("timeout", o.message)
    local pid = S.wait(function() return tonumber(S.read(dir .. "/pid") or "") end, 2)
    assert.is_truthy(pid)
    local gone = S.wait(function()
      local st = S.read("/proc/" .. pid .. "/stat")
      return st == nil or st:match("^%d+ %b() Z") ~= nil
    end, 3)
    assert.is_truthy(gone, "sleep still running")
  end)
end)
