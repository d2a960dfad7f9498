//! What `mount` checks before it asks for the secret (a free, empty mountpoint; a volume not
//! mounted elsewhere), and how a refused mount is explained.

use std::path::Path;

use super::mount_table::{mount_on, mounted_at};
use crate::cli::{CliError, exit};
use crate::volume::{self, Location};

/// Refuses a mountpoint that is a mount point already (mounting over it would hide that
/// mount), that cannot be read, or that is not empty.
pub(super) fn check_mountpoint(p: &Path) -> Result<(), CliError> {
    if let Some(m) = mount_on(p) {
        let dead =
            matches!(std::fs::metadata(p), Err(e) if e.raw_os_error() == Some(libc::ENOTCONN));
        let hint = if dead {
            format!(
                "its daemon is gone: remove it with `fusermount3 -uz {}`",
                p.display()
            )
        } else {
            "unmount it first, or choose another directory".to_owned()
        };
        return Err(CliError::new(
            exit::MOUNT,
            format!(
                "{} is already a mount point: {} ({}) is mounted there; {hint}",
                p.display(),
                m.source,
                m.fstype
            ),
        ));
    }
    let mut entries = std::fs::read_dir(p)
        .map_err(|e| CliError::new(exit::MOUNT, format!("mountpoint {}: {e}", p.display())))?;
    if entries.next().is_some() {
        return Err(CliError::new(
            exit::MOUNT,
            format!("mountpoint {} is not empty", p.display()),
        ));
    }
    Ok(())
}

/// `check_not_locked`, saying where the volume is mounted when that is why it is locked.
pub(super) fn check_not_mounted(loc: &Location) -> Result<(), CliError> {
    volume::check_not_locked(loc).map_err(|e| {
        let mut err = CliError::from(e);
        if err.code == exit::LOCKED
            && let Some(at) = mounted_at(loc.cipherdir())
        {
            err.message = format!(
                "{} is in use by another cofferfs process: it is already mounted at {at}",
                loc.cipherdir().display()
            );
        }
        err
    })
}

/// The error of a mount that fuser could not make, saying what was refused and what to check.
pub(super) fn mount_failed(mnt: &Path, e: &std::io::Error) -> CliError {
    let at = format!("mount on {} failed", mnt.display());
    let message = if e.kind() != std::io::ErrorKind::PermissionDenied {
        format!("{at}: {e}")
    } else if let Err(dev) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        format!(
            "{at}: /dev/fuse cannot be opened for reading and writing ({dev}): check `ls -l \
             /dev/fuse` (usually crw-rw-rw-, or a group of yours), that the fuse module is \
             loaded (`modprobe fuse`), and in a container that /dev/fuse is passed in (docker \
             --device /dev/fuse)"
        )
    } else {
        format!(
            "{at}: the kernel refused the mount ({e}): mount as root, or install fusermount3 \
             (package fuse3) setuid root; the mountpoint must be yours"
        )
    };
    CliError::new(exit::MOUNT, message)
}
