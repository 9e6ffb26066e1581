std = "luajit"
max_line_length = 140
files["lua/beagle/sandbox.lua"] = { globals = { "__load", "__validate", "__run_check" }, read_globals = { "__bg" } }
files["lua/beagle/init.lua"] = { read_globals = { "__bg" } }
files["plugins/"] = { read_globals = { "beagle" } }
files["tests/"] = { std = "+busted" }
files["examples/"] = { read_globals = { "beagle", "check", "channel", "backend", "settings", "env" } }
