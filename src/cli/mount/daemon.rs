//! The mount daemon: what runs from the unlock to the unmount. Forking and the ready pipe
//! (the parent's exit status tells how the mount went), the open-file limit, readahead,
//! termination signals and `--idle`, and the serve loop itself, whose shape is:
//!
//! 1. open the volume ([`open_volume`]) and start the FUSE session ([`start_session`]);
//! 2. once the mount answers requests: the threads that serve the daemon beside FUSE start
//!    (see the marked place in [`serve`]), then the parent is told "mounted";
//! 3. the threads that end the mount ([`spawn_unmount_triggers`]: signals, idle) start;
//! 4. [`join_session`] waits for the unmount; the threads of step 2 stop; the volume drops.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use fuser::{BackgroundSession, Config, MountOption, Session, SessionACL};

use super::MountArgs;
use super::checks::mount_failed;
use super::mount_table::mount_on;
use crate::cli::unlock::SlotSecret;
use crate::cli::{CliError, exit};
use crate::fs::{Activity, CofferFs, FsOptions};
use crate::sys::{self, Forked};
use crate::volume::{Location, Volume};

/// Forks: the parent waits on the ready pipe for the child's `"<code> <message>"` and exits
/// with it; the child (a new session, away from the terminal) serves the mount.
pub(super) fn serve_in_background(
    a: &MountArgs,
    loc: &Location,
    options: Vec<MountOption>,
    password: SlotSecret,
) -> Result<(), CliError> {
    let (rx, tx) = rustix::pipe::pipe().map_err(|e| CliError::new(exit::OTHER, e.to_string()))?;
    match sys::fork().map_err(|e| CliError::new(exit::OTHER, e.to_string()))? {
        Forked::Parent(_) => {
            drop(tx);
            drop(password);
            let mut msg = String::new();
            std::fs::File::from(rx).read_to_string(&mut msg).ok();
            match msg.split_once(' ') {
                Some(("0", _)) => Ok(()),
                Some((code, text)) => Err(CliError::new(code.parse().unwrap_or(exit::OTHER), text)),
                None => Err(CliError::new(
                    exit::MOUNT,
                    "the mount daemon died before mounting",
                )),
            }
        }
        Forked::Child => {
            drop(rx);
            let _ = rustix::process::setsid();
            // Every error before the mount is up goes to the parent, which prints it; one
            // after it is logged by `serve`.
            let result = serve(a, loc, options, password, Some(tx));
            std::process::exit(result.map(|_| 0).unwrap_or_else(|e| e.code));
        }
    }
}

/// Tells the waiting parent how the mount went (`"<code> <message>"`), then detaches the
/// daemon from the terminal.
fn report(ready: &mut Option<OwnedFd>, code: i32, message: &str) {
    if let Some(fd) = ready.take() {
        let mut f = std::fs::File::from(fd);
        let _ = write!(f, "{code} {message}");
        drop(f);
        if code == 0
            && let Ok(null) = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/null")
        {
            let _ = rustix::stdio::dup2_stdin(&null);
            let _ = rustix::stdio::dup2_stdout(&null);
            let _ = rustix::stdio::dup2_stderr(&null);
        }
    }
}

/// Raises the open-file limit as far as allowed: every inode the kernel holds costs the
/// daemon one `O_PATH` fd (see `fs/inodes.rs`), so the usual soft limit (1024) would fail a
/// big tree with EMFILE. As root the hard limit goes up to `fs.nr_open`; otherwise the soft
/// limit goes up to the hard one (what libfuse's passthrough_ll and gocryptfs do). Returns
/// the limit now in force (`None`: unlimited).
fn raise_fd_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let old = getrlimit(Resource::Nofile);
    let to = |n: Option<u64>| Rlimit {
        current: n,
        maximum: n,
    };
    let raised = nr_open
        .filter(|&n| old.maximum.is_some_and(|max| n > max))
        .is_some_and(|n| setrlimit(Resource::Nofile, to(Some(n))).is_ok())
        || setrlimit(Resource::Nofile, to(old.maximum)).is_ok();
    if !raised {
        log::warn!("could not raise the open-file limit ({:?})", old.current);
    }
    let now = getrlimit(Resource::Nofile).current;
    log::info!("open-file limit: {now:?}");
    now
}

/// Opens the volume, mounts, serves until unmounted. The secret is consumed: it is wiped as
/// soon as the volume is unlocked, not kept for the daemon's life. `ready` is the pipe to the
/// waiting parent (`None` in the foreground): every error before "mounted" is reported on it.
pub(super) fn serve(
    a: &MountArgs,
    loc: &Location,
    options: Vec<MountOption>,
    password: SlotSecret,
    mut ready: Option<OwnedFd>,
) -> Result<(), CliError> {
    let fail = |ready: &mut Option<OwnedFd>, e: CliError| {
        report(ready, e.code, &e.message);
        e
    };
    let vol = open_volume(a, loc, password).map_err(|e| fail(&mut ready, e))?;
    // Before `start_session` clears the umask: the socket is born mode 0600.
    let ctl = super::control::bind(a, &vol).map_err(|e| fail(&mut ready, e))?;
    let mountpoint = std::fs::canonicalize(&a.mountpoint).unwrap_or_else(|_| a.mountpoint.clone());
    let (bg, activity) = start_session(a, &vol, options).map_err(|e| fail(&mut ready, e))?;
    raise_readahead(&a.mountpoint);
    log::info!(
        "mounted {} on {}",
        loc.cipherdir().display(),
        a.mountpoint.display()
    );

    // Threads that serve the daemon beside FUSE (the control socket) start HERE: the mount
    // answers requests, and the parent has not been told "mounted" yet, so a failure to start
    // one is still reported by `mount`'s exit status (`fail(&mut ready, …)`), and a client
    // that runs once `mount` returns finds them up. They stop after `join_session` below.
    let (rotation, control) = super::control::serve(&ctl, a, &vol, mountpoint, activity.clone())
        .map_err(|e| fail(&mut ready, e))?;

    if ready.is_none() {
        // Foreground: say so, as the background parent's exit status says it.
        let _ = writeln!(
            std::io::stderr(),
            "cofferfs: {} mounted on {}: ready (Ctrl-C or `cofferfs umount {}` unmounts)",
            loc.cipherdir().display(),
            a.mountpoint.display(),
            a.mountpoint.display()
        );
    }
    // From here on the daemon's stderr is /dev/null: its warnings go to syslog instead.
    if ready.is_some() && !a.nosyslog {
        crate::cli::logging::switch_to_syslog(a.syslog_socket.as_deref());
    }
    report(&mut ready, 0, "mounted");
    spawn_unmount_triggers(a, activity);

    join_session(bg, &a.mountpoint).map_err(|e| {
        // The parent is gone: this goes to the log only.
        log::error!("filesystem loop failed: {e}");
        CliError::new(exit::OTHER, format!("filesystem loop failed: {e}"))
    })?;
    // Unmounted. The threads started at the marked place above stop HERE, before the volume
    // is dropped.
    rotation.stop();
    control.close();
    drop(ctl);

    // destroy() has checkpointed the store; dropping the volume releases the lock and keys.
    drop(vol);
    Ok(())
}

/// Unlocks the volume with `password` (wiped once used) and, read-write, upgrades its format.
/// Read-only: the store is opened read-only too, so nothing in the cipherdir changes and
/// read-only media mount.
fn open_volume(
    a: &MountArgs,
    loc: &Location,
    password: SlotSecret,
) -> Result<Arc<Volume>, CliError> {
    let opened = if a.ro {
        password.open_read_only(loc, a.slot)
    } else {
        password.open(loc, a.slot)
    };
    drop(password);
    let vol = Arc::new(opened?);
    if !a.ro {
        vol.upgrade_format_version()?;
    }
    Ok(vol)
}

/// The FUSE threads of a mount without `--threads`: one per CPU this process may run on,
/// at least 2 (a request waiting on the disk must not stall every other) and at most 8.
fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 8))
}

/// Prepares the process (umask, fd limit, termination signals blocked for the signal
/// thread), builds the filesystem and mounts it; returns the running session and the
/// filesystem's activity record (for `--idle`).
fn start_session(
    a: &MountArgs,
    vol: &Arc<Volume>,
    options: Vec<MountOption>,
) -> Result<(BackgroundSession, Arc<Activity>), CliError> {
    rustix::process::umask(rustix::fs::Mode::empty());
    let fd_limit = raise_fd_limit();
    sys::block_termination_signals().map_err(|e| CliError::new(exit::OTHER, e.to_string()))?;
    let fs = CofferFs::new(
        vol.clone(),
        FsOptions {
            read_only: a.ro,
            path_fd_budget: FsOptions::path_fd_budget_for(fd_limit),
            writeback_cache: !a.no_writeback_cache,
            xattrs: !a.no_xattr,
            max_inodes: a.max_inodes.unwrap_or(crate::fs::DEFAULT_MAX_INODES),
            ..FsOptions::default()
        },
    )?;
    let activity = fs.activity();
    let notifier = fs.notifier_slot();
    let mut cfg = Config::default();
    cfg.mount_options = options;
    cfg.n_threads = Some(a.threads.map_or_else(default_threads, usize::from));
    cfg.clone_fd = true;
    cfg.acl = if a.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    let session =
        Session::new(fs, &a.mountpoint, &cfg).map_err(|e| mount_failed(&a.mountpoint, &e))?;
    let _ = notifier.set(session.notifier());
    let bg = session
        .spawn()
        .map_err(|e| CliError::new(exit::MOUNT, e.to_string()))?;
    Ok((bg, activity))
}

/// Starts the threads that end the mount: SIGINT/SIGTERM/SIGHUP, and `--idle` (no use for
/// that long and nothing open). Each detaches the mount, which ends `join_session`.
fn spawn_unmount_triggers(a: &MountArgs, activity: Arc<Activity>) {
    let mnt = a.mountpoint.clone();
    std::thread::spawn(move || {
        if let Ok(sig) = sys::wait_termination_signal() {
            log::info!("signal {sig}: unmounting");
            detach(&mnt);
        }
    });
    if let Some(limit) = a.idle.filter(|d| !d.is_zero()) {
        let mnt = a.mountpoint.clone();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(Duration::from_secs(1).min(limit));
                let (idle, open) = activity.idle_for();
                if idle >= limit && !open {
                    log::info!("idle for {idle:?}: unmounting");
                    detach(&mnt);
                    return;
                }
            }
        });
    }
}

/// Waits for the session's loop to end, without fuser's own unmount afterwards. The loop
/// ends when the filesystem is unmounted (by `detach`, `cofferfs umount` or `fusermount3 -u`);
/// fuser 0.18's `Mount` would then unmount once more when dropped, because its "already
/// unmounted?" check is inverted (FUSER-NOTES): umount(2) of a path that is no longer a
/// mount point logs "Unmount failed: Invalid argument", and if the mountpoint has been
/// mounted again meanwhile it unmounts that newer mount. So the handle is joined through its
/// thread and then leaked (one fd and a path, until the process exits a moment later); a
/// loop that ends with an error, the mount possibly still there, is detached here instead.
fn join_session(mut bg: BackgroundSession, mnt: &Path) -> std::io::Result<()> {
    let guard = std::mem::replace(&mut bg.guard, std::thread::spawn(|| Ok(())));
    std::mem::forget(bg);
    let result = guard
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the filesystem thread panicked")));
    if result.is_err() && mount_on(mnt).is_some_and(|m| m.fstype == "fuse.cofferfs") {
        detach(mnt);
    }
    result
}

/// Kernel readahead for the mount, in KiB: one full-size FUSE read request (256 pages).
pub const READAHEAD_KIB: u32 = 1024;

/// Raises the mount's readahead from the kernel's 128 KiB to [`READAHEAD_KIB`]: sequential
/// reads then arrive as 1 MiB requests (an eighth of the round trips, and of the `pread`s of
/// ciphertext), measured 10-25 % faster on a 1 GiB `dd`. fuser cannot ask for it in `init`;
/// the knob is the mount's backing-device entry in sysfs, writable by root only, so a user's
/// mount keeps the default (logged, not an error). Must run once the session serves
/// requests: `stat` of the mountpoint is answered by the filesystem itself.
fn raise_readahead(mnt: &Path) {
    let set = || -> std::io::Result<()> {
        let dev = rustix::fs::stat(mnt)?.st_dev;
        let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
        std::fs::write(
            format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb"),
            format!("{READAHEAD_KIB}\n"),
        )
    };
    if let Err(e) = set() {
        log::info!("readahead left at the kernel's default: {e}");
    }
}

/// Lazily unmounts `mnt` (busy files keep working until closed).
pub fn detach(mnt: &Path) {
    if let Err(e) = rustix::mount::unmount(mnt, rustix::mount::UnmountFlags::DETACH) {
        log::warn!(
            "unmount of {} failed: {e}; trying fusermount3",
            mnt.display()
        );
        let _ = std::process::Command::new("fusermount3")
            .arg("-uz")
            .arg(mnt)
            .status();
    }
}
