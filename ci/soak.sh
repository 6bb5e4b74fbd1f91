#!/usr/bin/env bash
# Soak (not part of the default CI run): 4 concurrent clients doing
# create -> ExecSync -> destroy against a private daemon for DURATION
# seconds (default 600), then cycles, failures and leaks are reported; it
# fails unless failures and leaks are both 0. Run as root:
#   ci/soak.sh [DURATION_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-600}"
if [ "$(id -u)" -ne 0 ]; then
    echo "ci/soak.sh: run as root" >&2
    exit 1
fi
[ -x /bin/busybox ] || [ -x /usr/bin/busybox ] || apt-get install -y -qq busybox-static
cargo build --release --locked -p sandboxd -p sandboxd-bench
exec target/release/sandboxd-bench --soak "$duration"
