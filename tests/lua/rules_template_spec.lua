local template = require "agent.rules.template"

local ctx = { value = 87.345, threshold = 80, duration = 303, name = "high_cpu_usage", severity = "warning",
  labels = { host = "web-1", endpoint = "/optimize" } }

describe("template.render", function()
  it("substitutes every variable", function()
    assert.are.equal("high_cpu_usage warning: 87.345 > 80 on web-1 /optimize for 5m 3s",
      template.render("{{ name }} {{severity}}: {{ value }} > {{ threshold }} on {{ labels.host }} " ..
        "{{labels.endpoint}} for {{ duration }}", ctx))
  end)
  it("leaves text without placeholders alone and renders a missing label as empty", function()
    assert.are.equal("plain 100% text", template.render("plain 100% text", ctx))
    assert.are.equal("[]", template.render("[{{ labels.nope }}]", ctx))
    assert.are.equal("[]", template.render("[{{ labels.nope }}]", {}))
    assert.are.equal("", template.render("", ctx))
  end)
  it("formats whole numbers without decimals", function()
    assert.are.equal("80 3", template.render("{{ value }} {{ threshold }}", { value = 80.0, threshold = 3 }))
    assert.are.equal("0.3 NaN +Inf", template.render("{{ value }} {{ threshold }} {{ duration | round }}",
      { value = 0.1 + 0.2, threshold = 0 / 0, duration = math.huge }))
  end)
  it("humanize", function()
    local function h(v) return template.render("{{ value | humanize }}", { value = v }) end
    assert.are.equal("1.234k", h(1234))
    assert.are.equal("1.2k", h(1200))
    assert.are.equal("3.4M", h(3.4e6))
    assert.are.equal("5G", h(5e9))
    assert.are.equal("999", h(999))
    assert.are.equal("1.2m", h(0.0012))
    assert.are.equal("-2.5k", h(-2500))
    assert.are.equal("0", h(0))
    assert.are.equal("500m", h(0.5))
  end)
  it("percent", function()
    assert.are.equal("12.3%", template.render("{{ value | percent }}", { value = 0.123 }))
    assert.are.equal("50%", template.render("{{ value | percent }}", { value = 0.5 }))
    assert.are.equal("12.35%", template.render("{{ value | percent }}", { value = 0.123456 }))
  end)
  it("duration", function()
    local function d(v) return template.render("{{ value | duration }}", { value = v }) end
    assert.are.equal("5m 3s", d(303))
    assert.are.equal("0s", d(0))
    assert.are.equal("1h 1m 1s", d(3661))
    assert.are.equal("1d 1h", d(90000))
    assert.are.equal("250ms", d(0.25))
    assert.are.equal("5.5s", d(5.5))
    assert.are.equal("5m", template.render("{{ duration }}", { duration = 300 }))
    assert.are.equal("300", template.render("{{ duration | round }}", { duration = 300 }))
  end)
  it("round", function()
    assert.are.equal("87.3", template.render("{{ value | round(1) }}", ctx))
    assert.are.equal("87", template.render("{{ value | round }}", ctx))
    assert.are.equal("87", template.render("{{ value | round(0) }}", ctx))
    assert.are.equal("87.345", template.render("{{ value | round( 3 ) }}", ctx))
    assert.are.equal("2.50", template.render("{{ value | round(2) }}", { value = 2.5 }))
  end)
  it("chains filters left to right", function()
    assert.are.equal("12.3%", template.render("{{ value | round(3) | percent }}", { value = 0.12345 }))
  end)
  it("never raises: a filter on a non-number or a bad template is nil, err", function()
    local s, err = template.render("{{ labels.host | percent }}", ctx)
    assert.is_nil(s)
    assert.are.equal("filter percent needs a number, got web-1", err)
    s, err = template.render("{{ value | humanize }}", {})
    assert.is_nil(s)
    assert.are.equal("filter humanize needs a number, got nothing", err)
    s, err = template.render("{{ valu }}", ctx)
    assert.is_nil(s)
    assert.matches("unknown variable", err)
    s, err = template.render(nil, ctx)
    assert.is_nil(s)
    assert.is_string(err)
    assert.are.equal("x", template.render("x", nil))
  end)
end)

describe("template.check", function()
  it("accepts every variable and filter", function()
    assert.is_true(template.check("{{ value | humanize }} {{ threshold | percent }} {{ duration | duration }} " ..
      "{{ name }} {{ severity }} {{ labels.a_b }} {{ value | round(2) }}"))
  end)
  it("rejects unknown variables, filters and bad syntax with the reason", function()
    local cases = {
      { "{{ valu }}", '{{ valu }}: unknown variable "valu" (use value, threshold, duration, name, severity, labels.<name>)' },
      { "{{ value | humanise }}",
        '{{ value | humanise }}: unknown filter "humanise" (use humanize, percent, duration, round(n))' },
      { "{{ value | round(x) }}", "{{ value | round(x) }}: round(x): the argument must be a whole number of decimals from 0 to 15" },
      { "{{ value | round(16) }}", "{{ value | round(16) }}: round(16): the argument must be a whole number of decimals from 0 to 15" },
      { "{{ value | percent(2) }}", "{{ value | percent(2) }}: filter percent takes no argument" },
      { "{{ }}", "{{ }}: empty {{ }}" },
      { "CPU {{ value", "unclosed {{ at character 5" },
      { "{{ labels }}", '{{ labels }}: unknown variable "labels" (use value, threshold, duration, name, severity, labels.<name>)' },
      { "{{ labels.a-b }}",
        '{{ labels.a-b }}: unknown variable "labels.a-b" (use value, threshold, duration, name, severity, labels.<name>)' },
    }
    for _, c in ipairs(cases) do
      local ok, err = template.check(c[1])
      assert.is_nil(ok, c[1])
      assert.are.equal(c[2], err)
    end
    assert.is_nil(template.check(42))
  end)
end)
