-- Email through SMTP (ctx.mail, libcurl): an RFC 5322 multipart/alternative message with a
-- text and an HTML part. Every header value that carries alert text is made one line first
-- and RFC 2047-encoded when it is not plain ASCII, so a label cannot add a header; the bodies
-- are quoted-printable under a boundary that quoted-printable output cannot contain ("=_").
local cu = require "beagle.channel_util"

local COLORS = { critical = "#d40e0d", error = "#d40e0d", warning = "#f2a60c", info = "#439fe0",
  resolved = "#2eb886" }

local base64 = cu.base64

-- A header's value, one line, RFC 2047 "B" words (at most 75 characters each, cut between
-- UTF-8 characters) when it holds anything but printable ASCII, folded at 78 columns.
local function header(name, value)
  value = cu.one_line(value)
  if value:find("[\128-\255]") or value:find("=?", 1, true) then
    local words, chunk = {}, ""
    for ch in value:gmatch("[%z\1-\127\192-\255][\128-\191]*") do
      if #chunk + #ch > 45 then words[#words + 1], chunk = chunk, "" end
      chunk = chunk .. ch
    end
    words[#words + 1] = chunk
    for i, w in ipairs(words) do words[i] = "=?UTF-8?B?" .. base64(w) .. "?=" end
    return name .. ": " .. table.concat(words, "\r\n ")
  end
  local lines, line = {}, name .. ":"
  for word in cu.truncate(value, 900):gmatch("%S+") do
    if #line + 1 + #word > 78 and line ~= name .. ":" then
      lines[#lines + 1], line = line, ""
    end
    line = line .. " " .. word
  end
  lines[#lines + 1] = line
  return table.concat(lines, "\r\n")
end

-- Quoted-printable (RFC 2045 6.7): lines of at most 76 characters, CRLF line ends.
local function qp(text)
  local out = {}
  text = text:gsub("\r\n?", "\n")
  for line in (text .. "\n"):gmatch("(.-)\n") do
    local enc = line:gsub("[^\t !-<>-~]", function(c) return ("=%02X"):format(c:byte()) end)
      :gsub("[ \t]$", function(c) return ("=%02X"):format(c:byte()) end)
    while #enc > 76 do
      local cut = 75
      if enc:sub(74, 74) == "=" then cut = 73 elseif enc:sub(75, 75) == "=" then cut = 74 end
      out[#out + 1] = enc:sub(1, cut) .. "="
      enc = enc:sub(cut + 1)
    end
    out[#out + 1] = enc
  end
  return table.concat(out, "\r\n")
end

local function html(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;",
    ['"'] = "&quot;", ["'"] = "&#39;" }))
end

-- "Name <a@b>" or "a@b" -> the bare address for the SMTP envelope | nil
local function envelope(addr)
  if type(addr) ~= "string" or addr:find("%c") then return nil end
  local a = addr:match("<([^<>%s]+@[^<>%s]+)>%s*$") or addr:match("^%s*([^<>%s]+@[^<>%s]+)%s*$")
  return a
end

-- An address for the From and To headers (already free of control characters): a display
-- name that is not ASCII is encoded; the address itself must be ASCII.
local function mailbox(addr)
  local name, a = addr:match("^%s*(.-)%s*<([^<>]+)>%s*$")
  if name and name ~= "" and name:find("[\128-\255]") then
    return header("X", name):sub(4) .. " <" .. a .. ">"
  end
  return cu.one_line(addr)
end

local function alert_rows(ctx, a, n)
  local status = a.status or n.status
  local rows = {
    { "Severity", (a.labels or {}).severity or "warning" },
    { status == "resolved" and "Resolved" or "Since", ctx.iso8601(cu.alert_time(a, n)) },
  }
  if a.value ~= nil then table.insert(rows, 2, { "Value", cu.format_value(a.value) }) end
  local tags = cu.tags_of(a)
  if next(tags) then rows[#rows + 1] = { "Labels", cu.format_labels(tags) } end
  local an = a.annotations or {}
  local message = cu.message_of(a)
  for _, k in ipairs(cu.sorted_keys(an)) do
    if tostring(an[k]) ~= message then rows[#rows + 1] = { k:sub(1, 1):upper() .. k:sub(2), tostring(an[k]) } end
  end
  return status, message, rows
end

local function text_body(ctx, n, title)
  local out = { title, "" }
  for _, a in ipairs(n.alerts) do
    local status, message, rows = alert_rows(ctx, a, n)
    out[#out + 1] = ("%s: %s"):format(status:upper(), cu.one_line(a.name))
    out[#out + 1] = message
    for _, r in ipairs(rows) do out[#out + 1] = ("%s: %s"):format(r[1], r[2]) end
    out[#out + 1] = ""
  end
  out[#out + 1] = "-- "
  out[#out + 1] = ("Sent by beagle %s, channel %s, notification %s."):format(beagle._VERSION,
    cu.one_line(n.channel or ctx.name), cu.one_line(n.dedup_key))
  return table.concat(out, "\n")
end

local function html_body(ctx, n, title)
  local color = n.status == "resolved" and COLORS.resolved or COLORS[cu.severity_of(n)] or COLORS.warning
  local out = { '<!DOCTYPE html><html><body style="font-family:sans-serif">',
    ('<h2 style="color:%s">%s</h2>'):format(color, html(title)) }
  for _, a in ipairs(n.alerts) do
    local status, message, rows = alert_rows(ctx, a, n)
    local c = status == "resolved" and COLORS.resolved or COLORS[(a.labels or {}).severity] or COLORS.warning
    out[#out + 1] = ('<div style="border-left:4px solid %s;padding-left:8px;margin-bottom:16px">'):format(c)
    out[#out + 1] = ("<h3>%s: %s</h3>"):format(status:upper(), html(a.name))
    out[#out + 1] = ("<p>%s</p>"):format(html(message):gsub("\r?\n", "<br>"))
    out[#out + 1] = "<table>"
    for _, r in ipairs(rows) do
      out[#out + 1] = ('<tr><th align="left" valign="top">%s</th><td>%s</td></tr>'):format(html(r[1]),
        (html(r[2]):gsub("\r?\n", "<br>")))
    end
    out[#out + 1] = "</table></div>"
  end
  out[#out + 1] = ('<p style="color:#888;font-size:small">Sent by beagle %s, channel %s, notification %s.</p>')
    :format(html(beagle._VERSION), html(n.channel or ctx.name), html(n.dedup_key))
  out[#out + 1] = "</body></html>"
  return table.concat(out, "\n")
end

return beagle.channel {
  name = "email",
  description = "send an email (text and HTML) through an SMTP server",
  options = {
    url = { "string", description = "SMTP server: smtp://host:587 (STARTTLS) or smtps://host:465" },
    from = { "string", description = "sender address: \"alerts@example.com\" or \"beagle <alerts@example.com>\"" },
    to = { "list", description = "recipient addresses" },
    username = { "string", optional = true, description = "SMTP user name" },
    password = { "secret", optional = true, description = "SMTP password" },
    starttls = { "boolean", default = true, description = "require STARTTLS on smtp:// URLs" },
    subject = { "string", optional = true,
      description = "subject template: {{ title }}, {{ status }}, {{ STATUS }}, {{ name }}, {{ names }}, "
        .. "{{ count }}, {{ severity }}, {{ channel }}, {{ message }}, {{ labels.x }} (default \"{{ title }}\")" },
  },
  send = function(n, ctx)
    local o = ctx.options
    if not tostring(o.url):match("^smtps?://") then
      return nil, "url must start with smtp:// or smtps://", { permanent = true }
    end
    local from = envelope(o.from)
    if not from then return nil, ("from %q is not an email address"):format(cu.one_line(o.from)), { permanent = true } end
    local rcpt, to_header = {}, {}
    for _, addr in ipairs(o.to) do
      local a = envelope(addr)
      if not a then return nil, ("to %q is not an email address"):format(cu.one_line(addr)), { permanent = true } end
      rcpt[#rcpt + 1], to_header[#to_header + 1] = a, mailbox(addr)
    end
    if #rcpt == 0 then return nil, "no recipient (to)", { permanent = true } end

    local title = cu.title(n)
    local subject = o.subject and cu.expand(o.subject, n) or title
    local key = tostring(n.dedup_key or ""):gsub("[^%w]", "")
    if key == "" then key = ("%d"):format(math.floor((n.created_at or ctx.time()) * 1000)) end
    local boundary = "=_beagle_" .. key:sub(1, 32)
    local message = table.concat({
      "Date: " .. cu.rfc5322_date(ctx.time()),
      "From: " .. mailbox(o.from),
      "To: " .. table.concat(to_header, ",\r\n "),
      header("Subject", subject),
      -- the same id on every attempt: a receiver that got it already can drop the copy
      ("Message-ID: <%s@%s>"):format(key, from:match("@([%w%.%-]+)$") or "beagle"),
      "MIME-Version: 1.0",
      ('Content-Type: multipart/alternative; boundary="%s"'):format(boundary),
      "Auto-Submitted: auto-generated",
      "X-Beagle-Status: " .. (n.status == "resolved" and "resolved" or "firing"),
      "",
      "--" .. boundary,
      "Content-Type: text/plain; charset=utf-8",
      "Content-Transfer-Encoding: quoted-printable",
      "",
      qp(text_body(ctx, n, title)),
      "--" .. boundary,
      "Content-Type: text/html; charset=utf-8",
      "Content-Transfer-Encoding: quoted-printable",
      "",
      qp(html_body(ctx, n, title)),
      "--" .. boundary .. "--",
      "",
    }, "\r\n")
    return ctx.mail { url = o.url, from = from, to = rcpt, username = o.username, password = o.password,
      starttls = o.starttls, message = message }
  end,
}
