-- The command check's parser of Nagios plugin output and performance data, against lines real
-- plugins print, and against malformed ones (skipped and listed, never an error).
local src = os.getenv("BEAGLE_SOURCE_DIR") or "."

local function load_plugin()
  local chunk = assert(loadfile(src .. "/plugins/checks/command.lua"))
  local env = setmetatable({ beagle = { check = function(def) return def end } }, { __index = _G })
  setfenv(chunk, env)
  return chunk()
end

describe("command check: perfdata", function()
  local P = load_plugin()
  local parse, output = P.parse_perfdata, P.parse_output

  local function one(text)
    local items, skipped = parse(text)
    assert.are.equal(1, #items, text)
    assert.are.equal(0, #skipped, text)
    return items[1]
  end

  it("parses check_load's perfdata", function()
    local items, skipped = parse("load1=0.290;5.000;10.000;0; load5=0.190;4.000;8.000;0; load15=0.530;3.000;6.000;0; ")
    assert.are.equal(0, #skipped)
    assert.are.equal(3, #items)
    assert.are.same({ label = "load1", value = 0.29, unit = "", warn = "5.000", crit = "10.000", min = 0 }, items[1])
    assert.are.equal("load15", items[3].label)
    assert.are.equal(0.53, items[3].value)
  end)

  it("parses check_disk's bytes and converts larger units to bytes", function()
    local it_ = one("/=19458424832B;243497277849;257024904396;0;270552530944")
    assert.are.same({ label = "/", value = 19458424832, unit = "B", warn = "243497277849",
      crit = "257024904396", min = 0, max = 270552530944 }, it_)
    it_ = one("/var=1024MB;;;0;2048")
    assert.are.equal(1024 * 1024 ^ 2, it_.value)
    assert.are.equal(2048 * 1024 ^ 2, it_.max)
    assert.are.equal("B", it_.unit)
    assert.are.equal(2 * 1024, one("a=2KB").value)
    assert.are.equal(3 * 1024 ^ 3, one("a=3GB").value)
    assert.are.equal(1024 ^ 4, one("a=1TB").value)
  end)

  it("converts times to seconds and keeps % and c", function()
    local t = one("time=0.004123s;5.000000;10.000000;0.000000")
    assert.are.equal(0.004123, t.value)
    assert.are.equal("s", t.unit)
    assert.are.equal(0.25, one("rta=250ms;100;500;0").value)
    assert.are.equal(0.25, one("rta=250ms").value)
    assert.are.equal(1.5e-3, one("x=1500us").value)
    local pct = one("pl=0%;20;60;0;100")
    assert.are.equal(0, pct.value)
    assert.are.equal("%", pct.unit)
    assert.are.equal(100, pct.max)
    local c = one("packets=1234c")
    assert.are.equal(1234, c.value)
    assert.are.equal("c", c.unit)
  end)

  it("reads quoted labels with spaces and '' escapes", function()
    local items = parse("'C:\\ Used Space'=12.5GB;50;60;0;100 'it''s'=1 'a=b'=2")
    assert.are.equal(3, #items)
    assert.are.equal("C:\\ Used Space", items[1].label)
    assert.are.equal(12.5 * 1024 ^ 3, items[1].value)
    assert.are.equal("it's", items[2].label)
    assert.are.equal("a=b", items[3].label)
    assert.are.equal(2, items[3].value)
  end)

  it("accepts missing fields, ranges, negative and exponent values, comma decimals", function()
    local r = one("temp=-3.5;@10:20;~:30")
    assert.are.equal(-3.5, r.value)
    assert.are.equal("@10:20", r.warn)
    assert.are.equal("~:30", r.crit)
    assert.is_nil(r.min)
    assert.is_nil(r.max)
    assert.are.equal(1.5e3, one("big=1.5e3").value)
    assert.are.equal(0.5, one("x=0,5").value)
    assert.are.equal(7, one("users=7;;;").value)
    local odd = one("free=10MiB")
    assert.are.equal(10, odd.value) -- a unit outside the guidelines: kept, unconverted
    assert.are.equal("MiB", odd.unit)
  end)

  it("returns nothing for empty or blank perfdata", function()
    for _, s in ipairs { "", "   ", "\t\n" } do
      local items, skipped = parse(s)
      assert.are.equal(0, #items)
      assert.are.equal(0, #skipped)
    end
    local items = parse(nil)
    assert.are.equal(0, #items)
  end)

  it("skips malformed items, lists them and keeps the good ones", function()
    local items, skipped = parse("ok=1 garbage =5 x=abc y= 'open=3 z=2;;")
    local labels = {}
    for i, v in ipairs(items) do labels[i] = v.label end
    assert.are.same({ "ok", "z" }, labels) -- an unclosed quote spoils its own item only
    assert.is_true(#skipped >= 4, #skipped)
    local why = {}
    for _, s in ipairs(skipped) do why[#why + 1] = s.text .. ":" .. s.why end
    local all = table.concat(why, "|")
    assert.truthy(all:find("garbage:no label=value", 1, true), all)
    assert.truthy(all:find("x=abc:not a number", 1, true), all)
    local items2, skipped2 = parse("a=1.2.3 b=U c=12xx! d=1;2;3")
    assert.are.equal(1, #items2)
    assert.are.equal("d", items2[1].label)
    assert.are.equal(3, #skipped2)
  end)

  it("splits output into message, long output and perfdata (the long form)", function()
    local msg, long, perf = output("DISK OK - free space: / 79428MiB;| /=19458424832B;243;257;0;270\n")
    assert.are.equal("DISK OK - free space: / 79428MiB;", msg)
    assert.are.same({}, long)
    local items = parse(perf)
    assert.are.equal(1, #items)

    msg, long, perf = output("PING OK | rta=1ms\nline one\nline two | pl=0%;20;60\nx=3s\n")
    assert.are.equal("PING OK", msg)
    assert.are.same({ "line one", "line two " }, long)
    items = parse(perf)
    assert.are.equal(3, #items)
    assert.are.equal("rta", items[1].label)
    assert.are.equal("pl", items[2].label)
    assert.are.equal("x", items[3].label)

    local perf2
    msg, long, perf2 = output("just text")
    assert.are.same({}, long)
    perf = perf2
    assert.are.equal("just text", msg)
    assert.are.equal(0, #parse(perf))
    msg = output("")
    assert.are.equal("", msg)
    msg, long = output("OK\r\nmore\r\n")
    assert.are.equal("OK", msg)
    assert.are.same({ "more" }, long)
  end)
end)
