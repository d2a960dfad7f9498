#!/usr/bin/env bash
# An online KEK rotation of N key rows (default 1,000,000) while a writer creates, writes
# (4 KiB) and closes files in a loop through the mount: the writer's latency per file
# (p50/p99/max) before and during the rotation, and the rotation's time online against
# `cofferfs rotate` of the same volume unmounted.
#
# The N rows are made by examples/populate_keys: real key rows (a random FEK each, wrapped
# under the KEK and inserted through Keyring::new_file_key, exactly what a create does), but
# without ciphertext files (fsck would call them orphans; a rotation re-wraps them all the
# same). It is the fastest honest way: 1,000,000 creates through FUSE would take hours.
#
# --crash K: K rounds of: begin an online rotation under the writer, kill -9 the daemon at a
# random point of it, then check that the volume mounts with every slot (the password, and
# the key file added back after each rotation), that every file the writer closed reads back
# exactly, and that the rotation resumes in the new daemon and completes.
#
# Usage: scripts/bench-online-rotate.sh [N] [--crash K]   (root: FUSE, /run/cofferfs)
# BATCH=ROWS sets the rows per rotation transaction (default: cofferfs's, 1000).
set -euo pipefail
cd "$(dirname "$0")/.."
N=1000000
CRASH=0
while [ $# -gt 0 ]; do
    case $1 in
        --crash) CRASH=$2; shift 2 ;;
        *) N=$1; shift ;;
    esac
done
cargo build --release --quiet --bin cofferfs --example populate_keys
T=${CARGO_TARGET_DIR:-target}/release
C="$T/cofferfs"
work=$(mktemp -d /var/tmp/cofferfs-online-rotate.XXXXXX)
M=$work/m
mkdir -p "$M"
cleanup() {
    [ -f "$work/stop" ] || touch "$work/stop" 2>/dev/null || true
    if grep -q " $M " /proc/mounts; then "$C" umount "$M" >/dev/null 2>&1 || fusermount3 -uz "$M" || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
echo "bench pw" > "$work/pw"
chmod 600 "$work/pw"
KDF=(--argon2-memory 65536 --argon2-time 3 --argon2-lanes 4)
"$C" init "${KDF[@]}" --passfile "$work/pw" "$work/c" > /dev/null
"$C" keys new-keyfile "$work/kf" > /dev/null
t0=$(date +%s.%N)
"$T/examples/populate_keys" "$work/c" "$N" "bench pw"
echo "rows: $N made in $(echo "$(date +%s.%N) - $t0" | bc) s; cofferfs.db: $(stat -c %s "$work/c/cofferfs.db") bytes"

now_ns() { python3 -c 'import time; print(time.monotonic_ns())'; }

# The writer: create+write 4 KiB+close, one file after another, each timed; "START_NS LAT_NS"
# per file into $3 when $2 appears. Content follows the name, so every file can be checked.
cat > "$work/writer.py" <<'PY'
import os, sys, time
d, stop, out = sys.argv[1], sys.argv[2], sys.argv[3]
start = int(sys.argv[4]) if len(sys.argv) > 4 else 0
lat = []
i = start
while not os.path.exists(stop):
    sub = os.path.join(d, "d%d" % (i // 1000))
    if i % 1000 == 0 or i == start:
        try:
            os.makedirs(sub, exist_ok=True)
        except OSError:
            break
    p = os.path.join(sub, "f%d" % i)
    body = (b"%08d" % i) * 512
    t0 = time.monotonic_ns()
    try:
        fd = os.open(p, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
        os.write(fd, body)
        os.close(fd)
    except OSError:
        break  # the daemon was killed (--crash): this file was never closed
    lat.append((t0, time.monotonic_ns() - t0))
    i += 1
with open(out, "w") as f:
    for t, l in lat:
        f.write("%d %d\n" % (t, l))
with open(out + ".count", "w") as f:
    f.write(str(i))
PY
cat > "$work/stats.py" <<'PY'
import sys
path, lo, hi = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
l = sorted(lat for t, lat in (map(int, x.split()) for x in open(path)) if lo <= t < hi)
if not l:
    print("no files"); sys.exit()
q = lambda p: l[min(len(l) - 1, int(p * len(l)))] / 1e6
print("%d files, p50 %.2f ms, p99 %.2f ms, max %.2f ms" % (len(l), q(0.50), q(0.99), l[-1] / 1e6))
PY
cat > "$work/check.py" <<'PY'
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
bad = 0
for i in range(n):
    p = os.path.join(d, "d%d" % (i // 1000), "f%d" % i)
    try:
        if open(p, "rb").read() != (b"%08d" % i) * 512:
            bad += 1; print("wrong content:", p)
    except FileNotFoundError:
        pass  # created in the instant of the kill, never closed
    except OSError as e:
        bad += 1; print(p, e)
sys.exit(1 if bad else 0)
PY

mount_pw() { "$C" mount --nosyslog --passfile "$work/pw" "$work/c" "$M"; }

if [ "$CRASH" -eq 0 ]; then
    cp -a "$work/c" "$work/c-offline"
    t0=$(date +%s.%N)
    "$C" rotate --passfile "$work/pw" "$work/c-offline" > "$work/offline.out"
    offline=$(echo "$(date +%s.%N) - $t0" | bc)
    echo "offline: $(cat "$work/offline.out")"
    rm -rf "$work/c-offline"
    mount_pw
    rm -f "$work/stop"
    python3 "$work/writer.py" "$M/w" "$work/stop" "$work/lat" &
    wpid=$!
    sleep 5
    r0=$(now_ns)
    "$C" rotate --passfile "$work/pw" --wait ${BATCH:+--batch-rows "$BATCH"} "$work/c" > "$work/rotate.out"
    r1=$(now_ns)
    sleep 2
    touch "$work/stop"
    wait $wpid
    echo "online: $(grep -h "finished" "$work/rotate.out")"
    echo "rotation, whole command (unlock and slot re-wrap included): online $(echo "($r1 - $r0) / 1000000000" | bc -l | cut -c1-6) s (rotate --wait, begin to last row), offline $offline s"
    echo -n "writer before the rotation: "; python3 "$work/stats.py" "$work/lat" 0 "$r0"
    echo -n "writer during the rotation: "; python3 "$work/stats.py" "$work/lat" "$r0" "$r1"
    python3 "$work/check.py" "$M/w" "$(cat "$work/lat.count")" && echo "every file the writer closed reads back"
    "$C" umount "$M"
    exit 0
fi

# --crash K
written=0
mount_pw
for round in $(seq 1 "$CRASH"); do
    "$C" keys add --passfile "$work/pw" --keyfile "$work/kf" "$work/c" > /dev/null
    rm -f "$work/stop"
    python3 "$work/writer.py" "$M/w" "$work/stop" "$work/lat" "$written" &
    wpid=$!
    "$C" rotate --passfile "$work/pw" --drop-other-slots ${BATCH:+--batch-rows "$BATCH"} "$work/c" > /dev/null
    # A random point of the rotation: up to 1.5 times its expected length (rows / 300k per s).
    delay=$(python3 -c "import random; print(random.uniform(0, 1.5 * max(0.2, $N / 300000)))")
    sleep "$delay"
    state=$("$C" status --json "$work/c" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["pid"], (d["rotation"] or {}).get("state"), (d["rotation"] or {}).get("done"))')
    kill -9 "${state%% *}"
    touch "$work/stop"
    wait $wpid || true
    written=$(cat "$work/lat.count")
    fusermount3 -uz "$M" 2>/dev/null || umount -l "$M"
    # Every slot: the key file added back before this rotation was dropped by it, unless the
    # kill came before the rotation began; the password always opens.
    mount_pw
    python3 "$work/check.py" "$M/w" "$written"
    for _ in $(seq 1 6000); do
        st=$("$C" status --json "$work/c" | python3 -c 'import json,sys; r=json.load(sys.stdin)["rotation"]; print((r or {}).get("state"))')
        [ "$st" = running ] || break
        sleep 0.1
    done
    [ "$st" = finished ] || [ "$st" = None ] || { echo "round $round: rotation $st"; exit 1; }
    "$C" keys add --passfile "$work/pw" --keyfile "$work/kf" "$work/c" > /dev/null
    "$C" umount "$M"
    "$C" mount --nosyslog --keyfile "$work/kf" "$work/c" "$M"
    python3 "$work/check.py" "$M/w" "$written"
    "$C" umount "$M"
    "$C" keys remove --passfile "$work/pw" "$work/c" "$("$C" keys list "$work/c" | awk '$2 == "keyfile" {print $1; exit}')" > /dev/null
    mount_pw
    echo "round $round: killed at ${delay}s (pid/state/done: $state); remounted with both slots, $written files read back, rotation resumed: $st"
done
"$C" umount "$M"
echo "$CRASH kills: every time the volume mounted with every slot, every file read back, the rotation completed"
