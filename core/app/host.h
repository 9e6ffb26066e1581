/* host: the Lua module "agent.core" that the agent's own lua_State (lua/agent/init.lua)
 * uses to reach the C core: timers, signals, directory watches, the HTTP server, plugin
 * scripts (script.h), logging and stopping the loop. Plugins never see it. */
#ifndef BG_HOST_H
#define BG_HOST_H

#include <lua.h>

#include "script/script.h"

/* Registers "agent.core" in package.preload of L. rt must outlive L. */
void bg_host_open(lua_State *L, bg_runtime *rt);

/* The exit code the agent asked for with core.stop(code); 0 by default. */
int bg_host_exit_code(void);

#endif
