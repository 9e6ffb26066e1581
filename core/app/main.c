/* beagle: the command line. Everything past argument handling lives in agent.c and
 * lua/agent/init.lua; this file only keeps the process-level concerns. */
#include "app/agent.h"

int main(int argc, char **argv) {
  return bg_agent_main(argc, argv);
}
