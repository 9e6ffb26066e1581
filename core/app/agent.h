/* agent: start-up order, the loop, and shutdown. Creates the loop, the HTTP client and the
 * agent's own lua_State, hands the command line to lua/agent/init.lua (configuration,
 * plugins, schedules, routes and reload live there), runs the loop until the Lua side asks
 * to stop, then closes every handle and returns the exit code. */
#ifndef BG_AGENT_H
#define BG_AGENT_H

/* Where lua/, plugins/ and rules/ are: $BEAGLE_HOME, else the source tree this binary was
 * built from, else the installed share directory. Never NULL. */
const char *bg_agent_home(void);

/* Runs the agent with the command line (argv[0] is the program). Returns the process exit
 * code; never exits itself. */
int bg_agent_main(int argc, char **argv);

#endif
