-- The check ctx's I/O beyond HTTP basics (issue 17): ctx.http's TLS and redirect options
-- (max_redirects, client certificates, a private CA, cert_info, connect_only, timings) against
-- HTTPS servers on loopback with certificates made here by the openssl CLI, ctx.dns.resolve,
-- ctx.stat, ctx.statvfs, ctx.list_dir, ctx.read_pidfile and ctx.crypto's known vectors; and the
-- hostile side: paths out of bounds, bad arguments, runs that time out while a lookup, a stat
-- or a key derivation is still on the threadpool (no crash, and LeakSanitizer finds nothing).
local S = require "support"

-- Three servers in one process: plain HTTP, HTTPS, and HTTPS that requires a client
-- certificate of the test CA. /ok answers 200 "ok" (/slow too, 1.5 s later); /redir/N redirects to /redir/N-1, /redir/0
-- answers 200 "end". Prints the three ports on its first line.
local SERVER = [[
import http.server, socketserver, ssl, sys, threading, time
d = sys.argv[1]
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(1.5)
        if self.path.startswith("/redir/"):
            n = int(self.path[7:])
            if n > 0:
                self.send_response(302)
                self.send_header("Location", "/redir/%d" % (n - 1))
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"end"
        else:
            body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    ctx = None
    def finish_request(self, request, addr):
        if self.ctx is not None:
            try:
                request = self.ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        self.RequestHandlerClass(request, addr, self)
def tls(require_client):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    c.load_cert_chain(d + "/srv.pem", d + "/srv.key")
    if require_client:
        c.verify_mode = ssl.CERT_REQUIRED
        c.load_verify_locations(d + "/ca.pem")
    return c
servers = []
for ctx in (None, tls(False), tls(True)):
    s = S(("127.0.0.1", 0), H)
    s.ctx = ctx
    servers.append(s)
    threading.Thread(target=s.serve_forever, daemon=True).start()
print(" ".join(str(s.server_address[1]) for s in servers), flush=True)
threading.Event().wait()
]]

-- The probe: one case per instance (opt.case), its findings as the result's details.
local PROBE = [==[
local function hex(s)
  return (s:gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end
local function join(t) return type(t) == "table" and table.concat(t, ",") or tostring(t) end

local CASES = {}

function CASES.tls(opt, ctx, d)
  local https = ("https://localhost:%d"):format(opt.arg.tls)
  local res, err = ctx.http.get(https .. "/ok", { ca_file = opt.arg.ca, cert_info = true })
  if not res then error("https with ca_file: " .. err) end
  d.status, d.body, d.url, d.redirects = res.status, res.body, res.url, res.redirects
  d.not_before, d.not_after = res.cert.not_before, res.cert.not_after
  d.subject, d.issuer = res.cert.subject, res.cert.issuer
  for k, v in pairs(res.timings) do d["t_" .. k] = v end
  -- the system's CAs do not know the test CA: verification fails, with curl's reason
  local r2, e2 = ctx.http.get(https .. "/ok")
  d.unverified = r2 and "answered" or e2
  -- unless verification is off
  r2, e2 = ctx.http.get(https .. "/ok", { insecure = true, cert_info = true })
  d.insecure_status = r2 and r2.status or e2
  d.insecure_cert = r2 and r2.cert and r2.cert.not_after
  -- without cert_info there is no cert
  r2 = ctx.http.get(https .. "/ok", { ca_file = opt.arg.ca })
  d.no_cert_info = r2 and r2.cert == nil
end

function CASES.connect_only(opt, ctx, d)
  local res, err = ctx.http.request { url = ("https://127.0.0.1:%d/"):format(opt.arg.tls), connect_only = true,
    cert_info = true, insecure = true }
  if not res then error("connect_only: " .. err) end
  d.status, d.body, d.not_after, d.subject = res.status, res.body, res.cert and res.cert.not_after, res.cert and res.cert.subject
  d.t_tls, d.t_connect, d.t_total = res.timings.tls, res.timings.connect, res.timings.total
  -- verified against the CA, by name
  res, err = ctx.http.request { url = ("https://localhost:%d/"):format(opt.arg.tls), connect_only = true,
    ca_file = opt.arg.ca }
  d.verified = res and res.status or err
  -- nothing listens: an error
  res, err = ctx.http.request { url = ("https://127.0.0.1:%d/"):format(opt.arg.closed), connect_only = true }
  d.refused = res and "connected?" or err
  -- plain TCP to the HTTP server: no request is sent
  res, err = ctx.http.request { url = ("http://127.0.0.1:%d/"):format(opt.arg.plain), connect_only = true }
  d.plain = res and res.status or err
end

function CASES.mtls(opt, ctx, d)
  local url = ("https://localhost:%d/ok"):format(opt.arg.mtls)
  local res, err = ctx.http.get(url, { ca_file = opt.arg.ca })
  d.without = res and ("answered " .. res.status) or err
  res, err = ctx.http.get(url, { ca_file = opt.arg.ca, client_cert = opt.arg.dir .. "/cli.pem",
    client_key = opt.arg.dir .. "/cli.key" })
  d.with = res and res.status or err
  d.body = res and res.body
  res, err = ctx.http.get(url, { ca_file = opt.arg.ca, client_cert = opt.arg.dir .. "/missing.pem" })
  d.missing_cert = res and "answered" or err
  -- a PEM path must name a regular file, looked at before curl opens it
  res, err = ctx.http.get(url, { ca_file = "/dev/null" })
  d.device_ca = res and "answered" or err
  res, err = ctx.http.get(url, { ca_file = opt.arg.dir })
  d.dir_ca = res and "answered" or err
  -- a file that is not a certificate: the TLS library's reason
  res, err = ctx.http.get(url, { ca_file = opt.arg.ca, client_cert = opt.arg.dir .. "/srv.ext" })
  d.junk_cert = res and "answered" or err
  -- a TLS identity the operator did not list in plugin_tls_files (the host's keys are its own)
  res, err = ctx.http.get(url, { ca_file = opt.arg.ca, client_cert = "/etc/ssl/private/host.pem" })
  d.outside = res and "answered" or err
  res, err = ctx.http.get(url, { ca_file = opt.arg.ca, client_cert = opt.arg.dir .. "/../x/cli.pem" })
  d.dotdot = res and "answered" or err
  -- a CA file too big to be one, read whole on the loop's thread otherwise
  res, err = ctx.http.get(url, { ca_file = opt.arg.dir .. "/big.pem" })
  d.big_ca = res and "answered" or err
end

function CASES.redirects(opt, ctx, d)
  for _, base in ipairs { ("http://127.0.0.1:%d"):format(opt.arg.plain), ("https://localhost:%d"):format(opt.arg.tls) } do
    local tag = base:match("^(%a+)")
    local res, err = ctx.http.get(base .. "/redir/3", { follow = true, max_redirects = 3, ca_file = opt.arg.ca })
    d[tag .. "_ok"] = res and (res.status .. " " .. res.redirects .. " " .. res.url .. " " .. res.body) or err
    res, err = ctx.http.get(base .. "/redir/4", { follow = true, max_redirects = 3, ca_file = opt.arg.ca })
    d[tag .. "_over"] = res and "followed" or err
    res, err = ctx.http.get(base .. "/redir/1", { follow = true, max_redirects = 0, ca_file = opt.arg.ca })
    d[tag .. "_zero"] = res and "followed" or err
    -- the default limit is 10
    res, err = ctx.http.get(base .. "/redir/10", { follow = true, ca_file = opt.arg.ca })
    d[tag .. "_default"] = res and res.redirects or err
    res, err = ctx.http.get(base .. "/redir/11", { follow = true, ca_file = opt.arg.ca })
    d[tag .. "_default_over"] = res and "followed" or err
    -- without follow, the 302 itself
    res = ctx.http.get(base .. "/redir/2", { ca_file = opt.arg.ca })
    d[tag .. "_nofollow"] = res and (res.status .. " " .. res.redirects .. " " .. res.url)
  end
  local _, e = ctx.http.get("http://127.0.0.1:1/", { follow = true, max_redirects = 51 })
  d.bad_limit = e
  _, e = ctx.http.get("http://127.0.0.1:1/", { follow = true, max_redirects = 1.5 })
  d.bad_limit_frac = e
  _, e = ctx.http.get("http://127.0.0.1:1/", { max_redirects = "3" })
  d.bad_limit_type = e
  _, e = ctx.http.get("https://127.0.0.1:1/", { ca_file = "relative.pem" })
  d.bad_ca = e
  _, e = ctx.http.get("https://127.0.0.1:1/", { client_key = "/k.pem" })
  d.key_alone = e
  _, e = ctx.http.get("https://127.0.0.1:1/", { cert_info = "yes" })
  d.bad_cert_info = e
end

-- connect_to (curl's CONNECT_TO): the URL's name, connected elsewhere; never the built-in client
function CASES.connect_to(opt, ctx, d)
  local p, t = opt.arg.plain, opt.arg.tls
  local res, err = ctx.http.get(("http://beagle.invalid:%d/ok"):format(p),
    { connect_to = ("beagle.invalid:%d:127.0.0.1:%d"):format(p, p) })
  d.plain = res and (res.status .. " " .. res.body .. " " .. tostring(res.timings.dns ~= nil)) or err
  -- https: SNI and verification for localhost, the connection to 127.0.0.1; a list, the first
  -- entry for another name
  res, err = ctx.http.request { url = ("https://localhost:%d/ok"):format(t), ca_file = opt.arg.ca, cert_info = true,
    connect_to = { "other.invalid:1:127.0.0.1:1", ("localhost:%d:127.0.0.1:%d"):format(t, t) } }
  d.tls = res and (res.status .. " " .. res.cert.subject) or err
  -- an empty host and port match any: the name still verified
  res, err = ctx.http.request { url = ("https://beagle.invalid:%d/"):format(t), connect_only = true,
    ca_file = opt.arg.ca, connect_to = ("::127.0.0.1:%d"):format(t) }
  d.wrong_name = res and "verified?" or err
  res, err = ctx.http.request { url = ("https://beagle.invalid:%d/"):format(t), connect_only = true,
    insecure = true, connect_to = ("::[::1]:%d"):format(opt.arg.closed) }
  d.v6 = res and "connected?" or err
  local bad = {}
  for i, v in ipairs { "a:b", "x:1:y:2\r\nHost: evil", "x:70000:y:1", 5, { "x:1:y:1", 3 },
    { "x:1:y:1", "x:1:y:1", "x:1:y:1", "x:1:y:1", "x:1:y:1", "x:1:y:1", "x:1:y:1", "x:1:y:1", "x:1:y:1" } } do
    local _, e = ctx.http.get("http://127.0.0.1:1/", { connect_to = v })
    bad[i] = tostring(e)
  end
  d.bad = table.concat(bad, "\n")
end

function CASES.timings(opt, ctx, d)
  local url = ("http://127.0.0.1:%d/ok"):format(opt.arg.plain)
  local res = assert(ctx.http.get(url, { timings = true }))
  local names = {}
  for k in pairs(res.timings) do names[#names + 1] = k end
  table.sort(names)
  d.curl_phases = table.concat(names, ",")
  d.curl_tls = res.timings.tls
  d.curl_sum_ok = res.timings.dns + res.timings.connect + res.timings.first_byte <= res.timings.total + 1e-6
  res = assert(ctx.http.get(url))
  names = {}
  for k in pairs(res.timings) do names[#names + 1] = k end
  table.sort(names)
  d.builtin_phases = table.concat(names, ",")
  d.builtin_tls = res.timings.tls
  d.builtin_sum_ok = res.timings.dns + res.timings.connect + res.timings.first_byte <= res.timings.total + 1e-6
    and res.timings.first_byte > 0
  d.builtin_url, d.builtin_redirects = res.url, res.redirects
  -- following redirects, the built-in client asks first; curl takes over at a redirect only
  res = assert(ctx.http.get(url, { follow = true }))
  names = {}
  for k in pairs(res.timings) do names[#names + 1] = k end
  table.sort(names)
  d.follow_plain_phases = table.concat(names, ",")
  res = assert(ctx.http.get(("http://127.0.0.1:%d/redir/2"):format(opt.arg.plain), { follow = true }))
  d.follow_redirected = res.status .. " " .. res.redirects .. " " .. res.body .. " " .. tostring(res.timings.dns)
  -- a POST is never sent twice: with follow it goes to curl at once
  res = assert(ctx.http.post(url, "x", { follow = true }))
  d.follow_post_dns = res.timings.dns ~= nil
end

-- Many instances at once, each with the default max_body (16 MiB), all waiting on a slow
-- server: each still gets its small body.
function CASES.slow(opt, ctx, d)
  local res, err = ctx.http.get(("http://127.0.0.1:%d/slow"):format(opt.arg.plain))
  d.body = res and res.body or err
end

function CASES.dns(opt, ctx, d)
  local a, e = ctx.dns.resolve("localhost")
  d.localhost = a and join(a) or e
  a, e = ctx.dns.resolve("localhost", { family = "inet" })
  d.localhost4 = a and join(a) or e
  a, e = ctx.dns.resolve("127.0.0.1")
  d.literal = a and join(a) or e
  a, e = ctx.dns.resolve("no-such-name.invalid")
  d.missing, d.missing_result = e, a
  a, e = ctx.dns.resolve("localhost", { family = "ipx" })
  d.bad_family = e
  a, e = ctx.dns.resolve(42)
  d.bad_name = e
  a, e = ctx.dns.resolve("")
  d.empty_name = e
  a, e = ctx.dns.resolve("local\0host")
  d.nul_name = e
end

function CASES.files(opt, ctx, d)
  local dir = opt.arg.dir
  local st, err, code = ctx.stat(dir .. "/data.txt")
  if not st then error("stat: " .. err) end
  d.type, d.size, d.mode, d.mtime, d.uid, d.gid = st.type, st.size, st.mode, st.mtime, st.uid, st.gid
  st = ctx.stat(dir)
  d.dir_type = st and st.type
  st = ctx.stat(dir .. "/fifo")
  d.fifo_type = st and st.type
  st, err, code = ctx.stat(dir .. "/missing")
  d.missing, d.missing_code, d.missing_result = err, code, st
  _, err = ctx.stat("data.txt")
  d.relative = err
  _, err = ctx.stat({})
  d.not_string = err
  local total, avail, files, ffree = ctx.statvfs(dir)
  d.vfs_total, d.vfs_avail, d.vfs_files, d.vfs_ffree = total, avail, files, ffree
  _, err = ctx.statvfs(dir .. "/missing")
  d.vfs_missing = err
  _, err = ctx.statvfs("tmp")
  d.vfs_relative = err

  local names = ctx.list_dir("/proc")
  d.proc_count = #names
  d.proc_has_self = false
  local sorted = true
  for i, n in ipairs(names) do
    if n == "self" then d.proc_has_self = true end
    if n == "." or n == ".." then d.proc_dots = true end
    if i > 1 and names[i - 1] >= n then sorted = false end
  end
  d.proc_sorted = sorted
  d.proc_joined = "," .. table.concat(names, ",") .. ","
  local sys = ctx.list_dir("/sys")
  d.sys = sys and join(sys) or "nil"
  local _, e = ctx.list_dir("/proc/1/fd")
  d.list_fd = e
  _, e = ctx.list_dir("/etc")
  d.list_etc = e
  _, e = ctx.list_dir("/proc/../etc")
  d.list_dotdot = e
  _, e = ctx.list_dir("proc")
  d.list_relative = e
  _, e = ctx.list_dir("/proc/no-such-thing")
  d.list_missing = e
  _, e = ctx.list_dir("/proc/self/status")
  d.list_file = e
  _, e = ctx.list_dir("/procfoo")
  d.list_procfoo = e

  local pid
  pid, err = ctx.read_pidfile(dir .. "/good.pid")
  d.pid_good = pid or err
  pid, err = ctx.read_pidfile(dir .. "/spaced.pid")
  d.pid_spaced = pid or err
  pid, err = ctx.read_pidfile(dir .. "/secret.pid")
  d.pid_secret = pid or err
  pid, err = ctx.read_pidfile(dir .. "/zero.pid")
  d.pid_zero = pid or err
  pid, err = ctx.read_pidfile(dir .. "/long.pid")
  d.pid_long = pid or err
  pid, err = ctx.read_pidfile(dir .. "/empty.pid")
  d.pid_empty = pid or err
  pid, err = ctx.read_pidfile(dir .. "/fifo")
  d.pid_fifo = pid or err
  pid, err = ctx.read_pidfile(dir)
  d.pid_dir = pid or err
  pid, err = ctx.read_pidfile(dir .. "/missing.pid")
  d.pid_missing = pid or err
  pid, err = ctx.read_pidfile("/dev/null")
  d.pid_device = pid or err
  pid, err = ctx.read_pidfile("good.pid")
  d.pid_relative = pid or err
end

function CASES.crypto(opt, ctx, d)
  local c = ctx.crypto
  d.md5_empty = c.md5_hex("")
  d.md5_abc = c.md5_hex("abc")
  d.sha256_abc = hex(c.sha256("abc"))
  d.sha256_len = #c.sha256("abc")
  d.hmac = hex(c.hmac_sha256("Jefe", "what do ya want for nothing?"))
  d.pbkdf2_1 = hex(c.pbkdf2_sha256("password", "salt", 1, 32))
  d.pbkdf2_2 = hex(c.pbkdf2_sha256("password", "salt", 2, 32))
  d.pbkdf2_4096 = hex(c.pbkdf2_sha256("password", "salt", 4096, 32))
  d.pbkdf2_long = hex(c.pbkdf2_sha256("passwordPASSWORDpassword", "saltSALTsaltSALTsaltSALTsaltSALTsalt", 4096, 40))
  d.pbkdf2_nul = hex(c.pbkdf2_sha256("pass\0word", "sa\0lt", 4096, 16))
  local r1, r2 = c.random(16), c.random(16)
  d.random_len, d.random_differ = #r1, r1 ~= r2
  d.random_zero = c.random(0)
  d.random_max = #c.random(1024)
  d.b64 = c.base64_encode("any carnal pleas")
  d.b64_1 = c.base64_encode("a")
  d.b64_round = c.base64_decode(c.base64_encode(r1 .. "\0\255")) == r1 .. "\0\255"
  d.b64_nopad = c.base64_decode("YQ")
  local big = ("\1\2\3"):rep(10000) .. "x"
  d.b64_big = c.base64_decode(c.base64_encode(big)) == big
  local _, e = c.base64_decode("not base64!")
  d.b64_bad = e
  _, e = c.base64_decode("YQ=")
  d.b64_badpad = e
  _, e = c.random(1e6)
  d.random_huge = e
  _, e = c.random(-1)
  d.random_neg = e
  _, e = c.random(1.5)
  d.random_frac = e
  _, e = c.pbkdf2_sha256("p", "s", 0, 32)
  d.pbkdf2_zero = e
  _, e = c.pbkdf2_sha256("p", "s", 1e6 + 1, 32)
  d.pbkdf2_many = e
  _, e = c.pbkdf2_sha256("p", "s", 1, 65)
  d.pbkdf2_len = e
  _, e = c.sha256(("x"):rep(1024 * 1024 + 1))
  d.sha_big = e
  _, e = c.md5_hex(nil)
  d.md5_nil = e
  _, e = c.hmac_sha256("k", 1)
  d.hmac_num = e
end

-- Hold the threadpool (UV_THREADPOOL_SIZE=1 in that agent) with long key derivations, queued
-- one behind the other by several instances, until their runs time out.
function CASES.hog(opt, ctx)
  for _ = 1, 100 do ctx.crypto.pbkdf2_sha256("p", "s", 1000000, 32) end
end

-- Each of these waits on the threadpool, behind the hogs' derivations, when its run times out.
local function later(ctx) ctx.sleep(0.5) end
function CASES.stuck_dns(opt, ctx) later(ctx) ctx.dns.resolve(opt.arg.name) end
function CASES.stuck_stat(opt, ctx) later(ctx) ctx.stat("/proc/self/status") end
function CASES.stuck_statvfs(opt, ctx) later(ctx) ctx.statvfs("/") end
function CASES.stuck_list(opt, ctx) later(ctx) ctx.list_dir("/proc") end
function CASES.stuck_pidfile(opt, ctx) later(ctx) ctx.read_pidfile("/proc/self/stat") end
function CASES.stuck_kdf(opt, ctx) later(ctx) ctx.crypto.pbkdf2_sha256("p", "s", 1000000, 32) end

return beagle.check {
  name = "ctx_io", description = "exercises the ctx I/O of issue 17",
  options = {
    case = { "string", description = "which case" },
    arg = { "table", default = {}, description = "what the case needs" },
  },
  interval = "1h", retries = 0, timeout = "20s",
  run = function(opt, ctx)
    local d = {}
    CASES[opt.case](opt, ctx, d)
    return ctx.healthy(opt.case, d)
  end,
}
]==]

local function lua_table(t)
  local parts = {}
  for k, v in pairs(t) do
    parts[#parts + 1] = ("%s = %s"):format(k, type(v) == "string" and ("%q"):format(v) or tostring(v))
  end
  return "{ " .. table.concat(parts, ", ") .. " }"
end

describe("ctx I/O", function()
  local dir, server, agent, ports
  local DAYS = 17

  local function sh_ok(cmd)
    local out, code = S.sh(cmd)
    assert(code == 0, cmd .. "\n" .. out)
    return out
  end

  setup(function()
    dir = S.tmpdir()
    -- a CA, a server certificate for localhost and 127.0.0.1 (DAYS days), a client certificate
    local ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    sh_ok(("cd %q && openssl req -x509 %s -keyout ca.key -out ca.pem -days 30 -subj '/CN=Beagle Test CA' 2>&1"):format(dir, ec))
    S.write(dir .. "/srv.ext", "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    sh_ok(("cd %q && openssl req %s -keyout srv.key -out srv.csr -subj '/CN=localhost' 2>&1 && "
      .. "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days %d "
      .. "-extfile srv.ext 2>&1"):format(dir, ec, DAYS))
    sh_ok(("cd %q && openssl req %s -keyout cli.key -out cli.csr -subj '/CN=beagle-client' 2>&1 && "
      .. "openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out cli.pem -days 2 2>&1"):format(dir, ec))
    S.write(dir .. "/server.py", SERVER)
    server = S.service(("exec python3 %q %q"):format(dir .. "/server.py", dir))
    local line = S.wait(function() return server.output():match("^(%d+ %d+ %d+)") end, 10)
    assert(line, "the test servers did not start: " .. server.output())
    local p1, p2, p3 = line:match("^(%d+) (%d+) (%d+)")
    ports = { plain = tonumber(p1), tls = tonumber(p2), mtls = tonumber(p3), closed = S.free_port() }

    -- files for stat, statvfs and read_pidfile
    S.write(dir .. "/data.txt", ("x"):rep(1234))
    sh_ok(("chmod 0640 %q && mkfifo %q"):format(dir .. "/data.txt", dir .. "/fifo"))
    S.write(dir .. "/good.pid", "1234\n")
    S.write(dir .. "/spaced.pid", "  42 \r\nmore\n")
    S.write(dir .. "/secret.pid", "hunter2\n")
    S.write(dir .. "/zero.pid", "0\n")
    S.write(dir .. "/long.pid", (" "):rep(70) .. "7\n")
    S.write(dir .. "/empty.pid", "")

    local plugins = S.tmpdir()
    S.write(plugins .. "/ctx_io.lua", PROBE)
    local arg = lua_table { plain = ports.plain, tls = ports.tls, mtls = ports.mtls, closed = ports.closed,
      ca = dir .. "/ca.pem", dir = dir }
    local conf = S.calm_system
    for _, case in ipairs { "tls", "connect_only", "mtls", "redirects", "connect_to", "timings", "dns", "files",
      "crypto" } do
      conf = conf .. ("check %q { plugin = \"ctx_io\", case = %q, arg = %s }\n"):format(case, case, arg)
    end
    for i = 1, 8 do
      conf = conf .. ("check \"slow%d\" { plugin = \"ctx_io\", case = \"slow\", arg = %s }\n"):format(i, arg)
    end
    sh_ok(("head -c 2000000 /dev/zero > %q"):format(dir .. "/big.pem"))
    agent = S.start { plugins = plugins, config = conf, env = { MONITORING_PLUGIN_TLS_FILES = dir .. "/" } }
  end)

  teardown(function()
    if agent then agent:stop() end
    if server then server.stop() end
  end)

  local function details(name)
    local o = agent:wait_check(name, function(c) return c.runs and c.runs > 0 end, 30)
    assert.is_truthy(o, name .. " did not run:\n" .. agent:logtext())
    assert.are.equal("healthy", o.status, name .. ": " .. tostring(o.message))
    return o.details
  end

  it("verifies HTTPS with a private CA and reports the peer's certificate and the phase timings", function()
    local d = details("tls")
    assert.are.equal(200, d.status)
    assert.are.equal("ok", d.body)
    assert.are.equal(("https://localhost:%d/ok"):format(ports.tls), d.url)
    assert.are.equal(0, d.redirects)
    assert.are.equal(DAYS * 86400, d.not_after - d.not_before)
    assert.is_true(math.abs(d.not_after - (os.time() + DAYS * 86400)) < 600, tostring(d.not_after))
    assert.is_truthy(d.subject:find("CN *= *localhost"), d.subject)
    assert.is_truthy(d.issuer:find("Beagle Test CA", 1, true), d.issuer)
    for _, p in ipairs { "dns", "connect", "tls", "first_byte", "total" } do
      assert.is_true(type(d["t_" .. p]) == "number" and d["t_" .. p] >= 0, p)
    end
    assert.is_true(d.t_tls > 0, "a handshake takes time")
    assert.is_true(d.t_total >= d.t_tls)
    assert.is_truthy(d.unverified:lower():find("certificate", 1, true), d.unverified)
    assert.are.equal(200, d.insecure_status)
    assert.are.equal(d.not_after, d.insecure_cert)
    assert.is_true(d.no_cert_info)
  end)

  it("connects only: the handshake and the certificate, no request", function()
    local d = details("connect_only")
    assert.are.equal(0, d.status)
    assert.are.equal("", d.body)
    assert.is_true(math.abs(d.not_after - (os.time() + DAYS * 86400)) < 600, tostring(d.not_after))
    assert.is_truthy(d.subject:find("localhost", 1, true), d.subject)
    assert.is_true(d.t_tls > 0)
    assert.are.equal(0, d.verified)
    assert.is_truthy(d.refused:lower():find("connect", 1, true), d.refused)
    assert.are.equal(0, d.plain)
  end)

  it("presents a client certificate to a server that requires one", function()
    local d = details("mtls")
    assert.are.equal(200, d.with)
    assert.are.equal("ok", d.body)
    assert.is_truthy(not d.without:find("^answered 200"), d.without)
    assert.are.equal("http: client_cert: " .. dir .. "/missing.pem: no such file or directory", d.missing_cert)
    assert.are.equal("http: ca_file: /dev/null: not a regular file", d.device_ca)
    assert.are.equal("http: ca_file: " .. dir .. ": not a regular file", d.dir_ca)
    assert.is_truthy(d.junk_cert:lower():find("cert", 1, true), d.junk_cert)
    assert.are.equal("http: client_cert: /etc/ssl/private/host.pem is not allowed (the operator lists the files "
      .. "plugins may use as TLS identities in plugin_tls_files)", d.outside)
    assert.is_truthy(d.dotdot:find("is not allowed", 1, true), d.dotdot)
    assert.are.equal("http: ca_file: " .. dir .. "/big.pem: larger than 1 MiB, not a PEM file", d.big_ca)
  end)

  it("follows redirects up to max_redirects and names the limit past it", function()
    local d = details("redirects")
    for _, tag in ipairs { "http", "https" } do
      local base = tag == "http" and ("http://127.0.0.1:%d"):format(ports.plain)
        or ("https://localhost:%d"):format(ports.tls)
      assert.are.equal("200 3 " .. base .. "/redir/0 end", d[tag .. "_ok"])
      assert.are.equal("more than 3 redirects (the limit)", d[tag .. "_over"])
      assert.are.equal("more than 0 redirects (the limit)", d[tag .. "_zero"])
      assert.are.equal(10, d[tag .. "_default"])
      assert.are.equal("more than 10 redirects (the limit)", d[tag .. "_default_over"])
      assert.are.equal("302 0 " .. base .. "/redir/2", d[tag .. "_nofollow"])
    end
    assert.are.equal("http: max_redirects must be an integer 0..50, not 51", d.bad_limit)
    assert.are.equal("http: max_redirects must be an integer 0..50, not 1.5", d.bad_limit_frac)
    assert.are.equal("http: max_redirects must be a number, not a string", d.bad_limit_type)
    assert.are.equal('http: ca_file: "relative.pem" is not an absolute path', d.bad_ca)
    assert.are.equal("http: client_key needs client_cert", d.key_alone)
    assert.are.equal("http: cert_info must be a boolean, not a string", d.bad_cert_info)
  end)

  it("connects to another host and port for the URL's name (connect_to), through curl", function()
    local d = details("connect_to")
    assert.are.equal("200 ok true", d.plain)
    assert.is_truthy(d.tls:find("^200 .*localhost"), d.tls)
    assert.is_truthy(d.wrong_name:find("beagle.invalid", 1, true), d.wrong_name)
    assert.is_nil(d.wrong_name:find("resolve", 1, true), d.wrong_name)
    assert.is_nil(d.v6:find("resolve", 1, true), d.v6)
    assert.are.equal(table.concat({
      'http: connect_to item 1 ("a:b") is not host:port:connect_host:connect_port',
      'http: connect_to item 1 ("x:1:y:2\\13\\10Host: evil") is not host:port:connect_host:connect_port',
      'http: connect_to item 1 ("x:70000:y:1") is not host:port:connect_host:connect_port',
      "http: connect_to must be a string or a list of strings, not a number",
      "http: connect_to item 2 must be a string, not a number",
      "http: connect_to takes at most 8 entries, not 9",
    }, "\n"), d.bad)
  end)

  it("measures each phase through curl and through the built-in client", function()
    local d = details("timings")
    assert.are.equal("connect,dns,first_byte,tls,total", d.curl_phases)
    assert.are.equal(0, d.curl_tls)
    assert.is_true(d.curl_sum_ok)
    assert.are.equal("connect,dns,first_byte,tls,total", d.builtin_phases)
    assert.are.equal(0, d.builtin_tls)
    assert.is_true(d.builtin_sum_ok)
    assert.are.equal(("http://127.0.0.1:%d/ok"):format(ports.plain), d.builtin_url)
    assert.are.equal(0, d.builtin_redirects)
    assert.are.equal("connect,dns,first_byte,tls,total", d.follow_plain_phases)
    assert.is_truthy(d.follow_redirected:find("^200 2 end %d"), d.follow_redirected)
    assert.is_true(d.follow_post_dns)
  end)

  it("gives each of many requests in flight at once at least a small body", function()
    for i = 1, 8 do
      assert.are.equal("ok", details("slow" .. i).body, "slow" .. i)
    end
  end)

  it("resolves names through the system's resolver", function()
    local d = details("dns")
    assert.is_truthy(("," .. d.localhost .. ","):find(",127.0.0.1,", 1, true) or d.localhost:find("::1", 1, true),
      d.localhost)
    assert.are.equal("127.0.0.1", d.localhost4)
    assert.are.equal("127.0.0.1", d.literal)
    assert.is_nil(d.missing_result)
    assert.is_truthy(d.missing:find("^no%-such%-name%.invalid: "), d.missing)
    assert.are.equal('dns.resolve: family must be "any", "inet" or "inet6", not ipx', d.bad_family)
    assert.are.equal("dns.resolve: name must be a string, not a number", d.bad_name)
    assert.are.equal("dns.resolve: name must be 1..1024 bytes without NUL", d.empty_name)
    assert.are.equal("dns.resolve: name must be 1..1024 bytes without NUL", d.nul_name)
  end)

  it("stats files, filesystems, lists /proc and reads pid files", function()
    local d = details("files")
    assert.are.equal("file", d.type)
    assert.are.equal(1234, d.size)
    assert.are.equal(tonumber("640", 8), d.mode)
    assert.is_true(math.abs(d.mtime - os.time()) < 600, tostring(d.mtime))
    assert.are.equal(tonumber((S.sh("id -u"))), d.uid)
    assert.are.equal(tonumber((S.sh("id -g"))), d.gid)
    assert.are.equal("directory", d.dir_type)
    assert.are.equal("fifo", d.fifo_type)
    assert.are.equal(dir .. "/missing: no such file or directory", d.missing)
    assert.are.equal("ENOENT", d.missing_code)
    assert.is_nil(d.missing_result)
    assert.are.equal('stat: "data.txt" is not an absolute path', d.relative)
    assert.are.equal("stat: path must be a string, not a table", d.not_string)

    local want = S.sh(("python3 -c 'import os; s = os.statvfs(%q); print(s.f_blocks * s.f_frsize, s.f_files)'"):format(dir))
    local blocks, files = want:match("(%d+) (%d+)")
    assert.are.equal(tonumber(blocks), d.vfs_total)
    assert.are.equal(tonumber(files), d.vfs_files)
    assert.is_true(d.vfs_avail >= 0 and d.vfs_avail <= d.vfs_total)
    assert.is_true(d.vfs_ffree >= 0 and d.vfs_ffree <= d.vfs_files)
    assert.are.equal(dir .. "/missing: no such file or directory", d.vfs_missing)
    assert.are.equal('statvfs: "tmp" is not an absolute path', d.vfs_relative)

    assert.is_true(d.proc_has_self)
    assert.is_nil(d.proc_dots)
    assert.is_true(d.proc_sorted)
    assert.is_truthy(d.proc_joined:find("," .. agent.pid .. ",", 1, true), "the agent's own pid")
    assert.is_true(d.proc_count > 10)
    assert.is_truthy(("," .. d.sys .. ","):find(",class,", 1, true), d.sys)
    assert.are.equal("list_dir: /proc/1/fd: /proc/*/fd is not readable by plugins", d.list_fd)
    assert.are.equal("list_dir: /etc is outside /proc and /sys", d.list_etc)
    assert.are.equal("list_dir: /proc/../etc: no . or .. in paths", d.list_dotdot)
    assert.are.equal("list_dir: proc is outside /proc and /sys", d.list_relative)
    assert.are.equal("/proc/no-such-thing: no such file or directory", d.list_missing)
    assert.are.equal("/proc/self/status: not a directory", d.list_file)
    assert.are.equal("list_dir: /procfoo is outside /proc and /sys", d.list_procfoo)

    assert.are.equal(1234, d.pid_good)
    assert.are.equal(42, d.pid_spaced)
    -- nothing of a file that is not a pid file reaches the plugin
    assert.are.equal(dir .. "/secret.pid: no process id on its first line", d.pid_secret)
    assert.are.equal(dir .. "/zero.pid: no process id on its first line", d.pid_zero)
    assert.are.equal(dir .. "/long.pid: no process id on its first line", d.pid_long)
    assert.are.equal(dir .. "/empty.pid: no process id on its first line", d.pid_empty)
    assert.are.equal(dir .. "/fifo: not a regular file", d.pid_fifo)
    assert.are.equal(dir .. ": not a regular file", d.pid_dir)
    assert.are.equal(dir .. "/missing.pid: no such file or directory", d.pid_missing)
    assert.are.equal("/dev/null: not a regular file", d.pid_device)
    assert.are.equal('read_pidfile: "good.pid" is not an absolute path', d.pid_relative)
  end)

  it("hashes, derives keys and encodes with the known vectors", function()
    local d = details("crypto")
    assert.are.equal("d41d8cd98f00b204e9800998ecf8427e", d.md5_empty)
    assert.are.equal("900150983cd24fb0d6963f7d28e17f72", d.md5_abc)
    assert.are.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", d.sha256_abc)
    assert.are.equal(32, d.sha256_len)
    assert.are.equal("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", d.hmac)
    assert.are.equal("120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b", d.pbkdf2_1)
    assert.are.equal("ae4d0c95af6b46d32d0adff928f06dd02a303f8ef3c251dfd6e2d85a95474c43", d.pbkdf2_2)
    assert.are.equal("c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a", d.pbkdf2_4096)
    assert.are.equal("348c89dbcbd32b2f32d814b8116e84cf2b17347ebc1800181c4e2a1fb8dd53e1c635518c7dac47e9",
      d.pbkdf2_long)
    assert.are.equal("89b69d0516f829893c696226650a8687", d.pbkdf2_nul)
    assert.are.equal(16, d.random_len)
    assert.is_true(d.random_differ)
    assert.are.equal("", d.random_zero)
    assert.are.equal(1024, d.random_max)
    assert.are.equal("YW55IGNhcm5hbCBwbGVhcw==", d.b64)
    assert.are.equal("YQ==", d.b64_1)
    assert.is_true(d.b64_round)
    assert.are.equal("a", d.b64_nopad)
    assert.is_true(d.b64_big)
    assert.are.equal("base64_decode: not base64 (at byte 4)", d.b64_bad)
    assert.is_truthy(d.b64_badpad:find("^base64_decode: not base64"), d.b64_badpad)
    assert.are.equal("crypto.random: n must be an integer 0..1024", d.random_huge)
    assert.are.equal("crypto.random: n must be an integer 0..1024", d.random_neg)
    assert.are.equal("crypto.random: n must be an integer 0..1024", d.random_frac)
    assert.are.equal("crypto.pbkdf2_sha256: iterations must be an integer 1..1000000", d.pbkdf2_zero)
    assert.are.equal("crypto.pbkdf2_sha256: iterations must be an integer 1..1000000", d.pbkdf2_many)
    assert.are.equal("crypto.pbkdf2_sha256: length must be an integer 1..64", d.pbkdf2_len)
    assert.are.equal("crypto.sha256: argument 1 is longer than 1 MiB", d.sha_big)
    assert.are.equal("crypto.md5_hex: argument 1 must be a string, not a nil", d.md5_nil)
    assert.are.equal("crypto.hmac_sha256: argument 2 must be a string, not a number", d.hmac_num)
  end)
end)

-- Runs that time out while their lookup, stat or key derivation waits on the threadpool (held
-- by another run's derivation: UV_THREADPOOL_SIZE=1), queued or running: each ends with
-- "timeout", the agent goes on serving, and (with the LeakSanitizer build) nothing leaks at exit.
describe("ctx I/O cancelled on the threadpool", function()
  local LSAN = os.getenv("BEAGLE_LSAN_BIN")
  local agent

  teardown(function()
    if agent then agent:stop() end
  end)

  it("ends the runs, keeps serving, leaks nothing", function()
    local plugins = S.tmpdir()
    S.write(plugins .. "/ctx_io.lua", PROBE)
    local conf = S.calm_system
    for i = 1, 4 do
      conf = conf .. ("check \"hog%d\" { plugin = \"ctx_io\", case = \"hog\", timeout = \"40s\" }\n"):format(i)
    end
    for _, c in ipairs { "stuck_dns", "stuck_stat", "stuck_statvfs", "stuck_list", "stuck_pidfile", "stuck_kdf" } do
      conf = conf .. ("check %q { plugin = \"ctx_io\", case = %q, arg = { name = \"queued.invalid\" }, timeout = \"1s\" }\n")
        :format(c, c)
    end
    local bin = S.bin
    if LSAN and LSAN ~= "" then S.bin = LSAN end
    local ok, a = pcall(S.start, { plugins = plugins, config = conf, env = { UV_THREADPOOL_SIZE = "1", UV_USE_IO_URING = "0" } })
    S.bin = bin
    assert(ok, a)
    agent = a
    for _, c in ipairs { "stuck_dns", "stuck_stat", "stuck_statvfs", "stuck_list", "stuck_pidfile", "stuck_kdf" } do
      local o = agent:wait_check(c, function(x) return x.runs and x.runs > 0 end, 20)
      assert.is_truthy(o, c .. " did not run:\n" .. agent:logtext())
      assert.are.equal("timeout", o.message, c)
    end
    assert.are.equal(200, (agent:get("/health/live")))
    assert.is_true(agent:stop(60), "the agent did not exit")
    agent = nil
    local log = S.read(a.log) or ""
    if LSAN and LSAN ~= "" and not log:find("LeakSanitizer has encountered a fatal error", 1, true) then
      assert.is_nil(log:find("LeakSanitizer", 1, true), log)
      assert.is_nil(log:find("AddressSanitizer", 1, true), log)
    end
  end)
end)
