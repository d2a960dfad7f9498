//! `cofferfs umount`: detach a cofferfs mount and wait for its daemon to let the volume go.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::mount_table::mounted_source;
use crate::cli::{CliError, exit};
use crate::volume;

/// Arguments of `cofferfs umount`.
#[derive(Debug, clap::Args)]
pub struct UmountArgs {
    /// The mountpoint.
    pub mountpoint: PathBuf,
}

/// Opens the lock probe (a file of the cipherdir) without following a symlink or blocking on
/// a FIFO that may have been swapped in.
fn open_probe(probe: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(probe)
}

/// Runs `umount`: detaches the mount, then waits (up to 10 s) for the daemon to release the
/// volume, so a `mount` right after succeeds.
pub fn run_umount(a: UmountArgs) -> Result<(), CliError> {
    let Some(source) = mounted_source(&a.mountpoint) else {
        return Err(CliError::new(
            exit::MOUNT,
            format!(
                "{} is not a mounted cofferfs filesystem",
                a.mountpoint.display()
            ),
        ));
    };
    if rustix::process::geteuid().is_root() {
        rustix::mount::unmount(&a.mountpoint, rustix::mount::UnmountFlags::DETACH)
            .map_err(|e| CliError::new(exit::MOUNT, format!("unmount failed: {e}")))?;
    } else {
        let st = std::process::Command::new("fusermount3")
            .arg("-u")
            .arg(&a.mountpoint)
            .status();
        if !st.map(|s| s.success()).unwrap_or(false) {
            return Err(CliError::new(exit::MOUNT, "fusermount3 -u failed"));
        }
    }
    let probe = volume::lock_probe_path(Path::new(&source));
    if probe.exists() {
        for _ in 0..100 {
            if let Ok(f) = open_probe(&probe)
                && rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockShared).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("cofferfs: unmounted, but the daemon is still finishing (files still open?)");
    }
    Ok(())
}
