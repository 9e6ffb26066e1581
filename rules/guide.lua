-- The guide's two example AlertRules ("Alert Management"), written as beagle rules.

-- The built-in system check records the gauge system.cpu_percent on every run.
alert "high_cpu_usage" {
  condition = "greater_than",
  metric = "system.cpu_percent",
  threshold = 80.0,
  duration_minutes = 5,
  severity = "warning",
  message = "CPU usage above 80% for 5 minutes (now {{ value | round(1) }}%)",
}

-- The guide's metric "optimization.failures.rate" is derived here from the two counters the
-- guide's optimizer increments. Disabled because a stock agent has no optimizer feeding them:
-- set enabled = true where optimization.started and optimization.failures are recorded.
alert "optimization_failures" {
  enabled = false,
  expr = function(q)
    -- summed over every series (the guide tags the counters with the algorithm)
    local function total(name)
      local sum = 0
      for _, s in ipairs(q.rate_all(name, "10m")) do sum = sum + s.value end
      return sum
    end
    local started = total("optimization.started")
    if started == 0 then return {} end -- nothing ran: no alert instance
    return total("optimization.failures") / started
  end,
  condition = "greater_than",
  threshold = 0.1, -- 10% failure rate
  duration_minutes = 10,
  severity = "error",
  message = "High optimization failure rate detected ({{ value | percent }} of runs failing)",
}
