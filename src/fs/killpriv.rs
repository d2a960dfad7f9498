//! Clearing the set-user-ID and set-group-ID bits of a file when it is written, truncated or
//! chowned, which the daemon does itself: it asks for `FUSE_HANDLE_KILLPRIV_V2`. With that
//! flag the kernel trusts the daemon to clear them, so it may skip asking for
//! `security.capability` before every `write(2)` (without it, each small write cost one more
//! round trip; `dd bs=4k` ran 2–3× slower).
//!
//! The rules are the kernel's own (`setattr_should_drop_suidgid`): the set-user-ID bit goes;
//! the set-group-ID bit goes if the group may execute the file, or if the caller is neither
//! in the file's group nor privileged. They apply to a write or truncate by a caller without
//! `CAP_FSETID`, and to every `chown` of a regular file. The kernel says so for a write
//! (`FUSE_WRITE_KILL_SUIDGID`); fuser does not pass its flag on a truncate, so a caller other
//! than root stands for "without `CAP_FSETID`" there. A `chown` that names a new owner or
//! group clears the bits through the backing `fchownat` (same rules, daemon as the caller);
//! `chown(f, -1, -1)` reaches the daemon as a change of the ctime alone.

use fuser::Request;
use rustix::fs::{AtFlags, Mode};
use std::os::fd::AsFd;

use super::CofferFs;
use super::inodes::{Inode, Kind};
use crate::volume::Result;

/// Who made a request, as far as the bit rules care.
#[derive(Debug, Clone, Copy)]
pub(super) struct Caller {
    uid: u32,
    gid: u32,
    pid: u32,
}

impl Caller {
    /// The caller of `req`.
    pub(super) fn of(req: &Request) -> Self {
        Caller {
            uid: req.uid(),
            gid: req.gid(),
            pid: req.pid(),
        }
    }

    /// Root: stands for "has `CAP_FSETID`" where the kernel does not say.
    pub(super) fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether the caller is in group `gid`: its own group, or one of its supplementary
    /// groups (read from `/proc`; if that fails, "no", which clears the bit: the safe side).
    fn in_group(&self, gid: u32) -> bool {
        if self.gid == gid {
            return true;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{}/status", self.pid)) else {
            return false;
        };
        status
            .lines()
            .find_map(|l| l.strip_prefix("Groups:"))
            .is_some_and(|groups| {
                groups
                    .split_whitespace()
                    .any(|g| g.parse::<u32>() == Ok(gid))
            })
    }
}

/// The mode `mode` becomes when a caller clears its privilege bits; `in_group` is asked only
/// when it matters (an unprivileged caller, set-group-ID without group execute).
fn cleared(mode: u32, privileged: bool, in_group: impl FnOnce() -> bool) -> u32 {
    let mut new = mode & !libc::S_ISUID;
    if mode & libc::S_ISGID != 0 && (mode & libc::S_IXGRP != 0 || (!privileged && !in_group())) {
        new &= !libc::S_ISGID;
    }
    new
}

impl CofferFs {
    /// Clears the set-user-ID and set-group-ID bits of a regular file as the kernel would
    /// for `caller` (`privileged`: has `CAP_FSETID`). Costs one `fstat` when there is
    /// nothing to clear. The kernel is told to ask for the new mode: a write's reply carries
    /// no attributes, and it would otherwise keep showing the old bits.
    pub(super) fn drop_suid_sgid(
        &self,
        inode: &Inode,
        caller: &Caller,
        privileged: bool,
    ) -> Result<()> {
        if inode.kind != Kind::File {
            return Ok(());
        }
        let fd = inode.fd()?;
        let st = rustix::fs::fstat(&fd)?;
        let mode = st.st_mode & 0o7777;
        if mode & (libc::S_ISUID | libc::S_ISGID) == 0 {
            return Ok(());
        }
        let new = cleared(mode, privileged, || caller.in_group(st.st_gid));
        if new != mode {
            rustix::fs::chmodat(
                &self.proc_fd,
                Self::proc_name(fd.as_fd()),
                Mode::from_raw_mode(new),
                AtFlags::empty(),
            )?;
            self.attributes_changed(inode.ino);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::cleared;

    #[test]
    fn the_kernels_rules() {
        // Set-user-ID always goes; set-group-ID with group execute always goes.
        assert_eq!(cleared(0o6755, true, || true), 0o755);
        assert_eq!(cleared(0o6755, false, || true), 0o755);
        // Set-group-ID without group execute stays for a member or a privileged caller...
        assert_eq!(cleared(0o2745, false, || true), 0o2745);
        assert_eq!(cleared(0o2745, true, || false), 0o2745);
        // ...and goes for anyone else.
        assert_eq!(cleared(0o2745, false, || false), 0o745);
        assert_eq!(cleared(0o4644, false, || false), 0o644);
    }
}
