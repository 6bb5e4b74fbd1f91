#!/usr/bin/env bash
# The project's one test command (README): formatting, clippy for every
# backend selection (native, force-chroot, FreeBSD), then every test. The
# end-to-end tests start the real daemon and need root.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "ci/test.sh: the end-to-end tests create mounts and sandboxes and must run as root" >&2
    exit 1
fi

# A failing test's message, not a backtrace, at the end of the output (the
# part a CI summary keeps); RUST_BACKTRACE=1 by hand for the frames.
export RUST_BACKTRACE="${RUST_BACKTRACE_CI:-0}"

step() { printf '\n== %s\n' "$*"; }

# The host's network before any test: leak-check compares it afterwards.
export SANDBOXD_NET_BASELINE
SANDBOXD_NET_BASELINE=$(mktemp /tmp/sandboxd-net-baseline.XXXXXX)
ci/net-state.sh >"$SANDBOXD_NET_BASELINE"

step "cargo fmt --check"
cargo fmt --all --check

step "clippy (native: $(uname -s))"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "clippy (force-chroot)"
cargo clippy --workspace --all-targets --locked --features sandboxd/force-chroot -- -D warnings
step "clippy (x86_64-unknown-freebsd)"
cargo clippy --workspace --all-targets --locked --target x86_64-unknown-freebsd -- -D warnings

step "build binaries"
cargo build --workspace --locked --bins

step "tests (native backend)"
cargo test --workspace --locked -- --test-threads=4

# The same end-to-end suite against the static release build
# (docs/building.md): the binaries bench/run.sh measures and production
# Linux hosts run. The test binary is the one built above; only the daemon,
# sandboxctl and the shim it starts are the static ones.
if [ "$(uname -s)" = Linux ]; then
    step "build the static release binaries (ci/build-static.sh)"
    static_dir=$(ci/build-static.sh)
    step "end-to-end tests (static release build, $static_dir)"
    SANDBOXD_TEST_BIN_DIR="$PWD/$static_dir" cargo test --locked -p sandboxd --test e2e -- --test-threads=4
fi

# The same end-to-end suite against the chroot backend, which a Linux
# build selects only with this feature.
step "end-to-end tests (force-chroot)"
cargo build --locked --bins --features sandboxd/force-chroot
echo "(the linux:: tests check the namespace backend; they are skipped here because this build selects the chroot backend)"
cargo test --locked -p sandboxd --features force-chroot --test e2e -- --test-threads=4 --skip linux::

# Fault injection: a test-only build in which each create step fails in
# turn (tests/e2e/faults.rs); the other suites above skip it. The same build
# carries `weaken` (one isolation step skipped on request), with which
# VerifySandbox must observe the matching rows VIOLATED
# (verify::weakened_mechanism_is_observed_violated); neither acts unless its
# test asks, so one build serves both.
step "fault injection and weakening (native backend, --features fault-injection,weaken)"
cargo build --locked --bins --features sandboxd/fault-injection,sandboxd/weaken
cargo test --locked -p sandboxd --features fault-injection,weaken --test e2e -- faults:: verify::weakened

# A short smoke run of each fuzz target (seed corpora in tests/fuzz/corpus;
# longer runs: ci/fuzz.sh SECONDS). Dev profile, no sanitizer: the build is
# the cost here, and a panic is what the targets check.
step "fuzz smoke (10 s per target)"
FUZZ_SANITIZER=none FUZZ_DEV=1 ci/fuzz.sh 10
# The seed-corpus generator is no fuzz target: check it still builds
# against the current API (it names every SandboxSpec field).
cargo check --locked --manifest-path tests/fuzz/Cargo.toml --examples

step "leak check"
ci/leak-check.sh
