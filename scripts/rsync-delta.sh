#!/usr/bin/env bash
# How many bytes rsync sends to update a backup of the cipherdir after small changes made
# through the mount ("Literal data" of `rsync -a --no-whole-file --stats`), for cofferfs and, when
# installed, gocryptfs, side by side.
#
# usage: scripts/rsync-delta.sh [SIZE_MIB]   (default 64)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-64}
[ "$(id -u)" = 0 ] || { echo "needs root (mounts)" >&2; exit 1; }
command -v rsync >/dev/null || { apt-get update -qq && apt-get install -y -qq rsync >/dev/null; }
cargo build --release --locked --quiet
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/cofferfs
WORK=$(mktemp -d /var/tmp/cofferfs-delta.XXXXXX)
PASS=$WORK/pass
echo "delta password" > "$PASS"
MNT=$WORK/mnt
mkdir -p "$MNT"
trap 'grep -q " $MNT " /proc/mounts && fusermount3 -uz "$MNT"; rm -rf "$WORK"' EXIT

mount_fs() { # mount_fs FS CIPHERDIR
    case $1 in
        cofferfs) "$BIN" mount --passfile "$PASS" "$2" "$MNT" ;;
        gocryptfs) gocryptfs -q -passfile "$PASS" "$2" "$MNT" ;;
    esac
}
umount_fs() {
    case $1 in
        cofferfs) "$BIN" umount "$MNT" ;;
        gocryptfs) fusermount3 -u "$MNT"; sleep 0.2 ;;
    esac
}
literal() { # bytes of literal data to bring BACKUP up to date with SRC, then syncs it
    # (mtimes compared to the nanosecond: rsync's default whole-second quick check skips a file
    # changed within the second of the previous sync, which reads as 0 bytes.)
    rsync -a --no-whole-file --modify-window=-1 --stats "$1/" "$2/" | awk -F': ' '/Literal data/ {gsub(/[ ,]|bytes/, "", $2); print $2}'
}

declare -A RESULT
measure() { # measure FS: runs every change, records literal bytes per change
    local fs=$1 c=$WORK/$1-cipher b=$WORK/$1-backup
    case $fs in
        cofferfs) "$BIN" init --passfile "$PASS" "$c" >/dev/null ;;
        gocryptfs) mkdir -p "$c"; gocryptfs -q -init -passfile "$PASS" "$c" ;;
    esac
    mount_fs "$fs" "$c"
    head -c $((SIZE_MB << 20)) /dev/urandom > "$MNT/big"
    umount_fs "$fs"
    literal "$c" "$b" >/dev/null

    change() { # change NAME COMMAND...
        local name=$1; shift
        mount_fs "$fs" "$c"
        "$@"
        umount_fs "$fs"
        RESULT[$fs,$name]=$(literal "$c" "$b")
    }
    mid=$(( (SIZE_MB << 20) / 2 + 12345 ))
    change "1-byte in-place edit" bash -c "printf 'Z' | dd of='$MNT/big' bs=1 seek=$mid conv=notrunc status=none"
    change "append 1 byte" bash -c "printf 'A' >> '$MNT/big'"
    change "truncate by 4096 bytes" bash -c "truncate -s -4096 '$MNT/big'"
    change "idle mount cycle" bash -c "cat '$MNT/big' > /dev/null; ls -l '$MNT' > /dev/null"
    if [ "$fs" = cofferfs ] && "$BIN" rotate --help >/dev/null 2>&1; then
        "$BIN" rotate --passfile "$PASS" "$c" >/dev/null
        RESULT[$fs,rotate]=$(literal "$c" "$b")
    fi
}

FSES="cofferfs"
command -v gocryptfs >/dev/null && FSES="cofferfs gocryptfs"
for fs in $FSES; do measure "$fs"; done

printf '\n%-26s' "change (${SIZE_MB} MiB file)"; for fs in $FSES; do printf '%14s' "$fs"; done; echo
for name in "1-byte in-place edit" "append 1 byte" "truncate by 4096 bytes" "idle mount cycle" "rotate"; do
    printf '%-26s' "$name"
    for fs in $FSES; do printf '%14s' "${RESULT[$fs,$name]:-n/a}"; done
    echo
done
echo "(bytes of rsync literal data; $(rsync --version | head -1 | awk '{print $1, $3}'))"
