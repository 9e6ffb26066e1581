-- The system check's parsers (pure functions of a /proc, /sys or cgroup file's text) with real,
-- odd and hostile inputs, and its run with those files faked: per-mount disks, inodes, swap,
-- load per CPU, open files and cgroup v1/v2 limits.
local beagle = require "beagle"
do -- what the sandbox gives a plugin's copy of beagle on first use
  local api = require("agent.metrics").plugin_api()
  for k in pairs(beagle.metric_keys) do beagle[k] = api[k] end
end

local function load_plugin()
  local chunk = assert(loadfile("plugins/checks/system.lua"))
  setfenv(chunk, setmetatable({ beagle = beagle }, { __index = _G }))
  return chunk()
end

local P = load_plugin().parse

-- every parser, every hostile input: never raises
local HOSTILE = { "", "\n", "\0\0\0", ("x"):rep(100000), "-1 -2 -3", "1e400 1e400 1e400 1/1 1",
  "nan nan nan", "inf inf inf", "0x10 0x10 0x10", "   ", "cpu", "cpu  \n", "9999999999999999999999 1 1",
  "1:2:3:4", "0::", "0::relative", ":::", "max", "max max", "/ / / / /", "\\777\\000 / ext4",
  12, {}, true }

describe("system check parsers", function()
  it("never raise, whatever the text", function()
    for name, fn in pairs(P) do
      for i = 0, #HOSTILE do -- 0: nil
        local ok, err = pcall(fn, HOSTILE[i])
        assert.is_true(ok, ("%s(%s): %s"):format(name, tostring(HOSTILE[i]):sub(1, 40), tostring(err)))
      end
    end
  end)

  it("/proc/stat: the cpu line, with 4 to 10 fields, nil for garbage", function()
    local s = P.stat_cpu("cpu  100 5 50 800 20 3 2 1 0 0\ncpu0 1 2 3 4\n")
    assert.are.same({ busy = 161, total = 981 }, s)
    assert.are.same({ busy = 3, total = 7 }, P.stat_cpu("cpu 1 1 1 4\n")) -- an old kernel
    assert.is_nil(P.stat_cpu("cpu 1 2 3\n"))
    assert.is_nil(P.stat_cpu("cpu0 1 2 3 4\n")) -- not the total line
    assert.is_nil(P.stat_cpu("cpu 1 -2 3 4\n"))
    assert.is_nil(P.stat_cpu("cpu 1 1e400 3 4\n"))
    assert.is_nil(P.stat_cpu("intr 1 2 3 4\ncpu 1 2 3 4\n")) -- must be first
    assert.are.equal(2, P.stat_cpus("cpu 1 2 3 4\ncpu0 1 2 3 4\ncpu1 1 2 3 4\nintr 5\n"))
    assert.is_nil(P.stat_cpus("cpu 1 2 3 4\n"))
  end)

  it("the online CPU list", function()
    assert.are.equal(4, P.cpu_list("0-3\n"))
    assert.are.equal(7, P.cpu_list("0-3,8,10-11\n"))
    assert.are.equal(1, P.cpu_list("0"))
    for _, bad in ipairs { "", "\n", "3-1", "a-b", "0,,1", "0-", "-1", "0-99999999", "1,x", "0 - 3" } do
      assert.is_nil(P.cpu_list(bad), bad)
    end
  end)

  it("/proc/meminfo in bytes, swap included, absent keys nil", function()
    local m = P.meminfo("MemTotal:       1000 kB\nMemFree: 10 kB\nMemAvailable:    400 kB\nSwapTotal: 200 kB\nSwapFree: 50 kB\n")
    assert.are.same({ total = 1024000, available = 409600, swap_total = 204800, swap_free = 51200 }, m)
    m = P.meminfo("MemTotal: 1000 kB\n")
    assert.are.equal(1024000, m.total)
    assert.is_nil(m.available)
    -- a key is matched at a line's start only
    assert.is_nil(P.meminfo("XMemTotal: 5 kB\n").total)
  end)

  it("/proc/loadavg, /proc/sys/fs/file-nr", function()
    assert.are.same({ 1.5, 0.75, 0.3 }, { P.loadavg("1.50 0.75 0.30 2/345 6789\n") })
    assert.is_nil(P.loadavg("1.5 0.7\n"))
    assert.is_nil(P.loadavg("-1 0 0 1/1 1\n"))
    assert.is_nil(P.loadavg("nan nan nan 1/1 1\n"))
    assert.are.same({ 1024, 9223372036854775807 }, { P.file_nr("1024\t0\t9223372036854775807\n") })
    assert.are.same({ 90, 1000 }, { P.file_nr("100 10 1000\n") }) -- allocated less unused
    assert.is_nil(P.file_nr("5 10 100\n"))
    assert.is_nil(P.file_nr("5 0 0\n"))
    assert.is_nil(P.file_nr("5 0\n"))
  end)

  it("/proc/self/mounts: real filesystems, escapes, repeats and hidden mounts", function()
    local text = table.concat({
      "proc /proc proc rw,nosuid 0 0",
      "sysfs /sys sysfs rw 0 0",
      "/dev/vda1 / ext4 rw,relatime 0 0",
      "tmpfs /run tmpfs rw 0 0",
      "/dev/vdb1 /srv/my\\040data xfs rw 0 0",
      "/dev/vda1 /etc/hosts ext4 rw 0 0", -- a bind mount of the root filesystem
      "server:/export /mnt/nfs nfs4 rw 0 0",
      "sshfs#x /mnt/ssh fuse.sshfs rw 0 0",
      "overlay /var/lib/c overlay rw 0 0",
      "/dev/vdc1 /data ext4 rw 0 0",
      "/dev/vdd1 /data xfs rw 0 0", -- mounted over: the later one is what /data is
      "/dev/vde1 /hidden ext4 rw 0 0",
      "tmpfs /hidden tmpfs rw 0 0", -- an excluded filesystem over a checked one hides it
      "garbage",
      "a b c d",
      "/dev/loop0 /snap/core squashfs ro 0 0",
    }, "\n") .. "\n"
    local ex = {}
    for _, t in ipairs { "proc", "sysfs", "tmpfs", "nfs4", "fuse.sshfs", "squashfs" } do ex[t] = true end
    local got = {}
    for _, m in ipairs(P.mounts(text, ex)) do got[#got + 1] = m.path .. " " .. m.fstype end
    assert.are.same({ "/ ext4", "/srv/my data xfs", "/var/lib/c overlay", "/data xfs" }, got)
    -- "fuse" excludes every fuse.* type
    got = {}
    for _, m in ipairs(P.mounts("a /x fuse.sshfs rw 0 0\nb /y fuse.portal rw 0 0\nc /z fuseblk rw 0 0\n", { fuse = true })) do
      got[#got + 1] = m.path
    end
    assert.are.same({ "/z" }, got)
    assert.are.same({}, P.mounts(nil))
  end)

  it("/proc/self/cgroup: v2, v1 and the hybrid layout", function()
    local c = P.proc_cgroup("0::/system.slice/beagle.service\n")
    assert.are.equal("/system.slice/beagle.service", c.v2)
    c = P.proc_cgroup("12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/x\n0::/\n")
    assert.are.equal("/", c.v2)
    assert.are.equal("/docker/abc", c.v1.memory)
    assert.are.equal("/docker/abc", c.v1.cpuacct)
    assert.are.equal("cpu,cpuacct", c.v1dirs.cpu)
    -- a path with a colon stays whole
    assert.are.equal("/a:b", P.proc_cgroup("0::/a:b\n").v2)
    assert.is_nil(P.proc_cgroup("garbage\n0:/x\n").v2)
  end)

  it("limits: memory.max, limit_in_bytes, cpu.max", function()
    assert.are.equal(536870912, P.limit("536870912\n"))
    assert.is_nil(P.limit("max\n"))
    assert.is_nil(P.limit("9223372036854771712\n")) -- v1's "no limit"
    assert.is_nil(P.limit("-1\n"))
    assert.is_nil(P.limit("0\n"))
    assert.is_nil(P.limit("12abc\n"))
    assert.are.equal(2, P.cpu_max("200000 100000\n"))
    assert.are.equal(0.5, P.cpu_max("50000 100000"))
    assert.is_nil(P.cpu_max("max 100000\n"))
    assert.is_nil(P.cpu_max("0 100000\n"))
    assert.is_nil(P.cpu_max("100000 0\n"))
    assert.are.same({ usage_usec = 123, user_usec = 100 }, P.kv("usage_usec 123\nuser_usec 100\nbad line here\nx 1 2\n"))
  end)
end)

-- ---- runs with fake files -------------------------------------------------------------------

-- files: path -> text (or a function returning text); statvfs: path -> { total, avail[, files, ffree] }
local function fake_ctx(files, statvfs)
  local ctx = { state = {} }
  local clock = 0
  function ctx.now() return clock end
  function ctx.sleep(s) clock = clock + s end
  function ctx.read_file(path)
    local f = files[path]
    if type(f) == "function" then f = f() end
    if f then return f end
    return nil, path .. ": no such file or directory"
  end
  function ctx.statvfs(path)
    local v = statvfs[path]
    if not v then return nil, path .. ": no such file or directory" end
    return unpack(v)
  end
  local function result(status)
    return function(msg, details) return { status = status, message = msg, details = details } end
  end
  ctx.healthy, ctx.degraded, ctx.unhealthy, ctx.unknown =
    result("healthy"), result("degraded"), result("unhealthy"), result("unknown")
  return ctx
end

-- a host at cpu 40%, memory 50%, no swap, load 1.0 on 4 CPUs, 1000 of 100000 files open
local function host(over)
  local busy, idle = 1000, 1000
  local files = {
    ["/proc/stat"] = function()
      busy, idle = busy + 40, idle + 60
      return ("cpu  %d 0 0 %d 0 0 0 0 0 0\ncpu0 1 2 3 4\n"):format(busy, idle)
    end,
    ["/proc/meminfo"] = "MemTotal: 1000000 kB\nMemAvailable: 500000 kB\nSwapTotal: 0 kB\nSwapFree: 0 kB\n",
    ["/proc/loadavg"] = "1.00 1.00 1.00 1/100 1\n",
    ["/sys/devices/system/cpu/online"] = "0-3\n",
    ["/proc/sys/fs/file-nr"] = "1000 0 100000\n",
    ["/proc/self/mounts"] = "/dev/vda1 / ext4 rw 0 0\n/dev/vdb1 /data xfs rw 0 0\ntmpfs /run tmpfs rw 0 0\n",
  }
  local vfs = { ["/"] = { 1000, 700, 100, 90 }, ["/data"] = { 1000, 600, 1000, 500 }, ["/run"] = { 10, 0 } }
  for k, v in pairs(over or {}) do
    if k:sub(1, 1) == "@" then vfs[k:sub(2)] = v ~= false and v or nil else files[k] = v ~= false and v or nil end
  end
  return fake_ctx(files, vfs)
end

local function run(ctx, given)
  local p = load_plugin()
  local opts = assert(beagle.validate_options(p.options, given or {}))
  return p.run(opts, ctx)
end

local function near(a, b) return type(a) == "number" and math.abs(a - b) < 1e-6 end

describe("system check run", function()
  it("checks every real filesystem, inodes, load per CPU and open files", function()
    local r = run(host())
    assert.are.equal("healthy", r.status, r.message)
    assert.are.equal("cpu 40.0%, memory 50.0%, disk 30.0%", r.message)
    local d = r.details
    assert.are.equal(2, #d.filesystems) -- /run is tmpfs: excluded
    assert.are.equal("/", d.filesystems[1].path)
    assert.are.equal("/data", d.filesystems[2].path)
    assert.is_true(near(d.filesystems[2].disk_percent, 40))
    assert.is_true(near(d.filesystems[2].inode_percent, 50))
    assert.is_true(near(d.inode_percent, 10))
    assert.are.equal(4, d.cpu_count)
    assert.is_true(near(d.load_per_cpu, 0.25))
    assert.is_true(near(d.open_files_percent, 1))
    assert.is_nil(d.swap_percent) -- no swap: not judged
    assert.is_nil(d.cgroup_version)
  end)

  it("names each metric past its threshold", function()
    local r = run(host { ["@/data"] = { 1000, 100, 1000, 500 } })
    assert.are.equal("degraded", r.status)
    assert.are.equal("elevated disk /data 90.0% (cpu 40.0%, memory 50.0%, disk 30.0%)", r.message)
    r = run(host { ["@/data"] = { 1000, 600, 1000, 10 } })
    assert.are.equal("unhealthy", r.status)
    assert.truthy(r.message:find("inodes /data 99.0%", 1, true), r.message)
    r = run(host { ["/proc/meminfo"] = "MemTotal: 1000 kB\nMemAvailable: 500 kB\nSwapTotal: 100 kB\nSwapFree: 10 kB\n" })
    assert.are.equal("degraded", r.status)
    assert.truthy(r.message:find("swap 90.0%", 1, true), r.message)
    r = run(host { ["/proc/loadavg"] = "9 9 9.00 1/1 1\n" })
    assert.are.equal("degraded", r.status)
    assert.truthy(r.message:find("load 2.25 per cpu", 1, true), r.message)
    r = run(host { ["/proc/sys/fs/file-nr"] = "99000 0 100000\n" })
    assert.are.equal("unhealthy", r.status)
    assert.truthy(r.message:find("open files 99.0%", 1, true), r.message)
    r = run(host(), { fd_degraded = 0.5, load_unhealthy = 0.2 })
    assert.are.equal("unhealthy", r.status)
    assert.truthy(r.message:find("load 0.25 per cpu, open files 1.0%", 1, true), r.message)
  end)

  it("takes mounts and exclude_fstypes, and names a bad one", function()
    local r = run(host { ["@/srv"] = { 100, 1 } }, { mounts = { "/srv" } })
    assert.are.equal("unhealthy", r.status)
    assert.truthy(r.message:find("disk /srv 99.0%", 1, true), r.message)
    assert.are.equal(2, #r.details.filesystems)
    r = run(host(), { mounts = {} })
    assert.are.equal(1, #r.details.filesystems)
    r = run(host(), { exclude_fstypes = { "xfs" } })
    local paths = {}
    for _, f in ipairs(r.details.filesystems) do paths[#paths + 1] = f.path end
    assert.are.same({ "/", "/run" }, paths) -- tmpfs now checked, xfs not
    -- a bad one is refused at load, by validate
    local p = load_plugin()
    assert.are.equal('option "mounts": "srv" is not an absolute path',
      p.validate(assert(beagle.validate_options(p.options, { mounts = { "srv" } }))))
    local err = p.validate(assert(beagle.validate_options(p.options, { exclude_fstypes = { 5 } })))
    assert.truthy(err and err:find('option "exclude_fstypes"', 1, true), err)
    -- a listed mount that cannot be read degrades; a found one is only listed
    r = run(host(), { mounts = { "/gone" } })
    assert.are.equal("degraded", r.status)
    assert.truthy(r.message:find("/gone: no such file", 1, true), r.message)
    r = run(host { ["@/data"] = false })
    assert.are.equal("healthy", r.status, r.message)
    assert.are.same({ "/data: no such file or directory" }, r.details.mount_errors)
  end)

  it("does not ask a statvfs again while one has not returned", function()
    local ctx = host()
    ctx.state.statvfs_pending = { ["/data"] = 0 }
    local asked = {}
    local sv = ctx.statvfs
    ctx.statvfs = function(p) asked[p] = true return sv(p) end
    local r = run(ctx)
    assert.is_nil(asked["/data"])
    assert.truthy(r.details.mount_errors[1]:find("statvfs of /data has not returned", 1, true))
    -- disk_path itself: unknown
    ctx = host()
    ctx.state.statvfs_pending = { ["/"] = 0 }
    r = run(ctx)
    assert.are.equal("unknown", r.status)
  end)

  it("degrades gracefully: statvfs without inodes, missing or garbled files", function()
    local r = run(host { ["@/"] = { 1000, 700 }, ["@/data"] = { 1000, 600 } })
    assert.are.equal("healthy", r.status)
    assert.is_nil(r.details.inode_percent)
    local junk = "\0\0garbage\n-1 x\n"
    r = run(host { ["/proc/loadavg"] = junk, ["/sys/devices/system/cpu/online"] = junk, ["/proc/sys/fs/file-nr"] = junk,
      ["/proc/self/mounts"] = junk, ["/proc/self/cgroup"] = junk })
    assert.are.equal("healthy", r.status, r.message)
    assert.is_nil(r.details.load_per_cpu)
    assert.are.equal(1, r.details.cpu_count) -- from /proc/stat's cpuN lines
    assert.is_nil(r.details.open_files_percent)
    -- a read_file that raises is the same as a missing file
    local ctx = host()
    local rf = ctx.read_file
    ctx.read_file = function(p) if p:find("^/sys") then error("boom") end return rf(p) end
    r = run(ctx)
    assert.are.equal("healthy", r.status, r.message)
  end)

  it("judges memory and CPU against cgroup v2 limits, the lowest along the path", function()
    local usage = 0
    local ctx = host {
      ["/proc/self/cgroup"] = "0::/kubepods/pod1/c1\n",
      ["/sys/fs/cgroup/cgroup.controllers"] = "cpu memory\n",
      ["/sys/fs/cgroup/kubepods/pod1/c1/cgroup.controllers"] = "cpu memory\n",
      ["/sys/fs/cgroup/kubepods/pod1/c1/memory.max"] = "max\n",
      ["/sys/fs/cgroup/kubepods/pod1/memory.max"] = "104857600\n", -- 100 MiB
      ["/sys/fs/cgroup/kubepods/memory.max"] = "209715200\n",
      ["/sys/fs/cgroup/kubepods/pod1/memory.current"] = "99614720\n", -- 95 MiB
      ["/sys/fs/cgroup/kubepods/pod1/memory.stat"] = "anon 1\ninactive_file 5242880\n", -- 5 MiB
      ["/sys/fs/cgroup/kubepods/pod1/c1/cpu.max"] = "50000 100000\n", -- half a CPU
      ["/sys/fs/cgroup/kubepods/pod1/c1/cpu.stat"] = function()
        usage = usage + 100000 -- 0.1 s of CPU per 0.25 s sample: 80 % of half a CPU
        return ("usage_usec %d\nuser_usec 1\n"):format(usage)
      end,
    }
    local r = run(ctx)
    assert.are.equal("degraded", r.status, r.message)
    local d = r.details
    assert.are.equal(2, d.cgroup_version)
    assert.are.equal(104857600, d.cgroup_memory_limit_bytes)
    assert.are.equal(94371840, d.cgroup_memory_bytes)
    assert.is_true(near(d.memory_percent, 90))
    assert.is_true(near(d.host_memory_percent, 50))
    assert.are.equal(0.5, d.cgroup_cpus)
    assert.is_true(near(d.cpu_percent, 80))
    assert.is_true(near(d.host_cpu_percent, 40))
    assert.are.equal("elevated memory 90.0% (cpu 80.0%, memory 90.0%, disk 30.0%)", r.message)
    -- cgroup = false: the host's
    r = run(host { ["/proc/self/cgroup"] = "0::/kubepods/pod1/c1\n" }, { cgroup = false })
    assert.are.equal("cpu 40.0%, memory 50.0%, disk 30.0%", r.message)
  end)

  it("in a cgroup namespace (0::/) reads the limits at /sys/fs/cgroup itself", function()
    local r = run(host {
      ["/proc/self/cgroup"] = "0::/\n",
      ["/sys/fs/cgroup/cgroup.controllers"] = "memory\n",
      ["/sys/fs/cgroup/memory.max"] = "512000000\n",
      ["/sys/fs/cgroup/memory.current"] = "51200000\n",
    })
    assert.is_true(near(r.details.memory_percent, 10))
    -- a limit above MemTotal is no limit
    r = run(host {
      ["/proc/self/cgroup"] = "0::/\n",
      ["/sys/fs/cgroup/cgroup.controllers"] = "memory\n",
      ["/sys/fs/cgroup/memory.max"] = "10485760000\n",
      ["/sys/fs/cgroup/memory.current"] = "104857600\n",
    })
    assert.is_true(near(r.details.memory_percent, 50))
    assert.is_nil(r.details.cgroup_memory_limit_bytes)
  end)

  it("falls back to cgroup v1 (and to the hierarchy's root in a container)", function()
    local ns = 0
    local r = run(host {
      ["/proc/self/cgroup"] = "5:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n0::/\n",
      -- the hybrid layout: a v2 hierarchy without controllers, not at /sys/fs/cgroup
      ["/sys/fs/cgroup/memory/memory.limit_in_bytes"] = "209715200\n",
      ["/sys/fs/cgroup/memory/memory.usage_in_bytes"] = "52428800\n",
      ["/sys/fs/cgroup/memory/memory.stat"] = "total_inactive_file 10485760\nhierarchical_memory_limit 104857600\n",
      ["/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us"] = "200000\n",
      ["/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us"] = "100000\n",
      ["/sys/fs/cgroup/cpu,cpuacct/cpuacct.usage"] = function()
        ns = ns + 250000000 -- 0.25 s per 0.25 s: half of 2 CPUs
        return tostring(ns) .. "\n"
      end,
    })
    local d = r.details
    assert.are.equal(1, d.cgroup_version)
    assert.are.equal(104857600, d.cgroup_memory_limit_bytes) -- the hierarchical limit is lower
    assert.is_true(near(d.memory_percent, 40))
    assert.are.equal(2, d.cgroup_cpus)
    assert.is_true(near(d.cpu_percent, 50))
    -- no quota (-1), no limit (v1's huge number): the host's
    r = run(host {
      ["/proc/self/cgroup"] = "4:memory:/x\n2:cpuacct:/\n1:cpu:/\n0::/\n",
      ["/sys/fs/cgroup/memory/x/memory.limit_in_bytes"] = "9223372036854771712\n",
      ["/sys/fs/cgroup/memory/x/memory.usage_in_bytes"] = "57688064\n",
      ["/sys/fs/cgroup/cpu/cpu.cfs_quota_us"] = "-1\n",
      ["/sys/fs/cgroup/cpu/cpu.cfs_period_us"] = "100000\n",
      ["/sys/fs/cgroup/cpuacct/cpuacct.usage"] = "123\n",
    })
    assert.are.equal("cpu 40.0%, memory 50.0%, disk 30.0%", r.message)
    assert.is_nil(r.details.cgroup_version)
  end)
end)
