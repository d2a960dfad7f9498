#!/usr/bin/env bash
# Where the daemon's time goes in one step of the benchmark: mounts a fresh cofferfs volume (on a
# fresh ext4, as bench.sh), prepares what the step needs, then runs the step once under
#   - `perf record -g` of the daemon: top symbols (self time) and the syscalls by total time;
#   - the kernel's fuse:fuse_request_send tracepoint: FUSE requests by opcode;
#   - sched:sched_wakeup: wake-ups of the daemon's threads and of the step's programs, and how
#     many of them had to wake an idle CPU;
# and prints the wall time and the daemon's CPU seconds. This is how the profiles quoted in
# docs/PERFORMANCE.md's commits and issue notes were taken.
#
# usage: scripts/profile.sh STEP [--files N] [--target T] [--backing ext4|tmpfs] [--keep DIR]
#   STEP     untar | ls | readall | rm | create | missing | seqwrite | seqread
#            (missing: N `stat`s of 100 names that do not exist, over and over, as a compiler's
#            include search or a shell's PATH walk does; "per file" is then per try)
#   --target cofferfs (default) | cofferfs-nowb | cofferfs-alt | gocryptfs | securefs | bindfs: the same step on
#            an anchor, for its FUSE requests per file (perf of the daemon works for any of them);
#            cofferfs-nowb is cofferfs mounted with --no-writeback-cache, cofferfs-alt with
#            $COFFERFS_ALT_ARGS
#   --files  files in the tree (untar, ls, readall, rm; default 20000) or created (create;
#            default 10000); seqwrite/seqread use 1 GiB
#   --backing  ext4 (default): a fresh ext4 on a loop device, as bench.sh; tmpfs: a fresh tmpfs
#            (no disk: what is left is the daemon's own cost and the kernel's)
#   --keep   copy perf.data files there (default: deleted)
#   --counts-only  only the FUSE requests (no perf record of the daemon)
#   --tsv F  also append "target step files opcode count" lines to F (scripts/bench-requests.sh)
# Requests are counted for this mount's FUSE connection only (the tracepoint's connection number
# is the minor device number of the mount), so other mounts on the machine do not count.
# Needs root (mounts, drop_caches), perf, fusermount3; builds release.
set -euo pipefail
cd "$(dirname "$0")/.."
STEP=${1:?usage: scripts/profile.sh STEP [--files N] [--keep DIR]}; shift
FILES=""
KEEP=""
TARGET=cofferfs
COUNTS_ONLY=0
TSV=""
BACKING=ext4
while [ $# -gt 0 ]; do
    case "$1" in
        --files) FILES=$2; shift 2 ;;
        --keep) KEEP=$2; shift 2 ;;
        --target) TARGET=$2; shift 2 ;;
        --counts-only) COUNTS_ONLY=1; shift ;;
        --tsv) TSV=$2; shift 2 ;;
        --backing) BACKING=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
case $STEP in untar|ls|readall|rm|create|missing|seqwrite|seqread) ;; *) echo "unknown step $STEP" >&2; exit 2 ;; esac
case $BACKING in ext4|tmpfs) ;; *) echo "unknown backing $BACKING" >&2; exit 2 ;; esac
case $TARGET in cofferfs|cofferfs-nowb|cofferfs-alt|gocryptfs|securefs|bindfs) ;; *) echo "unknown target $TARGET" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "profile.sh needs root" >&2; exit 1; }
command -v perf >/dev/null || { echo "profile.sh needs perf (apt-get install linux-perf)" >&2; exit 1; }

source scripts/lib/tools.sh
BIN=$(cofferfs_bin)
WORK=/var/tmp/cofferfs-profile
mkdir -p "$WORK"
MNT=$WORK/mnt
PID=""
source scripts/bench-lib.sh
check_alt_args "$TARGET"
cleanup() {
    if grep -q " $MNT " /proc/mounts; then fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT"; fi
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    release_fs
    rm -f "$WORK"/*.data
}
trap cleanup EXIT

# The same reproducible tree as bench.sh.
N=${FILES:-$([ "$STEP" = create ] && echo 10000 || echo 20000)}
case $STEP in create|missing) ;; *) TARBALL=$(tree_tarball "$N") ;; esac

if [ "$BACKING" = tmpfs ]; then fresh_tmpfs; else fresh_fs; fi
echo "profile password" > "$WORK/pass"; chmod 600 "$WORK/pass"
rm -rf "$MNT"; mkdir -p "$MNT" "$FS/back"
case $TARGET in
    cofferfs|cofferfs-nowb|cofferfs-alt)
        "$BIN" init --passfile "$WORK/pass" "$FS/back" >/dev/null
        read -ra EXTRA <<< "$(cofferfs_mount_args "$TARGET")"
        "$BIN" mount -f "${EXTRA[@]}" --passfile "$WORK/pass" "$FS/back" "$MNT" 2>>"$WORK/daemon.log" & ;;
    gocryptfs)
        gocryptfs -q -init -passfile "$WORK/pass" "$FS/back"
        gocryptfs -q -fg -passfile "$WORK/pass" "$FS/back" "$MNT" & ;;
    securefs)
        securefs create --format 4 --pass "profile password" "$FS/back" >/dev/null
        securefs mount --pass "profile password" "$FS/back" "$MNT" >/dev/null 2>&1 & ;;
    bindfs) bindfs -f --multithreaded "$FS/back" "$MNT" & ;;
esac
PID=$!
for _ in $(seq 1 300); do grep -q " $MNT " /proc/mounts && break; sleep 0.05; done

case $STEP in
    ls|readall|rm) tar -xf "$TARBALL" -C "$MNT"; drop_caches ;;
    seqread) dd if=/dev/zero of="$MNT/big" bs=1M count=1024 conv=fsync status=none; drop_caches ;;
    missing) mkdir "$MNT/m" ;;
esac
[ "$STEP" = rm ] && (cd "$MNT" && find . -type f -print0 | xargs -0 cat > /dev/null)

run_step() {
    case $STEP in
        untar) tar -xf "$TARBALL" -C "$MNT" && sync ;;
        ls) ls -lR "$MNT" > /dev/null ;;
        readall) (cd "$MNT" && find . -type f -print0 | xargs -0 cat > /dev/null) ;;
        rm) rm -rf "$MNT/usr" ;;
        create) mkdir -p "$MNT/c" && (cd "$MNT/c" && seq 1 "$N" | xargs touch && find . -type f | xargs stat > /dev/null) ;;
        missing) python3 -c 'import os, sys
n, d = int(sys.argv[1]), sys.argv[2]
for i in range(n):
    os.path.exists(f"{d}/absent{i % 100}")' "$N" "$MNT/m" ;;
        seqwrite) dd if=/dev/zero of="$MNT/big" bs=1M count=1024 conv=fsync status=none ;;
        seqread) dd if="$MNT/big" of=/dev/null bs=1M status=none ;;
    esac
}
cpu() { awk '{print $14 + $15}' "/proc/$PID/stat"; }

CONN=$(python3 -c 'import os, sys; print(os.minor(os.stat(sys.argv[1]).st_dev))' "$MNT")
PERF=""
if [ $COUNTS_ONLY = 0 ]; then
    perf record -q -g -o "$WORK/daemon.data" -p "$PID" 2>/dev/null &
    PERF=$!
fi
perf record -q -e fuse:fuse_request_send -e sched:sched_wakeup -a -o "$WORK/fuse.data" 2>/dev/null &
TRACE=$!
sleep 1
# The backing store's block I/O during the step (ext4: the loop device; tmpfs has none).
blkstat() { [ -n "${LOOP:-}" ] && cat "/sys/block/$(basename "$LOOP")/stat" || echo "0 0 0 0 0 0 0 0"; }
io0=$(blkstat)
c0=$(cpu); t0=$(date +%s.%N)
run_step
t1=$(date +%s.%N); c1=$(cpu)
io1=$(blkstat)
DAEMON_TIDS=$(ls "/proc/$PID/task" | xargs)
kill -INT $PERF "$TRACE"; wait $PERF "$TRACE" 2>/dev/null || true

set +o pipefail # the reports below end in `head`
echo "== $STEP: $(echo "$t1 - $t0" | bc) s wall, $(echo "($c1 - $c0) / $(getconf CLK_TCK)" | bc -l | cut -c1-5) s daemon CPU"
# /sys/block/DEV/stat: reads completed, merged, sectors, ms; writes completed, merged, sectors, ms.
read -ra A <<< "$io0"; read -ra Z <<< "$io1"
echo "== backing store I/O: $((Z[0] - A[0])) reads, $(((Z[2] - A[2]) / 2)) KiB read; $((Z[4] - A[4])) writes, $(((Z[6] - A[6]) / 2)) KiB written"
echo
echo "== FUSE requests by opcode (this mount's connection $CONN), and per file ($N files)"
perf script -i "$WORK/fuse.data" 2>/dev/null | grep " connection $CONN " | grep -o 'FUSE_[A-Z_]*' \
    | sort | uniq -c | sort -rn > "$WORK/counts"
awk -v n="$N" '{printf "%8d  %6.2f/file  %s\n", $1, $1 / n, $2; t += $1} END {printf "%8d  %6.2f/file  total\n", t, t / n}' "$WORK/counts" | head -16
[ -z "$TSV" ] || awk -v t="$TARGET" -v s="$STEP" -v n="$N" '{print t "\t" s "\t" n "\t" $2 "\t" $1}' "$WORK/counts" >> "$TSV"
echo
# Wake-ups (sched:sched_wakeup, the whole machine): of the daemon's threads, and of every other
# user task (the step's programs). A wake-up recorded on a CPU running its idle task ("swapper")
# was delivered by an interrupt to an idle CPU: in a VM guest that halts idle vCPUs at once
# (bench.sh --halt-poll), the dearest kind, paid to the host.
echo "== wake-ups per file: of the daemon's threads, and of the step's programs (through an idle CPU)"
perf script -i "$WORK/fuse.data" -F comm,cpu,event,trace 2>/dev/null | grep 'sched:sched_wakeup' \
    | python3 -c '
import re, sys
n, daemon = int(sys.argv[1]), set(sys.argv[2].split())
kernel = re.compile(r"^(kworker|ksoftirqd|rcu_|migration|kthreadd|perf|swapper|jbd2|kcompactd|khugepaged|loop|irq/|cpuhp|watchdog)")
count = {"daemon": [0, 0], "programs": [0, 0]}
for line in sys.stdin:
    m = re.match(r"\s*(.*?)\s+\[\d+\].*comm=(\S+) pid=(\d+)", line)
    if not m:
        continue
    on, comm, pid = m.groups()
    if pid in daemon:
        who = "daemon"
    elif kernel.match(comm):
        continue
    else:
        who = "programs"
    count[who][0] += 1
    count[who][1] += on.startswith("swapper")
for who, (total, idle) in count.items():
    print("%10s  %6.2f/file  (%.2f/file through an idle CPU)" % (who, total / n, idle / n))
' "$N" "$DAEMON_TIDS"
echo
if [ $COUNTS_ONLY = 0 ]; then
echo "== daemon: top symbols, self time"
perf report -i "$WORK/daemon.data" --no-children --sort symbol -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -25
echo
echo "== daemon: system calls and SQLite, total time (with callees)"
perf report -i "$WORK/daemon.data" --children --sort symbol -g none 2>/dev/null \
    | grep -E '__x64_sys_|__do_sys_|sqlite3_step|fuse_dev_(read|write)' | head -20
fi
if [ -n "$KEEP" ]; then mkdir -p "$KEEP"; cp "$WORK"/*.data "$KEEP"/; echo; echo "perf data kept in $KEEP"; fi
if [[ $TARGET == cofferfs || $TARGET == cofferfs-* ]]; then "$BIN" umount "$MNT"; else fusermount3 -u "$MNT"; fi
wait "$PID" 2>/dev/null || true
PID=""
