-- beagle.analysis against data with known answers: summaries and quantiles, trends (a leak, a
-- flat noisy series, a disk filling), and each anomaly detector on a spike, a step change and a
-- seasonal series.
local A = require "beagle.analysis"

local function near(a, b, eps) return math.abs(a - b) <= (eps or 1e-9) end

-- A deterministic "noise" in -1..1 (a linear congruential generator), so the data is the same
-- on every run.
local function noise()
  local x = 12345
  return function()
    x = (1103515245 * x + 12345) % 2147483648
    return x / 2147483648 * 2 - 1
  end
end

-- n points a minute apart from t0, value f(i, t)
local function series(n, f, t0, step)
  local out = {}
  for i = 1, n do
    local t = (t0 or 0) + (i - 1) * (step or 60)
    out[i] = { t, f(i, t) }
  end
  return out
end

local function times(list)
  local out = {}
  for i, a in ipairs(list) do out[i] = a.t end
  return out
end

describe("beagle.analysis summary", function()
  it("gives the statistics of 1..100 as numpy and R do", function()
    local v = {}
    for i = 100, 1, -1 do v[#v + 1] = i end
    local s = A.summary(v)
    assert.are.equal(100, s.n)
    assert.are.equal(50.5, s.mean)
    assert.is_true(near(s.stddev, 29.011491975882016, 1e-12), tostring(s.stddev))
    assert.are.equal(1, s.min)
    assert.are.equal(100, s.max)
    assert.is_true(near(s.p50, 50.5))
    assert.is_true(near(s.p90, 90.1))
    assert.is_true(near(s.p95, 95.05))
    assert.is_true(near(s.p99, 99.01))
  end)
  it("handles none and one value", function()
    assert.are.same({ n = 0 }, A.summary({}))
    local s = A.summary({ 7 })
    assert.are.equal(0, s.stddev)
    assert.are.equal(7, s.p99)
    assert.is_nil(A.quantile({}, 0.5))
  end)
end)

describe("beagle.analysis trend", function()
  it("finds an exact line", function()
    local tr = A.trend(series(60, function(_, t) return 5 + 2 * t / 3600 end))
    assert.is_true(near(tr.slope_per_hour, 2, 1e-9))
    assert.is_true(near(tr.intercept, 5, 1e-9))
    assert.is_true(near(tr.r2, 1, 1e-12))
    assert.are.equal("rising", tr.direction)
  end)
  it("sees a leak: memory rising 10 MB an hour under noise, monotonic enough", function()
    local r = noise()
    local mb = 1024 * 1024
    -- 6 hours a minute apart: 200 MB + 10 MB/h, +-2 MB of noise
    local pts = series(360, function(_, t) return 200 * mb + 10 * mb * t / 3600 + 2 * mb * r() end)
    local tr = A.trend(pts)
    assert.are.equal("rising", tr.direction)
    assert.is_true(math.abs(tr.slope_per_hour / mb - 10) < 0.3, tostring(tr.slope_per_hour / mb))
    assert.is_true(tr.ci95_per_hour < 0.3 * mb)
    assert.is_true(tr.percent_per_hour > 3 and tr.percent_per_hour < 5, tostring(tr.percent_per_hour))
    -- a strict rise is the leak's shape; this noise breaks some steps, not most
    assert.are.equal(1, A.rises(series(10, function(i) return i end)))
    assert.is_true(A.rises(pts) > 0.5)
  end)
  it("calls noise around a level flat", function()
    local r = noise()
    local tr = A.trend(series(200, function() return 50 + r() end))
    assert.are.equal("flat", tr.direction)
    local up = A.rises(series(200, function() return 50 + r() end))
    assert.is_true(up > 0.35 and up < 0.65, tostring(up))
  end)
  it("projects when a disk fills", function()
    -- 50% used, 1% more an hour: full (100%) 50 h after the first point
    local pts = series(61, function(_, t) return 50 + t / 3600 end)
    local left = A.time_to(pts, 100)
    assert.is_true(near(left, 50 * 3600 - 3600, 1e-6), tostring(left))
    -- a disk emptying never fills
    assert.is_nil(A.time_to(series(61, function(_, t) return 50 - t / 3600 end), 100))
  end)
  it("has no trend for too few points or one instant", function()
    assert.is_nil(A.trend({ { 0, 1 }, { 60, 2 } }))
    assert.is_nil(A.trend({ { 5, 1 }, { 5, 2 }, { 5, 3 } }))
    assert.is_nil(A.rises({ { 0, 1 } }))
  end)
end)

describe("beagle.analysis detectors", function()
  local r = noise()
  -- 100 points of 10 +- 1, a spike of 30 at point 60
  local spike = series(100, function(i) return i == 60 and 30 or 10 + r() end)
  -- 60 points of 10 +- 0.5, then 40 of 20 +- 0.5 (a step at point 61)
  local step = series(100, function(i) return (i > 60 and 20 or 10) + 0.5 * r() end)

  for _, method in ipairs { "zscore", "mad", "ewma" } do
    it(method .. " finds the spike, and nothing else", function()
      local found = A.detect(spike, method)
      assert.are.same({ spike[60][1] }, times(found))
      local a = found[1]
      assert.are.equal(30, a.value)
      assert.are.equal(method, a.method)
      assert.is_true(a.score > 3)
      assert.is_true(a.expected[1] < 10 and a.expected[2] > 10 and a.expected[2] < 30)
    end)
    it(method .. " finds where a step change starts", function()
      local found = A.detect(step, method)
      assert.is_true(#found >= 1)
      assert.are.equal(step[61][1], found[1].t)
    end)
  end

  it("judges against the same time a period back, once the history reaches it", function()
    -- two days of a daily cycle (5-minute points), one point on day 2 at twice its usual value
    local day = 86400
    local odd = day + 12 * 3600
    local pts = series(2 * 288, function(_, t)
      local v = 100 + 50 * math.sin(2 * math.pi * t / day)
      return t == odd and 2 * v or v
    end, 0, 300)
    local found = A.seasonal(pts, { period = day, tolerance = 0.2 })
    assert.are.same({ odd }, times(found))
    assert.is_true(near(found[1].score, 1, 1e-9))
    -- a plain z-score over an hour would not know a daily cycle from an anomaly at its slope;
    -- seasonal does not flag day 1 (nothing a day back) nor the cycle itself
    assert.are.same({}, A.seasonal(series(288, function(_, t) return 100 + 50 * math.sin(2 * math.pi * t / day) end,
      0, 300), { period = day }))
  end)

  it("ewma learns a new level of a series that had no spread", function()
    local flat = series(80, function(i) return i > 40 and 5 or 1 end)
    local found = A.ewma(flat)
    assert.are.equal(flat[41][1], found[1].t)
    assert.is_true(#found < 39, ("still flagging the new level after %d points"):format(#found))
  end)

  it("names an unknown method", function()
    local got, err = A.detect(spike, "fourier")
    assert.is_nil(got)
    assert.are.equal('unknown method "fourier" (zscore, mad, ewma or seasonal)', err)
  end)
end)
