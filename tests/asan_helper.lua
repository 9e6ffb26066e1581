-- busted's --helper in a sanitizer build (CMakeLists.txt): this luajit had the sanitizer
-- runtimes preloaded (LD_PRELOAD) so that it can load the instrumented libbeagle_core.so
-- through the FFI; the processes the specs start must not inherit them (curl hangs with
-- libasan preloaded, python reports its own leaks), and the agent gets the options meant for
-- it (BEAGLE_CHILD_ASAN_OPTIONS: leaks checked there, not in luajit and busted). A luajit a
-- spec starts itself ("luajit child.lua ...") loads the library too: it gets the preload back.
local ffi = require "ffi"
ffi.cdef [[
int unsetenv(const char *name);
int setenv(const char *name, const char *value, int overwrite);
]]
local preload = os.getenv("LD_PRELOAD")
ffi.C.unsetenv("LD_PRELOAD")
local child = os.getenv("BEAGLE_CHILD_ASAN_OPTIONS")
if child then ffi.C.setenv("ASAN_OPTIONS", child, 1) end

if preload and preload ~= "" then
  local function cmd_of(cmd)
    if type(cmd) == "string" and cmd:match("^%s*luajit%s") then
      return ("LD_PRELOAD=%q ASAN_OPTIONS=detect_leaks=0 %s"):format(preload, cmd)
    end
    return cmd
  end
  local execute, popen = os.execute, io.popen
  os.execute = function(cmd, ...) return execute(cmd_of(cmd), ...) end -- luacheck: ignore 122
  io.popen = function(cmd, ...) return popen(cmd_of(cmd), ...) end -- luacheck: ignore 122
end
