-- A TCP port accepts connections, optionally answering a probe with an expected reply: the
-- reply is read until the pattern matches, the peer closes, or max_bytes have arrived. The
-- connect time goes into the details and the gauge check.tcp.connect_seconds{check}.

local proto = require "beagle.proto"

-- read_until(conn, pattern, max_bytes) -> data, matched (boolean) | nil, err, data so far
local function read_until(conn, pattern, max_bytes)
  local parts, n = {}, 0
  while true do
    local chunk, err = conn:read()
    if not chunk then
      local got = table.concat(parts)
      if err == "eof" then return got, false end
      return nil, err, got
    end
    parts[#parts + 1] = chunk
    n = n + #chunk
    local data = table.concat(parts)
    if n > max_bytes then data = data:sub(1, max_bytes) end
    if data:find(pattern) then return data, true end
    if n >= max_bytes then return data, false end
    parts = { data }
  end
end

return beagle.check {
  name = "tcp",
  description = "connect to host:port, optionally send a probe and expect a reply",
  options = {
    host = { "string", default = "127.0.0.1", description = "host name or address" },
    port = { "integer", description = "TCP port" },
    send = { "string", optional = true, description = "bytes to send after connecting" },
    expect = { "string", optional = true,
      description = "Lua pattern the reply must match, read until it does (without it nothing is read)" },
    max_bytes = { "integer", default = 65536, description = "bytes of reply read at most while waiting for expect" },
    slow = { "duration", default = "1s", description = "connect time above which the check is degraded" },
    metrics = { "boolean", default = true, description = "record the connect time as the gauge check.tcp.connect_seconds{check}" },
  },
  read_until = read_until,
  -- at load (and reload): what the option types cannot say
  validate = function(opt)
    local perr = proto.port_error(opt.port)
    if perr then return perr end
    if opt.max_bytes < 1 or opt.max_bytes > 16 * 1024 * 1024 then
      return ("option max_bytes: %d is outside 1..16777216"):format(opt.max_bytes)
    end
  end,
  run = function(opt, ctx)
    local t0 = ctx.now()
    local conn, err = ctx.tcp.connect(opt.host, opt.port)
    if not conn then return ctx.unhealthy(("%s:%d: %s"):format(opt.host, opt.port, err)) end
    local elapsed = ctx.now() - t0
    local details = { connect_time = elapsed }
    if opt.metrics then pcall(beagle.set_gauge, "check.tcp.connect_seconds", elapsed, { check = ctx.name }) end
    if opt.send then
      local ok, werr = conn:write(opt.send)
      if not ok then conn:close() return ctx.unhealthy("write: " .. werr, details) end
    end
    if opt.expect then
      local t1 = ctx.now()
      local data, matched, rerr = read_until(conn, opt.expect, opt.max_bytes)
      conn:close()
      details.reply_time = ctx.now() - t1
      if not data then
        return ctx.unhealthy(("read: %s%s"):format(tostring(matched),
          #(rerr or "") > 0 and (" (after %d bytes)"):format(#rerr) or ""), details)
      end
      details.reply_bytes = #data
      if not matched then
        local why = #data >= opt.max_bytes and ("%d bytes (max_bytes)"):format(#data)
          or ("%d bytes and the connection closed"):format(#data)
        return ctx.unhealthy(("reply does not match %q after %s"):format(opt.expect, why), details)
      end
    else
      conn:close()
    end
    if elapsed > opt.slow then return ctx.degraded(("slow connect: %.3fs"):format(elapsed), details) end
    return ctx.healthy(("connected in %.3fs"):format(elapsed), details)
  end,
}
