-- The rule-file half of the plugin sandbox (lua/agent/sandbox.lua), loaded into a rule file's
-- state only. Trusted code; S is the sandbox's own table of what this part needs.
return function(S)
local bg, errtext, make_env, PUBLIC = S.bg, S.errtext, S.make_env, S.public
local raw_error, raw_pcall = error, pcall
local pairs, ipairs, type = pairs, ipairs, type

-- ---- rule files ---------------------------------------------------------------------------
-- A rule file runs in a state of its own too, as plugin code: the file's chunk and every
-- function it defines (top level, helpers, expr) run with the JIT off, under the budget and
-- the deadline, and evaluations are runs (sliced like a check's). It reads history through
-- beagle.query.

local rule_eval = require "agent.rules.eval"

local RULES -- the set agent.rules.dsl made of the file, with its expr functions
local RULE_BY_NAME = {}
local Q, Q_AT -- one query object for the file's evaluations, and its own pin function

local function strip_functions(set)
  local out = {}
  for k, v in pairs(set) do
    if k ~= "exprs" then out[k] = v end
  end
  return out
end

-- __load_rules(path) -> set without functions | nil, problems (one string, a line each)
function __load_rules(path)
  local src, err = bg.read_file(path, 4 * 1024 * 1024)
  if not src then return nil, err end
  local dsl = require "agent.rules.dsl"
  local env = make_env(path)
  local set, problems = dsl.load(path, src, { beagle = env.beagle, require = env.require }, { env = env })
  if not set then
    return nil, type(problems) == "table" and table.concat(problems, "\n") or errtext(problems)
  end
  RULES = set
  RULE_BY_NAME = {}
  for _, r in ipairs(set.alerts or {}) do RULE_BY_NAME[r.name] = r end
  jit.on() -- off while the state loaded (sandbox.lua); the file's own functions stay off
  return strip_functions(set)
end

local function find_rule(name) return RULE_BY_NAME[name] end

local function eval_one(name)
  local r = find_rule(name)
  if not r then raw_error(("no rule %q in this file"):format(name), 0) end
  return rule_eval.rule(r, RULES.exprs, Q)
end

-- The query object an expr is given: the public beagle.query functions (a copy per state, so
-- what an expr does to it stays in this file), pinned to `at` when set.
local function query_at(at)
  if not Q then
    Q = PUBLIC["beagle.query"]()
    Q_AT = Q.at
  end
  Q_AT(at)
  return Q
end

-- __eval_rule{ name, at = ms | nil } -> { samples = {...} }
function __eval_rule(a)
  query_at(a.at)
  return { samples = eval_one(a.name) }
end

-- __eval_rules{ names = {...}, at = ms | nil } -> { [name] = { samples = {...} } | { error = "..." } }
-- Every rule of the file that is due at once, in one crossing between states.
function __eval_rules(a)
  query_at(a.at)
  local out = {}
  for _, name in ipairs(a.names or {}) do
    local ok, samples = raw_pcall(eval_one, name)
    local why = bg.killed()
    if why then raw_error(why, 0) end
    out[name] = ok and { samples = samples } or { error = errtext(samples) }
  end
  return out
end
end
