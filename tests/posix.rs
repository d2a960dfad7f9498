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
