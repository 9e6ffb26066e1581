-- agent.metrics_expo: the process-wide registry read out, for the agent only: the limits'
-- report, the exposition formats (Prometheus 0.0.4, OpenMetrics 1.0, JSON; core/metrics/expo
-- renders them) and gzip. Part of agent.metrics, which installs these in its own table (M.render,
-- M.negotiate, ...); require that, not this. Owns the cdef of the functions it calls.
local ffi = require("ffi")

ffi.cdef [[
void bg_expo_free(void *p);
uint64_t bg_registry_dropped(const bg_registry *r, int reason);
uint64_t bg_registry_truncated(const bg_registry *r);
typedef struct bg_limit_hit {
  const char *name;
  uint64_t dropped;
  uint64_t series;
  int reason;
} bg_limit_hit;
int bg_registry_limits_hit(bg_registry *r, bg_limit_hit *out, int max);
int bg_expo_negotiate(const char *accept_header);
int bg_expo_accepts_gzip(const char *accept_encoding);
const char *bg_expo_content_type(int format);
char *bg_expo_render_string(bg_registry *r, int format, size_t *len);
char *bg_gzip_string(const char *in, size_t n, int level, size_t *len);
]]

local X = {}

-- Adds the functions below to M (agent.metrics' table), over clib C and its registry.
function X.install(M, C, registry)
  local lenbuf = ffi.new("size_t[1]")

  local drop_reasons = { [0] = "max_series", [1] = "max_series_per_metric" }

  -- What /health/detailed reports: { dropped = { max_series = n, max_series_per_metric = n },
  -- truncated = n, metrics = { { name = "api_requests", dropped = n, series = n,
  -- reason = "max_series_per_metric" }, ... } }; name is nil for new metrics refused because
  -- the total was reached.
  function M.limits()
    local n = C.bg_registry_limits_hit(registry, nil, 0)
    local hits = ffi.new("bg_limit_hit[?]", n > 0 and n or 1)
    n = math.min(n, C.bg_registry_limits_hit(registry, hits, n))
    local list = {}
    for i = 0, n - 1 do
      local e = hits[i]
      list[#list + 1] = { name = e.name ~= nil and ffi.string(e.name) or nil,
        dropped = tonumber(e.dropped), series = tonumber(e.series),
        reason = drop_reasons[e.reason] }
    end
    return {
      dropped = { max_series = tonumber(C.bg_registry_dropped(registry, 0)),
        max_series_per_metric = tonumber(C.bg_registry_dropped(registry, 1)) },
      truncated = tonumber(C.bg_registry_truncated(registry)),
      metrics = list,
    }
  end

  local formats = { prometheus = 0, openmetrics = 1, json = 2 }
  local format_names = { [0] = "prometheus", [1] = "openmetrics", [2] = "json" }

  -- The format an Accept header asks for: "prometheus" (the default), "openmetrics" or "json".
  function M.negotiate(accept)
    return format_names[C.bg_expo_negotiate(type(accept) == "string" and accept or nil)]
  end

  -- True when an Accept-Encoding header accepts gzip.
  function M.accepts_gzip(accept_encoding)
    return type(accept_encoding) == "string" and C.bg_expo_accepts_gzip(accept_encoding) == 1
  end

  -- Renders the process-wide registry: format is "prometheus" (default), "openmetrics" or
  -- "json". Returns body, content_type, or nil, err.
  function M.render(format)
    local f = formats[format or "prometheus"]
    if f == nil then return nil, ("render: unknown format %s"):format(tostring(format)) end
    local p = C.bg_expo_render_string(registry, f, lenbuf)
    if p == nil then return nil, "out of memory" end
    local s = ffi.string(p, lenbuf[0])
    C.bg_expo_free(p)
    return s, ffi.string(C.bg_expo_content_type(f))
  end

  -- The Prometheus text exposition (0.0.4) of the process-wide registry.
  function M.render_prometheus()
    local s, err = M.render("prometheus")
    if not s then return nil, err end
    return s
  end

  -- gzip (RFC 1952) of a string; level 1-9 (default 6). Returns the bytes, or nil, err.
  function M.gzip(body, level)
    if type(body) ~= "string" then return nil, "gzip: body must be a string" end
    local p = C.bg_gzip_string(body, #body, level or 0, lenbuf)
    if p == nil then return nil, "gzip: out of memory" end
    local s = ffi.string(p, lenbuf[0])
    C.bg_expo_free(p)
    return s
  end

  M.content_type = "text/plain; version=0.0.4; charset=utf-8"
end

return X
