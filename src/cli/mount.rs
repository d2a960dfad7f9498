//! `cofferfs mount` and `cofferfs umount`.
//!
//! By default `mount` daemonizes once the mount is ready and returns 0, as gocryptfs does: the
//! password is read and checked, then the process forks; the child opens the volume, mounts,
//! and reports success or the error over a pipe, so the parent's exit status tells the truth.
//! SIGINT, SIGTERM and SIGHUP unmount cleanly (lazy detach), then the header store is
//! checkpointed and keys are dropped (zeroized).

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fuser::{Config, MountOption, Session, SessionACL};

use super::unlock::{SlotSecret, UnlockArgs};
use super::volume_args::VolumeArgs;
use super::{CliError, exit};
use crate::fs::{CofferFs, FsOptions};
use crate::sys::{self, Forked};
use crate::volume::{self, Location};

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
    /// No kernel writeback cache: every write() reaches the daemon before it returns, so an
    /// error such as ENOSPC is reported by that write() and not only by fsync() or close().
    /// Slower for small writes.
    #[arg(long)]
    pub no_writeback_cache: bool,
    /// The secret: a password, or a key file.
    #[command(flatten)]
    pub unlock: UnlockArgs,
    /// Keep the daemon's log off syslog: once in the background it is then discarded.
    #[arg(long)]
    pub nosyslog: bool,
    /// The syslog socket instead of /dev/log (for tests, which bind their own).
    #[arg(long, value_name = "PATH", hide = true)]
    pub syslog_socket: Option<PathBuf>,
}

/// Parses a duration as systemd and gocryptfs's `-idle` write them: one or more numbers,
/// each with a unit (`ms`, `s`, `m`/`min`, `h`, `d`), fractions allowed, spaces between parts
/// allowed: `90s`, `10m`, `1h30m`, `0.5s`, `1.5h`, `2h 15min`. A bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = |why: &str| {
        format!("bad duration {s:?}: {why} (examples: 90s, 10m, 1h30m, 0.5s, 2h 15min)")
    };
    let text = s.trim();
    if let Ok(secs) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad("out of range"));
    }
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad("empty"));
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len]
            .parse()
            .map_err(|_| bad("a number must come first in each part"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "" => return Err(bad("every part but a lone number needs a unit")),
            _ => return Err(bad("unknown unit (use ms, s, m, min, h or d)")),
        };
        total += n * unit;
        rest = rest[unit_len..].trim_start();
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad("out of range"))
}

fn mount_options(a: &MountArgs) -> Result<Vec<MountOption>, CliError> {
    let fsname = a
        .fsname
        .clone()
        .unwrap_or_else(|| a.volume.cipherdir.display().to_string());
    // A comma would split the option string; fall back to a plain name.
    let fsname = if fsname.contains(',') {
        "cofferfs".to_owned()
    } else {
        fsname
    };
    let mut opts = vec![
        MountOption::FSName(fsname),
        // fuser's direct mount(2) drops Subtype; the kernel takes it as a data option and then
        // lists the mount as type fuse.cofferfs.
        MountOption::CUSTOM("subtype=cofferfs".into()),
        MountOption::DefaultPermissions,
    ];
    if a.ro {
        opts.push(MountOption::RO);
    }
    let (mut suid, mut dev) = (false, false);
    for o in a
        .options
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
    {
        opts.push(match o {
            "noatime" => MountOption::NoAtime,
            "atime" => MountOption::Atime,
            "noexec" => MountOption::NoExec,
            "exec" => MountOption::Exec,
            "nosuid" | "nodev" => continue,
            "suid" | "dev" if !a.allow_suid_dev => {
                return Err(CliError::new(
                    exit::USAGE,
                    format!(
                        "-o {o} refused: mode bits, owners and device numbers come from the \
                         cipherdir, which is not authenticated (anyone who can write it could \
                         plant a setuid program or a device node); add --allow-suid-dev to \
                         allow it anyway"
                    ),
                ));
            }
            "suid" => {
                suid = true;
                continue;
            }
            "dev" => {
                dev = true;
                continue;
            }
            "sync" => MountOption::Sync,
            "async" => MountOption::Async,
            "dirsync" => MountOption::DirSync,
            // Pushed above: `run` turns it into `--ro`.
            "ro" => continue,
            other => {
                return Err(CliError::new(
                    exit::USAGE,
                    format!("unsupported mount option {other:?}"),
                ));
            }
        });
    }
    // nosuid,nodev unless allowed above: fuser defaults to them too, but the rule is ours and
    // must not hang on a library's default.
    opts.push(if suid {
        MountOption::Suid
    } else {
        MountOption::NoSuid
    });
    opts.push(if dev {
        MountOption::Dev
    } else {
        MountOption::NoDev
    });
    if suid || dev {
        eprintln!(
            "cofferfs: warning: mounted with {}: anyone who can write the cipherdir can plant a setuid program or device node",
            [(suid, "suid"), (dev, "dev")]
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, n)| *n)
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    Ok(opts)
}

/// One line of /proc/self/mountinfo: what is mounted where.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MountEntry {
    target: String,
    fstype: String,
    source: String,
}

/// Parses /proc/self/mountinfo (`id parent dev root TARGET opts [tags…] - FSTYPE SOURCE
/// superopts`), the octal escapes of its paths undone.
fn parse_mountinfo(table: &str) -> Vec<MountEntry> {
    table
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let target = unescape(left.split(' ').nth(4)?);
            let mut r = right.split(' ');
            let (fstype, source) = (r.next()?.to_owned(), unescape(r.next()?));
            Some(MountEntry {
                target,
                fstype,
                source,
            })
        })
        .collect()
}

/// The mounts of this process's namespace (empty if /proc is not there).
fn mount_table() -> Vec<MountEntry> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

/// `p` absolute with its directory's symlinks resolved; the last component is not touched, so
/// that a dead FUSE mount (whose `stat` fails with ENOTCONN) still resolves.
fn absolute(p: &Path) -> Option<PathBuf> {
    let name = p.file_name()?;
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(dir).ok()?.join(name))
}

/// The newest mount on `mnt`, if `mnt` is a mount point.
fn mount_on(mnt: &Path) -> Option<MountEntry> {
    let mnt = absolute(mnt)?;
    let mnt = mnt.to_string_lossy();
    mount_table().into_iter().rev().find(|m| m.target == mnt)
}

/// Where the cofferfs volume of `cipherdir` is mounted, if it is (its source is the
/// cipherdir path, as given at mount time: compared resolved).
fn mounted_at(cipherdir: &Path) -> Option<String> {
    let want = std::fs::canonicalize(cipherdir).ok()?;
    mount_table()
        .into_iter()
        .find(|m| {
            m.fstype == "fuse.cofferfs"
                && std::fs::canonicalize(&m.source).is_ok_and(|src| src == want)
        })
        .map(|m| m.target)
}

/// Refuses a mountpoint that is a mount point already (mounting over it would hide that
/// mount), that cannot be read, or that is not empty.
fn check_mountpoint(p: &Path) -> Result<(), CliError> {
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
fn check_not_mounted(loc: &Location) -> Result<(), CliError> {
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
fn mount_failed(mnt: &Path, e: &std::io::Error) -> CliError {
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
    check_mountpoint(&a.mountpoint)?;
    check_not_mounted(&loc)?;
    if !a.ro {
        volume::check_writable_media(&loc)?;
    }
    let options = mount_options(&a)?;
    let password = a.unlock.read_for(&loc, a.slot, "Password: ")?;
    if a.foreground {
        return serve(&a, &loc, options, password, None);
    }
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
            let result = serve(&a, &loc, options, password, Some(tx));
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
/// soon as the volume is unlocked, not kept for the daemon's life.
fn serve(
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
    // Read-only: the store is opened read-only too, so nothing in the cipherdir changes and
    // read-only media mount.
    let opened = if a.ro {
        password.open_read_only(loc, a.slot)
    } else {
        password.open(loc, a.slot)
    };
    drop(password);
    let vol = match opened {
        Ok(v) => Arc::new(v),
        Err(e) => return Err(fail(&mut ready, e.into())),
    };
    if !a.ro {
        vol.upgrade_format_version()
            .map_err(|e| fail(&mut ready, e.into()))?;
    }
    rustix::process::umask(rustix::fs::Mode::empty());
    let fd_limit = raise_fd_limit();
    sys::block_termination_signals()
        .map_err(|e| fail(&mut ready, CliError::new(exit::OTHER, e.to_string())))?;
    let fs = CofferFs::new(
        vol.clone(),
        FsOptions {
            read_only: a.ro,
            path_fd_budget: FsOptions::path_fd_budget_for(fd_limit),
            writeback_cache: !a.no_writeback_cache,
            ..FsOptions::default()
        },
    )
    .map_err(|e| fail(&mut ready, e.into()))?;
    let activity = fs.activity();
    let notifier = fs.notifier_slot();
    let mut cfg = Config::default();
    cfg.mount_options = options;
    cfg.n_threads = Some(4);
    cfg.clone_fd = true;
    cfg.acl = if a.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    let session = Session::new(fs, &a.mountpoint, &cfg)
        .map_err(|e| fail(&mut ready, mount_failed(&a.mountpoint, &e)))?;
    let _ = notifier.set(session.notifier());
    let bg = session
        .spawn()
        .map_err(|e| fail(&mut ready, CliError::new(exit::MOUNT, e.to_string())))?;
    raise_readahead(&a.mountpoint);
    log::info!(
        "mounted {} on {}",
        loc.cipherdir().display(),
        a.mountpoint.display()
    );
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
        super::logging::switch_to_syslog(a.syslog_socket.as_deref());
    }
    report(&mut ready, 0, "mounted");

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
    join_session(bg, &a.mountpoint).map_err(|e| {
        // The parent is gone: this goes to the log only.
        log::error!("filesystem loop failed: {e}");
        CliError::new(exit::OTHER, format!("filesystem loop failed: {e}"))
    })?;
    // destroy() has checkpointed the store; dropping the volume releases the lock and keys.
    drop(vol);
    Ok(())
}

/// Waits for the session's loop to end, without fuser's own unmount afterwards. The loop
/// ends when the filesystem is unmounted (by `detach`, `cofferfs umount` or `fusermount3 -u`);
/// fuser 0.18's `Mount` would then unmount once more when dropped, because its "already
/// unmounted?" check is inverted (FUSER-NOTES): umount(2) of a path that is no longer a
/// mount point logs "Unmount failed: Invalid argument", and if the mountpoint has been
/// mounted again meanwhile it unmounts that newer mount. So the handle is joined through its
/// thread and then leaked (one fd and a path, until the process exits a moment later); a
/// loop that ends with an error, the mount possibly still there, is detached here instead.
fn join_session(mut bg: fuser::BackgroundSession, mnt: &Path) -> std::io::Result<()> {
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

/// Arguments of `cofferfs umount`.
#[derive(Debug, clap::Args)]
pub struct UmountArgs {
    /// The mountpoint.
    pub mountpoint: PathBuf,
}

/// The source (cipherdir) of the FUSE mount at `mnt`, from /proc/self/mountinfo.
fn mounted_source(mnt: &Path) -> Option<String> {
    mount_on(mnt)
        .filter(|m| m.fstype.starts_with("fuse"))
        .map(|m| m.source)
}

/// Undoes /proc/self/mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let secs = Duration::from_secs;
        assert_eq!(parse_duration("90").unwrap(), secs(90));
        assert_eq!(parse_duration("10m").unwrap(), secs(600));
        assert_eq!(parse_duration("2h").unwrap(), secs(7200));
        assert_eq!(parse_duration("1h30m").unwrap(), secs(5400));
        assert_eq!(parse_duration("2h 15min").unwrap(), secs(8100));
        assert_eq!(parse_duration("1.5h").unwrap(), secs(5400));
        assert_eq!(parse_duration("0.5s").unwrap(), Duration::from_millis(500));
        assert_eq!(
            parse_duration("1m30s250ms").unwrap(),
            Duration::from_millis(90_250)
        );
        assert_eq!(parse_duration("2d").unwrap(), secs(172_800));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "m", "5x", "1h30", "-1s", "1..5s", "s5", "1e400"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn mountinfo_lines_parse() {
        let table = "36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n\
                     40 36 0:52 / /tmp/plain rw,nosuid,nodev - fuse.cofferfs /tmp/c rw,user_id=0\n";
        let m = parse_mountinfo(table);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].target, "/mnt/a b");
        assert_eq!(m[0].fstype, "ext3");
        assert_eq!(
            m[1],
            MountEntry {
                target: "/tmp/plain".into(),
                fstype: "fuse.cofferfs".into(),
                source: "/tmp/c".into(),
            }
        );
    }

    #[test]
    fn proc_mounts_escapes_are_undone() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
