-- The metrics service: GET /metrics rendered in C from the registry (this service refreshes
-- the gauges read on demand just before), GET /metrics/performance and its window snapshots,
-- POST /metrics/custom, the agent's own gauges (memory, uptime, connections) and the series
-- limits shown in /health/detailed.
-- The service interface is described at the top of lua/agent/init.lua.
local core = require "agent.core"
local json = require "beagle.json"
local router = require "agent.router"
local performance = require "agent.performance"

local M = {}
M.__index = M

-- new{ settings, metrics, refresh = fn() that updates every service's self-metrics }
function M.new(d)
  return setmetatable({ settings = d.settings, metrics = d.metrics, refresh = d.refresh }, M)
end

function M:start(server)
  self.server = server
  self.started_at = core.now()
  -- GET /metrics renders the registry in C, straight into the response. The gauges that are
  -- read on demand (RSS, uptime, plugin memory, open connections, queue and history sizes,
  -- rules and delivery state) are refreshed by this hook just before each render, as the Lua
  -- route did: a timer would serve them stale by up to its period and spend CPU while nobody
  -- scrapes, and RSS or uptime have no "place where they change". It is one call per scrape
  -- that builds no body; its work grows with plugins, channels and alerts, not with series
  -- (the history counts its series and chunks again only after a sample, core/history.c).
  server:serve_metrics({ "/metrics", "/metrics/" }, function() self.refresh() end)
  -- histogram windows: a snapshot a minute (the tick takes it once per minute)
  performance.tick(core.wall())
  self.timer = core.timer(15, 15, function() performance.tick(core.wall()) end)
  return true
end

function M:uptime() return core.now() - self.started_at end

function M:stop()
  if self.timer then self.timer:stop() self.timer = nil end
  self.server = nil
  return 0
end

local HTTP_COUNTERS = {
  connections_accepted = "beagle_http_connections_accepted_total",
  connections_rejected = "beagle_http_connections_rejected_total",
  connections_evicted = "beagle_http_connections_evicted_total",
  connections_timed_out = "beagle_http_connections_timed_out_total",
}

function M:update_metrics()
  local m = self.metrics
  m.set_gauge("beagle_resident_memory_bytes", core.rss())
  m.set_gauge("beagle_uptime_seconds", self:uptime())
  if self.server then
    local st = self.server:stats()
    m.set_gauge("beagle_http_connections_open", st.connections_open)
    -- what the server's limits did (issue 14, slowloris): counters fed the growth since the
    -- last refresh
    local seen = self.http_seen or {}
    self.http_seen = seen
    for field, name in pairs(HTTP_COUNTERS) do
      local d = (st[field] or 0) - (seen[field] or 0)
      if d > 0 then m.increment_counter(name, d) end
      seen[field] = st[field]
    end
  end
end

function M:detail()
  local limits = self.metrics.limits()
  limits.metrics = json.array(limits.metrics)
  limits.max_series, limits.max_series_per_metric = self.settings.max_series, self.settings.max_series_per_metric
  return "metrics", limits
end

function M:routes()
  return {
    -- GET and HEAD /metrics are answered in C (start); the entry stays for the 405 and its
    -- Allow header on the other methods.
    { "GET", "^/metrics/?$", function() return router.err_json(500, "GET /metrics is served by the C core") end },
    { "GET", "^/metrics/performance$", function()
      self.refresh()
      local body = performance.render_json(core.wall())
      if not body then return router.err_json(500, "out of memory") end
      return 200, "application/json", body
    end },
    { "POST", "^/metrics/custom$", function(req)
      local ok, st, msg = router.authorized(self.settings, req)
      if not ok then return router.err_json(st, msg) end
      local partial = (req.query or ""):match("partial=([^&]*)")
      local code, o = require("agent.api_metrics").custom(self.metrics, req.body, partial == "true" or partial == "1")
      return code, "application/json", json.encode(o)
    end },
  }
end

return M
