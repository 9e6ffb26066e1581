-- beagle.proto: what the checks that speak to a server over ctx.tcp share (postgres, redis,
-- mysql, tcp, tls_cert; any plugin may require it).
local M = {}

-- reader(conn, parse, max_total, what) -> r, whose r.next(...) is the next unit the server
-- sent (a message, a reply), or nil, err. parse(buf, ...) -> unit, bytes used | nil (more bytes
-- needed) | nil, nil, err (the bytes are wrong); r.next's arguments follow buf. Bytes are read
-- from conn (ctx.tcp's) until parse has a unit; a session reads at most max_total bytes (a
-- server that floods stops there); what names the unit in the error of a connection closed in
-- the middle of one.
function M.reader(conn, parse, max_total, what)
  local r = { buf = "", total = 0 }
  function r.next(...)
    while true do
      local unit, used, err = parse(r.buf, ...)
      if unit ~= nil then
        r.buf = r.buf:sub(used + 1)
        return unit
      end
      if err then return nil, err end
      local data, rerr = conn:read()
      if not data then
        if rerr == "eof" or rerr == nil then
          return nil, #r.buf > 0 and ("the server closed the connection in the middle of a %s"):format(what)
            or "the server closed the connection"
        end
        return nil, "read: " .. tostring(rerr)
      end
      r.total = r.total + #data
      if r.total > max_total then return nil, ("the server sent more than %d bytes"):format(max_total) end
      r.buf = r.buf .. data
    end
  end
  return r
end

-- port_error(port) -> the validate error of an option port outside 1..65535, or nil.
function M.port_error(port)
  if port < 1 or port > 65535 then return ("option port: %d is not a TCP port (1..65535)"):format(port) end
end

-- address(host, port) -> "host:port" as messages show it, an IPv6 address in brackets.
function M.address(host, port)
  return (host:find(":", 1, true) and "[%s]:%d" or "%s:%d"):format(host, port)
end

return M
