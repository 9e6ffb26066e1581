-- A TCP port accepts connections, optionally answering a probe with an expected reply.
return beagle.check {
  name = "tcp",
  description = "connect to host:port, optionally send a probe and expect a reply",
  options = {
    host = { "string", default = "127.0.0.1", description = "host name or address" },
    port = { "integer", description = "TCP port" },
    send = { "string", optional = true, description = "bytes to send after connecting" },
    expect = { "string", optional = true, description = "Lua pattern the first reply must match (without it nothing is read)" },
    slow = { "duration", default = "1s", description = "connect time above which the check is degraded" },
  },
  run = function(opt, ctx)
    local t0 = ctx.now()
    local conn, err = ctx.tcp.connect(opt.host, opt.port)
    if not conn then return ctx.unhealthy(("%s:%d: %s"):format(opt.host, opt.port, err)) end
    local elapsed = ctx.now() - t0
    local details = { connect_time = elapsed }
    if opt.send then
      local ok, werr = conn:write(opt.send)
      if not ok then conn:close() return ctx.unhealthy("write: " .. werr, details) end
    end
    if opt.expect then
      local data, rerr = conn:read()
      if not data then conn:close() return ctx.unhealthy("read: " .. rerr, details) end
      if not data:find(opt.expect) then
        conn:close()
        return ctx.unhealthy(("reply does not match %q"):format(opt.expect), details)
      end
    end
    conn:close()
    if elapsed > opt.slow then return ctx.degraded(("slow connect: %.3fs"):format(elapsed), details) end
    return ctx.healthy(("connected in %.3fs"):format(elapsed), details)
  end,
}
