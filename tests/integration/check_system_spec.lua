-- The built-in system check in a running agent on this host: every real filesystem, load per
-- CPU, open files and swap from the real /proc and /sys, the gauges in /metrics, thresholds
-- per metric, bad options; and cgroup limits, with the agent moved into a cgroup this spec
-- makes (root, cgroup v1 or v2; pending where the machine does not let it).
local S = require "support"

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("*a")
  p:close()
  return out
end

local function write(path, text)
  local f, err = io.open(path, "w")
  if not f then return nil, err end
  local ok, werr = f:write(text)
  local cok, cerr = f:close()
  if not ok or not cok then return nil, werr or cerr end
  return true
end

local function first_line(path)
  local f = io.open(path, "r")
  if not f then return nil end
  local l = f:read("*l")
  f:close()
  return l
end

local CALM = "cpu_degraded = 101, cpu_unhealthy = 102, memory_degraded = 101, memory_unhealthy = 102, "
  .. "disk_degraded = 101, disk_unhealthy = 102, inode_degraded = 101, inode_unhealthy = 102, swap_degraded = 101, "
  .. "swap_unhealthy = 102, load_degraded = 1e9, load_unhealthy = 2e9, fd_degraded = 101, fd_unhealthy = 102"

describe("system check", function()
  local agent
  setup(function()
    agent = S.start {
      config = ([[
check "system" { plugin = "system", interval = "1s", %s }
check "sys_fd" { plugin = "system", interval = "1s", mounts = {}, %s, fd_degraded = 0 }
check "sys_load" { plugin = "system", interval = "1s", mounts = {}, %s, load_unhealthy = 0 }
check "sys_gone" { plugin = "system", interval = "1s", mounts = { "/no/such/mount/h4" }, %s, retries = 0 }
check "sys_types" { plugin = "system", interval = "1s", %s,
  exclude_fstypes = { "ext4", "xfs", "btrfs", "overlay", "tmpfs", "devtmpfs", "proc", "sysfs", "cgroup", "cgroup2" } }
]]):format(CALM, CALM:gsub("fd_degraded = 101, ", ""),
        CALM:gsub("load_degraded = 1e9, load_unhealthy = 2e9, ", "load_degraded = 0, "), CALM, CALM),
    }
  end)
  teardown(function()
    if agent then agent:stop() end
  end)

  local function result(name, pred)
    local o = agent:wait_check(name, function(c) return c.runs and c.runs > 0 and (not pred or pred(c)) end, 15)
    assert.is_truthy(o, "check " .. name .. " did not run:\n" .. agent:logtext())
    return o
  end

  it("reads this host: every real filesystem, load per CPU, open files, swap", function()
    local o = result("system")
    assert.are.equal("healthy", o.status, o.message)
    assert.truthy(o.message:find("^cpu [%d.]+%%, memory [%d.]+%%, disk [%d.]+%%$"), o.message)
    local d = o.details
    assert.are.equal("/", d.filesystems[1].path)
    assert.is_number(d.filesystems[1].disk_percent)
    assert.is_true(d.filesystems[1].total_bytes > 0)
    -- the mounts it found are the real ones of /proc/self/mounts: no proc, sysfs, cgroup, tmpfs
    local fstype = {}
    for line in io.lines("/proc/self/mounts") do
      local path, t = line:match("^%S+%s+(%S+)%s+(%S+)")
      if path then fstype[path:gsub("\\040", " ")] = t end
    end
    for _, f in ipairs(d.filesystems) do
      local t = fstype[f.path]
      if f.path ~= "/" then
        assert.is_truthy(t, f.path .. " is not a mount point")
        local pseudo = { proc = 1, sysfs = 1, cgroup = 1, cgroup2 = 1, tmpfs = 1, devtmpfs = 1, devpts = 1 }
        assert.is_falsy(pseudo[t], f.path .. " " .. tostring(t))
      end
    end
    local ncpu = tonumber(sh("nproc --all"):match("%d+"))
    local online = first_line("/sys/devices/system/cpu/online")
    if online and online:match("^0%-(%d+)$") then ncpu = tonumber(online:match("^0%-(%d+)$")) + 1 end
    assert.are.equal(ncpu, d.cpu_count)
    assert.is_true(math.abs(d.load_per_cpu - d.load_5m / d.cpu_count) < 1e-9)
    local nr = first_line("/proc/sys/fs/file-nr")
    local fmax = tonumber(nr:match("%d+%s+%d+%s+(%d+)"))
    assert.are.equal(fmax, d.open_files_max)
    assert.is_true(d.open_files > 0)
    local mi = io.open("/proc/meminfo"):read("*a")
    if tonumber(mi:match("SwapTotal:%s+(%d+)")) > 0 then assert.is_number(d.swap_percent) else assert.is_nil(d.swap_percent) end
    assert.is_number(d.host_cpu_percent)
    assert.is_number(d.host_memory_percent)

    local _, body = agent:get("/metrics")
    for _, m in ipairs { 'system_disk_percent{path="/"}', "system_load_per_cpu", "system_cpus", "system_open_files_percent" } do
      assert.truthy(body:find("\n" .. m:gsub("[%[%]%(%)%.%%%+%-%*%?%^%${}]", "%%%0") .. " [%d.e+-]+\n"),
        m .. " not in /metrics:\n" .. body:sub(1, 3000))
    end
    -- inodes where ctx.statvfs reports them (its 3rd and 4th returns)
    if d.filesystems[1].inode_percent then
      assert.truthy(body:find('\nsystem_inode_percent{path="/"} [%d.e+-]+\n'), body:sub(1, 3000))
    end
  end)

  it("judges each metric against its own threshold", function()
    local o = result("sys_fd", function(c) return c.status ~= "healthy" end)
    assert.are.equal("degraded", o.status)
    assert.truthy(o.message:find("^elevated open files [%d.]+%% %(cpu"), o.message)
    o = result("sys_load", function(c) return c.status ~= "healthy" end)
    assert.are.equal("unhealthy", o.status)
    assert.truthy(o.message:find("^high load [%d.]+ per cpu %(cpu"), o.message)
  end)

  it("reports a listed mount it cannot read", function()
    local o = result("sys_gone")
    assert.are.equal("degraded", o.status)
    assert.truthy(o.message:find("/no/such/mount/h4", 1, true), o.message)
  end)

  it("refuses a bad mounts or exclude_fstypes at load, naming the file and line, the check and the option", function()
    for _, case in ipairs {
      { 'check "sys_bad" { plugin = "system", mounts = { "relative" } }',
        'option "mounts": "relative" is not an absolute path' },
      { 'check "sys_bad_types" { plugin = "system", exclude_fstypes = { "ext4", "" } }',
        'option "exclude_fstypes": item 2 must be a non-empty string' },
    } do
      local name = case[1]:match('check "([^"]+)"')
      assert.are.equal(('beagle.lua:%d: check "%s": %s'):format(S.calm_lines + 1, name, case[2]),
        S.refused(case[1] .. "\n"))
    end
  end)

  it("skips the filesystem types it is told to", function()
    local o = result("sys_types")
    local excluded = { ext4 = 1, xfs = 1, btrfs = 1, overlay = 1, tmpfs = 1, devtmpfs = 1, proc = 1, sysfs = 1,
      cgroup = 1, cgroup2 = 1 }
    local fstype = {}
    for line in io.lines("/proc/self/mounts") do
      local path, t = line:match("^%S+%s+(%S+)%s+(%S+)")
      if path then fstype[path:gsub("\\040", " ")] = t end
    end
    assert.are.equal("/", o.details.filesystems[1].path) -- disk_path, always checked
    for i = 2, #o.details.filesystems do
      local f = o.details.filesystems[i]
      assert.is_falsy(excluded[fstype[f.path] or "?"], f.path .. " is " .. tostring(fstype[f.path]))
    end
  end)
end)

-- A cgroup of this spec's own, with a memory limit and a CPU quota, the agent moved into it.
local function make_cgroup(name)
  if first_line("/sys/fs/cgroup/cgroup.controllers") then -- v2, mounted at /sys/fs/cgroup
    local dir = "/sys/fs/cgroup/" .. name
    write("/sys/fs/cgroup/cgroup.subtree_control", "+memory +cpu")
    if not sh(("mkdir %q && echo ok"):format(dir)):find("ok") then return nil, "cannot mkdir " .. dir end
    local cg = { version = 2, dirs = { dir } }
    local ok, err = write(dir .. "/memory.max", "268435456")
    if ok then ok, err = write(dir .. "/cpu.max", "50000 100000") end
    if not ok then sh(("rmdir %q"):format(dir)) return nil, tostring(err) end
    function cg.enter(pid) return write(dir .. "/cgroup.procs", tostring(pid)) end
    return cg
  end
  local mem, cpu, acct = "/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct"
  if not first_line(mem .. "/memory.limit_in_bytes") or not first_line(cpu .. "/cpu.cfs_quota_us") then
    return nil, "no cgroup v1 memory and cpu hierarchies at /sys/fs/cgroup"
  end
  local dirs = { mem .. "/" .. name, cpu .. "/" .. name }
  -- cpuacct: the same hierarchy as cpu (cpu,cpuacct) or one of its own
  if first_line(acct .. "/cpuacct.usage") and not first_line(cpu .. "/cpuacct.usage") then dirs[3] = acct .. "/" .. name end
  local made = {}
  local cg = { version = 1, dirs = made }
  for _, d in ipairs(dirs) do
    if not sh(("mkdir %q && echo ok"):format(d)):find("ok") then
      for _, m in ipairs(made) do sh(("rmdir %q"):format(m)) end
      return nil, "cannot mkdir " .. d
    end
    made[#made + 1] = d
  end
  local ok, err = write(dirs[1] .. "/memory.limit_in_bytes", "268435456")
  if ok then ok, err = write(dirs[2] .. "/cpu.cfs_period_us", "100000") end
  if ok then ok, err = write(dirs[2] .. "/cpu.cfs_quota_us", "50000") end
  if not ok then
    for _, m in ipairs(made) do sh(("rmdir %q"):format(m)) end
    return nil, tostring(err)
  end
  function cg.enter(pid)
    for _, d in ipairs(made) do
      local wok, werr = write(d .. "/cgroup.procs", tostring(pid))
      if not wok then return nil, werr end
    end
    return true
  end
  return cg
end

describe("system check under cgroup limits", function()
  local agent, cg
  local name = "beagle-spec-" .. tostring(os.time()) .. "-" .. tostring(math.random(1e6))
  teardown(function()
    if agent then agent:stop() end
    if cg then
      for i = #cg.dirs, 1, -1 do
        -- the stopped agent may take a moment to leave
        S.wait(function() return sh(("rmdir %q && echo ok"):format(cg.dirs[i])):find("ok") end, 5)
      end
    end
  end)

  it("judges memory against the cgroup's limit and CPU against its quota", function()
    local err
    cg, err = make_cgroup(name)
    if not cg then
      pending("cannot make a cgroup with limits here (" .. tostring(err) .. ")")
      return
    end
    agent = S.start { config = ([[check "system" { plugin = "system", interval = "1s", %s }]]):format(CALM) }
    local ok, eerr = cg.enter(agent.pid)
    assert.is_truthy(ok, "moving the agent into the cgroup: " .. tostring(eerr))
    local o = agent:wait_check("system", function(c) return c.details and c.details.cgroup_version end, 15)
    assert.is_truthy(o, "the system check never saw the cgroup:\n" .. agent:logtext())
    local d = o.details
    assert.are.equal(cg.version, d.cgroup_version)
    assert.are.equal(268435456, d.cgroup_memory_limit_bytes)
    assert.is_number(d.cgroup_memory_bytes)
    assert.is_true(math.abs(d.memory_percent - d.cgroup_memory_bytes / 268435456 * 100) < 1e-6)
    assert.are.equal(0.5, d.cgroup_cpus)
    -- CPU against the quota once a sample pair lies inside the cgroup
    o = agent:wait_check("system", function(c) return c.runs and c.runs >= (o.runs or 0) + 2 end, 15)
    assert.is_truthy(o)
    assert.is_number(o.details.cpu_percent)
    assert.is_number(o.details.host_cpu_percent)
    local _, body = agent:get("/metrics")
    assert.truthy(body:find("\nsystem_cgroup_memory_limit_bytes 268435456\n", 1, true), body:sub(1, 3000))
    assert.truthy(body:find("\nsystem_cgroup_cpu_limit 0.5\n", 1, true), body:sub(1, 3000))
  end)
end)
