-- A process runs, found by name (/proc/<pid>/comm, or its command line) or by pidfile, and its
-- CPU and RSS stay below thresholds. CPU is the processes' utime + stime between this run and
-- the instance's previous one (kept in ctx.state, like the system check does for the host),
-- as percent of one core; a first run measures over `sample`. Gauges check.process.count,
-- check.process.cpu_percent and check.process.rss_bytes, each {check}.

local TICKS = 100 -- USER_HZ: /proc reports utime and stime in 1/100 s on every Linux architecture

-- parse_stat(text of /proc/<pid>/stat) -> { state, ticks = utime + stime, start } | nil
local function parse_stat(text)
  local rest = type(text) == "string" and text:match("^%d+ %(.*%) (.*)$")
  if not rest then return nil end
  local f = {}
  for w in rest:gmatch("%S+") do f[#f + 1] = w end
  -- f[1] is field 3 (state): utime is field 14, stime 15, starttime 22
  local utime, stime, start = tonumber(f[12]), tonumber(f[13]), tonumber(f[20])
  if not utime or not stime then return nil end
  return { state = f[1], ticks = utime + stime, start = start }
end

-- parse_rss(text of /proc/<pid>/status) -> bytes | nil
local function parse_rss(text)
  local kb = type(text) == "string" and tonumber(text:match("\nVmRSS:%s*(%d+)%s*kB"))
  return kb and kb * 1024
end

-- cmdline_text(raw /proc/<pid>/cmdline) -> the arguments joined by spaces
local function cmdline_text(raw) return ((raw or ""):gsub("%z+$", ""):gsub("%z", " ")) end

-- cpu_percent(prev, now, dt) -> percent of one core used by the pids of now since prev:
-- prev/now map pid -> { ticks, start }; a pid new since prev (or reused) counts from now.
local function cpu_percent(prev, now, dt)
  if dt <= 0 then return 0 end
  local used = 0
  for pid, s in pairs(now) do
    local p = prev[pid]
    if p and p.start == s.start and s.ticks >= p.ticks then used = used + (s.ticks - p.ticks) end
  end
  return used / TICKS / dt * 100
end

local function mib(b) return b / 1048576 end

-- The pids (strings) that match, and their stat samples: { [pid] = sample }, count
local function find_by_name(opt, ctx)
  local names, err = ctx.list_dir("/proc")
  if not names then return nil, err end
  local found, n = {}, 0
  local comm_name = opt.name:sub(1, 15) -- the kernel keeps 15 bytes of a command's name
  for _, pid in ipairs(names) do
    if pid:match("^%d+$") then
      local hit
      if opt.match_cmdline then
        local raw = ctx.read_file("/proc/" .. pid .. "/cmdline", 65536)
        hit = raw and raw ~= "" and cmdline_text(raw):find(opt.name, 1, true) ~= nil
      else
        local comm = ctx.read_file("/proc/" .. pid .. "/comm", 64)
        hit = comm and comm:gsub("\n$", "") == comm_name
      end
      if hit then
        local s = parse_stat(ctx.read_file("/proc/" .. pid .. "/stat", 4096))
        if s and s.state ~= "Z" and s.state ~= "X" then
          found[pid] = s
          n = n + 1
        end
      end
    end
  end
  return found, n
end

local function sample(opt, ctx)
  if opt.pidfile then
    local pid, err = ctx.read_pidfile(opt.pidfile)
    if not pid then return {}, 0, ("pidfile %s"):format(tostring(err)) end
    pid = ("%d"):format(pid)
    local s = parse_stat(ctx.read_file("/proc/" .. pid .. "/stat", 4096))
    if not s or s.state == "Z" or s.state == "X" then
      return {}, 0, ("pid %s (from %s) is not running"):format(pid, opt.pidfile)
    end
    return { [pid] = s }, 1
  end
  return find_by_name(opt, ctx)
end

local function level(v, degraded, unhealthy)
  if unhealthy and v >= unhealthy then return 2 end
  if degraded and v >= degraded then return 1 end
  return 0
end

return beagle.check {
  name = "process",
  description = "a process runs (by name or pidfile), its CPU and RSS below thresholds",
  automatic = false, -- name or pidfile is required: no instance without a declaration
  options = {
    name = { "string", optional = true,
      description = "process name as in /proc/<pid>/comm (or part of its command line with match_cmdline)" },
    match_cmdline = { "boolean", default = false, description = "match name as plain text anywhere in the command line" },
    pidfile = { "string", optional = true, description = "absolute path of a pidfile naming the process (instead of name)" },
    min_count = { "integer", default = 1, description = "processes that must run at least" },
    max_count = { "integer", optional = true, description = "processes that may run at most" },
    cpu_degraded = { "number", optional = true, description = "CPU percent (of one core, all matches together) at which it is degraded" },
    cpu_unhealthy = { "number", optional = true, description = "CPU percent at which it is unhealthy" },
    rss_degraded = { "number", optional = true, description = "resident memory in MiB (all matches together) at which it is degraded" },
    rss_unhealthy = { "number", optional = true, description = "resident memory in MiB at which it is unhealthy" },
    sample = { "duration", default = "250ms", description = "time between the two CPU samples of the first run" },
    metrics = { "boolean", default = true, description = "record count, CPU and RSS as gauges check.process.*{check}" },
  },
  parse_stat = parse_stat, parse_rss = parse_rss, cmdline_text = cmdline_text, cpu_percent = cpu_percent,
  -- at load (and reload): what the option types cannot say
  validate = function(opt)
    if (opt.name == nil) == (opt.pidfile == nil) then return "options name and pidfile: give exactly one of them" end
    if opt.name == "" then return "option name: empty" end
    if opt.pidfile and opt.pidfile:sub(1, 1) ~= "/" then
      return ("option pidfile: %q is not an absolute path"):format(opt.pidfile)
    end
    if opt.min_count < 0 then return ("option min_count: %d is negative"):format(opt.min_count) end
    if opt.max_count and opt.max_count < opt.min_count then
      return ("option max_count: %d is below min_count (%d)"):format(opt.max_count, opt.min_count)
    end
  end,
  run = function(opt, ctx)
    local what = opt.pidfile and ("process of " .. opt.pidfile) or ("process %q"):format(opt.name)
    local now, count, why = sample(opt, ctx)
    if not now then return ctx.unknown(count) end
    local at = ctx.now()
    if opt.metrics then pcall(beagle.set_gauge, "check.process.count", count, { check = ctx.name }) end
    if why then return ctx.unhealthy(why, { count = 0 }) end
    if count < opt.min_count then
      if count == 0 then return ctx.unhealthy(what .. " is not running", { count = 0 }) end
      return ctx.unhealthy(("%d of %s running, expected at least %d"):format(count, what, opt.min_count), { count = count })
    end
    if opt.max_count and count > opt.max_count then
      return ctx.unhealthy(("%d of %s running, expected at most %d"):format(count, what, opt.max_count), { count = count })
    end
    local details = { count = count }
    local pids = {}
    for pid in pairs(now) do pids[#pids + 1] = tonumber(pid) end
    table.sort(pids)
    if #pids <= 20 then
      for i, p in ipairs(pids) do pids[i] = tostring(p) end
      details.pids = table.concat(pids, ", ")
    end
    if count == 0 then return ctx.healthy(("%s: none running (min_count 0)"):format(what), details) end

    -- CPU: since the previous run, or over `sample` when there is none recent enough
    local prev = ctx.state.cpu
    if not prev or at - prev.at < opt.sample then
      ctx.sleep(opt.sample)
      prev = { at = at, pids = now }
      local again = {}
      for pid in pairs(now) do
        local s2 = parse_stat(ctx.read_file("/proc/" .. pid .. "/stat", 4096))
        if s2 and s2.state ~= "Z" then again[pid] = s2 end
      end
      now, at = again, ctx.now()
    end
    local cpu = cpu_percent(prev.pids, now, at - prev.at)
    ctx.state.cpu = { at = at, pids = now }
    local rss = 0
    for pid in pairs(now) do rss = rss + (parse_rss(ctx.read_file("/proc/" .. pid .. "/status", 16384)) or 0) end
    details.cpu_percent, details.rss_bytes = cpu, rss
    if opt.metrics then
      pcall(beagle.set_gauge, "check.process.cpu_percent", cpu, { check = ctx.name })
      pcall(beagle.set_gauge, "check.process.rss_bytes", rss, { check = ctx.name })
    end
    local summary = ("%d running, cpu %.1f%%, rss %.1f MiB"):format(count, cpu, mib(rss))
    local worst, high = 0, {}
    for _, m in ipairs {
      { "cpu", cpu, opt.cpu_degraded, opt.cpu_unhealthy, ("cpu %.1f%%"):format(cpu) },
      { "rss", mib(rss), opt.rss_degraded, opt.rss_unhealthy, ("rss %.1f MiB"):format(mib(rss)) },
    } do
      local l = level(m[2], m[3], m[4])
      if l > 0 then high[#high + 1] = m[5] end
      if l > worst then worst = l end
    end
    if worst == 2 then return ctx.unhealthy(("%s: high %s (%s)"):format(what, table.concat(high, ", "), summary), details) end
    if worst == 1 then return ctx.degraded(("%s: elevated %s (%s)"):format(what, table.concat(high, ", "), summary), details) end
    return ctx.healthy(("%s: %s"):format(what, summary), details)
  end,
}
