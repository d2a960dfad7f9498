//! POSIX corners found by pjdfstest, fsx and hand checks against ext4, each a regression test
//! through a real mount and real syscalls. See docs/POSIX.md.

mod common;

use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};

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
