#!/usr/bin/env bash
# Chunk-size benchmark (docs/CHUNK-SIZE.md): volume-layer throughput per chunk size against a
# plain file, a dd baseline on the same disk, and the time of `cofferfs init` with the default
# Argon2id parameters. Release build. Run as root so the page cache can be dropped.
#   scripts/volume-bench.sh [CHUNK...]        (default: 4096 16384 65536)
# BENCH_DIR (default /var/tmp) must be on a real disk, not tmpfs.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${BENCH_DIR:-/var/tmp}
chunks=("$@")
[ ${#chunks[@]} -gt 0 ] || chunks=(4096 16384 65536)

fstype=$(stat -f -c %T "$dir")
if [ "$fstype" = tmpfs ]; then
    echo "$dir is tmpfs: set BENCH_DIR to a directory on a disk" >&2
    exit 1
fi

cargo build --release --quiet --bin cofferfs --example volume_bench
target=${CARGO_TARGET_DIR:-target}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || echo "(page cache not dropped)"; }

echo "== $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $dir on $fstype"

echo "== dd baseline: 256 MiB plain file"
f="$dir/cofferfs-bench-dd.$$"
dd if=/dev/zero of="$f" bs=1M count=256 conv=fsync 2>&1 | tail -1
drop_caches
dd if="$f" of=/dev/null bs=1M 2>&1 | tail -1
rm -f "$f"

echo "== volume layer (examples/volume_bench.rs)"
"$target/release/examples/volume_bench" --dir "$dir" "${chunks[@]}"

echo "== cofferfs init with the default Argon2id parameters (m=64 MiB, t=3, p=4), release"
v="$dir/cofferfs-bench-init.$$"
TIMEFORMAT='init: %R s real, %U s user'
for _ in 1 2 3; do
    rm -rf "$v"
    time (printf 'bench password\n' | "$target/release/cofferfs" init "$v" >/dev/null)
done
rm -rf "$v"
