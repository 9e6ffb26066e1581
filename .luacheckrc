std = "luajit"
max_line_length = 140
files["lua/agent/sandbox.lua"] = { globals = { "__bg", "string", "__load", "__validate", "__run_check", "__load_rules", "__eval_rule", "__eval_rules", "__send", "__send_batch", "__collect", "__close", "__configure", "__in_use" },
}
files["lua/agent/sandbox_channel.lua"] = { globals = { "__send" } }
files["lua/agent/sandbox_backend.lua"] = { globals = { "__send_batch" } }
files["lua/agent/sandbox_rules.lua"] = { globals = { "__load_rules", "__eval_rule", "__eval_rules" } }
files["lua/beagle/init.lua"] = { read_globals = { "__bg" } }
files["plugins/"] = { read_globals = { "beagle" } }
files["tests/"] = { std = "+busted" }
files["examples/plugins/"] = { read_globals = { "beagle" } }
-- a config file sets settings as globals
files["examples/beagle.lua"] = { allow_defined_top = true, read_globals = { "check", "channel", "backend", "settings", "env" },
  ignore = { "111", "131" } }
files["rules/"] = { read_globals = { "alert", "anomaly", "route", "silence", "inhibit", "env", "beagle" } }
