-- What agent.sandbox gives a check's ctx for the calls most plugins never make: ctx.stat,
-- ctx.list_dir, ctx.read_pidfile, ctx.dns.resolve and ctx.crypto. Trusted code, loaded into a
-- plugin's state by the first such call: each checks its arguments (nil, err naming the call
-- and the argument) before the C function (__bg) sees them. Returns a function of the
-- sandbox's bg table and its path rules that returns name -> function.
return function(bg, readable, absolute, is_int)
  local function stat(path)
    local p, err = absolute(path, "stat")
    if not p then return nil, err end
    return bg.stat(p)
  end

  local function list_dir(path)
    local p, err = readable(path, "list_dir")
    if not p then return nil, err end
    return bg.list_dir(p)
  end

  local function read_pidfile(path)
    local p, err = absolute(path, "read_pidfile")
    if not p then return nil, err end
    return bg.read_pidfile(p)
  end

  local FAMILY = { any = 0, inet = 4, inet6 = 6 }
  local function dns_resolve(name, opt)
    if type(name) ~= "string" then return nil, ("dns.resolve: name must be a string, not a %s"):format(type(name)) end
    if #name == 0 or #name > 1024 or name:find("\0", 1, true) then
      return nil, "dns.resolve: name must be 1..1024 bytes without NUL"
    end
    if opt ~= nil and type(opt) ~= "table" then return nil, "dns.resolve: options must be a table" end
    local family = opt and opt.family
    if family ~= nil and not FAMILY[family] then
      return nil, ("dns.resolve: family must be \"any\", \"inet\" or \"inet6\", not %s"):format(tostring(family))
    end
    return bg.dns_resolve(name, FAMILY[family or "any"])
  end

  -- ctx.crypto: the arguments are checked here, the work is C's (crypto.h).
  -- Hashing runs on the loop's thread and is not sliced: an input is at most 1 MiB (a login's
  -- strings are a few bytes), about 3 ms of SHA-256.
  local MAX_INPUT = 1024 * 1024
  local function strings(fname, ...)
    for i = 1, select("#", ...) do
      local v = select(i, ...)
      if type(v) ~= "string" then return ("crypto.%s: argument %d must be a string, not a %s"):format(fname, i, type(v)) end
      if #v > MAX_INPUT then return ("crypto.%s: argument %d is longer than 1 MiB"):format(fname, i) end
    end
  end
  local crypto = {
    md5_hex = function(s)
      local e = strings("md5_hex", s)
      if e then return nil, e end
      return bg.crypto_md5_hex(s)
    end,
    sha256 = function(s)
      local e = strings("sha256", s)
      if e then return nil, e end
      return bg.crypto_sha256(s)
    end,
    hmac_sha256 = function(key, s)
      local e = strings("hmac_sha256", key, s)
      if e then return nil, e end
      return bg.crypto_hmac_sha256(key, s)
    end,
    pbkdf2_sha256 = function(password, salt, iterations, length)
      local e = strings("pbkdf2_sha256", password, salt)
      if e then return nil, e end
      if not is_int(iterations, 1, 1e6) then return nil, "crypto.pbkdf2_sha256: iterations must be an integer 1..1000000" end
      -- each 32 bytes of output cost the iterations again, on a threadpool thread that a run
      -- ending does not stop: 64 bytes (SCRAM needs 32) keep one call under about a second
      if not is_int(length, 1, 64) then return nil, "crypto.pbkdf2_sha256: length must be an integer 1..64" end
      return bg.crypto_pbkdf2_sha256(password, salt, iterations, length)
    end,
    random = function(n)
      if not is_int(n, 0, 1024) then return nil, "crypto.random: n must be an integer 0..1024" end
      return bg.crypto_random(n)
    end,
    base64_encode = function(s)
      local e = strings("base64_encode", s)
      if e then return nil, e end
      return bg.crypto_base64_encode(s)
    end,
    base64_decode = function(s)
      local e = strings("base64_decode", s)
      if e then return nil, e end
      return bg.crypto_base64_decode(s)
    end,
  }

  local fns = { stat = stat, list_dir = list_dir, read_pidfile = read_pidfile, dns_resolve = dns_resolve }
  for k, f in pairs(crypto) do fns[k] = f end
  return fns
end
