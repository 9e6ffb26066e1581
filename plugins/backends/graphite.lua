-- Graphite: every sample as plaintext protocol lines (`path value timestamp`, written by
-- core/export/encode_graphite.c) over TCP to carbon's line receiver (port 2003), one connection
-- per send. Labels go as Graphite 1.1 tags (name;k=v;...) or, for a carbon without tag support,
-- into the path (name.k.v...). The plaintext protocol has no answer: a batch is sent once carbon's
-- socket took every byte, and a connection refused or cut is retried.
return beagle.backend {
  name = "graphite",
  description = "Graphite plaintext protocol over TCP, dotted names, labels as Graphite 1.1 tags or in the path",
  options = {
    host = { "string", description = "carbon's host name or address" },
    port = { "integer", default = 2003, description = "carbon's plaintext (line) receiver port" },
    prefix = { "string", default = "", description = "path nodes put before every metric, e.g. \"beagle.web-1\"" },
    labels = { "table", default = {}, description = "labels added to every series (a series' own labels win)" },
    tags = { "boolean", default = true,
      description = "true: labels as Graphite 1.1 tags (name;k=v); false: folded into the path (name.k.v)" },
  },
  send = function(batch, ctx)
    local o = ctx.options
    local body, skipped = ctx.encode.graphite(batch, { labels = o.labels, prefix = o.prefix,
      flavor = o.tags and "tags" or "path" })
    if not body then return nil, skipped, { permanent = true } end
    if skipped > 0 and not ctx.state.told_skipped then
      ctx.state.told_skipped = true
      ctx.log.info("left out what Graphite cannot store (NaN or infinite values)", { backend = ctx.name,
        skipped = skipped })
    end
    if body == "" then return true end
    local conn, err = ctx.tcp.connect(o.host, o.port)
    if not conn then return nil, ("connect %s:%d: %s"):format(o.host, o.port, tostring(err)) end
    local ok, werr = conn:write(body)
    conn:close()
    if not ok then return nil, ("write to %s:%d: %s"):format(o.host, o.port, tostring(werr)) end
    return true
  end,
}
