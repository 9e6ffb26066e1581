-- System resources from /proc, /sys and statvfs: CPU, memory, swap, load per core, open files,
-- the usage (blocks and inodes) of every real filesystem, and, when this process runs under a
-- cgroup with limits (a container, a systemd unit with MemoryMax/CPUQuota), CPU and memory
-- against those limits. Degraded and unhealthy at thresholds per metric.
-- The last CPU sample (/proc/stat and the cgroup's usage) is kept in the instance's ctx.state,
-- so that CPU usage covers the time since the instance's previous run; a window shorter than
-- `sample` (the first run, or a retry right after a failed run) is measured afresh over
-- `sample`, never over ~0 ms.
-- The parsers below are pure functions of a file's text (exported as `parse` for the tests):
-- they never raise, whatever the text, and answer nil for what they cannot read.

local parse = {}

local function num(s)
  local n = tonumber(s)
  if n == nil or n ~= n or n == math.huge or n == -math.huge then return nil end
  return n
end

-- "cpu  user nice system idle iowait irq softirq steal ..." -> { busy, total } in jiffies
function parse.stat_cpu(text)
  if type(text) ~= "string" then return nil end
  local f = {}
  local line = text:match("^cpu%s+([^\n]*)")
  if not line then return nil end
  for w in line:gmatch("%S+") do
    local n = num(w)
    if not n or n < 0 then return nil end
    f[#f + 1] = n
    if #f == 8 then break end
  end
  if #f < 4 then return nil end
  local user, nice, sys, idle = f[1], f[2], f[3], f[4]
  local iowait, irq, softirq, steal = f[5] or 0, f[6] or 0, f[7] or 0, f[8] or 0
  local busy = user + nice + sys + irq + softirq + steal
  return { busy = busy, total = busy + idle + iowait }
end

-- /proc/stat's "cpuN" lines -> how many (a fallback CPU count), nil when there are none
function parse.stat_cpus(text)
  if type(text) ~= "string" then return nil end
  local n = 0
  for _ in text:gmatch("\ncpu%d+%s") do n = n + 1 end
  return n > 0 and n or nil
end

-- /sys/devices/system/cpu/online ("0-3,8,10-11") -> number of CPUs, nil when malformed
function parse.cpu_list(text)
  if type(text) ~= "string" then return nil end
  text = text:gsub("%s+$", "")
  if text == "" or #text > 65536 then return nil end
  local n = 0
  for item in (text .. ","):gmatch("([^,]*),") do
    local a, b = item:match("^(%d+)%-(%d+)$")
    if a then
      a, b = num(a), num(b)
      if not a or not b or b < a or b - a > 1e6 then return nil end
      n = n + b - a + 1
    elseif item:match("^%d+$") then
      n = n + 1
    else
      return nil
    end
  end
  return n > 0 and n or nil
end

-- /proc/meminfo -> { total, available, swap_total, swap_free } in bytes (each nil when absent)
function parse.meminfo(text)
  if type(text) ~= "string" then return {} end
  local function kb(key)
    local v = num(text:match("\n" .. key .. ":%s+(%d+)") or text:match("^" .. key .. ":%s+(%d+)"))
    return v and v * 1024
  end
  return { total = kb("MemTotal"), available = kb("MemAvailable"), swap_total = kb("SwapTotal"),
    swap_free = kb("SwapFree") }
end

-- "1.50 0.75 0.30 1/123 4567" -> 1.5, 0.75, 0.3 (nil each when malformed)
function parse.loadavg(text)
  if type(text) ~= "string" then return nil end
  local a, b, c = text:match("^%s*(%S+)%s+(%S+)%s+(%S+)")
  a, b, c = num(a), num(b), num(c)
  if not (a and b and c) or a < 0 or b < 0 or c < 0 then return nil end
  return a, b, c
end

-- /proc/sys/fs/file-nr "allocated unused max" -> in use, max (nil when malformed or max <= 0)
function parse.file_nr(text)
  if type(text) ~= "string" then return nil end
  local a, u, m = text:match("^%s*(%d+)%s+(%d+)%s+(%d+)")
  a, u, m = num(a), num(u), num(m)
  if not (a and u and m) or m <= 0 or u > a then return nil end
  return a - u, m
end

-- the octal escapes of /proc/mounts (\040 space, \011 tab, \012 newline, \134 backslash)
local function unescape(s)
  return (s:gsub("\\(%d%d%d)", function(o)
    local c = tonumber(o, 8)
    return c and c < 256 and string.char(c) or nil
  end))
end

-- /proc/self/mounts -> array of { device, path, fstype }, in order, without the filesystem types
-- in the set exclude (fstype -> true; "fuse.x" is excluded by "fuse.x" or by "fuse"), the same
-- mount point mounted twice (the last one wins, as it hides the first), and a block device
-- seen before (bind mounts and btrfs subvolumes: the same filesystem again). A line that is
-- not "device path fstype ..." is skipped.
function parse.mounts(text, exclude)
  if type(text) ~= "string" then return {} end
  exclude = exclude or {}
  local list, at = {}, {}
  for line in text:gmatch("[^\n]+") do
    local dev, path, fstype = line:match("^(%S+)%s+(/%S*)%s+(%S+)")
    if dev then
      local base = fstype:match("^([^.]+)%.")
      if not exclude[fstype] and not (base and exclude[base]) then
        local m = { device = unescape(dev), path = unescape(path), fstype = fstype }
        if at[m.path] then list[at[m.path]] = m else list[#list + 1] = m at[m.path] = #list end
      elseif at[unescape(path)] then
        -- an excluded filesystem mounted over a checked one hides it
        list[at[unescape(path)]] = false
      end
    end
  end
  local out, seen = {}, {}
  for _, m in ipairs(list) do
    if m then
      local key = m.device:sub(1, 5) == "/dev/" and m.device .. " " .. m.fstype or nil
      if not key or not seen[key] then
        out[#out + 1] = m
        if key then seen[key] = true end
      end
    end
  end
  return out
end

-- /proc/self/cgroup -> { v2 = "/path" or nil, v1 = { controller = "/path" }, v1dirs = { controller = "a,b" } }
function parse.proc_cgroup(text)
  local r = { v1 = {}, v1dirs = {} }
  if type(text) ~= "string" then return r end
  for line in text:gmatch("[^\n]+") do
    local id, ctrls, path = line:match("^(%d+):([^:]*):(/.*)$")
    if id then
      if id == "0" and ctrls == "" then
        r.v2 = path
      else
        for c in ctrls:gmatch("[^,]+") do
          r.v1[c] = path
          r.v1dirs[c] = ctrls
        end
      end
    end
  end
  return r
end

-- a cgroup limit file ("max", "9223372036854771712", "123456") -> bytes, nil for no limit
local NO_LIMIT = 2 ^ 60
function parse.limit(text)
  if type(text) ~= "string" then return nil end
  local n = num(text:match("^%s*(%d+)%s*$"))
  if not n or n <= 0 or n >= NO_LIMIT then return nil end
  return n
end

-- cpu.max ("max 100000" or "200000 100000") -> CPUs the quota allows, nil for no quota
function parse.cpu_max(text)
  if type(text) ~= "string" then return nil end
  local q, p = text:match("^%s*(%d+)%s+(%d+)")
  q, p = num(q), num(p)
  if not q or not p or q <= 0 or p <= 0 then return nil end
  return q / p
end

-- "key value" lines (cpu.stat, memory.stat) -> key -> number
function parse.kv(text)
  local r = {}
  if type(text) ~= "string" then return r end
  for line in text:gmatch("[^\n]+") do
    local k, v = line:match("^([%w_]+)%s+(%d+)%s*$")
    if k then r[k] = num(v) end
  end
  return r
end

-- ---- reading -------------------------------------------------------------------------------

local CG = "/sys/fs/cgroup"

local function read(ctx, path, max)
  local ok, text = pcall(ctx.read_file, path, max or 4096)
  if ok and type(text) == "string" then return text end
  return nil
end

-- the cgroup paths from the deepest to the root: "/a/b" -> "/a/b", "/a", "/"
local function ancestors(path)
  local out = {}
  path = path:gsub("/+$", "")
  local n = 0
  while path ~= "" and n < 32 do
    out[#out + 1] = path
    path = path:match("^(.*)/[^/]*$") or ""
    n = n + 1
  end
  out[#out + 1] = "/"
  return out
end

local function cg_file(dir, path, name)
  if path == "/" then return dir .. "/" .. name end
  return dir .. path .. "/" .. name
end

-- The cgroup limits of this process: { mem_limit, mem_used, cpus, cpu_usage (seconds) }, each
-- nil when not limited or unreadable. v2 first (the limit is the lowest along the path), then
-- v1 (the process's path, else the root of the hierarchy as a container sees it).
local function cgroup(ctx)
  local pc = parse.proc_cgroup(read(ctx, "/proc/self/cgroup", 65536))
  local r = {}
  -- the unified hierarchy holds the limits only when it is mounted at /sys/fs/cgroup (in the
  -- hybrid layout it is elsewhere and has no controllers: the v1 ones hold them)
  if pc.v2 and read(ctx, CG .. "/cgroup.controllers") then
    local chain = ancestors(pc.v2)
    -- in a cgroup namespace the path may not exist below /sys/fs/cgroup: then it is the root
    if not read(ctx, cg_file(CG, chain[1], "cgroup.controllers")) then chain = { "/" } end
    local mem_at, cpu_at
    for _, p in ipairs(chain) do
      local l = parse.limit(read(ctx, cg_file(CG, p, "memory.max")))
      if l and (not r.mem_limit or l < r.mem_limit) then r.mem_limit, mem_at = l, p end
      local c = parse.cpu_max(read(ctx, cg_file(CG, p, "cpu.max")))
      if c and (not r.cpus or c < r.cpus) then r.cpus, cpu_at = c, p end
    end
    -- usage is that of the cgroup whose limit applies (it counts its children)
    if mem_at then
      local cur = num((read(ctx, cg_file(CG, mem_at, "memory.current")) or ""):match("%d+"))
      local st = parse.kv(read(ctx, cg_file(CG, mem_at, "memory.stat"), 16384))
      if cur then r.mem_used = math.max(0, cur - (st.inactive_file or 0)) else r.mem_limit = nil end
    end
    if cpu_at then
      local us = parse.kv(read(ctx, cg_file(CG, cpu_at, "cpu.stat"))).usage_usec
      if us then r.cpu_usage, r.cpu_at = us / 1e6, cpu_at else r.cpus = nil end
    end
    if r.mem_limit or r.cpus then r.version = 2 end
    return r
  end
  -- v1: the process's path in each hierarchy, else the hierarchy's root (a container without a
  -- cgroup namespace sees its own cgroup mounted there)
  local mpath = pc.v1.memory
  if mpath then
    local d = CG .. "/" .. pc.v1dirs.memory
    for _, p in ipairs { mpath, "/" } do
      local l = read(ctx, cg_file(d, p, "memory.limit_in_bytes"))
      if l then
        local st = parse.kv(read(ctx, cg_file(d, p, "memory.stat"), 16384))
        local lim = parse.limit(l)
        local h = parse.limit(tostring(st.hierarchical_memory_limit or ""))
        if h and (not lim or h < lim) then lim = h end
        local cur = num((read(ctx, cg_file(d, p, "memory.usage_in_bytes")) or ""):match("%d+"))
        if lim and cur then
          r.mem_limit, r.mem_used = lim, math.max(0, cur - (st.total_inactive_file or 0))
        end
        break
      end
    end
  end
  if pc.v1.cpu and pc.v1.cpuacct then
    local cd, ad = CG .. "/" .. pc.v1dirs.cpu, CG .. "/" .. pc.v1dirs.cpuacct
    for _, p in ipairs { pc.v1.cpu, "/" } do
      local q = num((read(ctx, cg_file(cd, p, "cpu.cfs_quota_us")) or ""):match("^%s*(%-?%d+)"))
      if q then
        local per = num((read(ctx, cg_file(cd, p, "cpu.cfs_period_us")) or ""):match("%d+"))
        -- the usage of the same cgroup, in the cpuacct hierarchy (often the same directory)
        local up = p == "/" and "/" or pc.v1.cpuacct
        local ns = num((read(ctx, cg_file(ad, up, "cpuacct.usage")) or ""):match("%d+"))
        if q > 0 and per and per > 0 and ns then
          r.cpus, r.cpu_usage, r.cpu_at = q / per, ns / 1e9, cd .. p
        end
        break
      end
    end
  end
  if r.mem_limit or r.cpus then r.version = 1 end
  return r
end

local function cpu_sample(ctx, use_cgroup)
  local stat, err = ctx.read_file("/proc/stat", 4096)
  if not stat then return nil, err end
  local s = parse.stat_cpu(stat)
  if not s then return nil, "/proc/stat: unexpected format" end
  s.at = ctx.now()
  s.stat = stat
  if use_cgroup then s.cg = cgroup(ctx) end
  return s
end

local function cpu_count(ctx, stat)
  return parse.cpu_list(read(ctx, "/sys/devices/system/cpu/online")) or parse.stat_cpus(stat)
end

local function level(v, degraded, unhealthy)
  if v == nil then return 0 end
  if v >= unhealthy then return 2 end
  if v >= degraded then return 1 end
  return 0
end

-- Filesystems not checked unless listed in `mounts`: kernel and memory filesystems, read-only
-- images that are always full, and network filesystems (a hung server would hold a threadpool
-- thread each run).
local DEFAULT_EXCLUDE = {
  "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
  "devtmpfs", "efivarfs", "fusectl", "hugetlbfs", "iso9660", "mqueue", "nsfs", "proc", "pstore",
  "ramfs", "rpc_pipefs", "securityfs", "selinuxfs", "squashfs", "sysfs", "tmpfs", "tracefs",
  "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "fuse.sshfs", "davfs",
}
local MAX_MOUNTS = 64
local MOUNTS_MAX = 1048576 -- bytes of /proc/self/mounts read
-- a statvfs that has not returned for so long is not asked again before then
local HUNG_RETRY = 300

local function string_list(v, name, absolute)
  for i, s in ipairs(v) do
    if type(s) ~= "string" or s == "" then
      return nil, ("option %q: item %d must be a non-empty string"):format(name, i)
    end
    if absolute and s:sub(1, 1) ~= "/" then
      return nil, ("option %q: %q is not an absolute path"):format(name, s)
    end
  end
  return true
end

-- The usage of one filesystem: percent of blocks and of inodes (nil: not reported). A statvfs
-- still pending since an earlier run (one that ran out of time in it) is not started again for
-- HUNG_RETRY seconds.
local function fs_usage(ctx, path)
  local pending = ctx.state.statvfs_pending
  if not pending then
    pending = {}
    ctx.state.statvfs_pending = pending
  end
  local since = pending[path]
  if since and ctx.now() - since < HUNG_RETRY then
    return nil, ("statvfs of %s has not returned for %.0fs"):format(path, ctx.now() - since)
  end
  pending[path] = ctx.now()
  local total, avail, files, ffree = ctx.statvfs(path)
  pending[path] = nil
  if not total then return nil, avail end
  total, avail = num(total), num(avail)
  if not total or not avail then return nil, path .. ": statvfs gave no sizes" end
  local u = { total = total, available = avail }
  u.percent = total > 0 and math.max(0, math.min(100, (total - avail) / total * 100)) or nil
  files, ffree = num(files), num(ffree)
  if files and ffree and files > 0 then
    u.inode_percent = math.max(0, math.min(100, (files - ffree) / files * 100))
  end
  return u
end

return beagle.check {
  name = "system",
  description = "CPU, memory, swap, load, open files and filesystems of this host (and its cgroup limits)",
  parse = parse,
  options = {
    disk_path = { "string", default = "/", description = "a path on the filesystem whose usage is checked and shown as disk" },
    cpu_degraded = { "number", default = 85, description = "CPU percent at which the check is degraded" },
    cpu_unhealthy = { "number", default = 95, description = "CPU percent at which it is unhealthy" },
    memory_degraded = { "number", default = 85, description = "memory percent (MemTotal less MemAvailable) at which it is degraded" },
    memory_unhealthy = { "number", default = 95, description = "memory percent at which it is unhealthy" },
    disk_degraded = { "number", default = 85,
      description = "disk percent (used blocks of disk_path's filesystem and of every mount checked) at which it is degraded" },
    disk_unhealthy = { "number", default = 95, description = "disk percent at which it is unhealthy" },
    sample = { "duration", default = "250ms", description = "time between the two CPU samples of the first run" },
    mounts = { "list", optional = true,
      description = "mount points to check besides disk_path (default: every real filesystem in /proc/self/mounts; {} for none)" },
    exclude_fstypes = { "list", optional = true,
      description = "filesystem types skipped when mounts are found, instead of the default list (tmpfs, network and kernel filesystems)" },
    inode_degraded = { "number", default = 85, description = "inode percent (used inodes of a filesystem) at which it is degraded" },
    inode_unhealthy = { "number", default = 95, description = "inode percent at which it is unhealthy" },
    swap_degraded = { "number", default = 80, description = "swap percent (SwapTotal less SwapFree) at which it is degraded" },
    swap_unhealthy = { "number", default = 95, description = "swap percent at which it is unhealthy" },
    load_degraded = { "number", default = 2, description = "5-minute load average per CPU at which it is degraded" },
    load_unhealthy = { "number", default = 4, description = "5-minute load average per CPU at which it is unhealthy" },
    fd_degraded = { "number", default = 80, description = "open files percent (of fs.file-max) at which it is degraded" },
    fd_unhealthy = { "number", default = 95, description = "open files percent at which it is unhealthy" },
    cgroup = { "boolean", default = true,
      description = "judge CPU and memory against this process's cgroup limits (cpu.max, memory.max) when it has any" },
  },
  -- at load (and reload): what the option types cannot say
  validate = function(opt)
    if opt.mounts then
      local ok, err = string_list(opt.mounts, "mounts", true)
      if not ok then return err end
    end
    if opt.exclude_fstypes then
      local ok, err = string_list(opt.exclude_fstypes, "exclude_fstypes")
      if not ok then return err end
    end
  end,
  run = function(opt, ctx)
    local exclude = {}
    if opt.exclude_fstypes then
      for _, t in ipairs(opt.exclude_fstypes) do exclude[t] = true end
    else
      for _, t in ipairs(DEFAULT_EXCLUDE) do exclude[t] = true end
    end

    -- CPU: the host's, and the cgroup's against its quota when there is one
    local now, err = cpu_sample(ctx, opt.cgroup)
    if not now then return ctx.unknown(err) end
    local prev = ctx.state.cpu
    if not prev or now.at - prev.at < opt.sample then
      ctx.sleep(opt.sample)
      prev = now
      now, err = cpu_sample(ctx, opt.cgroup)
      if not now then return ctx.unknown(err) end
    end
    local dt = now.total - prev.total
    local host_cpu = dt > 0 and math.max(0, math.min(100, (now.busy - prev.busy) / dt * 100)) or 0
    local stat = now.stat
    now.stat = nil
    ctx.state.cpu = now
    local cg, pcg = now.cg or {}, prev.cg or {}
    local cpu, cg_cpu = host_cpu, nil
    local wall = now.at - prev.at
    if cg.cpus and cg.cpu_usage and pcg.cpu_usage and cg.cpu_at == pcg.cpu_at and wall > 0
      and cg.cpu_usage >= pcg.cpu_usage then
      cg_cpu = (cg.cpu_usage - pcg.cpu_usage) / (wall * cg.cpus) * 100
      cpu = cg_cpu
    end

    -- memory: the host's, or the cgroup's against its limit when it has one below MemTotal
    local mi
    mi, err = ctx.read_file("/proc/meminfo", 16384)
    if not mi then return ctx.unknown(err) end
    local m = parse.meminfo(mi)
    if not m.total or not m.available or m.total == 0 then return ctx.unknown("/proc/meminfo: unexpected format") end
    local host_mem = math.max(0, math.min(100, (m.total - m.available) / m.total * 100))
    local mem = host_mem
    local cg_mem_limit
    if cg.mem_limit and cg.mem_used and cg.mem_limit < m.total then
      cg_mem_limit = cg.mem_limit
      mem = cg.mem_used / cg.mem_limit * 100
    end
    local swap
    if m.swap_total and m.swap_free and m.swap_total > 0 then
      swap = math.max(0, math.min(100, (m.swap_total - m.swap_free) / m.swap_total * 100))
    end

    -- disk_path, as before: its failure makes the check unknown
    local du
    du, err = fs_usage(ctx, opt.disk_path)
    if not du then return ctx.unknown(err) end
    local disk = du.percent or 0

    -- every other filesystem
    local list
    if opt.mounts then
      list = {}
      for _, p in ipairs(opt.mounts) do list[#list + 1] = { path = p } end
    else
      local text = read(ctx, "/proc/self/mounts", MOUNTS_MAX)
      -- a table longer than that: its last line may be cut, so it goes
      if text and #text >= MOUNTS_MAX then text = text:match("^(.*\n)") end
      list = parse.mounts(text, exclude)
    end
    local filesystems, mount_errors, skipped = {}, {}, 0
    local fs_entries = {}
    for _, mt in ipairs(list) do
      if #fs_entries >= MAX_MOUNTS then
        skipped = skipped + 1
      elseif mt.path ~= opt.disk_path then
        local u, uerr = fs_usage(ctx, mt.path)
        if u then
          -- a filesystem of 0 blocks is a pseudo one (unless it was asked for)
          if u.total > 0 or opt.mounts then
            fs_entries[#fs_entries + 1] = { path = mt.path, u = u }
          end
        else
          mount_errors[#mount_errors + 1] = tostring(uerr)
        end
      end
    end
    table.insert(fs_entries, 1, { path = opt.disk_path, u = du })
    for _, e in ipairs(fs_entries) do
      filesystems[#filesystems + 1] = { path = e.path, disk_percent = e.u.percent, inode_percent = e.u.inode_percent,
        total_bytes = e.u.total, available_bytes = e.u.available }
    end

    -- load per CPU, open files
    local l1, l5, l15 = parse.loadavg(read(ctx, "/proc/loadavg", 256))
    local ncpu = cpu_count(ctx, stat)
    local per_core = l5 and ncpu and l5 / ncpu or nil
    local fd_used, fd_max = parse.file_nr(read(ctx, "/proc/sys/fs/file-nr", 256))
    local fd = fd_used and math.min(100, fd_used / fd_max * 100) or nil

    local details = {
      cpu_percent = cpu, memory_percent = mem, disk_percent = disk, disk_path = opt.disk_path,
      load_1m = l1, load_5m = l5, load_15m = l15, cpu_count = ncpu, load_per_cpu = per_core,
      swap_percent = swap, open_files = fd_used, open_files_max = fd_max, open_files_percent = fd,
      inode_percent = du.inode_percent, filesystems = filesystems,
      mount_errors = #mount_errors > 0 and mount_errors or nil,
      mounts_not_checked = skipped > 0 and skipped or nil,
      host_cpu_percent = host_cpu, host_memory_percent = host_mem,
      cgroup_version = cg.version, cgroup_cpus = cg.cpus, cgroup_memory_limit_bytes = cg_mem_limit,
      cgroup_memory_bytes = cg_mem_limit and cg.mem_used or nil,
    }
    beagle.set_gauge("system.cpu_percent", cpu)
    beagle.set_gauge("system.memory_percent", mem)
    if swap then beagle.set_gauge("system.swap_percent", swap) end
    if per_core then beagle.set_gauge("system.load_per_cpu", per_core) end
    -- not "system.cpu_count": Prometheus reads a "_count" suffix as part of a histogram
    if ncpu then beagle.set_gauge("system.cpus", ncpu) end
    if fd then beagle.set_gauge("system.open_files_percent", fd) end
    if cg_cpu then beagle.set_gauge("system.cgroup_cpu_limit", cg.cpus) end
    if cg_mem_limit then beagle.set_gauge("system.cgroup_memory_limit_bytes", cg_mem_limit) end
    for _, f in ipairs(filesystems) do
      if f.disk_percent then beagle.set_gauge("system.disk_percent", f.disk_percent, { path = f.path }) end
      if f.inode_percent then beagle.set_gauge("system.inode_percent", f.inode_percent, { path = f.path }) end
    end

    local worst, why = 0, {}
    local function judge(label, v, degraded, unhealthy, fmt)
      local l = level(v, degraded, unhealthy)
      if l > 0 then why[#why + 1] = (fmt or "%s %.1f%%"):format(label, v) end
      if l > worst then worst = l end
    end
    judge("cpu", cpu, opt.cpu_degraded, opt.cpu_unhealthy)
    judge("memory", mem, opt.memory_degraded, opt.memory_unhealthy)
    for i, f in ipairs(filesystems) do
      judge(i == 1 and "disk" or "disk " .. f.path, f.disk_percent, opt.disk_degraded, opt.disk_unhealthy)
      judge("inodes " .. f.path, f.inode_percent, opt.inode_degraded, opt.inode_unhealthy)
    end
    judge("swap", swap, opt.swap_degraded, opt.swap_unhealthy)
    judge("load", per_core, opt.load_degraded, opt.load_unhealthy, "%s %.2f per cpu")
    judge("open files", fd, opt.fd_degraded, opt.fd_unhealthy)
    local summary = ("cpu %.1f%%, memory %.1f%%, disk %.1f%%"):format(cpu, mem, disk)
    if worst == 2 then return ctx.unhealthy("high " .. table.concat(why, ", ") .. " (" .. summary .. ")", details) end
    if worst == 1 then return ctx.degraded("elevated " .. table.concat(why, ", ") .. " (" .. summary .. ")", details) end
    if opt.mounts and #mount_errors > 0 then
      return ctx.degraded(mount_errors[1] .. (#mount_errors > 1 and (" (and %d more)"):format(#mount_errors - 1) or "")
        .. " (" .. summary .. ")", details)
    end
    return ctx.healthy(summary, details)
  end,
}
