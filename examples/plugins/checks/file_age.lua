-- Example drop-in check: a file must have been modified recently (backups, heartbeats).
return beagle.check {
  name = "file_age",
  description = "a file exists and was modified within max_age",
  options = {
    path = { "string", description = "file to look at" },
    max_age = { "duration", default = "1h", description = "older than this is unhealthy" },
  },
  run = function(opt, ctx)
    local res, err = ctx.exec { "/usr/bin/stat", "-c", "%Y", opt.path }
    if not res then return ctx.unknown(err) end
    if res.code ~= 0 then return ctx.unhealthy(res.stderr:gsub("%s+$", "")) end
    local age = ctx.time() - tonumber(res.stdout)
    local details = { age_seconds = age, path = opt.path }
    if age > opt.max_age then
      return ctx.unhealthy(("%s is %.0fs old (max %.0fs)"):format(opt.path, age, opt.max_age), details)
    end
    return ctx.healthy(("%s is %.0fs old"):format(opt.path, age), details)
  end,
}
