//! The cipherdir root's timestamps, kept as the plaintext root should show them while SQLite
//! creates and deletes its `-wal` and `-shm` files there.

use std::path::{Path, PathBuf};

/// The cipherdir root's timestamps as the plaintext root should show them. SQLite creates and
/// deletes `cofferfs.db-wal`/`-shm` in the root at every open and close, which would bump the
/// root's mtime on every mount cycle (and make rsync touch it); when the volume closes, the
/// root gets back the times of its last real change.
#[derive(Debug)]
pub struct RootTimes {
    path: PathBuf,
    /// Guards the (atime, mtime) to restore.
    times: parking_lot::Mutex<Option<rustix::fs::Timestamps>>,
}

impl RootTimes {
    fn stat(path: &Path) -> Option<rustix::fs::Timestamps> {
        let st = rustix::fs::stat(path).ok()?;
        Some(rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: st.st_atime,
                tv_nsec: st.st_atime_nsec as _,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: st.st_mtime,
                tv_nsec: st.st_mtime_nsec as _,
            },
        })
    }

    pub(super) fn capture(path: &Path) -> Self {
        RootTimes {
            path: path.to_owned(),
            times: parking_lot::Mutex::new(Self::stat(path)),
        }
    }

    /// Records the root's current times as its real ones: called after every change made
    /// through the mount to the root directory itself.
    pub fn record_now(&self) {
        *self.times.lock() = Self::stat(&self.path);
    }
}

impl Drop for RootTimes {
    fn drop(&mut self) {
        // Restoring an mtime that did not change would still move the root's ctime (and fail
        // on read-only media): only a root whose mtime moved is touched. A moved atime alone
        // is a read's, as on any directory.
        if let Some(t) = self.times.lock().take()
            && Self::stat(&self.path).is_none_or(|now| !same_mtime(&now, &t))
        {
            let _ = rustix::fs::utimensat(
                rustix::fs::CWD,
                &self.path,
                &t,
                rustix::fs::AtFlags::empty(),
            );
        }
    }
}

fn same_mtime(a: &rustix::fs::Timestamps, b: &rustix::fs::Timestamps) -> bool {
    let (a, b) = (&a.last_modification, &b.last_modification);
    (a.tv_sec, a.tv_nsec) == (b.tv_sec, b.tv_nsec)
}
