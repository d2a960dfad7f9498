# Sourced by bench.sh and profile.sh: a fresh filesystem for each measured target.
#
# fresh_fs: a new ext4 (with a journal, inode tables written at mkfs) on a loop device with
# direct I/O over a sparse file $WORK/fs.img, mounted at $FS. Measured on this machine's disk
# (ext4 without a journal): its inode allocator skips inodes freed in the last 60-360 s,
# scanning bitmaps for each create, so a create-heavy step after any big rm -rf ran up to 2.4
# times slower, by timing alone (the same binary untarred in 12 s or 29 s). A fresh
# filesystem gives every target the same start; the loop layer costs every target alike.
# release_fs: unmounts it and frees the loop device and the image. Needs WORK set, root.

FS=$WORK/fs
LOOP=""

release_fs() {
    if grep -q " $FS " /proc/mounts; then umount "$FS" 2>/dev/null || umount -l "$FS"; fi
    [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
    LOOP=""
    rm -f "$WORK/fs.img"
}

fresh_fs() {
    release_fs
    mkdir -p "$FS"
    truncate -s 6G "$WORK/fs.img"
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$WORK/fs.img"
    LOOP=$(losetup --direct-io=on -f --show "$WORK/fs.img")
    mount "$LOOP" "$FS"
}
