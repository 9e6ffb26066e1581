-- StatsD or DogStatsD out over UDP: counters as the increase since the previous collection,
-- gauges as their value, histograms as .count and .sum increases (and .bucket counts with an
-- upper_bound tag for DogStatsD), to a Datadog agent, Etsy's statsd, Telegraf's statsd input or
-- any StatsD server. The lines and their packing into datagrams are C
-- (core/export/encode_statsd.c); docs/plugins/statsd.md is its page.
return beagle.backend {
  name = "statsd",
  description = "StatsD or DogStatsD (with tags) over UDP, to a Datadog agent or any StatsD server",
  options = {
    host = { "string", default = "127.0.0.1", description = "the StatsD server's address or name" },
    port = { "integer", default = 8125, description = "its UDP port" },
    flavor = { "string", default = "statsd",
      description = "\"statsd\" (no tags) or \"dogstatsd\" (labels as |#k:v tags)" },
    prefix = { "string", optional = true, description = "put before every metric name, separator included, e.g. \"beagle.\"" },
    tags = { "table", default = {}, description = "tags added to every line (DogStatsD), a series' own label of the same name wins" },
    max_payload = { "integer", default = 1432,
      description = "bytes per datagram at most (1432 fits a 1500-byte MTU; 8192 for a Datadog agent on loopback)" },
  },
  timeout = "10s",

  send = function(batch, ctx)
    local o = ctx.options
    if o.port < 1 or o.port > 65535 then return nil, "statsd: port must be 1..65535", { permanent = true } end
    local data, skipped = ctx.encode.statsd(batch, { flavor = o.flavor, prefix = o.prefix, labels = o.tags,
      max_payload = o.max_payload })
    -- an unknown flavor fails every batch alike: refused for good, with why
    if not data then return nil, skipped, { permanent = true } end
    if data == "" then return true end
    -- the encoder ends each datagram with an empty line
    local datagrams = {}
    for d in data:gmatch("(.-)\n\n") do datagrams[#datagrams + 1] = d end
    local ok, err = ctx.udp.send(o.host, o.port, datagrams)
    if not ok then return nil, "statsd: " .. tostring(err) end
    return true
  end,
}
