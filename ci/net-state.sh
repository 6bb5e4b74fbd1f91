#!/usr/bin/env bash
# The host's network state that sandboxd or its tests could change: link
# names, addresses, routes of every table, the nft ruleset and the netns
# list, sorted so two snapshots compare with diff. (IP forwarding is not
# included: the daemon turns it on for RESTRICTED sandboxes on purpose.)
set -euo pipefail
{
    ip -o link show | awk -F': ' '{ split($2, n, "@"); print "link " n[1] }'
    ip -o addr show | awk '{ print "addr " $2 " " $4 }'
    ip route show table all | sed 's/^/route4 /'
    ip -6 route show table all | sed 's/^/route6 /'
    if command -v nft >/dev/null; then nft list ruleset | sed 's/^/nft /'; fi
    ip netns list | sed 's/^/netns /'
} | sort
