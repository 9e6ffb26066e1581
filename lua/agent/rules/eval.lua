-- How a rule becomes samples, written once for the three places that evaluate rules: a rule
-- file's own state (lua/agent/sandbox.lua: expr rules, as plugin code), `beagle rules test` and
-- companion tests (testing.lua) and the agent's evaluation of declarative rules (manager.lua,
-- which reads threshold rules through the faster q.last_columns). Pure Lua: q is a query object
-- (agent.query, or the public beagle.query copy in a rule file's state).
local M = {}

-- anomaly methods -> query score functions
M.SCORE_FN = { zscore = "zscore_all", mad = "madscore_all", ewma = "ewmascore_all" }

-- What an expr returned -> a list of { labels, value }: a number, a list of
-- { labels = {...}, value = n }, or a map of label value -> number (for one-label results).
-- Raises on anything else. Reads the result raw: in a rule file's state it is plugin data.
function M.samples_of(v, name)
  if type(v) == "number" then return { { labels = {}, value = v } } end
  if type(v) ~= "table" then
    error(("expr of %q returned %s: return a number or a table of labelled numbers"):format(name, type(v)), 0)
  end
  local out = {}
  for k, x in pairs(v) do
    if type(x) == "table" and type(rawget(x, "value")) == "number" then
      out[#out + 1] = { labels = rawget(x, "labels") or {}, value = rawget(x, "value") }
    elseif type(x) == "number" then
      out[#out + 1] = { labels = { key = tostring(k) }, value = x }
    end
  end
  return out
end

-- The samples of a rule without code: an anomaly rule's scores, a threshold rule's last values.
function M.declarative(r, q)
  if r.kind == "anomaly" then
    return q[M.SCORE_FN[r.method]](r.metric, r.window, r.matchers, r.min_samples)
  end
  return q.last_all(r.metric, r.matchers)
end

-- The samples rule r sees through q; exprs maps rule names to their expr functions.
function M.rule(r, exprs, q)
  if r.expr then return M.samples_of(exprs[r.name](q), r.name) end
  return M.declarative(r, q)
end

return M
