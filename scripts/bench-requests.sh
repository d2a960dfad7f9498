#!/usr/bin/env bash
# The FUSE requests each small-file step costs per file, on cofferfs and on the anchors: the floor
# a FUSE overlay cannot go below (each request is a round trip through the kernel and a daemon
# thread). Runs scripts/profile.sh STEP --counts-only for every target and step on a fresh ext4,
# counting the kernel's fuse:fuse_request_send events of that mount's connection only, and writes
# the section "## FUSE requests per file" of docs/PERFORMANCE.md (with --write; else prints it).
#
# usage: scripts/bench-requests.sh [--files N] [--targets "..."] [--steps "..."] [--write]
#   --files    files in the tree / created (default 5000; counts per file barely move with N)
#   --targets  default "cofferfs gocryptfs securefs bindfs"
#   --steps    default "untar ls readall rm create missing" (profile.sh's steps)
# COFFERFS_BIN=path uses that binary. Needs root, perf (linux-perf), fusermount3 and the anchors.
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=5000
TARGETS="cofferfs gocryptfs securefs bindfs"
STEPS="untar ls readall rm create missing"
WRITE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --files) FILES=$2; shift 2 ;;
        --targets) TARGETS=$2; shift 2 ;;
        --steps) STEPS=$2; shift 2 ;;
        --write) WRITE=1; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
source scripts/lib/tools.sh
COFFERFS_BIN=$(cofferfs_bin)
export COFFERFS_BIN
TSV=$(mktemp)
SECTION=$(mktemp)
trap 'rm -f "$TSV" "$SECTION"' EXIT
for step in $STEPS; do
    for t in $TARGETS; do
        echo "$t: $step ($FILES files)" >&2
        scripts/profile.sh "$step" --target "$t" --files "$FILES" --counts-only --tsv "$TSV" > /dev/null
    done
done
KERNEL=$(uname -r)
CMD="scripts/bench-requests.sh --files $FILES --write"
[ "$STEPS" = "untar ls readall rm create missing" ] || CMD="$CMD --steps \"$STEPS\""
[ "$TARGETS" = "cofferfs gocryptfs securefs bindfs" ] || CMD="$CMD --targets \"$TARGETS\""
CMD="COFFERFS_BIN=$COFFERFS_BIN $CMD"
STARTED=$(date -u '+%Y-%m-%d %H:%M UTC')
python3 - "$TSV" "$TARGETS" "$STEPS" "$FILES" "$KERNEL" "$STARTED" "$CMD" > "$SECTION" <<'PY'
import collections
import sys

tsv, targets, steps, files, kernel, started, cmd = sys.argv[1:]
targets, steps, files = targets.split(), steps.split(), int(files)
count = collections.defaultdict(int)
for line in open(tsv):
    t, s, n, op, c = line.rstrip("\n").split("\t")
    count[(t, s, op.removeprefix("FUSE_"))] += int(c)
NAMES = {"untar": "untar", "ls": "`ls -lR`", "readall": "read all", "rm": "`rm -rf`",
         "create": "create + stat", "missing": "`stat` of a missing name (per try)"}

print("## FUSE requests per file")
print()
print(f"Written by `{cmd}` on {started} (Linux {kernel}): "
      "each step of `scripts/profile.sh` on a fresh ext4, counting the kernel's "
      "`fuse:fuse_request_send` events of that mount alone, divided by the files of the step "
      f"({files:,}; the tree of bench.sh cut to that many files, or that many empty files "
      "created). Every request is a round trip: the kernel queues it, a daemon thread wakes, "
      "answers, and the caller wakes; on this machine that alone costs 20 to 25 µs. Fewer "
      "requests is the only way below that floor.")
print()
print("| step | " + " | ".join(targets) + " |")
print("|---|" + "---|" * len(targets))
for s in steps:
    cells = []
    for t in targets:
        total = sum(c for (tt, ss, _), c in count.items() if (tt, ss) == (t, s))
        cells.append(f"{total / files:.2f}")
    print(f"| {NAMES.get(s, s)} | " + " | ".join(cells) + " |")
print()
for s in steps:
    ops = sorted({op for (t, ss, op) in count if ss == s},
                 key=lambda op: (-max(count[(t, s, op)] for t in targets), op))
    ops = [op for op in ops if max(count[(t, s, op)] for t in targets) / files >= 0.05]
    print(f"**{NAMES.get(s, s)}**, requests per file by opcode (those of at least 0.05 per file):")
    print()
    print("| opcode | " + " | ".join(targets) + " |")
    print("|---|" + "---|" * len(targets))
    for op in ops:
        print(f"| {op} | " + " | ".join(f"{count[(t, s, op)] / files:.2f}" for t in targets) + " |")
    print()
PY
cat "$SECTION"
if [ $WRITE = 1 ]; then
    python3 scripts/lib/put_section.py docs/PERFORMANCE.md "$SECTION"
    echo "written to docs/PERFORMANCE.md" >&2
fi
