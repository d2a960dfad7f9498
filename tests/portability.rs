//! A cipherdir copied with `rsync -a`/`-aH` or `cp -a` (other inode numbers, another path)
//! mounts and reads identically; and a mount/unmount cycle without writes changes nothing that
//! rsync would send.

mod common;

use std::os::unix::fs::MetadataExt;

use common::mount::{Mounted, sh};

fn populate(m: &Mounted) {
    sh(
        &m.mnt,
        "mkdir -p a/b/c && printf 'one' > a/one && head -c 100000 /dev/urandom > a/b/rand \
         && ln a/one a/b/c/one-link && ln -s ../one a/b/link && mkfifo a/fifo \
         && printf 'long' > \"$(printf 'x%.0s' $(seq 1 230))\" && touch -d @1000000000.5 a/one",
    );
}

fn snapshot(m: &Mounted) -> String {
    // Content hashes, modes, link counts, symlink targets and the mtimes of regular files.
    // Other mtimes are left out: rsync -aH sets directory times before it makes hard links
    // and does not keep fifo and symlink times here, whatever the filesystem underneath.
    sh(
        &m.mnt,
        "find . -type f -printf '%y %m %n %T@ %s %p\\n' | LC_ALL=C sort; \
         find . ! -type f -printf '%y %m %n %p %l\\n' | LC_ALL=C sort; \
         find . -type f -exec sha256sum {} + | LC_ALL=C sort",
    )
}

#[test]
fn rsync_and_cp_copies_mount_and_read_identically() {
    let mut m = Mounted::new();
    populate(&m);
    let before = snapshot(&m);
    m.unmount();
    for (tool, cmd) in [
        ("rsync -aH", "rsync -aH --numeric-ids cipher/ copy-rsync/"),
        ("cp -a", "cp -a cipher copy-cp"),
    ] {
        sh(m.dir.path(), cmd);
        let copy = if tool.starts_with("rsync") {
            "copy-rsync"
        } else {
            "copy-cp"
        };
        let mut c = Mounted::adopt(m.dir.path().join(copy));
        c.mount(&[]);
        assert_eq!(snapshot(&c), before, "{tool} copy differs");
        let one = std::fs::metadata(c.path("a/one")).unwrap();
        assert_eq!(one.nlink(), 2, "{tool}: hard link kept");
        assert_eq!(
            one.ino(),
            std::fs::metadata(c.path("a/b/c/one-link")).unwrap().ino()
        );
        c.unmount();
    }
}

#[test]
fn an_idle_mount_cycle_changes_nothing_rsync_would_send() {
    let mut m = Mounted::new();
    populate(&m);
    m.unmount();
    sh(m.dir.path(), "rsync -aH cipher/ backup/");
    m.mount(&[]);
    sh(
        &m.mnt,
        "ls -lR > /dev/null && cat a/one > /dev/null && find . -type f -exec cat {} + > /dev/null",
    );
    m.unmount();
    let out = sh(m.dir.path(), "rsync -aHi --dry-run cipher/ backup/");
    assert_eq!(out.trim(), "", "an idle mount cycle changed: {out}");
}
