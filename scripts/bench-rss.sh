#!/usr/bin/env bash
# Daemon memory with many files touched (issue 6: under 100 MiB with 100,000 files): a fresh
# volume (default Argon2id parameters), N empty files created in directories of 10,000, then
# all of them stat'ed, then read; after each phase the daemon's resident set (VmRSS), its peak
# (VmHWM: the first 64 MiB are Argon2id's at unlock, freed right after), its open fds, and the
# time the phase took. Release build, as root.
#
#   scripts/bench-rss.sh [N]        (default 100000; BENCH_DIR default /var/tmp)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}
cargo build --release --locked --quiet
BIN=$(realpath "${CARGO_TARGET_DIR:-target}/release/cofferfs")
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/cofferfs-rss.XXXXXX")
PID=""
cleanup() {
    cd /
    if grep -q " $W/m " /proc/mounts; then "$BIN" umount "$W/m" || fusermount3 -uz "$W/m" || true; fi
    [ -z "$PID" ] || wait "$PID" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT INT TERM
mkdir -p "$W/m"
echo "bench password" > "$W/pass"
"$BIN" init --passfile "$W/pass" "$W/c" >/dev/null
"$BIN" mount -f --passfile "$W/pass" "$W/c" "$W/m" 2>"$W/log" &
PID=$!
for _ in $(seq 300); do grep -q " $W/m " /proc/mounts && break; sleep 0.05; done

report() { # PHASE SECONDS
    printf '%-8s %7.1f s  rss %6.1f MiB  peak %6.1f MiB  fds %6d\n' "$1" "$2" \
        "$(awk '/VmRSS/ {print $2/1024}' /proc/$PID/status)" \
        "$(awk '/VmHWM/ {print $2/1024}' /proc/$PID/status)" \
        "$(ls /proc/$PID/fd | wc -l)"
}
phase() { # NAME COMMAND
    local t0 t1
    t0=$(date +%s.%N); (cd "$W/m" && bash -c "$2"); t1=$(date +%s.%N)
    report "$1" "$(echo "$t1 - $t0" | bc)"
}
echo "$N files; open-file limit of this shell: $(ulimit -n); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
report mounted 0
phase create "for d in \$(seq 0 $(( (N - 1) / 10000 ))); do mkdir \$d; n=\$(( $N - d * 10000 )); [ \$n -gt 10000 ] && n=10000; (cd \$d && seq 1 \$n | xargs touch); done"
phase stat "find . -type f | xargs stat > /dev/null"
phase read "find . -type f -print0 | xargs -0 cat > /dev/null"
echo "files: $(find "$W/m" -type f | wc -l)"
