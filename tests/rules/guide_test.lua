-- Unit tests of rules/guide.lua: `beagle rules test tests/rules/guide_test.lua`.
return {
  rule_files = { "../../rules/guide.lua" },
  evaluation_interval = "1m",
  tests = {
    {
      name = "high_cpu_usage fires after 5 minutes above 80% and not before",
      interval = "1m",
      input_series = {
        -- 70 at 0m, 85 from 1m on: above 80 from minute 1
        { series = 'system.cpu_percent{host="web-1"}', values = "70 85x12" },
        { series = 'system.cpu_percent{host="web-2"}', values = "40x12" },
      },
      alert_rule_test = {
        { eval_time = "5m", alertname = "high_cpu_usage", exp_alerts = {} },
        { eval_time = "6m", alertname = "high_cpu_usage", exp_alerts = {
          { exp_labels = { host = "web-1", severity = "warning" },
            exp_annotations = { message = "CPU usage above 80% for 5 minutes (now 85.0%)" } },
        } },
      },
    },
    {
      name = "high_cpu_usage resolves when the load drops",
      interval = "1m",
      input_series = {
        { series = 'system.cpu_percent{host="db"}', values = "90x7 20x5" },
      },
      alert_rule_test = {
        { eval_time = "6m", alertname = "high_cpu_usage", exp_alerts = {
          { exp_labels = { host = "db" } },
        } },
        { eval_time = "10m", alertname = "high_cpu_usage", exp_alerts = {} },
      },
    },
    {
      name = "optimization_failures fires above a 10% failure rate held for 10 minutes",
      interval = "1m",
      enable = { "optimization_failures" }, -- shipped disabled: no optimizer feeds a stock agent
      input_series = {
        { series = 'optimization.started_total{algorithm="nsga2"}', values = "0+10x40" },
        -- 1 failure a minute (10%: not above the threshold) for 10 minutes, then 3 a minute (30%)
        { series = 'optimization.failures_total{algorithm="nsga2"}', values = "0+1x10 13+3x30" },
      },
      alert_rule_test = {
        { eval_time = "15m", alertname = "optimization_failures", exp_alerts = {} },
        { eval_time = "35m", alertname = "optimization_failures", exp_alerts = {
          { exp_labels = { severity = "error" } },
        } },
      },
    },
  },
}
