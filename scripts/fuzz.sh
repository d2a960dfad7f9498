#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (cargo fuzz, libFuzzer, nightly toolchain) for SECONDS each
# (default 5), one after another at low priority, and fails on the first crash or failed
# assertion: libFuzzer then leaves the input in fuzz/artifacts/<target>/ and prints how to
# reproduce it. Corpora grow in fuzz/corpus/<target>/ (not committed) and are reused by the next
# run. Installs the nightly toolchain and cargo-fuzz when missing. See docs/FUZZING.md.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#   scripts/fuzz.sh --build-only    (toolchain, cargo-fuzz and the instrumented build; no run)
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

build_only=0
if [ "${1:-}" = --build-only ]; then
    build_only=1
    shift
fi
secs="${1:-5}"
shift || true

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked
fi

# The instrumented build lives outside the work tree, so that a fresh checkout (CI's) reuses
# the dependencies a previous run compiled (about 10 CPU-minutes the first time).
target_dir="${COFFERFS_FUZZ_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cofferfs-fuzz-target}"
mkdir -p "$target_dir"
fuzz() {
    local verb="$1"
    shift
    nice -n 19 cargo +nightly fuzz "$verb" --target-dir "$target_dir" "$@"
}

# Release build with debug assertions and overflow checks, AddressSanitizer on (cargo fuzz's
# defaults): safe Rust gains little from ASan, but chunk.rs wipes ring's key with
# unsafe code, and ring and SQLite carry C.
fuzz build
if [ $build_only = 1 ]; then
    exit 0
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(nice -n 19 cargo +nightly fuzz list)
fi
mkdir -p logs
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    log="logs/$t.log"
    # -timeout: one input taking longer than 10 s is a finding (unbounded work).
    if ! fuzz run "$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        >"$log" 2>&1; then
        tail -n 40 "$log" >&2
        echo "fuzz: $t FAILED (input in fuzz/artifacts/$t/, full log in fuzz/$log)" >&2
        exit 1
    fi
    # The last status line: executions, coverage (cov: edges, ft: features), corpus size.
    done_line=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    echo "fuzz: $t ${secs}s: $done_line" >&2
done
echo "fuzz: ${#targets[@]} targets, ${secs}s each: no crash" >&2
