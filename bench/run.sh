#!/usr/bin/env bash
# Runs the sandboxd benchmark harness (bench/README.md), by hand, as root:
# installs the peers if missing (bubblewrap, crun, runc, busybox-static),
# builds the static release sandboxd and sandboxctl (ci/build-static.sh) and
# sandboxd-bench, and runs the harness on them.
# Extra arguments go to sandboxd-bench (e.g. --iterations 50 --seconds 10).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "bench/run.sh: run as root (the peers and sandboxd mount, chroot and unshare)" >&2
    exit 1
fi

missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v crun >/dev/null 2>&1 || missing+=(crun)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || missing+=(runc)
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || missing+=(busybox-static)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "bench/run.sh: installing ${missing[*]}" >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; then
        # A peer that is still missing is reported as "not installed".
        echo "bench/run.sh: apt-get install failed; continuing with what is installed" >&2
    fi
fi

# The static release build (docs/building.md) is what production Linux
# hosts run; --sandboxd/--sandboxctl given here override it (e.g. the default
# build's target/release/sandboxd).
static_dir=$(ci/build-static.sh)
cargo build --release -p sandboxd-bench
binaries=()
case " $* " in *" --sandboxd"*) ;; *) binaries+=(--sandboxd "$static_dir/sandboxd") ;; esac
case " $* " in *" --sandboxctl"*) ;; *) binaries+=(--sandboxctl "$static_dir/sandboxctl") ;; esac
exec target/release/sandboxd-bench "${binaries[@]}" "$@"
