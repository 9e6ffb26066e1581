-- An HTTP endpoint answers with the expected status, in time.
return beagle.check {
  name = "http",
  description = "GET (or another method on) a URL and expect a status within a time",
  options = {
    url = { "string", description = "URL to request" },
    method = { "string", default = "GET", description = "HTTP method (no body is sent)" },
    expect_status = { "integer", default = 200, description = "status that counts as healthy" },
    expect_body = { "string", optional = true, description = "Lua pattern the body must match" },
    slow = { "duration", default = "1s", description = "response time above which the check is degraded" },
    headers = { "table", optional = true, description = "request headers, name = value" },
    insecure = { "boolean", default = false, description = "skip TLS certificate verification" },
  },
  run = function(opt, ctx)
    local res, err = ctx.http.request { url = opt.url, method = opt.method, headers = opt.headers,
      insecure = opt.insecure, follow = true }
    if not res then return ctx.unhealthy(err) end
    local details = { status = res.status, time = res.time, bytes = #res.body }
    if res.status ~= opt.expect_status then
      return ctx.unhealthy(("status %d, expected %d"):format(res.status, opt.expect_status), details)
    end
    if opt.expect_body and not res.body:find(opt.expect_body) then
      return ctx.unhealthy(("body does not match %q"):format(opt.expect_body), details)
    end
    if res.time > opt.slow then
      return ctx.degraded(("slow: %.3fs"):format(res.time), details)
    end
    return ctx.healthy(("status %d in %.3fs"):format(res.status, res.time), details)
  end,
}
