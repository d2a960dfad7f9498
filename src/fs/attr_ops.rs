//! The worker of `setattr`: the size through the open content (`file_ops.rs`), then mode,
//! owner and times on the backing object, and the set-id bits the kernel would clear
//! (`killpriv.rs`). The shim only unpacks the request and replies.

use std::os::fd::AsFd;
use std::time::SystemTime;

use fuser::{FileAttr, TimeOrNow};
use rustix::fs::{AtFlags, Timespec, Timestamps, UTIME_NOW, UTIME_OMIT};

use super::CofferFs;
use super::attr::timespec;
use super::errno::os;
use super::inodes::{Inode, Kind};
use super::killpriv::{Caller, Occasion};
use crate::volume::Result;

/// A time from `setattr`, corrected for fuser 0.18's pre-1970 bug: for a kernel time of −S s
/// plus N ns (N > 0) fuser builds `EPOCH − (S s + N ns)`; the intended time is −S s + N ns.
fn setattr_timespec(t: SystemTime) -> Timespec {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(_) => {
            let (s, n) = timespec(t);
            Timespec {
                tv_sec: s,
                tv_nsec: n,
            }
        }
        Err(e) => {
            let d = e.duration();
            Timespec {
                tv_sec: -(d.as_secs() as i64),
                tv_nsec: i64::from(d.subsec_nanos()),
            }
        }
    }
}

fn time_arg(t: Option<TimeOrNow>) -> Timespec {
    match t {
        None => Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        Some(TimeOrNow::Now) => Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_NOW,
        },
        Some(TimeOrNow::SpecificTime(t)) => setattr_timespec(t),
    }
}

/// What `setattr` was asked to change (besides the size, which goes through the content).
#[derive(Debug, Default)]
pub struct AttrChange {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New access time.
    pub atime: Option<TimeOrNow>,
    /// New modification time.
    pub mtime: Option<TimeOrNow>,
}

impl CofferFs {
    /// `setattr` of node `ino` by `caller`: a new `size` (through the handle `fh` if given),
    /// then the changes `c`; returns the attributes after them.
    pub(super) fn do_setattr(
        &self,
        caller: &Caller,
        ino: u64,
        size: Option<u64>,
        fh: Option<u64>,
        c: &AttrChange,
    ) -> Result<FileAttr> {
        let inode = self.inode(ino)?;
        let changes_attrs = c.mode.is_some()
            || c.uid.is_some()
            || c.gid.is_some()
            || c.atime.is_some()
            || c.mtime.is_some();
        if changes_attrs {
            self.check_writable()?;
        }
        if let Some(size) = size {
            self.do_truncate(&inode, fh, size)?;
            self.drop_suid_sgid(&inode, caller, Occasion::Change)?;
        }
        if !changes_attrs && size.is_none() {
            // Nothing to change but perhaps the ctime: chown(f, -1, -1), or the kernel's
            // own request to clear the bits, stripped of its flags (see killpriv.rs).
            self.drop_suid_sgid(&inode, caller, Occasion::Chown)?;
        }
        self.change_attrs(&inode, c)?;
        self.stat_inode(&inode)
    }

    /// Mode, owner and times (the size is handled by the caller through the content).
    pub(super) fn change_attrs(&self, inode: &Inode, c: &AttrChange) -> Result<()> {
        let fd = inode.fd()?;
        if let Some(mode) = c.mode {
            if inode.kind == Kind::Symlink {
                return Err(os(libc::EOPNOTSUPP));
            }
            self.chmod_backing(fd.as_fd(), mode)?;
        }
        if c.uid.is_some() || c.gid.is_some() {
            rustix::fs::chownat(
                &fd,
                "",
                c.uid.map(rustix::fs::Uid::from_raw),
                c.gid.map(rustix::fs::Gid::from_raw),
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        if c.atime.is_some() || c.mtime.is_some() {
            let times = Timestamps {
                last_access: time_arg(c.atime),
                last_modification: time_arg(c.mtime),
            };
            let _g = inode.mtime_lock.lock();
            rustix::fs::utimensat(&fd, "", &times, AtFlags::EMPTY_PATH)?;
        }
        Ok(())
    }
}
