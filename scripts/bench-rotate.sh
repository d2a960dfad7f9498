#!/usr/bin/env bash
# KEK rotation on volumes of N file key rows (default: 100000 and 1000000), and `passwd` with
# the default Argon2id parameters. For each N:
# - `cofferfs rotate` wall time and memory (incremental, the default batch);
# - examples/rotate_bench on two copies of the same volume, while a writer thread creates a
#   key row every 5 ms through the same keyring: the old one-transaction rotation
#   (`at-once`) against the incremental one, each with its total time, its longest single
#   transaction, and the writer's wait per create (p50/p99/max): what a create waits for.
# Rows are made by examples/populate_keys (Keyring::new_file_key, what a create does).
# Usage: scripts/bench-rotate.sh [N...]   (BATCH=rows per step, default the built-in 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- 100000 1000000
cargo build --release --quiet --bin cofferfs --example populate_keys --example rotate_bench
T=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "bench pw" > "$work/pw"; chmod 600 "$work/pw"
for N in "$@"; do
    rm -rf "$work/c" "$work/a" "$work/b"
    "$T/cofferfs" init --passfile "$work/pw" "$work/c" > /dev/null
    "$T/examples/populate_keys" "$work/c" "$N" "bench pw"
    echo "== rows: $N; cofferfs.db: $(stat -c %s "$work/c/cofferfs.db") bytes"
    cp -a "$work/c" "$work/a"
    cp -a "$work/c" "$work/b"
    "$T/examples/rotate_bench" "$work/a" "bench pw" at-once
    "$T/examples/rotate_bench" "$work/b" "bench pw" incremental ${BATCH:-}
    /usr/bin/time -f "cofferfs rotate: wall %e s, max RSS %M KiB" \
        "$T/cofferfs" rotate --passfile "$work/pw" "$work/c" > /dev/null
done
echo "new pw" > "$work/new"; chmod 600 "$work/new"
/usr/bin/time -f "passwd wall %e s" "$T/cofferfs" passwd --passfile "$work/pw" --new-passfile "$work/new" "$work/c"
