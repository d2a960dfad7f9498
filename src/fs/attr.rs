//! Backing `stat` → plaintext `FileAttr`. Every reply that carries attributes goes through
//! [`to_attr`] with the size `Volume::plain_size` gives, so no path can forget the
//! ciphertext → plaintext size conversion (gocryptfs forgot it in LINK). Symlink sizes come from the backing link's length alone: `stat` never
//! reads the link, so the backing atime is never touched.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};
use rustix::fs::{FileType as RawType, Stat};

use super::inodes::Kind;

/// A timestamp from seconds and nanoseconds, before or after the epoch.
pub fn system_time(secs: i64, nsecs: i64) -> SystemTime {
    let base = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    base + Duration::from_nanos(nsecs.clamp(0, 999_999_999) as u64)
}

/// Seconds and nanoseconds (0..1e9) of a timestamp, before or after the epoch.
pub fn timespec(t: SystemTime) -> (i64, i64) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, i64::from(d.subsec_nanos())),
        Err(e) => {
            let d = e.duration();
            let (s, n) = (d.as_secs() as i64, i64::from(d.subsec_nanos()));
            if n == 0 {
                (-s, 0)
            } else {
                (-s - 1, 1_000_000_000 - n)
            }
        }
    }
}

/// The cofferfs kind of a backing file type.
pub fn kind_of(st: &Stat) -> Kind {
    match RawType::from_raw_mode(st.st_mode) {
        RawType::Directory => Kind::Dir,
        RawType::RegularFile => Kind::File,
        RawType::Symlink => Kind::Symlink,
        _ => Kind::Special,
    }
}

fn file_type(st: &Stat) -> FileType {
    match RawType::from_raw_mode(st.st_mode) {
        RawType::Directory => FileType::Directory,
        RawType::RegularFile => FileType::RegularFile,
        RawType::Symlink => FileType::Symlink,
        RawType::Fifo => FileType::NamedPipe,
        RawType::Socket => FileType::Socket,
        RawType::CharacterDevice => FileType::CharDevice,
        RawType::BlockDevice => FileType::BlockDevice,
        RawType::Unknown => FileType::RegularFile,
    }
}

/// What a LOOKUP of a missing name answers: node id 0 is the protocol's "no such entry, and
/// cache that for the entry's time to live". An `ENOENT` reply would leave the kernel to ask
/// again on every `stat`, `open` or `execve` of the name: a compiler's include search, a
/// shell's `PATH` walk or Python's import path each try many names that are not there.
pub fn absent() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: fuser::FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// The plaintext attributes of backing object `st`, reported as node `ino` with `size`, its
/// plaintext size (`Volume::plain_size`).
pub fn to_attr(st: &Stat, ino: u64, size: u64) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: st.st_blocks as u64,
        atime: system_time(st.st_atime, st.st_atime_nsec as i64),
        mtime: system_time(st.st_mtime, st.st_mtime_nsec as i64),
        ctime: system_time(st.st_ctime, st.st_ctime_nsec as i64),
        crtime: UNIX_EPOCH,
        kind: file_type(st),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: 4096,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_before_and_after_the_epoch() {
        for (s, n) in [
            (0i64, 0i64),
            (1, 5),
            (-1, 0),
            (-2, 800_000_000),
            (-100, 1),
            (1 << 33, 999),
        ] {
            assert_eq!(timespec(system_time(s, n)), (s, n), "{s}.{n}");
        }
    }
}
