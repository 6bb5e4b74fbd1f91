#!/usr/bin/env bash
# After the suites: nothing the tests made may be left on the host. Only
# looks; it never kills anything (processes are ended by their own tests,
# by pid).
set -euo pipefail

fail=0
report() { echo "leak-check: $*" >&2; fail=1; }

if grep -q 'sandboxd-e2e-' /proc/self/mountinfo; then
    report "mounts left by the end-to-end tests:"
    grep 'sandboxd-e2e-' /proc/self/mountinfo >&2
fi
for d in /tmp/sandboxd-e2e-* /srv/sandboxd-e2e-* /tmp/sandboxctl-test-* /usr/local/lib/sandboxd-e2e-*; do
    [ -e "$d" ] && report "test directory left behind: $d"
done
for p in /proc/[0-9]*; do
    cmd=$(tr '\0' ' ' <"$p/cmdline" 2>/dev/null || true)
    case "$cmd" in
        *"__supervise "*) report "supervisor still running: pid ${p#/proc/}: $cmd" ;;
    esac
done

for d in /sys/fs/cgroup/sandboxd/* /sys/fs/cgroup/*/sandboxd/*; do
    case "${d##*/}" in
        [0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f])
            [ -d "$d" ] && report "sandbox cgroup left behind: $d" ;;
    esac
done

if [ -n "${SANDBOXD_NET_BASELINE:-}" ] && [ -f "$SANDBOXD_NET_BASELINE" ]; then
    if ! diff -u "$SANDBOXD_NET_BASELINE" <(ci/net-state.sh) >&2; then
        report "the host's links, addresses, routes, nft ruleset or netns list changed (diff above)"
    fi
    rm -f "$SANDBOXD_NET_BASELINE"
else
    echo "leak-check: no network baseline (SANDBOXD_NET_BASELINE); run through ci/test.sh to compare the host's network"
fi

if [ "$fail" -ne 0 ]; then
    exit 1
fi
echo "leak-check: no mounts, test directories, supervisors, sandbox cgroups or network changes left"
