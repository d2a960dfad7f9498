# shellcheck shell=bash
# Sourced by bench.sh, bench-scale.sh and profile.sh: the source tree they untar, dropping the
# page cache, and a fresh filesystem for each measured target.
#
# tree_tarball N: prints the path of the tree tarball of N files, making it once: the first N
# files (sorted) of a fixed list of system directories, tarred reproducibly, kept in
# /var/tmp/cofferfs-bench so both scripts use the same one.
#
# fresh_fs: a new ext4 (with a journal, inode tables written at mkfs) on a loop device with
# direct I/O over a sparse file $WORK/fs.img, mounted at $FS. Measured on this machine's disk
# (ext4 without a journal): its inode allocator skips inodes freed in the last 60-360 s,
# scanning bitmaps for each create, so a create-heavy step after any big rm -rf ran up to 2.4
# times slower, by timing alone (the same binary untarred in 12 s or 29 s). A fresh
# filesystem gives every target the same start; the loop layer costs every target alike.
# fresh_fs SIZE MKFS_ARGS...: the same with an image of SIZE (truncate's syntax, default 6G)
# and extra mkfs.ext4 arguments (e.g. -N INODES for a million files).
# fresh_tmpfs [SIZE]: a new tmpfs (default 8G) mounted at $FS instead: no disk at all, so a
# run shows the daemons' own cost. release_fs: unmounts either and frees the loop device and
# the image. Needs WORK set, root.
#
# chart_python: prints a python3 that imports matplotlib (the pyenv python3 on PATH may not
# see Debian's python3-matplotlib), installing python3-matplotlib when none does.

FS=$WORK/fs
LOOP=""

release_fs() {
    if grep -q " $FS " /proc/mounts; then umount "$FS" 2>/dev/null || umount -l "$FS"; fi
    [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
    LOOP=""
    rm -f "$WORK/fs.img"
}

fresh_fs() {
    local size=${1:-6G}
    [ $# -eq 0 ] || shift
    release_fs
    mkdir -p "$FS"
    truncate -s "$size" "$WORK/fs.img"
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$@" "$WORK/fs.img"
    LOOP=$(losetup --direct-io=on -f --show "$WORK/fs.img")
    mount "$LOOP" "$FS"
}

fresh_tmpfs() {
    release_fs
    mkdir -p "$FS"
    mount -t tmpfs -o "size=${1:-8G},mode=0755" cofferfs-bench "$FS"
}

chart_python() {
    local py
    for py in python3 /usr/bin/python3; do
        if "$py" -c 'import matplotlib' 2>/dev/null; then command -v "$py"; return 0; fi
    done
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-matplotlib >/dev/null
    echo /usr/bin/python3
}

tree_tarball() {
    local n=$1 dir=/var/tmp/cofferfs-bench
    local tarball=$dir/tree-$n.tar
    if [ ! -f "$tarball" ]; then
        mkdir -p "$dir"
        (cd / && find usr/include usr/lib/python3.11 usr/share/doc usr/share/perl usr/share/zoneinfo \
            usr/share/man -type f 2>/dev/null | LC_ALL=C sort | awk -v n="$n" 'NR <= n') > "$dir/list-$n"
        tar -C / --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf "$tarball" -T "$dir/list-$n"
    fi
    echo "$tarball"
}

drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# cofferfs_mount_args TARGET: the extra `cofferfs mount` options of a cofferfs target, so one run
# compares cofferfs against itself under other options as it compares it against an anchor:
# cofferfs-nowb is --no-writeback-cache, cofferfs-alt takes $COFFERFS_ALT_ARGS (e.g.
# "--threads 1"), printed with the results.
cofferfs_mount_args() {
    case $1 in
        cofferfs-nowb) echo --no-writeback-cache ;;
        cofferfs-alt) echo "$COFFERFS_ALT_ARGS" ;;
    esac
}

# check_alt_args TARGETS: exits unless cofferfs-alt, when it is one of TARGETS, has options to
# compare (an empty COFFERFS_ALT_ARGS would measure the default under another name).
check_alt_args() {
    case " $1 " in
        *" cofferfs-alt "*)
            [ -n "${COFFERFS_ALT_ARGS:-}" ] || {
                echo "target cofferfs-alt needs COFFERFS_ALT_ARGS (e.g. \"--threads 1\")" >&2; exit 2; } ;;
    esac
}
