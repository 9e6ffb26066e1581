-- The channel half of the plugin sandbox (lua/agent/sandbox.lua), loaded into a plugin's state on
-- its first send only: a check's state never holds it. Trusted code; S is the sandbox's own
-- table of what this part needs (see sandbox.lua's S).
return function(S)
local bg, beagle, errtext, make_ctx = S.bg, S.beagle, S.errtext, S.make_ctx
local instance, ensure_init = S.instance, S.ensure_init
local setmetatable, rawget, rawset, select, pairs, type, tostring, tonumber =
  setmetatable, rawget, rawset, select, pairs, type, tostring, tonumber

-- ---- channels -------------------------------------------------------------------------------
-- lua/beagle/CHANNELS.md is the contract: send(n, ctx) returns true (or nothing) when the receiver
-- took the notification; nil/false, err[, { retry_after, permanent }] or a raised error otherwise.

local function masker(opts)
  local secrets = {}
  for oname, o in pairs(S.plugin() and S.plugin().options or {}) do
    if o.type == "secret" and type(opts[oname]) == "string" and opts[oname] ~= "" then
      secrets[#secrets + 1] = opts[oname]
    end
  end
  local cu = require "beagle.channel_util"
  return function(text) return cu.mask(text, secrets) end
end

local function masked_log(mask)
  local out = {}
  for level, fn in pairs(beagle.log) do
    out[level] = function(msg, fields)
      local f
      if type(fields) == "table" then
        f = {}
        for k, v in pairs(fields) do f[k] = mask(tostring(v)) end
      end
      return fn(mask(tostring(msg)), f)
    end
  end
  return out
end

local function send_result(n, ...)
  if n == 0 then return { ok = true } end
  local ok, err, info = ...
  if ok ~= nil and ok ~= false then return { ok = true } end
  info = type(info) == "table" and info or {}
  return { ok = false, error = err ~= nil and errtext(err) or "send returned no success and no error",
    retry_after = tonumber(rawget(info, "retry_after")), permanent = rawget(info, "permanent") == true or nil }
end

-- What every send's ctx shares, made once per state: its functions do not depend on the
-- instance or the notification. ctx.log, which masks the instance's secrets, is made on first
-- use: building its closures for every send cost more than most sends' own work, and closures
-- made in a function keep LuaJIT from compiling it.
local SEND_MT

-- Only the first send calls this: a function that makes closures can't be compiled (and an
-- early return past them closes upvalues, which neither can), so __send must not be it.
local function build_send_mt()
  local cu = require "beagle.channel_util"
  local json = require "beagle.json"
  -- the C encoder gives json.encode's exact bytes without the interpreter's cost; it raises
  -- like json.encode does, so that a body that can't be made fails the send
  local encode = bg.json_encode and json.with_encoder(bg.json_encode).encode or json.encode
  local base = make_ctx({})
  base.name = nil
  base.json = { encode = encode, decode = json.decode, array = json.array, null = json.null }
  base.response = cu.response
  base.iso8601 = cu.iso8601
  base.sha256 = bg.sha256
  base.hmac_sha256 = bg.hmac_sha256
  base.mail = function(m)
    if not bg.mail then return nil, "mail is not supported by this build" end
    if type(m) ~= "table" then return nil, "mail: the message must be a table" end
    return bg.mail(m)
  end
  -- the ctx's metatable is the plugin's to see but not to change for the next send
  SEND_MT = { __metatable = false, __index = function(ctx, k)
    if k == "log" then
      local l = masked_log(masker(rawget(ctx, "options") or {}))
      rawset(ctx, "log", l)
      return l
    end
    return base[k]
  end }
  return SEND_MT
end

local function pack_result(...) return send_result(select("#", ...), ...) end

-- What the backend part (sandbox_backend.lua) shares with this one: the send's ctx and result.
S.send_mt = function() return SEND_MT or build_send_mt() end
S.pack_result = pack_result

-- A channel's state is idle until deliveries come, each of which leaves garbage (its copy of
-- the notification, the payload, the body): from its first send on, it collects when the heap
-- reaches 4x its live size rather than 2x, which saves ~10k of ~410k instructions a
-- notification in a burst (callgrind). Set on the first send, not at load: a channel that
-- never sends keeps the default and the idle agent's memory (+0.1 MiB RSS otherwise).
local send_pause_set = false

-- __send{ name, n } -> { ok = true } | { ok = false, error, retry_after, permanent }
function __send(a)
  local PLUGIN = S.plugin()
  if not PLUGIN or PLUGIN.kind ~= "channel" then error("plugin is not a channel", 0) end
  if not send_pause_set then
    send_pause_set = true
    collectgarbage("setpause", 400)
    bg.pool() -- small blocks from the state's pool from now on (core/script/lpool.h)
  end
  local inst = instance(a.name, a.opts)
  local opts = inst.opts
  -- the send's own fields over the shared ones (a ctx per send: what a plugin sets on it stays
  -- in that send)
  local ctx = setmetatable({ name = a.name, options = opts, state = inst.state }, SEND_MT or build_send_mt())
  if not inst.inited and PLUGIN.init then ensure_init(inst, opts, ctx) end
  return pack_result(PLUGIN.send(a.n, ctx))
end

end
