-- System resources from /proc: CPU, memory, disk and load. Degraded and unhealthy above the
-- thresholds; details carry cpu_percent, memory_percent, disk_percent and the load averages.
-- The last /proc/stat sample is kept in the instance's ctx.state, so that CPU usage covers the
-- time since the instance's previous run; a window shorter than `sample` (the first run, or a
-- retry right after a failed run) is measured afresh over `sample`, never over ~0 ms.
local function cpu_sample(ctx)
  local stat, err = ctx.read_file("/proc/stat", 4096)
  if not stat then return nil, err end
  local user, nice, sys, idle, iowait, irq, softirq, steal =
    stat:match("^cpu%s+(%d+)%s+(%d+)%s+(%d+)%s+(%d+)%s+(%d+)%s+(%d+)%s+(%d+)%s+(%d+)")
  if not user then return nil, "/proc/stat: unexpected format" end
  local busy = user + nice + sys + irq + softirq + steal
  return { busy = busy, total = busy + idle + iowait, at = ctx.now() }
end

local function memory_percent(ctx)
  local mi, err = ctx.read_file("/proc/meminfo", 16384)
  if not mi then return nil, err end
  local total = tonumber(mi:match("MemTotal:%s+(%d+)"))
  local avail = tonumber(mi:match("MemAvailable:%s+(%d+)"))
  if not total or not avail or total == 0 then return nil, "/proc/meminfo: unexpected format" end
  return (total - avail) / total * 100
end

local function level(v, degraded, unhealthy)
  if v >= unhealthy then return 2 end
  if v >= degraded then return 1 end
  return 0
end

return beagle.check {
  name = "system",
  description = "CPU, memory, disk and load of this host, from /proc",
  options = {
    disk_path = { "string", default = "/", description = "a path on the filesystem whose usage is checked" },
    cpu_degraded = { "number", default = 85, description = "CPU percent at which the check is degraded" },
    cpu_unhealthy = { "number", default = 95, description = "CPU percent at which it is unhealthy" },
    memory_degraded = { "number", default = 85, description = "memory percent (MemTotal less MemAvailable) at which it is degraded" },
    memory_unhealthy = { "number", default = 95, description = "memory percent at which it is unhealthy" },
    disk_degraded = { "number", default = 85,
      description = "disk percent (used blocks of disk_path's filesystem) at which it is degraded" },
    disk_unhealthy = { "number", default = 95, description = "disk percent at which it is unhealthy" },
    sample = { "duration", default = "250ms", description = "time between the two CPU samples of the first run" },
  },
  run = function(opt, ctx)
    local now, err = cpu_sample(ctx)
    if not now then return ctx.unknown(err) end
    local prev = ctx.state.cpu
    if not prev or now.at - prev.at < opt.sample then
      ctx.sleep(opt.sample)
      prev = now
      now, err = cpu_sample(ctx)
      if not now then return ctx.unknown(err) end
    end
    local dt = now.total - prev.total
    local cpu = dt > 0 and (now.busy - prev.busy) / dt * 100 or 0
    ctx.state.cpu = now
    local mem
    mem, err = memory_percent(ctx)
    if not mem then return ctx.unknown(err) end
    local total, avail = ctx.statvfs(opt.disk_path)
    if not total then return ctx.unknown(avail) end
    local disk = total > 0 and (total - avail) / total * 100 or 0
    local la = ctx.read_file("/proc/loadavg", 256) or ""
    local l1, l5, l15 = la:match("^(%S+)%s+(%S+)%s+(%S+)")

    local details = {
      cpu_percent = cpu, memory_percent = mem, disk_percent = disk, disk_path = opt.disk_path,
      load_1m = tonumber(l1), load_5m = tonumber(l5), load_15m = tonumber(l15),
    }
    beagle.set_gauge("system.cpu_percent", cpu)
    beagle.set_gauge("system.memory_percent", mem)
    beagle.set_gauge("system.disk_percent", disk, { path = opt.disk_path })

    local worst, why = 0, {}
    for _, m in ipairs {
      { "cpu", cpu, opt.cpu_degraded, opt.cpu_unhealthy },
      { "memory", mem, opt.memory_degraded, opt.memory_unhealthy },
      { "disk", disk, opt.disk_degraded, opt.disk_unhealthy },
    } do
      local l = level(m[2], m[3], m[4])
      if l > 0 then why[#why + 1] = ("%s %.1f%%"):format(m[1], m[2]) end
      if l > worst then worst = l end
    end
    local summary = ("cpu %.1f%%, memory %.1f%%, disk %.1f%%"):format(cpu, mem, disk)
    if worst == 2 then return ctx.unhealthy("high " .. table.concat(why, ", ") .. " (" .. summary .. ")", details) end
    if worst == 1 then return ctx.degraded("elevated " .. table.concat(why, ", ") .. " (" .. summary .. ")", details) end
    return ctx.healthy(summary, details)
  end,
}
