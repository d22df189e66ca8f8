# shellcheck shell=bash
# Sourced by the scripts that run something in a network namespace of its
# own (the media tests, the browser suites, interop, the media benchmarks):
# `"${NETNS[@]}" command...` runs it there. Root makes the namespace
# directly; anyone else through a user namespace. Inside, nothing but `lo`
# exists (the command brings it up): no packet can leave loopback.
# shellcheck disable=SC2034 # NETNS is for the scripts that source this
if [ "$(id -u)" = 0 ]; then NETNS=(unshare --net); else NETNS=(unshare --map-root-user --net); fi
