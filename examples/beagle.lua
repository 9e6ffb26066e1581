-- An example beagle configuration: `build/beagle run -c examples/beagle.lua --plugins examples/plugins`.
-- Settings can be plain assignments or a settings { } block; MONITORING_<NAME> overrides both.
listen = "127.0.0.1:8001"
health_check_interval = "30s"
settings {
  health_check_timeout = "10s",
  health_check_retries = 2,
  log_format = "logfmt",
}

-- The agent's own liveness, checked through the http plugin (a check of the guide's /health API).
check "api" { plugin = "http", url = "http://127.0.0.1:8001/health/live", interval = "15s", slow = "250ms" }

-- A TCP port with a probe; `critical` makes /health/ready fail while it is unhealthy.
check "database" {
  plugin = "tcp", host = "127.0.0.1", port = 5432, critical = false, enabled = false,
  tags = { team = "storage" },
}

-- Override the built-in system check's thresholds.
check "system" { plugin = "system", disk_path = "/", disk_degraded = 80, disk_unhealthy = 92 }

-- A drop-in check from examples/plugins/checks/file_age.lua.
check "backup_fresh" { plugin = "file_age", path = "/var/log/dpkg.log", max_age = "720h" }
