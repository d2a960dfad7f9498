#!/usr/bin/env bash
# Runs fsx (the Rust rewrite, crate `fsx`) on a fresh cofferfs volume: random reads, writes,
# mmap reads and writes, truncates, fsyncs and reopens, checked against an in-memory model.
#
#   scripts/fsx.sh [-n OPS] [-s SEED] [-p PROFILE]
#
# PROFILE is `mmap` (default: pread/pwrite, mmap read/write, msync, truncate, fsync) or
# `falloc` (the same plus posix_fallocate, FALLOC_FL_PUNCH_HOLE, copy_file_range, sendfile and
# posix_fadvise). Defaults: 20000 ops, seed 42 (about 30 s; for CI: the defaults plus
# `-p falloc -n 10000`; see docs/POSIX.md for 100k-op timings). On a failure fsx leaves its
# artifacts (expected file and op log) in the work directory, printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

ops=20000 seed=42 profile=mmap
while getopts "n:s:p:" o; do
    case $o in
        n) ops=$OPTARG ;;
        s) seed=$OPTARG ;;
        p) profile=$OPTARG ;;
        *) echo "usage: $0 [-n OPS] [-s SEED] [-p mmap|falloc]" >&2; exit 2 ;;
    esac
done

export PATH="$HOME/.cargo/bin:$PATH"
command -v fsx >/dev/null || cargo install --locked fsx
command -v fusermount3 >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fuse3 >/dev/null
}
# COFFERFS_BIN: a binary already built (scripts/test.sh passes the one `cargo test` built, which
# spares CI a release build of everything); a release build otherwise.
if [ -n "${COFFERFS_BIN:-}" ]; then
    BIN="$(realpath "$COFFERFS_BIN")"
else
    cargo build --release --locked --quiet
    BIN="$(realpath "${CARGO_TARGET_DIR:-target}/release/cofferfs")"
fi

WORK="$(mktemp -d /tmp/cofferfs-fsx.XXXXXX)"
C="$WORK/cipher" M="$WORK/plain"
mkdir -p "$M"
daemon=""
cleanup() {
    cd /
    if grep -q " $M " /proc/mounts; then "$BIN" umount "$M" || fusermount3 -uz "$M" || true; fi
    if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
        sleep 1
        kill "$daemon" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

common='flen = 262144
[weights]
close_open = 1
read = 10
write = 10
mapread = 10
mapwrite = 10
invalidate = 1
fsync = 1
fdatasync = 1'
case $profile in
    mmap) printf '%s\ntruncate = 1\n' "$common" >"$WORK/fsx.toml" ;;
    falloc) printf '%s\ntruncate = 2\nposix_fallocate = 3\npunch_hole = 3\ncopy_file_range = 2\nsendfile = 1\nposix_fadvise = 1\n' \
        "$common" >"$WORK/fsx.toml" ;;
    *) echo "unknown profile $profile (mmap or falloc)" >&2; exit 2 ;;
esac

echo pw | "$BIN" init --argon2-memory 1024 --argon2-time 1 --argon2-lanes 1 "$C" >/dev/null 2>&1
echo pw | "$BIN" mount -f "$C" "$M" 2>"$WORK/cofferfs-daemon.log" &
daemon=$!
for _ in $(seq 100); do grep -q " $M " /proc/mounts && break; sleep 0.1; done
grep -q " $M " /proc/mounts || { echo "cofferfs did not mount" >&2; exit 1; }

echo "fsx: $ops ops, seed $seed, profile $profile"
start=$(date +%s)
status=0
fsx -f "$WORK/fsx.toml" -N "$ops" -S "$seed" -P "$WORK" "$M/fsx.dat" >"$WORK/fsx.log" 2>&1 || status=$?
end=$(date +%s)
tail -n 20 "$WORK/fsx.log"
echo "fsx exit status $status after $((end - start)) s; logs: $WORK"
if grep -iE 'warn|error' "$WORK/cofferfs-daemon.log" | grep -qv 'Not Implemented'; then
    echo "daemon log:"; grep -iE 'warn|error' "$WORK/cofferfs-daemon.log" | grep -v 'Not Implemented' | head -n 20
fi
exit $status
