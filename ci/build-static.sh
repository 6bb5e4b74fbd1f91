#!/usr/bin/env bash
# The release build for a Linux (glibc) host that docs/building.md
# recommends and bench/run.sh measures: sandboxd, sandboxctl and the
# containerd shim linked statically against glibc, as static-pie
# executables (still placed at a random address). Every sandbox forks the
# daemon's image three times (its supervisor, pid 1, the main process) and
# every exec once more: a static image has 13 memory mappings to copy and
# tear down instead of 36. Prints the directory of the binaries on stdout;
# extra arguments go to cargo build.
set -euo pipefail
cd "$(dirname "$0")/.."

triple=$(rustc -vV | sed -n 's/^host: //p')
case "$triple" in
    *-linux-gnu) ;;
    *)
        echo "ci/build-static.sh: a static glibc build is for *-linux-gnu hosts; this host is $triple (use cargo build --release)" >&2
        exit 1
        ;;
esac
# With --target, RUSTFLAGS reach only the target's crates, not the build
# scripts and proc-macros: a crt-static host cannot build proc-macro crates.
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    cargo build --release --locked --target "$triple" -p sandboxd -p sandboxctl -p containerd-shim-sandboxd "$@" >&2
dir="target/$triple/release"
for bin in sandboxd sandboxctl containerd-shim-sandboxd-v1; do
    # An interpreter (ld.so) or a needed shared library here means the flags
    # did not apply; a type other than DYN, that it is not position
    # independent.
    if readelf -l "$dir/$bin" | grep -q "program interpreter" ||
        readelf -d "$dir/$bin" | grep -q "(NEEDED)" ||
        ! readelf -h "$dir/$bin" | grep -q "Type:.*DYN"; then
        echo "ci/build-static.sh: $dir/$bin is not a static-pie executable" >&2
        exit 1
    fi
done
echo "$dir"
