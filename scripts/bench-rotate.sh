#!/usr/bin/env bash
# Times `cofferfs rotate` on a volume with N file key rows (default 100000), and `passwd` with
# the default Argon2id parameters. Usage: scripts/bench-rotate.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
cargo build --release --quiet --bin cofferfs --example populate_keys
T=${CARGO_TARGET_DIR:-target}/release
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "bench pw" > "$work/pw"
"$T/cofferfs" init --passfile "$work/pw" "$work/c" > /dev/null
"$T/examples/populate_keys" "$work/c" "$N" "bench pw"
echo "rows: $N; cofferfs.db: $(stat -c %s "$work/c/cofferfs.db") bytes"
/usr/bin/time -f "rotate wall %e s, max RSS %M KiB" "$T/cofferfs" rotate --passfile "$work/pw" "$work/c"
echo "new pw" > "$work/new"
/usr/bin/time -f "passwd wall %e s" "$T/cofferfs" passwd --passfile "$work/pw" --new-passfile "$work/new" "$work/c"
