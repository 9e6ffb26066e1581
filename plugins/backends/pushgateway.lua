-- Prometheus Pushgateway: the registry as the Prometheus text format without timestamps
-- (core/export/encode_prometheus.c; a Pushgateway refuses pushed timestamps), PUT to the group
-- <url>/metrics/job/<job>[/instance/<instance>][/<label>/<value>...] every interval. PUT
-- replaces the whole group, so the group is exactly the agent's state at its last collection:
-- a series the agent dropped leaves it too. That needs the whole snapshot in one push: a batch
-- cut in two would have the second PUT erase the first half (and POST, which replaces by
-- metric name, would still lose half of a family cut in two), hence batch_size = 0: every
-- sample of a collection in one batch. While the Pushgateway is down only the newest such batch
-- is worth sending; past buffer_limit the older ones go.
local cu = require "beagle.channel_util"

-- One label of the grouping key as path segments: /name/value with the value percent-encoded,
-- or /name@base64/<base64url> when the value holds a "/" (which no percent-encoding gets past
-- the Pushgateway's router) or is empty (an empty segment would not parse).
local function segment(name, value)
  value = tostring(value)
  if value == "" or value:find("/", 1, true) then
    return ("/%s@base64/%s"):format(name, value == "" and "=" or cu.base64(value, true))
  end
  return ("/%s/%s"):format(name, cu.url_escape(value))
end

local function group_url(o)
  local parts = { o.url:gsub("/+$", ""), "/metrics", segment("job", o.job) }
  if o.instance then parts[#parts + 1] = segment("instance", o.instance) end
  local names = {}
  for k in pairs(o.grouping) do
    if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") or k == "job" or k == "instance" then
      return nil, ("grouping: %q is not a label name of its own (job and instance have their options)"):format(tostring(k))
    end
    names[#names + 1] = k
  end
  table.sort(names)
  for _, k in ipairs(names) do parts[#parts + 1] = segment(k, o.grouping[k]) end
  return table.concat(parts)
end

return beagle.backend {
  name = "pushgateway",
  description = "Prometheus Pushgateway: the whole registry PUT as one group per job/instance",
  -- the whole snapshot in one send, so that each PUT holds every series (see above)
  batch_size = 0, -- a collection in one batch: one PUT holds the whole group
  options = {
    url = { "string", description = "base URL of the Pushgateway, e.g. \"http://127.0.0.1:9091\"" },
    job = { "string", default = "beagle", description = "the job label of the group" },
    instance = { "string", optional = true, description = "the instance label of the group, e.g. the host name" },
    grouping = { "table", default = {}, description = "more labels of the grouping key, { name = value }" },
    labels = { "table", default = {}, description = "labels added to every series (a series' own labels win)" },
    prefix = { "string", default = "", description = "put before every metric name" },
    method = { "string", default = "PUT",
      description = "PUT replaces the whole group; POST replaces only the metrics pushed" },
    username = { "string", optional = true, description = "user name for HTTP basic authentication" },
    password = { "secret", optional = true, description = "password for HTTP basic authentication" },
    request_timeout = { "duration", default = "10s", description = "deadline of each push" },
  },
  send = function(batch, ctx)
    local o = ctx.options
    if o.method ~= "PUT" and o.method ~= "POST" then
      return nil, ("method must be PUT or POST, not %q"):format(o.method), { permanent = true }
    end
    local url, uerr = group_url(o)
    if not url then return nil, uerr, { permanent = true } end
    local body, skipped = ctx.encode.prometheus(batch, { labels = o.labels, prefix = o.prefix })
    if not body then return nil, skipped, { permanent = true } end
    if skipped > 0 and not ctx.state.told_skipped then
      ctx.state.told_skipped = true
      ctx.log.info("left out extra labels that are not Prometheus label names", { backend = ctx.name,
        skipped = skipped })
    end
    local headers = { ["Content-Type"] = "text/plain; version=0.0.4; charset=utf-8" }
    if o.username then headers.Authorization = cu.basic_auth(o.username, o.password) end
    local res, err = ctx.http.request { url = url, method = o.method, body = body, headers = headers,
      timeout = o.request_timeout }
    return ctx.response(res, err)
  end,
}
