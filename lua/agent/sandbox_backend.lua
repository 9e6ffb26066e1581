-- The backend half of the plugin sandbox (lua/agent/sandbox.lua), loaded into a plugin's state on
-- its first send only. Trusted code; S is the sandbox's own table of what this part needs.
--
-- __send_batch{ name, id } opens batch `id` (published by the agent, core/export/batch.h) as the
-- plugin's batch object and calls the plugin's send(batch, ctx); the ctx is a channel send's
-- (ctx.http, ctx.tcp, ctx.json, ctx.response, ctx.options, ctx.state, masked ctx.log) plus
-- ctx.encode.<format>(batch, opts) (the C encoders: core/export/encode.h) and ctx.udp.send.
-- A plugin with the guide's MetricBackend methods instead of send gets them called per sample.
-- The batch is released when the send returns: a plugin can't keep samples past it.
-- A trace or log backend (signal = "traces" | "logs") gets a span or log batch the same way
-- (__send_batch{ name, id, signal }), encoded with ctx.encode.otlp_traces / otlp_logs or read
-- with batch:spans() / batch:records(); ctx.signal says which kind it is, and ctx.resource has the
-- resource attributes the agent's settings give (service.name, service.version,
-- deployment.environment, host.name).
return function(S)
local bg = S.bg
local instance, ensure_init = S.instance, S.ensure_init
local setmetatable, rawget, pairs, type, pcall, error = setmetatable, rawget, pairs, type, pcall, error
if not S.send_mt then require("agent.sandbox_channel")(S) end

-- formats that send differences since the instance's previous send: the instance keeps its
-- previous values (a bg_delta) and every encode of it passes them
local DELTA = { statsd = true, datadog = true }

local OPT_STRINGS = { prefix = true, flavor = true }
local OPT_TABLES = { labels = true, resource = true }

-- Only known options of plain types reach C; tables of strings only.
local function clean_opts(opts)
  local out = {}
  if opts == nil then return out end
  if type(opts) ~= "table" then return nil, "encode: options must be a table" end
  for k, v in pairs(opts) do
    if OPT_STRINGS[k] then
      if type(v) ~= "string" then return nil, ("encode: %s must be a string"):format(k) end
      out[k] = v
    elseif OPT_TABLES[k] then
      if type(v) ~= "table" then return nil, ("encode: %s must be a table of strings"):format(k) end
      local t = {}
      for tk, tv in pairs(v) do
        if type(tk) ~= "string" or (type(tv) ~= "string" and type(tv) ~= "number" and type(tv) ~= "boolean") then
          return nil, ("encode: %s must map names to strings"):format(k)
        end
        t[tk] = tostring(tv)
      end
      out[k] = t
    elseif k == "interval" or k == "max_payload" then
      if type(v) ~= "number" then return nil, ("encode: %s must be a number"):format(k) end
      out[k] = v
    else
      return nil, ("encode: unknown option %q"):format(tostring(k))
    end
  end
  return out
end

-- ctx.encode for an instance: ctx.encode.remote_write(batch, opts) -> bytes, skipped | nil, err
local function encoders(inst)
  return setmetatable({}, { __metatable = false, __index = function(_, format)
    if type(format) ~= "string" then return nil end
    return function(batch, opts)
      local o, err = clean_opts(opts)
      if not o then return nil, err end
      if DELTA[format] and bg.delta_new then
        inst.delta = inst.delta or bg.delta_new()
        o.delta = inst.delta
      end
      local out, n = bg.encode(format, batch, o)
      -- what the format could not carry, reported with the send (the largest of its encodes:
      -- a plugin may encode a batch twice)
      if out and type(n) == "number" and n > (inst.skipped or 0) then inst.skipped = n end
      return out, n
    end
  end })
end

local udp = { send = function(host, port, data)
  if type(host) ~= "string" or type(port) ~= "number" or (type(data) ~= "string" and type(data) ~= "table") then
    return nil, "udp.send: host must be a string, port a number and data a string or a list of strings"
  end
  if not bg.udp_send then return nil, "udp.send is not supported by this build" end
  return bg.udp_send(host, port, data)
end }

-- The guide's MetricBackend: send_counter(name, value, labels, ctx), send_gauge(...), and
-- send_histogram(name, sample, labels, ctx) with the histogram's sum, count and buckets.
local function send_each(P, batch, ctx)
  for s in batch:samples() do
    local fn = s.type == "counter" and P.send_counter or s.type == "gauge" and P.send_gauge or P.send_histogram
    if fn then
      local ok, err, info = fn(s.name, s.type == "histogram" and s or s.value, s.labels, ctx)
      if ok == false or (ok == nil and err ~= nil) then return ok, err, info end
    end
  end
  return true
end

local function finish(batch, ok, ...)
  batch:release()
  if not ok then error((...), 0) end
  return S.pack_result(...)
end

-- __send_batch{ name, id } -> { ok = true } | { ok = false, error, retry_after, permanent }, with
-- skipped = samples the encoders left out (NaN in line protocol, ...) when there were any
function __send_batch(a)
  local PLUGIN = S.plugin()
  if not PLUGIN or PLUGIN.kind ~= "backend" then error("plugin is not a backend", 0) end
  local signal = a.signal or "metrics"
  local open = signal == "traces" and bg.span_batch_open or signal == "logs" and bg.log_batch_open or bg.batch_open
  local batch = open(a.id)
  if not batch then return { ok = false, error = "the batch is gone (the backend was stopped)", permanent = true } end
  local inst = instance(a.name)
  inst.encode = inst.encode or encoders(inst)
  local ctx = setmetatable({ name = a.name, options = inst.opts, state = inst.state, encode = inst.encode, udp = udp,
    signal = signal, resource = a.resource }, S.send_mt())
  if not inst.inited and PLUGIN.init then ensure_init(inst, inst.opts, ctx) end
  inst.skipped = 0
  local send = rawget(PLUGIN, "send")
  local r
  if send then r = finish(batch, pcall(send, batch, ctx))
  elseif signal ~= "metrics" then
    batch:release()
    error(("a %s backend needs send(batch, ctx)"):format(signal), 0)
  else r = finish(batch, pcall(send_each, PLUGIN, batch, ctx)) end
  if inst.skipped > 0 then r.skipped = inst.skipped end
  return r
end
end
