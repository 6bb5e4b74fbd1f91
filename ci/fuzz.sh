#!/usr/bin/env bash
# Runs each cargo-fuzz target in tests/fuzz for SECONDS (default 20),
# starting from the committed seed corpora; fails on any crash, panic or
# sanitizer report. Usage: ci/fuzz.sh [SECONDS] [TARGET...]
#
# Toolchain: only stable Rust is available. cargo-fuzz passes nightly-only
# flags (-Zsanitizer=address, -Cpasses=sancov-module, ...), which stable
# rustc accepts with RUSTC_BOOTSTRAP=1; AddressSanitizer works that way on
# x86_64 Linux (the sanitizer runtime ships with the stable toolchain).
# Set FUZZ_SANITIZER=none to build without it (libFuzzer still guides the
# search and catches panics) if a toolchain lacks the runtime.
#
# New inputs the fuzzer finds go to a scratch directory, not into the
# committed corpus; a crashing input is kept in tests/fuzz/artifacts/.
set -euo pipefail

seconds="${1:-20}"
shift || true
root="$(cd "$(dirname "$0")/.." && pwd)"
fuzz_dir="$root/tests/fuzz"
sanitizer="${FUZZ_SANITIZER:-address}"
# FUZZ_DEV=1 builds the targets in the dev profile: a much shorter build
# for a short smoke run (ci/test.sh), slower executions.
profile=()
if [ -n "${FUZZ_DEV:-}" ]; then
    profile=(--dev)
fi
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "+ cargo install cargo-fuzz --locked"
    cargo install cargo-fuzz --locked
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cd "$root" && cargo fuzz list --fuzz-dir "$fuzz_dir")
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

cd "$root"
echo "+ cargo fuzz build --fuzz-dir tests/fuzz -s $sanitizer ${profile[*]}"
cargo fuzz build --fuzz-dir "$fuzz_dir" -s "$sanitizer" "${profile[@]}"

failed=()
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t"
    echo "+ cargo fuzz run --fuzz-dir tests/fuzz -s $sanitizer $t <scratch> tests/fuzz/corpus/$t -- -max_total_time=$seconds"
    if cargo fuzz run --fuzz-dir "$fuzz_dir" -s "$sanitizer" "${profile[@]}" "$t" \
        "$scratch/$t" "$fuzz_dir/corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 2>"$scratch/$t.log"; then
        grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$scratch/$t.log" || true
        echo "fuzz $t: ok"
    else
        # The panic message, then libFuzzer's summary and the failing input.
        grep -A4 -m3 -E 'panicked at|ERROR: AddressSanitizer' "$scratch/$t.log" || true
        echo "..."
        tail -n 30 "$scratch/$t.log"
        echo "fuzz $t: FAILED; reproduce with:"
        echo "  RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir tests/fuzz -s $sanitizer $t tests/fuzz/artifacts/$t/<crash-file>"
        failed+=("$t")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}"
    exit 1
fi
echo "fuzz: ${#targets[@]} target(s) ran ${seconds}s each without a crash"
