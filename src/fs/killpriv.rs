//! Clearing the set-user-ID and set-group-ID bits of a file when it is written, truncated,
//! fallocated or chowned, which the daemon does itself: it asks for `FUSE_HANDLE_KILLPRIV_V2`.
//! With that flag the kernel trusts the daemon to clear them, so it may mark an inode as
//! having nothing to clear (`S_NOSEC`) and stop asking for `security.capability` before every
//! `write(2)` (without it, each small write cost one more round trip; `dd bs=4k` ran 2–3×
//! slower).
//!
//! The rules are the kernel's own (`setattr_should_drop_suidgid`): the set-user-ID bit goes;
//! the set-group-ID bit goes if the group may execute the file, or if the caller is neither
//! in the file's group nor holds `CAP_FSETID`. They apply to a write, truncate or fallocate
//! by a caller without `CAP_FSETID`, and to every `chown` of a regular file whoever makes it.
//! The kernel flags a write (`FUSE_WRITE_KILL_SUIDGID`); for a truncate or fallocate fuser
//! passes no flag, so the daemon reads the caller's effective capabilities itself. A `chown`
//! that names a new owner or group clears the bits through the backing `fchownat` (same rules,
//! the daemon as the caller). What is left of the kernel's own request to clear them arrives
//! as a SETATTR that changes nothing, or only the ctime: `chown(f, -1, -1)`, and the kernel's
//! clearing before a fallocate or write, stripped of its flags under this option.

use fuser::Request;
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

    /// Whether the caller holds `CAP_FSETID` (bit 4 of `CapEff` in `/proc/<pid>/status`);
    /// if that cannot be read, whether it is root.
    fn has_fsetid(&self) -> bool {
        self.status_field("CapEff:")
            .and_then(|caps| u64::from_str_radix(caps.trim(), 16).ok())
            .map_or(self.uid == 0, |caps| caps & (1 << 4) != 0)
    }

    /// One line of the caller's `/proc/<pid>/status`, after `key`.
    fn status_field(&self, key: &str) -> Option<String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .map(str::to_owned)
    }

    /// Whether the caller is in group `gid`: its own group, or one of its supplementary
    /// groups (read from `/proc`; if that fails, "no", which clears the bit: the safe side).
    fn in_group(&self, gid: u32) -> bool {
        self.gid == gid
            || self.status_field("Groups:").is_some_and(|groups| {
                groups
                    .split_whitespace()
                    .any(|g| g.parse::<u32>() == Ok(gid))
            })
    }
}

/// Why the bits may have to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Occasion {
    /// A write the kernel flagged: its caller lacks `CAP_FSETID`.
    FlaggedWrite,
    /// A truncate or fallocate: nothing goes if the caller holds `CAP_FSETID`.
    Change,
    /// A chown, or what the kernel leaves of its own request to clear the bits.
    Chown,
}

/// The mode `mode` becomes when its privilege bits are cleared for a caller (`privileged`:
/// holds `CAP_FSETID`); `in_group` is asked only when it matters.
fn cleared(mode: u32, privileged: bool, in_group: impl FnOnce() -> bool) -> u32 {
    let mut new = mode & !libc::S_ISUID;
    if mode & libc::S_ISGID != 0 && (mode & libc::S_IXGRP != 0 || (!privileged && !in_group())) {
        new &= !libc::S_ISGID;
    }
    new
}

impl CofferFs {
    /// Clears the set-user-ID and set-group-ID bits of a regular file as the kernel would
    /// for `caller` on `occasion`. Costs one `fstat` when there is nothing to clear (the
    /// caller's `/proc` status is read only when there is). The kernel is told to ask for the
    /// new mode: a write's reply carries no attributes, and it would otherwise keep showing
    /// the old bits.
    pub(super) fn drop_suid_sgid(
        &self,
        inode: &Inode,
        caller: &Caller,
        occasion: Occasion,
    ) -> Result<()> {
        if inode.kind != Kind::File || self.opts.read_only {
            return Ok(());
        }
        let fd = inode.fd()?;
        let st = rustix::fs::fstat(&fd)?;
        let mode = st.st_mode & 0o7777;
        if mode & (libc::S_ISUID | libc::S_ISGID) == 0 {
            return Ok(());
        }
        let privileged = match occasion {
            Occasion::FlaggedWrite => false,
            Occasion::Change if caller.has_fsetid() => return Ok(()),
            Occasion::Change => false,
            Occasion::Chown => caller.has_fsetid(),
        };
        let new = cleared(mode, privileged, || caller.in_group(st.st_gid));
        if new != mode {
            self.chmod_backing(fd.as_fd(), new)?;
            // Offset -1: attributes only. Invalidating pages here would wait on the folios
            // the kernel holds locked while this write is in flight.
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
