#!/usr/bin/env bash
# How the cost of small files grows with their number (issue 16: per-file cost flat within 1.5x
# from 1,000 to 1,000,000 files). For each N and each kind (empty files, 4 KiB files), on each
# target, on a fresh ext4 (loop device, as bench.sh; sized and with inodes for N), N files in
# directories of 1000 (d0000/f000 ... d0999/f999), timed with the wall clock:
#   create    one Python process (os.open/os.write/close, scripts/lib/mkfiles.py), then sync
#   ls_lR     `ls -lR` after drop_caches
#   read_all  `find -type f -print0 | xargs -0 cat` after drop_caches
#   (memory)  the daemon's peak and end RSS (VmHWM, VmRSS) after those steps; then unmount
#   cofferfs only, unmounted: header store bytes per file (cofferfs.db and any -wal/-shm after
#             the unmount's checkpoint, divided by N), `cofferfs rotate`, `cofferfs fsck`,
#             `cofferfs reencrypt --all` (empty files have no key and are left alone)
#   rm_rf     mounted again, after drop_caches: `rm -rf` of the tree
# then one directory of --bigdir empty entries per target: its creation, `ls` (names only) and
# `ls -l` of it after drop_caches, `stat` of one name in it and the creation of one more file
# (each after drop_caches).
#
# Prints tables of seconds, of per-file cost in microseconds with the ratio largest N / smallest
# N, memory and store bytes per file, and charts per-file cost against N (log-log,
# scripts/lib/charts.py). The section "## Scale: 1,000 to 1,000,000 files" of
# docs/PERFORMANCE.md, with the chart docs/perf/scale.svg, is written with --out-section or when
# the full size list ran. With one kind (--kinds empty or 4k) the section and chart are that
# kind's own ("## Scale: ... (empty files)", docs/perf/scale-empty.svg), so the two kinds can be
# run apart. A partial run only prints (its chart stays in $WORK).
#
# usage: scripts/bench-scale.sh [--sizes "1000 10000 100000 1000000"] [--kinds "empty 4k"]
#            [--targets "cofferfs gocryptfs"] [--anchors-up-to N] [--bigdir N] [--out-section]
#   --targets  any of cofferfs gocryptfs securefs bindfs
#   --anchors-up-to  run the targets other than cofferfs only for sizes up to N (the 1M runs
#              of every anchor take over an hour on 2 cores)
#   --bigdir   entries of the one big directory (default 100000; 0: skip it)
# COFFERFS_BIN=path uses that binary instead of building the release one. Needs root (mounts,
# loop devices, drop_caches). Volumes get a cheap password slot (Argon2id m=8 MiB, t=1;
# gocryptfs -scryptn 10) so that the unlock of each command stays out of the per-file figures.
set -euo pipefail
cd "$(dirname "$0")/.."
DEFAULT_SIZES="1000 10000 100000 1000000"
SIZES=$DEFAULT_SIZES
KINDS="empty 4k"
TARGETS="cofferfs gocryptfs"
BIGDIR=100000
ANCHORS_UP_TO=""
OUT_SECTION=0
while [ $# -gt 0 ]; do
    case "$1" in
        --sizes) SIZES=$2; shift 2 ;;
        --kinds) KINDS=$2; shift 2 ;;
        --targets) TARGETS=$2; shift 2 ;;
        --bigdir) BIGDIR=$2; shift 2 ;;
        --anchors-up-to) ANCHORS_UP_TO=$2; shift 2 ;;
        --out-section) OUT_SECTION=1; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
for n in $SIZES $BIGDIR; do
    [[ $n =~ ^[0-9]+$ ]] || { echo "not a number of files: $n" >&2; exit 2; }
done
for k in $KINDS; do
    case $k in empty|4k) ;; *) echo "--kinds: empty and/or 4k, not $k" >&2; exit 2 ;; esac
done
for t in $TARGETS; do
    case $t in cofferfs|gocryptfs|securefs|bindfs) ;; *) echo "unknown target $t" >&2; exit 2 ;; esac
done
[ "$(id -u)" = 0 ] || { echo "bench-scale.sh needs root (mounts, loop devices, drop_caches)" >&2; exit 1; }
[ "$SIZES" = "$DEFAULT_SIZES" ] && OUT_SECTION=1

source scripts/lib/tools.sh
anchors=()
for t in $TARGETS; do [ "$t" = cofferfs ] || anchors+=("$t:$t"); done
install_missing fusermount3:fuse3 bc:bc "${anchors[@]}"
BIN=$(cofferfs_bin)

WORK=/var/tmp/cofferfs-scale
mkdir -p "$WORK"
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
PY=$(chart_python)
PASS=$WORK/pass
echo "bench password" > "$PASS"
chmod 600 "$PASS"
RESULTS=$WORK/results.tsv   # target, kind, N, step, value (seconds, MiB or bytes)
ERRORS=$WORK/errors.txt     # steps whose command failed
LOG=$WORK/commands.log      # the end of each command's output
: > "$RESULTS"; : > "$ERRORS"; : > "$LOG"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
T_START=$(date +%s)

MNT=$WORK/mnt
PID=""
cleanup() {
    set +e
    cd /
    if grep -q " $MNT " /proc/mounts; then fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT"; fi
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; fi
    PID=""
    release_fs
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_mounted() {
    for _ in $(seq 1 600); do grep -q " $MNT " /proc/mounts && return 0; sleep 0.05; done
    echo "mount of $1 did not appear" >&2; exit 1
}

init_target() { # TARGET BACKDIR
    case $1 in
        cofferfs) "$BIN" init --passfile "$PASS" --argon2-memory 8192 --argon2-time 1 "$2" >/dev/null ;;
        gocryptfs) mkdir -p "$2"; gocryptfs -q -init -scryptn 10 -passfile "$PASS" "$2" ;;
        securefs) mkdir -p "$2"; securefs create --format 4 --pass "bench password" "$2" >/dev/null ;;
        bindfs) mkdir -p "$2" ;;
    esac
}

mount_target() { # TARGET BACKDIR: mounted at $MNT, PID the daemon's pid
    rm -rf "$MNT"; mkdir -p "$MNT"
    case $1 in
        cofferfs) "$BIN" mount -f --passfile "$PASS" "$2" "$MNT" 2>>"$LOG" & ;;
        gocryptfs) gocryptfs -q -fg -passfile "$PASS" "$2" "$MNT" 2>>"$LOG" & ;;
        securefs) securefs mount --pass "bench password" "$2" "$MNT" >/dev/null 2>>"$LOG" & ;;
        bindfs) bindfs -f --multithreaded "$2" "$MNT" 2>>"$LOG" & ;;
    esac
    PID=$!
    wait_mounted "$1"
}

umount_target() { # TARGET
    if [ "$1" = cofferfs ]; then "$BIN" umount "$MNT"; else fusermount3 -u "$MNT"; fi
    wait "$PID" 2>/dev/null || true
    PID=""
}

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$RESULTS"; }

# timed TARGET KIND N STEP COMMAND...: wall seconds of COMMAND. A failure is recorded with its
# exit code (reencrypt's 28 "some files left alone" is expected for empty files).
timed() {
    local t=$1 k=$2 n=$3 s=$4 t0 t1 rc=0; shift 4
    echo "== $t $k $n: $s" >> "$LOG"
    t0=$(date +%s.%N)
    "$@" >"$WORK/step.out" 2>&1 || rc=$?
    t1=$(date +%s.%N)
    tail -n 5 "$WORK/step.out" >> "$LOG" # reencrypt prints a line per file
    record "$t" "$k" "$n" "$s" "$(echo "$t1 - $t0" | bc)"
    if [ $rc != 0 ] && ! { [ "$s" = reencrypt ] && [ $rc = 28 ] && [ "$k" = empty ]; }; then
        echo "$t $k N=$n $s: exit $rc" | tee -a "$ERRORS" >&2
    fi
    printf '  %-10s %8.3f s\n' "$s" "$(echo "$t1 - $t0" | bc)" >&2
}

memory() { # TARGET KIND N: the daemon's peak and end resident set
    [ -r "/proc/$PID/status" ] || return 0
    record "$1" "$2" "$3" peak_rss_mib "$(awk '$1 == "VmHWM:" {printf "%.1f", $2/1024}' "/proc/$PID/status")"
    record "$1" "$2" "$3" end_rss_mib "$(awk '$1 == "VmRSS:" {printf "%.1f", $2/1024}' "/proc/$PID/status")"
}

# fresh_fs_for N BYTES_PER_FILE: a fresh ext4 with room and inodes for N files of that size
# (a 4 KiB file takes two blocks once encrypted) and their directories.
fresh_fs_for() {
    local size=$(( $1 * (BYTES_PER_FILE_SLACK + $2 * 3) + (3 << 30) ))
    fresh_fs "$size" -N $(( $1 + $1 / 2 + 200000 ))
}
BYTES_PER_FILE_SLACK=4096

for n in $SIZES; do
    for kind in $KINDS; do
        bytes=0; [ "$kind" = 4k ] && bytes=4096
        for t in $TARGETS; do
            if [ -n "$ANCHORS_UP_TO" ] && [ "$t" != cofferfs ] && [ "$n" -gt "$ANCHORS_UP_TO" ]; then
                continue
            fi
            echo "$t: $n $kind files ($(( $(date +%s) - T_START )) s so far)" >&2
            fresh_fs_for "$n" "$bytes"
            back=$FS/back
            init_target "$t" "$back"
            mount_target "$t" "$back"
            sync
            timed "$t" "$kind" "$n" create bash -c "'$PY' scripts/lib/mkfiles.py tree '$MNT/t' $n $bytes && sync"
            drop_caches
            timed "$t" "$kind" "$n" ls_lR bash -c "ls -lR '$MNT/t' > /dev/null"
            drop_caches
            timed "$t" "$kind" "$n" read_all bash -c "cd '$MNT/t' && find . -type f -print0 | xargs -0 cat > /dev/null"
            memory "$t" "$kind" "$n"
            umount_target "$t"
            if [ "$t" = cofferfs ]; then
                store=0
                for f in "$back"/cofferfs.db "$back"/cofferfs.db-wal "$back"/cofferfs.db-shm; do
                    if [ -f "$f" ]; then store=$((store + $(stat -c %s "$f"))); fi
                done
                record "$t" "$kind" "$n" store_bytes "$store"
                timed "$t" "$kind" "$n" rotate "$BIN" rotate --passfile "$PASS" "$back"
                timed "$t" "$kind" "$n" fsck "$BIN" fsck --passfile "$PASS" "$back"
                timed "$t" "$kind" "$n" reencrypt "$BIN" reencrypt --passfile "$PASS" "$back" --all
            fi
            mount_target "$t" "$back"
            drop_caches
            timed "$t" "$kind" "$n" rm_rf rm -rf "$MNT/t"
            umount_target "$t"
        done
    done
done

if [ "$BIGDIR" -gt 0 ]; then
    for t in $TARGETS; do
        echo "$t: one directory of $BIGDIR entries ($(( $(date +%s) - T_START )) s so far)" >&2
        fresh_fs_for "$BIGDIR" 0
        back=$FS/back
        init_target "$t" "$back"
        mount_target "$t" "$back"
        sync
        timed "$t" bigdir "$BIGDIR" create bash -c "'$PY' scripts/lib/mkfiles.py flat '$MNT/big' $BIGDIR 0 && sync"
        drop_caches
        timed "$t" bigdir "$BIGDIR" ls bash -c "ls '$MNT/big' > /dev/null"
        drop_caches
        timed "$t" bigdir "$BIGDIR" ls_l bash -c "ls -l '$MNT/big' > /dev/null"
        drop_caches
        timed "$t" bigdir "$BIGDIR" stat_one stat "$MNT/big/f$(printf %07d $((BIGDIR / 2)))"
        drop_caches
        timed "$t" bigdir "$BIGDIR" create_one touch "$MNT/big/one-more"
        memory "$t" bigdir "$BIGDIR"
        umount_target "$t"
    done
fi
release_fs
ELAPSED=$(( $(date +%s) - T_START ))

SECTION=$WORK/section.md
CHART_TSV=$WORK/chart.tsv
case $KINDS in
    empty) KIND_TITLE=" (empty files)"; KIND_FILE=-empty ;;
    4k) KIND_TITLE=" (4 KiB files)"; KIND_FILE=-4k ;;
    *) KIND_TITLE=""; KIND_FILE="" ;;
esac
if [ $OUT_SECTION = 1 ]; then SVG=docs/perf/scale$KIND_FILE.svg; SVG_REF=perf/scale$KIND_FILE.svg
else SVG=$WORK/scale$KIND_FILE.svg; SVG_REF=$SVG; fi
fsversion() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
ARGS=""
[ "$SIZES" = "$DEFAULT_SIZES" ] || ARGS="$ARGS --sizes \"$SIZES\""
[ "$KINDS" = "empty 4k" ] || ARGS="$ARGS --kinds \"$KINDS\""
[ "$TARGETS" = "cofferfs gocryptfs" ] || ARGS="$ARGS --targets \"$TARGETS\""
[ "$BIGDIR" = 100000 ] || ARGS="$ARGS --bigdir $BIGDIR"
[ -z "$ANCHORS_UP_TO" ] || ARGS="$ARGS --anchors-up-to $ANCHORS_UP_TO"
[ -z "${COFFERFS_BIN:-}" ] || ARGS=" (COFFERFS_BIN=$COFFERFS_BIN)$ARGS"
{
    echo "## Scale: 1,000 to 1,000,000 files$KIND_TITLE"
    echo
    echo "Written by \`scripts/bench-scale.sh$ARGS\` (do not edit by hand; it took $ELAPSED s):"
    echo "N files (empty, or 4 KiB each) in directories of 1000 on a fresh ext4 per target, N and"
    echo "kind; one run, wall-clock seconds. Issue 16's target: per-file cost flat within 1.5× from"
    echo "1,000 to 1,000,000 files, daemon RSS under 100 MiB."
    echo
    echo "- Date: $STARTED; sizes: $SIZES; kinds: $KINDS; targets: $TARGETS; one directory of $BIGDIR entries"
    echo "- Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
        "$(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
    echo "- Backing store: **ext4**, a fresh one per target, N and kind (journal, \`-N\` inodes for N," \
        "inode tables written at mkfs) on a loop device (direct I/O) over a sparse file in $WORK" \
        "on $(df --output=fstype "$WORK" | tail -1 | xargs) ($(df --output=source "$WORK" | tail -1 | xargs))"
    echo "- Load average (1, 5, 15 min): before $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg)"
    versions="$($BIN --version) ($([ -n "${COFFERFS_BIN:-}" ] && echo "$COFFERFS_BIN" || echo release))"
    for t in $TARGETS; do
        case $t in
            gocryptfs) versions="$versions; $(gocryptfs -version 2>/dev/null | head -1 | cut -d';' -f1)" ;;
            securefs) versions="$versions; securefs $(fsversion securefs) (lite format)" ;;
            bindfs) versions="$versions; bindfs $(fsversion bindfs) (\`--multithreaded\`)" ;;
        esac
    done
    echo "- Versions: $versions"
    echo "- Steps: create = one Python process (os.open, os.write, close per file) then \`sync\`;" \
        "\`ls -lR\` and read all (\`find -type f -print0 | xargs -0 cat\`) after drop_caches;" \
        "\`rm -rf\` after a fresh mount and drop_caches; \`rotate\`, \`fsck\`, \`reencrypt --all\`" \
        "on the unmounted volume (each includes its unlock: a cheap slot, Argon2id m=8 MiB t=1;" \
        "gocryptfs \`-scryptn 10\`). Each time includes its process start (tens of ms), which flatters" \
        "the per-file cost at the smallest N."
    "$PY" - "$RESULTS" "$ERRORS" "$CHART_TSV" "$TARGETS" <<'PY'
import sys
from collections import OrderedDict
res, errors, chart, targets = sys.argv[1], sys.argv[2], open(sys.argv[3], "w"), sys.argv[4].split()
val = {}
sizes, kinds = [], []
for line in open(res):
    t, k, n, s, v = line.rstrip("\n").split("\t")
    n = int(n)
    val[(t, k, n, s)] = float(v)
    if k != "bigdir":
        if n not in sizes:
            sizes.append(n)
        if k not in kinds:
            kinds.append(k)
sizes.sort()
STEPS = OrderedDict([("create", "create"), ("ls_lR", "`ls -lR`"), ("read_all", "read all"),
                     ("rotate", "`rotate`"), ("fsck", "`fsck`"), ("reencrypt", "`reencrypt --all`"),
                     ("rm_rf", "`rm -rf`")])
rows = [(k, s, t) for k in kinds for s in STEPS for t in targets
        if any((t, k, n, s) in val for n in sizes)]
fmt_n = lambda n: f"{n:,}"
def table(title, cell, extra=None):
    print(f"\n### {title}\n")
    head = ["kind", "step", "target"] + [f"N = {fmt_n(n)}" for n in sizes] + ([extra] if extra else [])
    print("| " + " | ".join(head) + " |")
    print("|---" * len(head) + "|")
    for k, s, t in rows:
        cells = [cell(val.get((t, k, n, s)), n) for n in sizes]
        if extra:
            a, b = val.get((t, k, sizes[0], s)), val.get((t, k, sizes[-1], s))
            if a and b and len(sizes) > 1:
                r = (b / sizes[-1]) / (a / sizes[0])
                cells.append(f"**{r:.2f}**" if r > 1.5 else f"{r:.2f}")
            else:
                cells.append("–")
        print(f"| {k} | {STEPS[s]} | {t} | " + " | ".join(cells) + " |")
table("Seconds", lambda v, n: "–" if v is None else f"{v:.3f}")
table("Per-file cost (µs)", lambda v, n: "–" if v is None else f"{v / n * 1e6:.1f}",
      extra=f"ratio {fmt_n(sizes[-1])} / {fmt_n(sizes[0])} (target ≤ 1.5)")
for k, s, t in rows:
    for n in sizes:
        if (t, k, n, s) in val:
            chart.write(f"{k}\t{t}\t{STEPS[s].strip('`')}\t{n}\t{val[(t, k, n, s)] / n * 1e6}\n")
print("\n### Daemon memory (MiB: peak VmHWM, end VmRSS, after create, `ls -lR` and read all)\n")
print("The peak includes the unlock's key derivation (Argon2id 8 MiB; gocryptfs scrypt N=2^10).\n")
head = ["kind", "target", "figure"] + [f"N = {fmt_n(n)}" for n in sizes]
print("| " + " | ".join(head) + " |")
print("|---" * len(head) + "|")
for k in kinds:
    for t in targets:
        for f, name in (("peak_rss_mib", "peak"), ("end_rss_mib", "end")):
            cells = [f"{val[(t, k, n, f)]:.1f}" if (t, k, n, f) in val else "–" for n in sizes]
            print(f"| {k} | {t} | {name} | " + " | ".join(cells) + " |")
if any(key[3] == "store_bytes" for key in val):
    print("\n### cofferfs header store: bytes per file (total bytes)\n")
    print("cofferfs.db and any -wal/-shm after the unmount, divided by N. Empty files have no key "
          "row yet: theirs is the empty store's size spread over N.\n")
    print("| kind | " + " | ".join(f"N = {fmt_n(n)}" for n in sizes) + " |")
    print("|---" * (len(sizes) + 1) + "|")
    for k in kinds:
        key = lambda n: ("cofferfs", k, n, "store_bytes")
        cells = [f"{val[key(n)] / n:.0f} ({val[key(n)]:,.0f})" if key(n) in val else "–"
                 for n in sizes]
        print(f"| {k} | " + " | ".join(cells) + " |")
big = sorted({key[2] for key in val if key[1] == "bigdir"})
if big:
    nb = big[0]
    print(f"\n### One directory of {fmt_n(nb)} empty files (seconds)\n")
    print("Each step after drop_caches but the creation; memory after the last step.\n")
    print("| step | " + " | ".join(targets) + " |")
    print("|---" * (len(targets) + 1) + "|")
    for s, name in (("create", f"create {fmt_n(nb)} files + `sync`"), ("ls", "`ls` (names only)"),
                    ("ls_l", "`ls -l`"), ("stat_one", "`stat` of one name"),
                    ("create_one", "`touch` one more"), ("peak_rss_mib", "peak RSS (MiB)"),
                    ("end_rss_mib", "end RSS (MiB)")):
        fmt = (lambda v: f"{v:.1f}") if s.endswith("mib") else (lambda v: f"{v:.3f}")
        print(f"| {name} | " + " | ".join(fmt(val[(t, "bigdir", nb, s)]) if (t, "bigdir", nb, s) in val
                                         else "–" for t in targets) + " |")
errs = [l.strip() for l in open(errors) if l.strip()]
if errs:
    print("\n**Failed steps** (their times are in the tables, but mean little):\n")
    for e in errs:
        print(f"- {e}")
PY
    if [ -s "$CHART_TSV" ]; then
        mkdir -p "$(dirname "$SVG")"
        "$PY" scripts/lib/charts.py scale "$SVG" "per-file cost" < "$CHART_TSV"
        echo
        echo "![Per-file cost in µs against N, log-log: cofferfs solid, anchors dashed]($SVG_REF)"
    fi
} > "$SECTION"
cat "$SECTION"
if [ $OUT_SECTION = 1 ]; then
    "$PY" scripts/lib/put_section.py docs/PERFORMANCE.md "$SECTION"
    echo >&2
    echo "section written into docs/PERFORMANCE.md, chart $SVG" >&2
else
    echo >&2
    echo "partial run: nothing written (--out-section writes the section); chart $SVG" >&2
fi
