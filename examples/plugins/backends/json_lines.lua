-- Example drop-in metric backend: every sample as one JSON object per line, POSTed to a URL
-- (an HTTP log collector, a queue's REST endpoint, a script of your own). Copy it into a
-- `--plugins DIR/backends/` directory, then declare an instance in beagle.lua:
--
--   backend "lines" { plugin = "json_lines", url = "http://127.0.0.1:9000/ingest",
--                     labels = { env = "prod" }, interval = "15s" }
--
-- Its test: tests/integration/backends_spec.lua ("the example json_lines backend").
return beagle.backend {
  name = "json_lines",
  description = "every sample as a JSON line, POSTed to a URL",
  options = {
    url = { "string", description = "URL to POST the lines to" },
    labels = { "table", default = {}, description = "labels added to every sample (its own win)" },
    headers = { "table", default = {}, description = "request headers, e.g. { Authorization = \"Bearer ...\" }" },
  },
  -- batch is what the registry held at one instant, at most batch_size samples; ctx the
  -- backend's toolbox (ctx.http, ctx.json, ctx.response, ctx.encode, ctx.options, ctx.log)
  send = function(batch, ctx)
    local lines = {}
    for s in batch:samples() do
      local labels = {}
      for k, v in pairs(ctx.options.labels) do labels[k] = v end
      for k, v in pairs(s.labels) do labels[k] = v end
      local line = { name = s.name, type = s.type, labels = labels, timestamp = s.timestamp }
      if s.type == "histogram" then
        line.sum, line.count = s.sum, s.count
        line.buckets = {}
        for i, b in ipairs(s.buckets) do
          line.buckets[i] = { le = b.le == math.huge and "+Inf" or b.le, count = b.count }
        end
      else
        line.value = s.value
      end
      lines[#lines + 1] = ctx.json.encode(line)
    end
    local headers = { ["Content-Type"] = "application/x-ndjson" }
    for k, v in pairs(ctx.options.headers) do headers[k] = v end
    local res, err = ctx.http.post(ctx.options.url, table.concat(lines, "\n") .. "\n", { headers = headers })
    -- true when taken; else nil, why and whether to retry (5xx, 429) or give up (other 4xx)
    return ctx.response(res, err)
  end,
}
