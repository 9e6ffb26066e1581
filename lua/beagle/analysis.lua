-- beagle.analysis: statistics, trends and anomaly detectors over a series, for the performance
-- analytics (issue 18: GET /metrics/performance, recommendations) and for any plugin. Pure Lua
-- over plain tables, no I/O: points are { { t, v }, ... } with t in seconds, in time order;
-- values are { v, ... }. Each function says what it returns for too few points.
local M = {}

local sqrt, floor, abs, huge = math.sqrt, math.floor, math.abs, math.huge

-- A sorted copy of values.
local function sorted(values)
  local s = {}
  for i = 1, #values do s[i] = values[i] end
  table.sort(s)
  return s
end

-- quantile(sorted_values, p) with p in 0..1: linear interpolation between the closest ranks
-- (Hyndman and Fan's type 7, numpy's and R's default); nil for no values.
function M.quantile(s, p)
  local n = #s
  if n == 0 then return nil end
  local h = (n - 1) * p
  local lo = floor(h)
  if lo + 1 >= n then return s[n] end
  return s[lo + 1] + (h - lo) * (s[lo + 2] - s[lo + 1])
end

local function median(values) return M.quantile(sorted(values), 0.5) end
M.median = median

-- summary(values) -> { n, mean, stddev (sample, n - 1), min, max, p50, p90, p95, p99 };
-- { n = 0 } for none (stddev 0 for one value).
function M.summary(values)
  local n = #values
  if n == 0 then return { n = 0 } end
  local sum = 0
  for i = 1, n do sum = sum + values[i] end
  local mean = sum / n
  local ss = 0
  for i = 1, n do ss = ss + (values[i] - mean) ^ 2 end
  local s = sorted(values)
  return {
    n = n, mean = mean, stddev = n > 1 and sqrt(ss / (n - 1)) or 0, min = s[1], max = s[n],
    p50 = M.quantile(s, 0.5), p90 = M.quantile(s, 0.9), p95 = M.quantile(s, 0.95), p99 = M.quantile(s, 0.99),
  }
end

-- Student's t two-sided 95% critical values by degrees of freedom (1..30), then the normal's.
local T95 = { 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
  2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
  2.052, 2.048, 2.045, 2.042 }
local function t95(df) return T95[df] or 1.96 end

-- trend(points) -> the least-squares line through the points: { n, slope_per_hour, intercept (the
-- value at t = 0), r2, ci95_per_hour (the slope's 95% confidence half-width), percent_per_hour
-- (the slope against the mean value, nil when the mean is 0), direction ("rising", "falling" or
-- "flat": flat when the confidence interval holds 0) }; nil for fewer than 3 points or when every
-- t is the same.
function M.trend(points)
  local n = #points
  if n < 3 then return nil end
  local st, sv = 0, 0
  for i = 1, n do st, sv = st + points[i][1], sv + points[i][2] end
  local mt, mv = st / n, sv / n
  local stt, stv, svv = 0, 0, 0
  for i = 1, n do
    local dt, dv = points[i][1] - mt, points[i][2] - mv
    stt, stv, svv = stt + dt * dt, stv + dt * dv, svv + dv * dv
  end
  if stt == 0 then return nil end
  local slope = stv / stt
  local intercept = mv - slope * mt
  local sse = 0
  for i = 1, n do sse = sse + (points[i][2] - (intercept + slope * points[i][1])) ^ 2 end
  local se = sqrt(sse / (n - 2) / stt)
  local ci = t95(n - 2) * se * 3600
  local per_hour = slope * 3600
  local direction = "flat"
  if per_hour - ci > 0 then direction = "rising" elseif per_hour + ci < 0 then direction = "falling" end
  return {
    n = n, slope_per_hour = per_hour, intercept = intercept, r2 = svv > 0 and 1 - sse / svv or 1,
    ci95_per_hour = ci, percent_per_hour = mv ~= 0 and per_hour / abs(mv) * 100 or nil, direction = direction,
  }
end

-- time_to(points, level) -> seconds from the last point until the trend line reaches level (a
-- disk's capacity), or nil when the trend is not heading there (or is flat at 95%).
function M.time_to(points, level)
  local tr = M.trend(points)
  if not tr or tr.direction == "flat" then return nil end
  local last = points[#points][1]
  local at = (level - tr.intercept) / (tr.slope_per_hour / 3600)
  if at <= last then
    -- already past it on the line: only meaningful when heading that way
    local now = tr.intercept + tr.slope_per_hour / 3600 * last
    if (tr.slope_per_hour > 0) == (level >= now) then return 0 end
    return nil
  end
  return at - last
end

-- rises(points) -> the share (0..1) of steps from one point to the next that go up: near 1 for a
-- leak (a monotonic rise), about half for noise around a level; nil for fewer than 2 points.
function M.rises(points)
  local n = #points
  if n < 2 then return nil end
  local up = 0
  for i = 2, n do if points[i][2] > points[i - 1][2] then up = up + 1 end end
  return up / (n - 1)
end

-- An anomaly: { t, value, expected = { low, high }, score, method }.
local function anomaly(p, low, high, score, method)
  return { t = p[1], value = p[2], expected = { low, high }, score = score, method = method }
end

-- zscore(points, { window = 30, threshold = 3 }) -> anomalies: a point further than threshold
-- standard deviations from the mean of the window points before it (score: how many). Points
-- before a full window are not judged; a window without spread judges any other value.
function M.zscore(points, o)
  o = o or {}
  local w, k = o.window or 30, o.threshold or 3
  local out = {}
  for i = w + 1, #points do
    local vals = {}
    for j = i - w, i - 1 do vals[#vals + 1] = points[j][2] end
    local s = M.summary(vals)
    local v = points[i][2]
    local score = s.stddev > 0 and (v - s.mean) / s.stddev or (v == s.mean and 0 or huge)
    if abs(score) > k then
      out[#out + 1] = anomaly(points[i], s.mean - k * s.stddev, s.mean + k * s.stddev, score, "zscore")
    end
  end
  return out
end

-- mad(points, { window = 30, threshold = 3.5 }) -> anomalies by the modified z-score of Iglewicz
-- and Hoaglin, 0.6745 (x - median) / MAD over the window points before it: robust to the
-- outliers themselves. A window whose MAD is 0 judges any value off its median.
function M.mad(points, o)
  o = o or {}
  local w, k = o.window or 30, o.threshold or 3.5
  local out = {}
  for i = w + 1, #points do
    local vals = {}
    for j = i - w, i - 1 do vals[#vals + 1] = points[j][2] end
    local med = median(vals)
    local dev = {}
    for j = 1, #vals do dev[j] = abs(vals[j] - med) end
    local mad = median(dev)
    local v = points[i][2]
    local score = mad > 0 and 0.6745 * (v - med) / mad or (v == med and 0 or huge)
    if abs(score) > k then
      local half = mad > 0 and k * mad / 0.6745 or 0
      out[#out + 1] = anomaly(points[i], med - half, med + half, score, "mad")
    end
  end
  return out
end

-- ewma(points, { alpha = 0.3, beta = 0.05, threshold = 3, warmup = 20 }) -> anomalies outside
-- the control limits of an exponentially weighted mean (weight alpha) and variance (weight beta,
-- slower, so the limits are steady), after an exact mean and variance of the first warmup
-- points. An anomalous point moves the mean by at most threshold standard deviations (a spike
-- barely moves it; a step change is reported where it starts and learned over a few dozen
-- points) and leaves the variance alone.
function M.ewma(points, o)
  o = o or {}
  local a, b, k, warm = o.alpha or 0.3, o.beta or 0.05, o.threshold or 3, o.warmup or 20
  local out = {}
  local mean, m2 = 0, 0
  for i = 1, math.min(warm, #points) do -- Welford
    local d = points[i][2] - mean
    mean = mean + d / i
    m2 = m2 + d * (points[i][2] - mean)
  end
  local var = warm > 1 and m2 / (warm - 1) or 0
  for i = warm + 1, #points do
    local v = points[i][2]
    local sd = sqrt(var)
    local d = v - mean
    local score = sd > 0 and d / sd or (d == 0 and 0 or huge)
    if abs(score) > k then
      out[#out + 1] = anomaly(points[i], mean - k * sd, mean + k * sd, score, "ewma")
    end
    if abs(score) > k and sd > 0 then
      mean = mean + a * (d > 0 and k * sd or -k * sd)
    else -- (a series without spread so far has nothing to bound by: it learns the new level)
      mean = mean + a * d
      var = (1 - b) * (var + b * d * d)
    end
  end
  return out
end

-- seasonal(points, { period = 86400, tolerance = 0.2, step }) -> anomalies against the same time
-- one period before (yesterday, or last week with period = 604800): a point whose value is off
-- the value then by more than tolerance of it (score: the relative difference). step: how far
-- (seconds) the point a period back may be from the exact time (the points' spacing by
-- default). Points with nothing a period back are not judged: the history must reach that far.
function M.seasonal(points, o)
  o = o or {}
  local period, tol = o.period or 86400, o.tolerance or 0.2
  local n = #points
  local step = o.step or (n > 1 and (points[n][1] - points[1][1]) / (n - 1) or 0)
  local out = {}
  local j = 1
  for i = 1, n do
    local want = points[i][1] - period
    while j < i and points[j][1] < want - step / 2 do j = j + 1 end
    local b = points[j]
    if j < i and abs(b[1] - want) <= step / 2 then
      local base = b[2]
      local margin = tol * abs(base)
      local diff = points[i][2] - base
      if abs(diff) > margin then
        local score = base ~= 0 and diff / abs(base) or huge
        out[#out + 1] = anomaly(points[i], base - margin, base + margin, score, "seasonal")
      end
    end
  end
  return out
end

-- detect(points, method, opts): one of the detectors above by name ("zscore", "mad", "ewma",
-- "seasonal"); nil, err for another.
local DETECTORS = { zscore = M.zscore, mad = M.mad, ewma = M.ewma, seasonal = M.seasonal }
function M.detect(points, method, o)
  local f = DETECTORS[method]
  if not f then return nil, ("unknown method %q (zscore, mad, ewma or seasonal)"):format(tostring(method)) end
  return f(points, o)
end

return M
