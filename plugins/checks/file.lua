-- A file exists (or must not), is fresh enough, of a size within bounds, on a filesystem with
-- enough free space: metadata only, through ctx.stat and ctx.statvfs (on the loop's thread
-- pool, so a hung mount holds a pool thread, never the loop). Gauges check.file.age_seconds,
-- check.file.size_bytes and check.file.free_percent, each {check}.

local function human_age(s)
  if s < 120 then return ("%.0fs"):format(s) end
  if s < 7200 then return ("%.0fm"):format(s / 60) end
  if s < 172800 then return ("%.1fh"):format(s / 3600) end
  return ("%.1fd"):format(s / 86400)
end

-- problems(opt, st, now, fs) -> list of what is wrong (strings), in the options' order;
-- st from ctx.stat, fs = { total, available } or nil.
local function problems(opt, st, now, fs)
  local out = {}
  local age = now - st.mtime
  if opt.max_age and age > opt.max_age then
    out[#out + 1] = ("modified %s ago (max_age %s)"):format(human_age(age), human_age(opt.max_age))
  end
  if opt.min_size and st.size < opt.min_size then
    out[#out + 1] = ("%d bytes, below min_size %d"):format(st.size, opt.min_size)
  end
  if opt.max_size and st.size > opt.max_size then
    out[#out + 1] = ("%d bytes, above max_size %d"):format(st.size, opt.max_size)
  end
  if fs then
    local pct = fs.total > 0 and fs.available / fs.total * 100 or 0
    if opt.min_free_percent and pct < opt.min_free_percent then
      out[#out + 1] = ("filesystem %.1f%% free, below min_free_percent %g"):format(pct, opt.min_free_percent)
    end
    if opt.min_free_mb and fs.available / 1048576 < opt.min_free_mb then
      out[#out + 1] = ("filesystem %.0f MiB free, below min_free_mb %g"):format(fs.available / 1048576, opt.min_free_mb)
    end
  end
  return out
end

local MISSING = { ENOENT = true, ENOTDIR = true }

return beagle.check {
  name = "file",
  description = "a file exists (or not), is recent, of a bounded size, with free space on its filesystem",
  options = {
    path = { "string", description = "absolute path of the file (or directory) to look at" },
    absent = { "boolean", default = false, description = "the path must not exist (a lock or a flag file)" },
    max_age = { "duration", optional = true, description = "time since the last modification above which it is unhealthy" },
    min_size = { "number", optional = true, description = "bytes below which it is unhealthy" },
    max_size = { "number", optional = true, description = "bytes above which it is unhealthy" },
    min_free_percent = { "number", optional = true, description = "free space of its filesystem, in percent, below which it is unhealthy" },
    min_free_mb = { "number", optional = true, description = "free space of its filesystem, in MiB, below which it is unhealthy" },
    metrics = { "boolean", default = true, description = "record age, size and free space as gauges check.file.*{check}" },
  },
  problems = problems, human_age = human_age,
  -- at load (and reload): what the option types cannot say
  validate = function(opt)
    if opt.path:sub(1, 1) ~= "/" then return ("option path: %q is not absolute"):format(opt.path) end
    if opt.min_size and opt.max_size and opt.min_size > opt.max_size then
      return ("option min_size: %g is above max_size (%g)"):format(opt.min_size, opt.max_size)
    end
  end,
  run = function(opt, ctx)
    local st, err, code = ctx.stat(opt.path)
    if opt.absent then
      if st then return ctx.unhealthy(("%s exists (absent = true)"):format(opt.path), { type = st.type }) end
      if MISSING[code] then return ctx.healthy(opt.path .. " is absent") end
      return ctx.unknown(tostring(err))
    end
    if not st then
      if MISSING[code] then return ctx.unhealthy(tostring(err)) end
      return ctx.unknown(tostring(err))
    end
    local now = ctx.time()
    local details = { type = st.type, size = st.size, age_seconds = now - st.mtime, mtime = st.mtime }
    local fs
    if opt.min_free_percent or opt.min_free_mb or opt.metrics then
      local total, avail = ctx.statvfs(opt.path)
      if total then
        fs = { total = total, available = avail }
        details.free_bytes = avail
        details.free_percent = total > 0 and avail / total * 100 or 0
      elseif opt.min_free_percent or opt.min_free_mb then
        return ctx.unknown("statvfs: " .. tostring(avail), details)
      end
    end
    if opt.metrics then
      pcall(beagle.set_gauge, "check.file.age_seconds", details.age_seconds, { check = ctx.name })
      pcall(beagle.set_gauge, "check.file.size_bytes", st.size, { check = ctx.name })
      if details.free_percent then
        pcall(beagle.set_gauge, "check.file.free_percent", details.free_percent, { check = ctx.name })
      end
    end
    local bad = problems(opt, st, now, fs)
    if #bad > 0 then return ctx.unhealthy(("%s: %s"):format(opt.path, table.concat(bad, "; ")), details) end
    return ctx.healthy(("%s: %d bytes, modified %s ago"):format(opt.path, st.size,
      human_age(math.max(0, details.age_seconds))), details)
  end,
}
