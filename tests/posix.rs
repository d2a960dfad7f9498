//! POSIX corners found by pjdfstest, fsx and hand checks against ext4, each a regression test
//! through a real mount and real syscalls. See docs/POSIX.md.

mod common;

use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};

use common::mount::Mounted;

fn set_times(path: &std::path::Path, atime: (i64, i64), mtime: (i64, i64)) {
    let f = std::fs::File::open(path).unwrap();
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: atime.0,
            tv_nsec: atime.1,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: mtime.0,
            tv_nsec: mtime.1,
        },
    };
    rustix::fs::futimens(&f, &times).unwrap();
}

/// Opening a file, writing part of a chunk and changing only its mtime (what `touch -m` does)
/// must not move its atime: cofferfs's own reads of the ciphertext (header at open, the old
/// chunk for a read-modify-write) used to bump the backing atime under `relatime`.
#[test]
fn open_and_partial_write_keep_atime() {
    let m = Mounted::with(&[], &["--allow-other"]);
    let p = m.path("f");
    std::fs::write(&p, vec![1u8; 10_000]).unwrap();
    set_times(&p, (5, 6), (100, 0));
    assert_eq!(std::fs::metadata(&p).unwrap().atime(), 5);

    // touch -m: open for writing, futimens with atime = UTIME_OMIT.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&p)
        .unwrap();
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 200,
            tv_nsec: 0,
        },
    };
    rustix::fs::futimens(&f, &times).unwrap();
    let st = std::fs::metadata(&p).unwrap();
    assert_eq!((st.atime(), st.atime_nsec()), (5, 6), "open moved atime");
    assert_eq!(st.mtime(), 200);

    // A write into the middle of a chunk reads the old chunk first: still no atime change.
    set_times(&p, (5, 6), (100, 0));
    f.write_all_at(b"xyz", 5_000).unwrap();
    drop(f);
    let st = std::fs::metadata(&p).unwrap();
    assert_eq!((st.atime(), st.atime_nsec()), (5, 6), "write moved atime");

    // A real read still updates atime (relatime: atime older than mtime).
    let mut buf = [0u8; 3];
    std::fs::File::open(&p)
        .unwrap()
        .read_exact_at(&mut buf, 5_000)
        .unwrap();
    assert_eq!(&buf, b"xyz");
    assert!(
        std::fs::metadata(&p).unwrap().atime() > 5,
        "read did not update atime"
    );
}

/// `SEEK_DATA`/`SEEK_HOLE` must see writes still in the kernel's writeback cache: answered
/// from the daemon's view of the size, a fresh 10,000-byte file looked empty (ENXIO at 0)
/// until it was flushed.
#[test]
fn seek_data_and_hole_see_unflushed_writes() {
    let m = Mounted::new();
    let f = std::fs::File::create(m.path("f")).unwrap();
    f.write_all_at(&[7u8; 10_000], 0).unwrap();
    let data = rustix::fs::seek(&f, rustix::fs::SeekFrom::Data(0)).unwrap();
    let hole = rustix::fs::seek(&f, rustix::fs::SeekFrom::Hole(0)).unwrap();
    assert_eq!((data, hole), (0, 10_000));
    assert_eq!(
        rustix::fs::seek(&f, rustix::fs::SeekFrom::Data(10_000)),
        Err(rustix::io::Errno::NXIO)
    );
}

/// Under the writeback cache the kernel keeps its own mtime for a cached file and pushes it
/// with SETATTR when it changes. A write in the same clock tick as the file's creation left
/// the kernel's mtime alone (so no SETATTR), but the daemon's later `pwrite` moved the
/// backing mtime: after a remount the file showed another mtime than before.
#[test]
fn mtimes_seen_through_the_mount_survive_a_remount() {
    use std::io::Write;
    let mut m = Mounted::new();
    let names: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
    for n in &names {
        let mut f = std::fs::File::create(m.path(n)).unwrap();
        f.write_all(b"data").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let mtimes = |m: &Mounted| -> Vec<(i64, i64)> {
        names
            .iter()
            .map(|n| {
                let st = std::fs::metadata(m.path(n)).unwrap();
                (st.mtime(), st.mtime_nsec())
            })
            .collect()
    };
    let before = mtimes(&m);
    m.unmount();
    m.mount(&[]);
    assert_eq!(mtimes(&m), before);
}

/// A small tmpfs, for running out of space; unmounted on drop (declare it before the mount
/// that lives on it, so that it is dropped after).
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn new(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount tmpfs");
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.0.path())
            .status();
    }
}

/// Running out of space is never silent. With the writeback cache, `write()` returns once the
/// data is in the page cache and the ENOSPC of the daemon's later write is reported by
/// `fsync()` (and `close()`); with `--no-writeback-cache`, by the `write()` itself.
#[test]
fn enospc_is_reported_by_write_or_at_the_latest_by_fsync() {
    use std::io::Write;
    for (flags, at_write) in [(&[][..], false), (&["--no-writeback-cache"][..], true)] {
        let space = Tmpfs::new("2m");
        let cipherdir = space.0.path().join("c");
        common::mount::init_volume(&cipherdir, &[]);
        let mut m = Mounted::adopt(cipherdir);
        m.mount(flags);
        let mut f = std::fs::File::create(m.path("big")).unwrap();
        let block = vec![1u8; 256 << 10];
        let write_err = (0..16)
            .find_map(|_| f.write_all(&block).err())
            .and_then(|e| e.raw_os_error());
        if at_write {
            assert_eq!(
                write_err,
                Some(libc::ENOSPC),
                "{flags:?}: write() did not fail"
            );
        } else {
            let first = write_err.or_else(|| f.sync_all().err().and_then(|e| e.raw_os_error()));
            assert_eq!(first, Some(libc::ENOSPC), "{flags:?}");
        }
    }
}

/// Writes, truncates and chowns by root and by another user, on files with set-user-ID and
/// set-group-ID bits; prints every file's mode, owner, group and size. Run in a local
/// directory and through the mount, the two outputs must be the same (see
/// `privilege_bits_are_cleared_as_on_a_local_filesystem`).
const PRIVILEGE_BIT_SCRIPT: &str = r#"
as_user() { setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"; }
mk() { rm -f "$1"; echo data > "$1"; chmod "$2" "$1"; }
mk w1 6777; as_user sh -c 'echo x >> w1'
mk w2 2767; as_user sh -c 'echo x >> w2'
mk w3 6777; echo x >> w3
mk w4 6777; as_user sh -c 'exec 3>>w4; echo x >&3; stat -c "w4 while open: %a" w4'
mk w5 6777; as_user sh -c 'echo x >> w5'; chmod 6777 w5; as_user sh -c 'echo y >> w5'
mk t1 6777; as_user truncate -s 2 t1
mk t2 6777; truncate -s 2 t2
mk t3 6777; as_user sh -c ': > t3'
mk t4 6777; as_user perl -e 'truncate("t4", 1) or die "$!"'
mk t5 2767; as_user truncate -s 9 t5
mk t6 6777; setpriv --inh-caps=-fsetid --bounding-set=-fsetid -- truncate -s 1 t6
mk f1 6777; as_user fallocate -l 64 f1
mk f2 6777; fallocate -l 64 f2
mk c1 6755; chown 65534:65533 c1
mk c2 2745; chown 65534:65533 c2
mk c3 4755; perl -e 'chown(-1, -1, "c3") or die "$!"'
mk c4 6755; chown 0:0 c4
mk c5 6775; chown 65534:65534 c5; chmod 6775 c5; as_user chown :65534 c5
rm -rf d1; mkdir d1; chmod 2755 d1; chown 65534:65533 d1
stat -c '%n %a %u %g %s' w1 w2 w3 w4 w5 t1 t2 t3 t4 t5 t6 f1 f2 c1 c2 c3 c4 c5 d1
"#;

/// cofferfs clears set-user-ID and set-group-ID bits itself (it takes
/// FUSE_HANDLE_KILLPRIV_V2, which spares a round trip per write): on a write or truncate by a
/// caller without CAP_FSETID, and on chown, exactly as the kernel does on a local filesystem.
/// This also fixes a set-group-ID bit the kernel's own FUSE code left on a file written by a
/// non-member of its group (w2, t5).
#[test]
fn privilege_bits_are_cleared_as_on_a_local_filesystem() {
    let local = tempfile::tempdir_in("/tmp").unwrap();
    let run = |dir: &std::path::Path| {
        // The other user must be able to reach the files.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        common::mount::sh(dir, PRIVILEGE_BIT_SCRIPT)
    };
    let reference = run(local.path());
    for line in [
        "w1 777 0 0 7",
        "w3 6777 0 0 7",
        "t6 777 0 0 1",
        "c3 755 0 0 5",
    ] {
        assert!(
            reference.contains(line),
            "{line} in the reference run: {reference}"
        );
    }
    for flags in [
        &["--allow-other"][..],
        &["--allow-other", "--no-writeback-cache"],
    ] {
        let m = Mounted::with(&[], flags);
        assert_eq!(
            run(&m.mnt),
            reference,
            "through the mount ({flags:?}) vs local"
        );
    }
}
