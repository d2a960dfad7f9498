#!/usr/bin/env bash
# The figures behind the README's "Backing up and syncing" section, measured on this machine:
#  1. rsync flags for a backup of the cipherdir after a 1-byte edit in a big file: literal
#     bytes sent, bytes written at the destination, whether the file was replaced;
#  2. what rsync transfers after `rotate` (itemized);
#  3. a copy of a mounted, idle volume: mounts and reads like the original;
#  4. copies taken while files are being written: do they mount, what does fsck report;
#  5. sync-conflict copies inside the cipherdir: what the mount and fsck do with them.
#
# usage: scripts/backup-check.sh [SIZE_MIB] [LIVE_COPIES]   (defaults 64, 6)
# COFFERFS_BIN=path uses that binary instead of building the release one.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-64}
COPIES=${2:-6}
[ "$(id -u)" = 0 ] || { echo "needs root (mounts)" >&2; exit 1; }
command -v rsync >/dev/null || { apt-get update -qq && apt-get install -y -qq rsync >/dev/null; }
if [ -z "${COFFERFS_BIN:-}" ]; then
    cargo build --release --locked --quiet
    COFFERFS_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/cofferfs
fi
BIN=$COFFERFS_BIN
WORK=$(mktemp -d /var/tmp/cofferfs-backup.XXXXXX)
PASS=$WORK/pass
echo "backup password" > "$PASS"
MNT=$WORK/mnt
MNT2=$WORK/mnt2
mkdir -p "$MNT" "$MNT2"
LOAD_PID=
cleanup() {
    set +e
    if [ -n "$LOAD_PID" ]; then kill -- "-$LOAD_PID" 2>/dev/null; wait "$LOAD_PID" 2>/dev/null; fi
    for m in "$MNT" "$MNT2"; do
        if grep -q " $m " /proc/mounts; then "$BIN" umount "$m" || fusermount3 -uz "$m"; fi
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

C=$WORK/cipher
"$BIN" init --passfile "$PASS" --argon2-memory 8192 --argon2-time 1 "$C" >/dev/null
mnt() { "$BIN" mount --passfile "$PASS" "$1" "$2"; }
umnt() { "$BIN" umount "$1"; }

echo "== 1. rsync flags: 1-byte edit in the middle of a ${SIZE_MB} MiB file =="
mnt "$C" "$MNT"
head -c $((SIZE_MB << 20)) /dev/urandom > "$MNT/big"
umnt "$MNT"
echo "header store files at rest (after umount): $(cd "$C" && ls -d cofferfs.db* | paste -sd ' ' -)"
rsync -a "$C/" "$WORK/base/"
sleep 1 # rsync's quick check compares whole seconds by default: see the same-second row
mnt "$C" "$MNT"
printf 'Z' | dd of="$MNT/big" bs=1 seek=$(( (SIZE_MB << 20) / 2 + 12345 )) conv=notrunc status=none
umnt "$MNT"
big=$(find "$C" -type f -size +1M)
big=${big#"$C/"}
printf '%-34s %12s %14s %10s\n' "rsync flags (local copy)" "literal B" "written KiB" "replaced"
for flags in "-a" "-a --no-whole-file" "-a --no-whole-file --inplace"; do
    dst=$WORK/dst
    rm -rf "$dst"; cp -a "$WORK/base" "$dst"; sync
    ino=$(stat -c %i "$dst/$big")
    out=$( { /usr/bin/time -f 'OUT %O' rsync $flags --stats "$C/" "$dst/"; } 2>&1)
    lit=$(awk -F': ' '/Literal data/ {gsub(/[ ,]|bytes/, "", $2); print $2}' <<<"$out")
    kib=$(( $(awk '/^OUT/ {print $2}' <<<"$out") / 2 ))
    [ "$(stat -c %i "$dst/$big")" = "$ino" ] && rep=no || rep=yes
    cmp -s "$C/$big" "$dst/$big" || { echo "copy differs with $flags" >&2; exit 1; }
    printf '%-34s %12s %14s %10s\n' "$flags" "$lit" "$kib" "$rep"
done
# The same edit, had the backup been taken earlier in the same second: same size, mtimes
# differ only in nanoseconds.
for flags in "-a --no-whole-file --inplace" "-a --no-whole-file --inplace --modify-window=-1"; do
    rm -rf "$WORK/dst"; cp -a "$WORK/base" "$WORK/dst"
    touch -d "@$(stat -c %Y "$C/$big").000000001" "$WORK/dst/$big"
    rsync $flags "$C/" "$WORK/dst/"
    cmp -s "$C/$big" "$WORK/dst/$big" && r="copied" || r="SKIPPED (copy is stale)"
    printf '  same-second edit, %-48s %s\n' "$flags:" "$r"
done

echo "== 2. rotate, then passwd: what rsync -ai sends =="
rsync -a "$C/" "$WORK/dst/"
"$BIN" rotate --passfile "$PASS" "$C" >/dev/null
rsync -ai --no-whole-file --inplace --modify-window=-1 "$C/" "$WORK/dst/" | sed 's/^/  /'
"$BIN" passwd --passfile "$PASS" --new-passfile <(echo "new password") "$C" >/dev/null
"$BIN" passwd --passfile <(echo "new password") --new-passfile "$PASS" "$C" >/dev/null
echo "  after two passwd:"
rsync -ai --no-whole-file --inplace --modify-window=-1 "$C/" "$WORK/dst/" | sed 's/^/  /'

echo "== 3. rsync -aH of a mounted, idle volume =="
mnt "$C" "$MNT"
mkdir -p "$MNT/d/e"
for i in $(seq 1 200); do head -c $((RANDOM * 3)) /dev/urandom > "$MNT/d/f$i"; done
ln "$MNT/d/f1" "$MNT/d/e/link"
sync
rsync -aH "$C/" "$WORK/idle-copy/"
mnt "$WORK/idle-copy" "$MNT2"
a=$(cd "$MNT" && find . -type f -exec sha256sum {} + | sort | sha256sum)
b=$(cd "$MNT2" && find . -type f -exec sha256sum {} + | sort | sha256sum)
[ "$a" = "$b" ] && echo "  copy mounts and every file reads identically ($(cd "$MNT2" && find . -type f | wc -l) files)" \
    || { echo "  copy differs" >&2; exit 1; }
umnt "$MNT2"
rsync -a "$C/" "$WORK/no-H-copy/"   # no -H: the hard link becomes a second file
mnt "$WORK/no-H-copy" "$MNT2"
rm "$MNT2/d/e/link"
cat "$MNT2/d/f1" >/dev/null 2>&1 && echo "  copy without -H: d/f1 reads after rm of its link" \
    || echo "  copy without -H: d/f1 unreadable after rm of its (copied) hard link"
umnt "$MNT2"

echo "== 4. $COPIES copies taken with rsync -aH while files are written =="
# The load runs in its own session/process group, killed as a group.
setsid bash -c '
    cd "$1"; i=0
    while :; do
        i=$((i + 1)); n=$((i % 300))
        head -c $(( (i * 7919) % 300000 )) /dev/urandom > "d/w$n"
        [ $((i % 3)) = 0 ] && rm -f "d/w$(( (i * 13) % 300 ))"
        [ $((i % 5)) = 0 ] && mv -f "d/w$n" "d/e/w$n" 2>/dev/null
        [ $((i % 7)) = 0 ] && head -c 5000 /dev/urandom | dd of="d/f$((i % 200 + 1))" bs=4096 seek=1 conv=notrunc status=none
    done' load "$MNT" >/dev/null 2>&1 &
LOAD_PID=$!
sleep 1
# Odd copies: one rsync. Even copies: the tree first, the header store last.
for k in $(seq 1 "$COPIES"); do
    # Exit code 24: some files vanished during the copy, as expected here.
    if [ $((k % 2)) = 1 ]; then
        rsync -aH "$C/" "$WORK/live$k/" 2>/dev/null || [ $? = 24 ]
    else
        rsync -aH --exclude '/cofferfs.db*' "$C/" "$WORK/live$k/" 2>/dev/null || [ $? = 24 ]
        rsync -a "$C"/cofferfs.db* "$WORK/live$k/"
    fi
    sleep 0.3
done
kill -- "-$LOAD_PID"; wait "$LOAD_PID" 2>/dev/null || true; LOAD_PID=
umnt "$MNT"
for k in $(seq 1 "$COPIES"); do
    l=$WORK/live$k
    if mnt "$l" "$MNT2"; then
        files=$(find "$MNT2" -type f | wc -l)
        bad=$(find "$MNT2" -type f -exec sh -c 'cat "$1" >/dev/null 2>&1 || echo x' _ {} \; | wc -l)
        umnt "$MNT2"
        mounted="mounts, $files files, $bad unreadable"
    else
        mounted="DOES NOT MOUNT"
    fi
    f=$("$BIN" fsck --passfile "$PASS" "$l" 2>/dev/null || true)
    kinds=$(sed -n '/^problems/,/^[^ ]/p' <<<"$f" | grep '^  ' \
        | sed -E 's/^  [^:]*: //; s/ \(file id [0-9a-f]{32}\)//; s/ [0-9a-f]{32}//; s/chunk [0-9]+/chunk N/' \
        | sort | uniq -c | sed -E 's/^ +//' | paste -sd ';' -)
    [ $((k % 2)) = 1 ] && how="one rsync   " || how="store last  "
    echo "  copy $k ($how): $mounted; fsck: ${kinds:-clean}"
done

echo "== 5. sync-conflict copies inside the cipherdir =="
one=$(find "$C" -mindepth 2 -type f ! -name '.cofferfs*' -print -quit)
cp -a "$one" "$one.sync-conflict-20250101-120000-ABCDEFG"
cp -a "$C/cofferfs.db" "$C/cofferfs.sync-conflict-20250101-120000-ABCDEFG.db"
mnt "$C" "$MNT"
echo "  entries in the mount: $(find "$MNT" | wc -l) (names that do not decrypt are skipped)"
umnt "$MNT"
"$BIN" fsck --passfile "$PASS" "$C" | sed -n '/^problems/,$p' | sed 's/^/  /' || true
"$BIN" fsck --repair --passfile "$PASS" "$C" | sed -n '/^repairs/,$p' | sed 's/^/  /' || true
echo "  fsck after the repair: $("$BIN" fsck --passfile "$PASS" "$C" | tail -1)"
echo "(rsync: $(rsync --version | head -1 | cut -d' ' -f1-4); $(date -u +%F))"
