-- .ci/run (issue 14 §2): CI runs the C tests and the Lua specs, integration and FFI ones
-- included, on an AddressSanitizer + UndefinedBehaviorSanitizer build before `make test`, whose
-- ctest summary stays the last thing printed; and the sanitizer build gives busted the
-- preload and the helper it needs to load the instrumented core through the FFI.
local src = os.getenv("BEAGLE_SOURCE_DIR") or "."

local function read(p)
  local f = assert(io.open(src .. "/" .. p))
  local s = f:read("*a")
  f:close()
  return s
end

describe(".ci/run", function()
  local lines = {}
  for line in read(".ci/run"):gmatch("[^\n]+") do
    if not line:match("^%s*#") and line:match("%S") then lines[#lines + 1] = line end
  end

  local function find(pat)
    for i, l in ipairs(lines) do if l:find(pat) then return i, l end end
  end

  it("builds with ASan and UBSan in a directory of its own, with -Werror", function()
    local _, l = find("^cmake %-S")
    assert.is_truthy(l)
    assert.is_truthy(l:find("-DBEAGLE_ASAN=ON", 1, true), l)
    assert.is_truthy(l:find("-DBEAGLE_UBSAN=ON", 1, true), l)
    assert.is_truthy(l:find("-DBEAGLE_WERROR=ON", 1, true), l)
    assert.is_truthy(l:find("-B build-asan", 1, true), l)
  end)

  it("runs every C test and spec there but the lint, then make test last", function()
    local i, l = find("ctest")
    assert.is_truthy(i)
    assert.is_truthy(l:find("cd build-asan", 1, true), l)
    -- nothing but the lint is left out: the C tests, integration and FFI specs all run
    local excluded = l:match("%-E%s+'([^']*)'") or l:match("%-E%s+(%S+)")
    assert.equals("^lint/", excluded)
    assert.is_nil(l:find(" -R ", 1, true), l)
    local j = find("^make test")
    assert.equals(#lines, j)
    assert.is_true(i < j)
  end)

  it("gives the specs of a sanitizer build the runtimes and the helper", function()
    local cm = read("CMakeLists.txt")
    assert.is_truthy(cm:find("--helper=${CMAKE_SOURCE_DIR}/tests/asan_helper.lua", 1, true))
    assert.is_truthy(cm:find("LD_PRELOAD=${BG_PRELOAD}", 1, true))
    assert.is_truthy(cm:find("-fno-sanitize-recover=undefined", 1, true))
    assert.is_truthy(read("tests/asan_helper.lua"):find('unsetenv("LD_PRELOAD")', 1, true))
  end)
end)
