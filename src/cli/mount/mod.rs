//! `cofferfs mount` and `cofferfs umount`.
//!
//! By default `mount` daemonizes once the mount is ready and returns 0, as gocryptfs does: the
//! password is read and checked, then the process forks; the child opens the volume, mounts,
//! and reports success or the error over a pipe, so the parent's exit status tells the truth.
//! SIGINT, SIGTERM and SIGHUP unmount cleanly (lazy detach), then the header store is
//! checkpointed and keys are dropped (zeroized).
//!
//! This file is the verb: its arguments and `run` (check, read the secret, then serve in the
//! foreground or through the daemon). Beside it: `options` (the `-o` list and `--idle`),
//! `checks` (mountpoint and volume checks, and why a mount failed), `daemon` (fork and ready
//! pipe, signals, fd limit, readahead, the serve loop and its threads), `mount_table`
//! (`/proc/self/mountinfo`), `umount`.

mod checks;
mod control;
mod daemon;
mod mount_table;
mod options;
mod umount;

use std::path::PathBuf;
use std::time::Duration;

pub use daemon::{READAHEAD_KIB, detach};
pub use options::parse_duration;
pub use umount::{UmountArgs, run_umount};

use super::CliError;
use super::unlock::UnlockArgs;
use super::volume_args::VolumeArgs;
use crate::volume;

/// Arguments of `cofferfs mount`.
#[derive(Debug, clap::Args)]
pub struct MountArgs {
    /// The volume.
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// Where the plaintext view appears (an existing, empty directory).
    pub mountpoint: PathBuf,
    /// Stay in the foreground and log to stderr.
    #[arg(short, long)]
    pub foreground: bool,
    /// Mount read-only.
    #[arg(long)]
    pub ro: bool,
    /// Let other users use the mount (permissions are still checked by the kernel).
    #[arg(long)]
    pub allow_other: bool,
    /// Name shown as the mount's source (default: the cipherdir path).
    #[arg(long)]
    pub fsname: Option<String>,
    /// Extra mount options, comma-separated: noatime, atime, noexec, exec, nosuid, suid,
    /// nodev, dev, sync, async, dirsync. The mount is nosuid,nodev unless `suid` or `dev` is
    /// given together with --allow-suid-dev.
    #[arg(short = 'o', value_name = "OPTS")]
    pub options: Vec<String>,
    /// Allow `-o suid` and `-o dev`. Dangerous: mode bits, owners and device numbers come
    /// from the cipherdir, which is not authenticated, so whoever can write the cipherdir can
    /// plant a setuid-root program or a device node in the mount.
    #[arg(long)]
    pub allow_suid_dev: bool,
    /// Unmount after this long without any use and with nothing open (e.g. 90s, 10m, 1h30m,
    /// 0.5s; 0: never).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub idle: Option<Duration>,
    /// Try only this key slot.
    #[arg(long)]
    pub slot: Option<u32>,
    /// Threads serving FUSE requests (default: the CPUs this process may run on, 2 to 8).
    /// More threads than CPUs only add wake-ups between cores: on 2 cores, 2 threads
    /// untarred and removed a 20,000-file tree faster than 4 (docs/PERFORMANCE.md).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: Option<u16>,
    /// Most inodes of files (not directories) the kernel may keep (default 131072). Past it
    /// the daemon asks the kernel to forget the names of the files used least recently, each
    /// about 350 bytes of the daemon's memory; using such a name again costs one lookup. 0: no
    /// bound (the kernel keeps every name it has seen while it has memory to spare).
    #[arg(long, value_name = "N")]
    pub max_inodes: Option<usize>,
    /// No kernel writeback cache: every write() reaches the daemon before it returns, so an
    /// error such as ENOSPC is reported by that write() and not only by fsync() or close().
    /// Slower for small writes.
    #[arg(long)]
    pub no_writeback_cache: bool,
    /// No extended attributes (getfattr and setfattr then fail with "Operation not
    /// supported"; those already stored stay in the cipherdir for a mount without it). Saves
    /// the kernel's two security.capability queries per file written and chowned, as by tar.
    #[arg(long)]
    pub no_xattr: bool,
    /// The secret: a password, or a key file.
    #[command(flatten)]
    pub unlock: UnlockArgs,
    /// Keep the daemon's log off syslog: once in the background it is then discarded.
    #[arg(long)]
    pub nosyslog: bool,
    /// Put the control socket (through which `passwd`, `keys`, `rotate`, `reencrypt`,
    /// `fsck` and `status` reach the mounted volume) at PATH instead of the default
    /// `/run/cofferfs/VOLUME-ID.sock` (root) or `$XDG_RUNTIME_DIR/cofferfs/VOLUME-ID.sock`,
    /// which then links to it.
    #[arg(long, value_name = "PATH")]
    pub ctlsock: Option<PathBuf>,
    /// The syslog socket instead of /dev/log (for tests, which bind their own).
    #[arg(long, value_name = "PATH", hide = true)]
    pub syslog_socket: Option<PathBuf>,
}

/// The cipherdir of the cofferfs mount on `mnt`, if `mnt` is the mountpoint of one.
pub fn cofferfs_source(mnt: &std::path::Path) -> Option<String> {
    mount_table::mount_on(mnt)
        .filter(|m| m.fstype == "fuse.cofferfs")
        .map(|m| m.source)
}

/// Runs `mount`.
pub fn run(mut a: MountArgs) -> Result<(), CliError> {
    // `-o ro` must mean what `--ro` means to the daemon too (no format upgrade, no writes
    // even if the mount is later remounted read-write), not only to the kernel.
    a.ro |= a
        .options
        .iter()
        .flat_map(|s| s.split(','))
        .any(|o| o == "ro");
    let loc = a.volume.locate()?;
    volume::open_store_read_only_at(&loc)?;
    checks::check_mountpoint(&a.mountpoint)?;
    checks::check_not_mounted(&loc)?;
    if !a.ro {
        volume::check_writable_media(&loc)?;
    }
    let options = options::mount_options(&a)?;
    let password = a.unlock.read_for(&loc, a.slot, "Password: ")?;
    if a.foreground {
        return daemon::serve(&a, &loc, options, password, None);
    }
    daemon::serve_in_background(&a, &loc, options, password)
}
