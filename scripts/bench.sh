#!/usr/bin/env bash
# The benchmark: the same workload on cofferfs and on the anchors (gocryptfs, securefs lite,
# bindfs multithreaded, a plain directory), round-robin, N rounds, in one run. Prints a table of
# medians (seconds), the daemons' CPU seconds per step and peak RSS, and ratios (how many times
# faster cofferfs is than each anchor; > 1 means cofferfs wins). The single source of every figure
# in docs/PERFORMANCE.md.
#
# usage: scripts/bench.sh [-n ROUNDS] [--quick] [--targets "..."] [--steps "..."]
#                         [--backing ext4|tmpfs] [--out FILE] [--section-into FILE] [--halt-poll NS]
#   --quick    small sizes (64 MiB files, 2,000-file tree): checks the script, not the speed
#   --targets  default "cofferfs gocryptfs securefs bindfs plain"; cofferfs-nowb is cofferfs
#              mounted with --no-writeback-cache, cofferfs-alt with $COFFERFS_ALT_ARGS (compared
#              like an anchor)
#   --steps    groups of steps to run, default "big stream tree create" (big: seq and fio on one
#              1 GiB file; stream: dd 128K; tree: untar, ls -lR, read all, rm -rf; create:
#              create+stat); a partial run (other --steps or --targets) never writes
#              docs/PERFORMANCE.md unless --out or --section-into says so: it prints its report
#   --no-fresh-fs  put every backing directory straight on the disk under /var/tmp instead of on
#              a fresh ext4 made for each target and round (see scripts/bench-lib.sh)
#   --backing  ext4 (default): a fresh ext4 on a loop device per target and round; tmpfs: a
#              fresh 8 GiB tmpfs per target and round (no disk: the daemons' own cost)
#   --out      where the report goes; default docs/PERFORMANCE.md for a full ext4 run, none for
#              --quick (the report is always printed too)
#   --halt-poll NS  sets the guest's idle polling (/sys/module/haltpoll/parameters/
#              guest_halt_poll_ns, a VM guest with the cpuidle-haltpoll driver) to NS for the
#              run and restores it at the end. With 0 (this VM's boot setting) an idle vCPU halts
#              at once, and each FUSE round trip pays the host's wake-up of a halted vCPU twice
#              (docs/PERFORMANCE.md, "Small files"); the setting is printed with the machine
#   --section-into FILE  a tmpfs run writes its tables as the section "## On a tmpfs backing
#              store" of FILE (after the marker line, with scripts/lib/put_section.py) instead
#              of a whole report; default docs/PERFORMANCE.md for every tmpfs run (partial
#              ones too) but --quick, and none when --out is given
# The ratio chart (scripts/lib/charts.py) goes to perf/bench-BACKING.svg beside the file
# written, referenced from the report; a run that writes no file leaves it in $WORK.
# COFFERFS_BIN=path uses that binary instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3
QUICK=0
TARGETS="cofferfs gocryptfs securefs bindfs plain"
ALL_STEPS="big stream tree create"
STEPS=$ALL_STEPS
OUT=""
FRESH_FS=1
BACKING=ext4
SECTION_INTO=""
HALT_POLL=""
HALT_POLL_KNOB=/sys/module/haltpoll/parameters/guest_halt_poll_ns
while [ $# -gt 0 ]; do
    case "$1" in
        -n) ROUNDS=$2; shift 2 ;;
        --quick) QUICK=1; shift ;;
        --targets) TARGETS=$2; shift 2 ;;
        --steps) STEPS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --no-fresh-fs) FRESH_FS=0; shift ;;
        --backing) BACKING=$2; shift 2 ;;
        --section-into) SECTION_INTO=$2; shift 2 ;;
        --halt-poll) HALT_POLL=$2; shift 2 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
case $BACKING in ext4|tmpfs) ;; *) echo "--backing: ext4 or tmpfs, not $BACKING" >&2; exit 2 ;; esac
[ "$BACKING" = ext4 ] || [ $FRESH_FS = 1 ] || { echo "--no-fresh-fs is for --backing ext4" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "bench.sh needs root (mounts, drop_caches)" >&2; exit 1; }
if [ -n "$HALT_POLL" ]; then
    [ -w "$HALT_POLL_KNOB" ] || { echo "--halt-poll: no $HALT_POLL_KNOB (not a guest with cpuidle-haltpoll)" >&2; exit 2; }
    case $HALT_POLL in *[!0-9]*|"") echo "--halt-poll: nanoseconds, not $HALT_POLL" >&2; exit 2 ;; esac
fi

source scripts/lib/tools.sh
install_missing fusermount3:fuse3 bc:bc gocryptfs:gocryptfs securefs:securefs bindfs:bindfs fio:fio
BIN=$(cofferfs_bin)
DEFAULT_TARGETS="cofferfs gocryptfs securefs bindfs plain"
# Only a full run over the default targets writes docs/PERFORMANCE.md by itself: an A/B run of
# cofferfs against itself (cofferfs-nowb, cofferfs-alt), a partial one or one with another idle
# polling than the machine's own (--halt-poll) goes to --out.
PARTIAL=0; [ "$STEPS" = "$ALL_STEPS" ] && [ "$TARGETS" = "$DEFAULT_TARGETS" ] && [ -z "$HALT_POLL" ] || PARTIAL=1
if [ "$BACKING" = ext4 ]; then
    [ $QUICK = 1 ] || [ $PARTIAL = 1 ] || [ -n "$OUT" ] || OUT=docs/PERFORMANCE.md
    [ -z "$SECTION_INTO" ] || { echo "--section-into is for --backing tmpfs" >&2; exit 2; }
elif [ -z "$OUT" ] && [ -z "$SECTION_INTO" ] && [ $QUICK = 0 ]; then
    [ $PARTIAL = 1 ] || SECTION_INTO=docs/PERFORMANCE.md
fi
[ -z "$OUT" ] || [ -z "$SECTION_INTO" ] || { echo "--out or --section-into, not both" >&2; exit 2; }
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')

if [ $QUICK = 1 ]; then BIG_MB=64; TREE_FILES=2000; RR_OPS=2000; RW_OPS=500; CREATE=1000
else BIG_MB=1024; TREE_FILES=20000; RR_OPS=20000; RW_OPS=5000; CREATE=10000; fi

WORK=/var/tmp/cofferfs-bench
mkdir -p "$WORK"
# shellcheck source=scripts/bench-lib.sh
source scripts/bench-lib.sh
check_alt_args "$TARGETS"
PY=$(chart_python)
PASS=$WORK/pass
echo "bench password" > "$PASS"
chmod 600 "$PASS"
RESULTS=$WORK/results.tsv
: > "$RESULTS"

# The source tree (bench-lib.sh): its file count and checksum are printed with the results.
TARBALL=$(tree_tarball "$TREE_FILES")
TAR_SUM=$(sha256sum "$TARBALL" | cut -c1-16)
TAR_COUNT=$(tar -tf "$TARBALL" | grep -vc '/$')

MNT=$WORK/mnt
PID=""
HALT_POLL_BEFORE=""
cleanup() {
    if grep -q " $MNT " /proc/mounts; then fusermount3 -uz "$MNT" 2>/dev/null || umount -l "$MNT"; fi
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    release_fs
    [ -z "$HALT_POLL_BEFORE" ] || echo "$HALT_POLL_BEFORE" > "$HALT_POLL_KNOB"
}
trap cleanup EXIT
if [ -n "$HALT_POLL" ]; then
    HALT_POLL_BEFORE=$(cat "$HALT_POLL_KNOB")
    echo "$HALT_POLL" > "$HALT_POLL_KNOB"
fi
# The guest's idle polling, if it is a VM guest with cpuidle-haltpoll: it sets what a FUSE round
# trip costs (see --halt-poll).
halt_poll_fact() {
    echo -n "; idle: cpuidle $(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo none)"
    [ -r "$HALT_POLL_KNOB" ] && echo -n ", guest_halt_poll_ns=$(cat "$HALT_POLL_KNOB")"
    [ -z "$HALT_POLL" ] || echo -n " (--halt-poll; the machine's own: $HALT_POLL_BEFORE)"
}

wait_mounted() {
    for _ in $(seq 1 300); do grep -q " $MNT " /proc/mounts && return 0; sleep 0.05; done
    echo "mount of $1 did not appear" >&2; exit 1
}

# mount_target NAME: fresh backing dir, mounted at $MNT; sets PID to the daemon's pid.
mount_target() {
    local t=$1 back=$WORK/back-$1
    if [ "$BACKING" = tmpfs ]; then fresh_tmpfs 8G; back=$FS/back-$1
    elif [ $FRESH_FS = 1 ]; then fresh_fs 6G; back=$FS/back-$1; fi
    rm -rf "$back" "$MNT"; mkdir -p "$MNT"
    PID=""
    case $t in
        cofferfs|cofferfs-nowb|cofferfs-alt)
            "$BIN" init --passfile "$PASS" "$back" >/dev/null
            local extra; read -ra extra <<< "$(cofferfs_mount_args "$t")"
            "$BIN" mount -f "${extra[@]}" --passfile "$PASS" "$back" "$MNT" 2>>"$WORK/cofferfs.log" &
            PID=$! ;;
        gocryptfs)
            mkdir -p "$back"; gocryptfs -q -init -passfile "$PASS" "$back"
            gocryptfs -q -fg -passfile "$PASS" "$back" "$MNT" &
            PID=$! ;;
        securefs)
            mkdir -p "$back"; securefs create --format 4 --pass "bench password" "$back" >/dev/null
            securefs mount --pass "bench password" "$back" "$MNT" >/dev/null 2>&1 &
            PID=$! ;;
        bindfs)
            mkdir -p "$back"; bindfs -f --multithreaded "$back" "$MNT" &
            PID=$! ;;
        plain)
            mkdir -p "$back"; rmdir "$MNT"; ln -sfn "$back" "$MNT"; return 0 ;;
    esac
    wait_mounted "$t"
}

umount_target() {
    if [ -L "$MNT" ]; then rm "$MNT"; return 0; fi
    if [[ $1 == cofferfs || $1 == cofferfs-* ]]; then "$BIN" umount "$MNT"; else fusermount3 -u "$MNT"; fi
    [ -n "$PID" ] && wait "$PID" 2>/dev/null || true
    PID=""
}

cpu_ticks() { # utime+stime of the daemon, in clock ticks (0 for the plain dir)
    if [ -n "$PID" ] && [ -r "/proc/$PID/stat" ]; then
        awk '{print $14 + $15}' "/proc/$PID/stat"
    else echo 0; fi
}
TICKS=$(getconf CLK_TCK)

# step TARGET ROUND NAME COMMAND...: times COMMAND, records seconds and daemon CPU seconds.
step() {
    local t=$1 r=$2 name=$3; shift 3
    local c0 s0 s1 c1
    c0=$(cpu_ticks); s0=$(date +%s.%N)
    "$@" >/dev/null 2>&1
    s1=$(date +%s.%N); c1=$(cpu_ticks)
    printf '%s\t%s\t%s\t%.3f\t%.2f\n' "$t" "$r" "$name" "$(echo "$s1 - $s0" | bc)" \
        "$(echo "($c1 - $c0) / $TICKS" | bc -l)" >> "$RESULTS"
}

fio_job() { # fio_job MODE OPS
    fio --name=b --filename="$MNT/big" --rw="$1" --bs=4k --ioengine=psync --iodepth=1 \
        --number_ios="$2" --size="${BIG_MB}M" --randrepeat=1 --norandommap --fsync_on_close=1 \
        --invalidate=1 --output=/dev/null
}

wants() { [[ " $STEPS " == *" $1 "* ]]; }

run_round() {
    local t=$1 r=$2
    mount_target "$t"
    if wants big; then
        step "$t" "$r" seq_write dd if=/dev/zero of="$MNT/big" bs=1M count="$BIG_MB" conv=fsync
        drop_caches
        step "$t" "$r" seq_read dd if="$MNT/big" of=/dev/null bs=1M
        drop_caches
        step "$t" "$r" rand_read_4k fio_job randread "$RR_OPS"
        step "$t" "$r" rand_write_4k fio_job randwrite "$RW_OPS"
        rm -f "$MNT/big"
    fi
    if wants stream; then
        step "$t" "$r" stream_128k dd if=/dev/zero of="$MNT/stream" bs=128K count=2000 conv=fsync
        drop_caches
        step "$t" "$r" stream_read dd if="$MNT/stream" of=/dev/null bs=128K
        rm -f "$MNT/stream"
    fi
    if wants tree; then
        sync
        step "$t" "$r" untar bash -c "tar -xf '$TARBALL' -C '$MNT' && sync"
        drop_caches
        step "$t" "$r" ls_lR ls -lR "$MNT"
        drop_caches
        step "$t" "$r" read_all bash -c "cd '$MNT' && find . -type f -print0 | xargs -0 cat > /dev/null"
        step "$t" "$r" rm_rf rm -rf "$MNT/usr"
    fi
    if wants create; then
        sync
        step "$t" "$r" create_stat bash -c "mkdir '$MNT/c' && cd '$MNT/c' && seq 1 $CREATE | xargs touch && find . -type f | xargs stat > /dev/null"
    fi
    if [ -n "$PID" ] && [ -r "/proc/$PID/status" ]; then
        # Peak (VmHWM: includes a KDF's transient memory at unlock) and resident at the end.
        for f in VmHWM:peak_rss_mib VmRSS:end_rss_mib; do
            printf '%s\t%s\t%s\t%s\t0\n' "$t" "$r" "${f#*:}" \
                "$(awk -v k="${f%%:*}:" '$1 == k {printf "%.1f", $2/1024}' "/proc/$PID/status")" \
                >> "$RESULTS"
        done
    fi
    umount_target "$t"
}

for r in $(seq 1 "$ROUNDS"); do
    for t in $TARGETS; do
        echo "round $r/$ROUNDS: $t" >&2
        run_round "$t" "$r"
    done
done

REPORT=$WORK/report.md
CHART_TSV=$WORK/chart.tsv
fsversion() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
# Where the report (or the tmpfs section) and its chart go: perf/ beside the file written.
DOC=${OUT:-$SECTION_INTO}
if [ -n "$DOC" ]; then
    SVG=$(dirname "$DOC")/perf/bench-$BACKING.svg
    SVG_REF=perf/bench-$BACKING.svg
else
    SVG=$WORK/bench-$BACKING.svg
    SVG_REF=$SVG
fi
facts() {
    echo "- Date: $STARTED; rounds: $ROUNDS, round-robin over: $TARGETS; steps: $STEPS"
    echo "- Machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
        "$(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo)," \
        "Linux $(uname -r); CPU flags: $(grep -m1 -o -w -E 'aes|pclmulqdq|vaes|avx2' /proc/cpuinfo | sort -u | xargs)$(halt_poll_fact)"
    if [ "$BACKING" = tmpfs ]; then
        echo "- Backing store: **tmpfs**, a fresh one (8 GiB) per target and round (no disk:" \
            "what is left is the daemons' own cost and the kernel's)"
    elif [ $FRESH_FS = 1 ]; then
        echo "- Backing store: **ext4**, a fresh one (journal, 6 GiB) per target and round, on a loop device" \
            "(direct I/O) over a file in $WORK on $(df --output=fstype "$WORK" | tail -1 | xargs)" \
            "($(df --output=source "$WORK" | tail -1 | xargs)); \`--no-fresh-fs\` uses that disk directly"
    else
        echo "- Backing store: $WORK on $(df --output=fstype "$WORK" | tail -1 | xargs)" \
            "($(df --output=source "$WORK" | tail -1 | xargs))"
    fi
    echo "- Load average (1, 5, 15 min): before $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- Versions: $($BIN --version) ($([ -n "${COFFERFS_BIN:-}" ] && echo "COFFERFS_BIN=$COFFERFS_BIN" || echo release), $(rustc --version | cut -d' ' -f1-2));" \
        "$(gocryptfs -version 2>/dev/null | head -1 | cut -d';' -f1);" \
        "securefs $(fsversion securefs) (lite format, \`--format 4\`);" \
        "bindfs $(fsversion bindfs) (\`--multithreaded\`); fio $(fsversion fio)"
    echo "- Workload: big file ${BIG_MB} MiB (dd bs=1M conv=fsync, read after drop_caches);" \
        "fio psync QD1 4 KiB: $RR_OPS random reads, $RW_OPS random writes;" \
        "stream: dd bs=128K count=2000 conv=fsync (one fsync at the end, as gocryptfs's own benchmark); tree: $TAR_COUNT files, tar sha256 ${TAR_SUM}…;" \
        "create+stat: $CREATE empty files"
    echo "- cofferfs volume: \`cofferfs init\` defaults (4 KiB chunks, encrypted names)"
    case " $TARGETS " in *" cofferfs-alt "*) echo "- cofferfs-alt: \`cofferfs mount ${COFFERFS_ALT_ARGS:-}\` (COFFERFS_ALT_ARGS)" ;; esac
}
tables() { # HEADING_LEVEL: the tables of medians, spreads and ratios, then the ratio chart
    : > "$CHART_TSV"
    "$PY" - "$RESULTS" "$TARGETS" "$1" "$CHART_TSV" <<'PY'
import sys, statistics
from collections import defaultdict
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
targets = sys.argv[2].split()
H = sys.argv[3]  # heading level of the tables: "##" in a whole report, "###" in a section
chart = open(sys.argv[4], "w")  # step, anchor, time ratio: for charts.py bars
secs, cpu = defaultdict(list), defaultdict(list)
steps = []
for t, r, s, sec, c in rows:
    secs[(t, s)].append(float(sec)); cpu[(t, s)].append(float(c))
    if s not in steps: steps.append(s)
med = lambda d, k: statistics.median(d[k]) if d.get(k) else float("nan")
def table(title, d, fmt, skip=()):
    print(f"\n{H} {title}\n")
    print("| step | " + " | ".join(targets) + " |")
    print("|---" * (len(targets) + 1) + "|")
    for s in steps:
        if s in skip:
            continue
        print(f"| {s} | " + " | ".join(fmt(med(d, (t, s))) for t in targets) + " |")
MEM = ("peak_rss_mib", "end_rss_mib")
table("Median seconds (*_rss_mib: MiB)", secs, lambda v: f"{v:.3f}")
table("Median daemon CPU seconds", cpu, lambda v: f"{v:.2f}", skip=MEM)
# How far apart the rounds were: a ratio between two targets means little when it is
# smaller than their spreads (this machine's disk latency drifts between rounds).
spread = lambda d, k: max(d[k]) / min(d[k]) if d.get(k) and min(d[k]) > 0 else float("nan")
print(f"\n{H} Spread of the rounds (slowest / fastest seconds)\n")
print("| step | " + " | ".join(targets) + " |")
print("|---" * (len(targets) + 1) + "|")
for s in steps:
    if s not in MEM:
        print(f"| {s} | " + " | ".join(f"{spread(secs, (t, s)):.2f}" for t in targets) + " |")
if "cofferfs" in targets:
    anchors = [t for t in targets if t != "cofferfs"]
    print(f"\n{H} Ratios\n")
    print("Time: anchor seconds / cofferfs seconds (> 1: cofferfs faster). "
          "CPU: cofferfs daemon CPU seconds / anchor daemon CPU seconds (< 1: cofferfs cheaper).\n")
    daemons = [a for a in anchors if a != "plain"]
    cols = [f"{a} time" for a in anchors] + [f"{a} CPU" for a in daemons]
    print("| step | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    ratio = lambda a, b: f"{a / b:.2f}" if b > 0 else "–"
    for s in steps:
        if s in MEM:
            continue
        c, cc = med(secs, ("cofferfs", s)), med(cpu, ("cofferfs", s))
        cells = [ratio(med(secs, (a, s)), c) for a in anchors]
        for a in daemons:
            chart.write(f"{s}\t{a}\t{med(secs, (a, s)) / c if c > 0 else float('nan')}\n")
        cells += [ratio(cc, med(cpu, (a, s))) for a in daemons]
        print(f"| {s} | " + " | ".join(cells) + " |")
PY
    if [ -s "$CHART_TSV" ]; then
        mkdir -p "$(dirname "$SVG")"
        "$PY" scripts/lib/charts.py bars "$SVG" "cofferfs against the anchors, $BACKING backing (time ratios)" < "$CHART_TSV"
        echo
        echo "![Time ratios per step, $BACKING backing: anchor seconds / cofferfs seconds; lines at 1.0 and 1.5]($SVG_REF)"
    fi
}
ARGS="-n $ROUNDS --backing $BACKING"
[ "$STEPS" = "$ALL_STEPS" ] || ARGS="$ARGS --steps \"$STEPS\""
[ "$TARGETS" = "$DEFAULT_TARGETS" ] || ARGS="$ARGS --targets \"$TARGETS\""
[ $QUICK = 0 ] || ARGS="$ARGS --quick"
if [ "$BACKING" = tmpfs ] && [ -z "$OUT" ]; then
    {
        echo "## On a tmpfs backing store"
        echo
        echo "Written by \`scripts/bench.sh $ARGS\` (do not edit by hand): the same steps with"
        echo "every backing directory on a fresh tmpfs instead of a fresh ext4, which takes the disk"
        echo "out and leaves the daemons' own cost."
        echo
        facts
        tables "###"
    } > "$REPORT"
else
    {
        echo "# Performance"
        echo
        echo "Written by \`scripts/bench.sh $ARGS\` (the single source of every figure down to the"
        echo "marker line at the end; do not edit by hand). Re-run it on an idle machine to refresh this"
        echo "file; it keeps the sections after the marker, which other scripts own (\`scripts/bench.sh"
        echo "--backing tmpfs\`, \`scripts/bench-scale.sh\`, \`scripts/bench-unlock.sh --write\`,"
        echo "\`scripts/bench-transit-unlock.sh --write\`, \`scripts/bench-online-rotate.sh\`,"
        echo "\`scripts/bench-rotate.sh\`)."
        echo
        facts
        tables "##"
    } > "$REPORT"
fi
cat "$REPORT"
if [ -n "$SECTION_INTO" ]; then
    [ -f "$SECTION_INTO" ] || { echo "$SECTION_INTO: no such file" >&2; exit 1; }
    "$PY" scripts/lib/put_section.py "$SECTION_INTO" "$REPORT"
    echo >&2
    echo "section written into $SECTION_INTO, chart $SVG" >&2
elif [ -n "$OUT" ]; then
    # Sections other scripts own (from the marker on, e.g. bench-rotate.sh's) are kept.
    kept=$(sed -n '/^<!-- written by other scripts/,$p' "$OUT" 2> /dev/null || true)
    cp "$REPORT" "$OUT"
    [ -z "$kept" ] || printf '\n%s\n' "$kept" >> "$OUT"
    echo >&2
    echo "written to $OUT, chart $SVG" >&2
fi
