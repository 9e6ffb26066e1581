#!/bin/sh
# run_spec.sh DIR COMMAND...: runs one spec's COMMAND with BEAGLE_TEST_TMP=DIR, emptied first,
# where tests/support.lua puts the agents' directories and its temporary files. DIR is removed
# when the spec passes and kept for a look when it fails (the next run empties it).
d=$1
shift
rm -rf "$d" && mkdir -p "$d" || exit 1
BEAGLE_TEST_TMP=$d "$@"
rc=$?
[ "$rc" = 0 ] && rm -rf "$d"
exit "$rc"
