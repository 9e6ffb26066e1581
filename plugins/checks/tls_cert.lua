-- The TLS certificate of host:port is valid and does not expire soon: days until the leaf
-- certificate's notAfter, from a TLS handshake only (no HTTP request), as a gauge
-- check.tls_cert.days_left{check}.

local proto = require "beagle.proto"

-- days_left(not_after, now) -> days (fractional, negative once expired)
local function days_left(not_after, now) return (not_after - now) / 86400 end

-- level(days, warn_days, critical_days) -> "healthy" | "degraded" | "unhealthy"
local function level(days, warn, critical)
  if days < critical then return "unhealthy" end
  if days < warn then return "degraded" end
  return "healthy"
end

local function date(t) return os.date("!%Y-%m-%d %H:%M:%S UTC", math.floor(t)) end

return beagle.check {
  name = "tls_cert",
  description = "days until the TLS certificate of host:port expires, and that it verifies",
  options = {
    host = { "string", description = "host name or address to connect to" },
    port = { "integer", default = 443, description = "TCP port of the TLS service" },
    server_name = { "string", optional = true,
      description = "name to ask for (SNI) and verify the certificate against, when it differs from host" },
    warn_days = { "number", default = 30, description = "days left below which the check is degraded" },
    critical_days = { "number", default = 7, description = "days left below which the check is unhealthy" },
    insecure = { "boolean", default = false, description = "do not verify the certificate (only its dates count)" },
    ca_file = { "string", optional = true, description = "PEM file of the CA certificates to verify with" },
    metrics = { "boolean", default = true, description = "record the days left as the gauge check.tls_cert.days_left{check}" },
  },
  days_left = days_left, level = level,
  -- at load (and reload): what the option types cannot say
  validate = function(opt)
    local perr = proto.port_error(opt.port)
    if perr then return perr end
    if opt.critical_days > opt.warn_days then
      return ("option critical_days: %g is above warn_days (%g)"):format(opt.critical_days, opt.warn_days)
    end
  end,
  run = function(opt, ctx)
    local name = opt.server_name or opt.host
    local hostpart = name:find(":", 1, true) and "[" .. name .. "]" or name
    local req = { url = ("https://%s:%d/"):format(hostpart, opt.port), connect_only = true, cert_info = true,
      insecure = opt.insecure, ca_file = opt.ca_file }
    if opt.server_name and opt.server_name ~= opt.host then
      local host = opt.host:find(":", 1, true) and "[" .. opt.host .. "]" or opt.host
      req.connect_to = ("%s:%d:%s:%d"):format(hostpart, opt.port, host, opt.port)
    end
    local res, err = ctx.http.request(req)
    local where = ("%s:%d"):format(name, opt.port)
    if not res then return ctx.unhealthy(("%s: %s"):format(where, tostring(err))) end
    local cert = res.cert
    if type(cert) ~= "table" or type(cert.not_after) ~= "number" then
      return ctx.unknown(where .. ": no certificate information from the TLS handshake")
    end
    local days = days_left(cert.not_after, ctx.time())
    local details = { days_left = days, not_after = date(cert.not_after), subject = cert.subject,
      issuer = cert.issuer }
    if type(cert.not_before) == "number" then details.not_before = date(cert.not_before) end
    if opt.metrics then pcall(beagle.set_gauge, "check.tls_cert.days_left", days, { check = ctx.name }) end
    if days < 0 then
      return ctx.unhealthy(("%s: certificate expired %.1f days ago (%s)"):format(where, -days, details.not_after), details)
    end
    if type(cert.not_before) == "number" and cert.not_before > ctx.time() then
      return ctx.unhealthy(("%s: certificate not valid before %s"):format(where, details.not_before), details)
    end
    local l = level(days, opt.warn_days, opt.critical_days)
    local msg = ("%s: certificate expires in %.1f days (%s)"):format(where, days, details.not_after)
    return ctx[l](msg, details)
  end,
}
