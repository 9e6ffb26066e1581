-- Recent-window statistics (core/metrics/window.c): a once-a-minute snapshot of every histogram,
-- and the JSON of GET /metrics/performance and GET /metrics with Accept: application/json.
local ffi = require "ffi"
local metrics = require "agent.metrics"

ffi.cdef [[
typedef struct bg_window bg_window;
bg_window *bg_window_default(void);
int bg_window_tick(bg_window *w, bg_registry *r, double now);
char *bg_window_render_json_string(bg_window *w, bg_registry *r, double now, size_t *len);
]]
-- bg_expo_free's cdef is agent.metrics_expo's, which agent.metrics installs on first use
pcall(ffi.cdef, "void bg_expo_free(void *p);")

local C = metrics.C
local M = {}
local window = C.bg_window_default()
local lenbuf = ffi.new("size_t[1]")

-- Takes this minute's snapshot of every histogram (once per minute; cheap to call more often).
function M.tick(now) return C.bg_window_tick(window, metrics.registry, now) == 0 end

-- JSON of every series, histograms with "windows": {"1m", "5m", "15m"}.
function M.render_json(now)
  local p = C.bg_window_render_json_string(window, metrics.registry, now, lenbuf)
  if p == nil then return nil, "out of memory" end
  local s = ffi.string(p, lenbuf[0])
  C.bg_expo_free(p)
  return s
end

return M
