-- An example beagle configuration: `build/beagle run -c examples/beagle.lua --plugins examples/plugins`.
-- Settings can be plain assignments or a settings { } block; MONITORING_<NAME> overrides both.
listen = "127.0.0.1:8001"
health_check_interval = "30s"
settings {
  health_check_timeout = "10s",
  health_check_retries = 2,
  log_format = "logfmt",
  -- the programs checks may run: file_age's stat, and a Nagios plugin for the command check
  plugin_exec_allow = "/usr/bin/stat,/usr/lib/nagios/plugins/check_load",
}

-- The agent's own liveness, checked through the http plugin (a check of the guide's /health API).
check "api" { plugin = "http", url = "http://127.0.0.1:8001/health/live", interval = "15s", slow = "250ms" }

-- PostgreSQL over its own protocol (log in, SELECT 1); degraded above 1 s like the guide's
-- database check. `critical` makes /health/ready fail while it is unhealthy. Off here: set the
-- host, user and password of yours (MONITORING_* variables keep secrets out of the file).
check "database" {
  plugin = "postgres", host = "127.0.0.1", user = "app", database = "app", critical = true,
  enabled = false, tags = { team = "storage" },
}

-- A cache behind the API: while the database is unhealthy it reports unknown ("dependency
-- database is unhealthy") instead of piling on.
check "cache" { plugin = "redis", host = "127.0.0.1", depends_on = "database", enabled = false }

-- A TCP port with a probe: reachability without ping.
check "smtp" { plugin = "tcp", host = "127.0.0.1", port = 25, expect = "^220", enabled = false }

-- Days left on a certificate, and a name that must resolve.
check "cert" { plugin = "tls_cert", host = "example.org", warn_days = 21, enabled = false }
check "resolver" { plugin = "dns", name = "localhost" }

-- Any Nagios plugin (the program must be listed in plugin_exec_allow).
check "load" { plugin = "command", command = { "/usr/lib/nagios/plugins/check_load", "-w", "5,4,3", "-c", "10,8,6" },
  enabled = false }

-- Override the built-in system check's thresholds.
check "system" { plugin = "system", disk_path = "/", disk_degraded = 80, disk_unhealthy = 92 }

-- A drop-in check from examples/plugins/checks/file_age.lua.
check "backup_fresh" { plugin = "file_age", path = "/var/log/dpkg.log", max_age = "720h" }
