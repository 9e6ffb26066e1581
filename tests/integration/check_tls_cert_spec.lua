-- The tls_cert check against TLS servers on loopback (openssl s_server) with certificates made
-- here by `openssl req -x509 -days N`: the days left as the certificate says, degraded and
-- unhealthy by threshold, verification with a CA file or failing without it, an expired
-- certificate, a server name other than the host, and a closed port.
local S = require "support"

local function sh_ok(cmd)
  local out, code = S.sh(cmd)
  assert(code == 0, cmd .. "\n" .. out)
  return out
end

-- a self-signed certificate valid for `days` from now, for beagle.test, localhost and 127.0.0.1
local function cert(dir, name, days)
  sh_ok(("cd %q && openssl req -x509 -newkey rsa:2048 -nodes -keyout %s.key -out %s.pem -days %d -subj /CN=beagle.test"
    .. " -addext subjectAltName=DNS:beagle.test,DNS:localhost,IP:127.0.0.1 2>&1"):format(dir, name, name, days))
  return dir .. "/" .. name .. ".pem", dir .. "/" .. name .. ".key"
end

-- a self-signed certificate that expired in February 2020 (openssl ca sets the dates)
local CA_CNF = [[
[ca]
default_ca = d
[d]
dir = .
database = index.txt
new_certs_dir = newcerts
serial = serial
default_md = sha256
policy = p
copy_extensions = copy
[p]
commonName = supplied
]]
local function expired_cert(dir)
  local d = dir .. "/expired"
  sh_ok(("mkdir -p %q/newcerts && : > %q/index.txt && echo 01 > %q/serial"):format(d, d, d))
  S.write(d .. "/ca.cnf", CA_CNF)
  sh_ok(("cd %q && openssl req -new -newkey rsa:2048 -nodes -keyout exp.key -out exp.csr -subj /CN=localhost"
    .. " -addext subjectAltName=IP:127.0.0.1 2>&1 && openssl ca -batch -config ca.cnf -selfsign -keyfile exp.key"
    .. " -in exp.csr -out exp.pem -startdate 20200101000000Z -enddate 20200201000000Z 2>&1"):format(d))
  return d .. "/exp.pem", d .. "/exp.key"
end

-- openssl s_server with that certificate on a free port; waits until it accepts
local function tls_server(pem, key)
  local port = S.free_port()
  local svc = S.service(("exec openssl s_server -accept 127.0.0.1:%d -cert %q -key %q -www -quiet"):format(port, pem, key))
  local up = S.wait(function()
    local _, code = S.sh(("curl -sk -o /dev/null https://127.0.0.1:%d/"):format(port))
    return code == 0
  end, 10)
  assert(up, "openssl s_server did not start: " .. svc.output())
  return svc, port
end

describe("tls_cert check", function()
  local agent, servers = nil, {}
  local pems = {}

  setup(function()
    local dir = S.tmpdir()
    local ports = {}
    for name, days in pairs { long = 40, mid = 20, short = 3 } do
      local pem, key = cert(dir, name, days)
      pems[name] = pem
      local svc
      svc, ports[name] = tls_server(pem, key)
      servers[#servers + 1] = svc
    end
    local epem, ekey = expired_cert(dir)
    local svc
    svc, ports.expired = tls_server(epem, ekey)
    servers[#servers + 1] = svc
    agent = S.start {
      config = S.calm_system .. ([[
local function c(name, t) t.plugin = "tls_cert" t.retries = 0 t.interval = "5s" check(name)(t) end
c("long", { host = "127.0.0.1", port = %d, ca_file = %q })
c("long_warn50", { host = "127.0.0.1", port = %d, ca_file = %q, warn_days = 50, critical_days = 10 })
c("mid", { host = "127.0.0.1", port = %d, ca_file = %q })
c("short", { host = "127.0.0.1", port = %d, ca_file = %q })
c("short_insecure", { host = "127.0.0.1", port = %d, insecure = true })
c("unverified", { host = "127.0.0.1", port = %d })
c("expired_insecure", { host = "127.0.0.1", port = %d, insecure = true })
c("expired", { host = "127.0.0.1", port = %d, ca_file = %q })
c("sni", { host = "127.0.0.1", port = %d, server_name = "beagle.test", ca_file = %q })
c("sni_wrong", { host = "127.0.0.1", port = %d, server_name = "other.test", ca_file = %q })
c("closed", { host = "127.0.0.1", port = %d })
]]):format(ports.long, pems.long, ports.long, pems.long, ports.mid, pems.mid, ports.short, pems.short,
        ports.short, ports.long, ports.expired, ports.expired, epem, ports.long, pems.long, ports.long, pems.long,
        S.free_port()),
    }
  end)

  teardown(function()
    if agent then agent:stop() end
    for _, s in ipairs(servers) do s.stop() end
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

  it("reports the days the certificate has left, verified with a CA file", function()
    local o = expect("long", "healthy", "127.0.0.1:")
    local d = o.details.days_left
    assert.is_true(d > 39 and d <= 40.01, tostring(d))
    assert.truthy(o.message:find("certificate expires in 40.0 days", 1, true) or o.message:find("in 39.9", 1, true),
      o.message)
    assert.truthy(tostring(o.details.subject):find("beagle.test", 1, true), tostring(o.details.subject))
    assert.is_string(o.details.not_after)
    local _, body = agent:get("/metrics")
    local v = tonumber(body:match('\ncheck_tls_cert_days_left{check="long"} ([%d%.e+-]+)'))
    assert.is_truthy(v, body)
    assert.is_true(v > 39 and v <= 40.01, tostring(v))
  end)

  it("is degraded below warn_days and unhealthy below critical_days", function()
    local o = expect("mid", "degraded", "certificate expires in ")
    assert.is_true(o.details.days_left > 19 and o.details.days_left <= 20.01, tostring(o.details.days_left))
    expect("long_warn50", "degraded")
    o = expect("short", "unhealthy", "certificate expires in ")
    assert.is_true(o.details.days_left > 2 and o.details.days_left <= 3.01, tostring(o.details.days_left))
    expect("short_insecure", "unhealthy", "certificate expires in ")
  end)

  it("is unhealthy when the certificate does not verify, unless insecure", function()
    local o = expect("unverified", "unhealthy")
    assert.truthy(o.message:lower():find("certificate", 1, true), o.message)
    o = expect("expired", "unhealthy")
    assert.truthy(o.message:lower():find("expired", 1, true), o.message)
    o = expect("expired_insecure", "unhealthy", "certificate expired ")
    assert.is_true(o.details.days_left < -300, tostring(o.details.days_left))
  end)

  it("verifies against server_name while connecting to host", function()
    -- beagle.test does not resolve: the handshake reaches 127.0.0.1 through ctx.http.request's
    -- connect_to (curl's CONNECT_TO), asks for beagle.test (SNI) and verifies the certificate
    -- against it
    local o = expect("sni", "healthy", "beagle.test:")
    assert.are.equal(1, select(2, o.message:gsub("^beagle%.test:%d+: certificate expires in ", "")), o.message)
    local d = o.details.days_left
    assert.is_true(d > 39 and d <= 40.01, tostring(d))
    assert.truthy(tostring(o.details.subject):find("beagle.test", 1, true), tostring(o.details.subject))
    o = expect("sni_wrong", "unhealthy", "other.test:")
    assert.is_nil(o.message:find("resolve", 1, true), o.message)
    -- curl: "SSL: no alternative certificate subject name matches target host name 'other.test'"
    assert.truthy(o.message:find("name.*'other%.test'"), o.message)
  end)

  it("is unhealthy on a closed port", function()
    expect("closed", "unhealthy")
  end)

  it("refuses a wrong port or crossed thresholds at load, naming the file and line, the check and the option",
    function()
    for _, case in ipairs {
      { 'check "bad_thresholds" { plugin = "tls_cert", host = "127.0.0.1", warn_days = 5, critical_days = 10 }',
        "option critical_days: 10 is above warn_days (5)" },
      { 'check "bad_port" { plugin = "tls_cert", host = "127.0.0.1", port = 65536 }',
        "option port: 65536 is not a TCP port (1..65535)" },
    } do
      local name = case[1]:match('check "([^"]+)"')
      assert.are.equal(('beagle.lua:%d: check "%s": %s'):format(S.calm_lines + 1, name, case[2]),
        S.refused(case[1] .. "\n"))
    end
  end)
end)
