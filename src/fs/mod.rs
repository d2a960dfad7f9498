//! The FUSE filesystem: `impl fuser::Filesystem` as thin shims (`shims.rs`) over workers that
//! return `Result<_, VolumeError>`; the errno is chosen in `errno.rs` only. Node operations
//! live in `node_ops.rs`, `setattr` in `attr_ops.rs`, file content in `file_ops.rs`, directory
//! listing in `dir_ops.rs`, extended attributes in `xattr_ops.rs`, the set-id bit rules in
//! `killpriv.rs`, deferred key shredding in `shred_queue.rs`.
//!
//! Owns what only a mount has: the inode table and its `O_PATH` fds, open handles, attribute
//! replies (`attr.rs`), the kernel's caches and the mount's own locks.
//!
//! Imports: `fuser`, `rustix`/`libc`, std, `log`, and of this crate `volume` only, which
//! re-exports the few types of the layers below it needs (`FileId`, `Owner`,
//! `KeystoreError`). Every rule about what lies in the cipherdir or the header store (names,
//! long-name rows and their ordering, symlink and xattr sealing, directory ids, headers, key
//! rows) is asked of `volume`; `scripts/test.sh` refuses any other `crate::` path here.

pub mod attr;
mod attr_ops;
mod dir_ops;
pub mod errno;
mod file_ops;
pub mod handles;
mod inode_pruner;
pub mod inodes;
mod killpriv;
mod node_ops;
mod path_fds;
mod shims;
mod shred_queue;
mod xattr_ops;

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use fuser::FileAttr;
use rustix::fs::{Mode, OFlags, Stat};

use self::attr::to_attr;
use self::errno::os;
use self::handles::HandleTable;
use self::inodes::{Inode, InodeTable, Kind};
use crate::volume::names::{DirId, DiskName, read_or_renew_dir_id};
use crate::volume::{Owner, Result, Volume};

/// Mount-time choices that change how the filesystem answers.
#[derive(Debug, Clone)]
pub struct FsOptions {
    /// Refuse every change.
    pub read_only: bool,
    /// How long the kernel may cache attributes and entries. Everything that changes the
    /// volume goes through this daemon (the single-writer rule), so the kernel's caches are
    /// invalidated by its own operations and a long timeout is safe; it only bounds how long
    /// a change made behind the mount's back (which the rule forbids) stays invisible.
    pub ttl: Duration,
    /// Ask for the kernel's writeback cache (`FUSE_WRITEBACK_CACHE`): small writes are
    /// gathered in the page cache and arrive as large requests; the kernel then owns the
    /// file size, mtime and `O_APPEND` positioning while the file is cached.
    pub writeback_cache: bool,
    /// How many `O_PATH` fds the inode table may hold (see `path_fds.rs`); a mount takes
    /// half of its open-file limit.
    pub path_fd_budget: usize,
    /// Most inodes the kernel is let keep before the daemon asks it to drop the least
    /// recently used (see `inode_pruner.rs`); 0: no bound.
    pub max_inodes: usize,
    /// Serve extended attributes. Off, every xattr request is answered `ENOSYS`, which the
    /// kernel remembers for the rest of the mount: it then stops asking for
    /// `security.capability` before the first write and at every `chown` of a file (two
    /// round trips per file that tar extracts), and programs get `EOPNOTSUPP`.
    pub xattrs: bool,
}

impl FsOptions {
    /// The `O_PATH` fd budget of a process allowed `limit` open files (`None`: unlimited):
    /// half of them, the rest being left for open files (two fds each), directory listings,
    /// SQLite and `/dev/fuse`.
    pub fn path_fd_budget_for(limit: Option<u64>) -> usize {
        limit.map_or(1 << 20, |l| usize::try_from(l / 2).unwrap_or(usize::MAX))
    }
}

/// The inode budget of a mount without `--max-inodes`: about 45 MiB of the daemon's memory
/// (and some more of the kernel's), and more names than most trees people walk again and
/// again (a Linux kernel checkout has about 90,000 files).
pub const DEFAULT_MAX_INODES: usize = 131_072;

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            read_only: false,
            ttl: Duration::from_secs(60),
            writeback_cache: true,
            path_fd_budget: 4096,
            max_inodes: DEFAULT_MAX_INODES,
            xattrs: true,
        }
    }
}

/// The cofferfs FUSE filesystem over one opened volume.
pub struct CofferFs {
    vol: Arc<Volume>,
    inodes: Arc<InodeTable>,
    /// Asks the kernel to drop inodes past `FsOptions::max_inodes`.
    pruner: inode_pruner::InodePruner,
    handles: HandleTable,
    /// `/proc/self/fd`, to reopen an inode's `O_PATH` fd with real access modes.
    proc_fd: OwnedFd,
    opts: FsOptions,
    /// The kernel granted the writeback cache (set once, in `init`).
    writeback: bool,
    daemon_is_root: bool,
    activity: Arc<Activity>,
    /// Tells the kernel to drop what it caches of an inode; set by the mount once the
    /// session exists (see `notifier_slot`).
    notifier: Arc<OnceLock<fuser::Notifier>>,
    /// Key rows of deleted files, deleted in batches (see `shred_queue.rs`).
    shreds: shred_queue::ShredQueue,
    /// Directory ids met, to spot two directories sharing one (`volume::owners`).
    dir_ids: crate::volume::owners::DirIdSightings,
}

/// When the filesystem was last used, shared with the `--idle` watchdog.
#[derive(Debug)]
pub struct Activity {
    started: Instant,
    /// Milliseconds since `started` of the last request.
    last_ms: AtomicU64,
    /// Open files and directories.
    open: AtomicI64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            open: AtomicI64::new(0),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Time since the last request, and whether anything is open (an idle unmount waits for
    /// both to be quiet).
    pub fn idle_for(&self) -> (Duration, bool) {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        (
            self.started.elapsed().saturating_sub(last),
            self.open.load(Ordering::Relaxed) > 0,
        )
    }

    /// Open files and directories now (`cofferfs status`).
    pub fn open_count(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }

    pub(crate) fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for CofferFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CofferFs({})", self.vol.root().display())
    }
}

impl CofferFs {
    /// A filesystem over `vol`.
    pub fn new(vol: Arc<Volume>, opts: FsOptions) -> Result<Self> {
        let root = rustix::fs::open(
            vol.root(),
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let st = rustix::fs::fstat(&root)?;
        let proc_fd = rustix::fs::open(
            "/proc/self/fd",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let activity = Arc::new(Activity::new());
        let inodes = Arc::new(InodeTable::new(
            root,
            &st,
            opts.path_fd_budget,
            opts.max_inodes,
        ));
        let notifier = Arc::new(OnceLock::new());
        Ok(CofferFs {
            pruner: inode_pruner::InodePruner::start(
                inodes.clone(),
                vol.clone(),
                Arc::clone(&notifier),
            ),
            inodes,
            handles: HandleTable::new(activity.clone()),
            proc_fd,
            daemon_is_root: rustix::process::geteuid().is_root(),
            shreds: shred_queue::ShredQueue::start(vol.clone(), opts.path_fd_budget),
            dir_ids: Default::default(),
            vol,
            opts,
            writeback: false,
            activity,
            notifier,
        })
    }

    /// The volume underneath.
    pub fn volume(&self) -> &Arc<Volume> {
        &self.vol
    }

    /// The activity tracker, for an idle watchdog that outlives the borrow of `self`.
    pub fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    /// Where the mount puts the session's notifier, before the session serves a request:
    /// the session only exists once it owns this filesystem.
    pub fn notifier_slot(&self) -> Arc<OnceLock<fuser::Notifier>> {
        self.notifier.clone()
    }

    /// Makes the kernel ask for `ino`'s attributes again: for a change the kernel cannot
    /// know of, made while answering a request whose reply carries no attributes.
    fn attributes_changed(&self, ino: u64) {
        if let Some(n) = self.notifier.get()
            && let Err(e) = n.inval_inode(fuser::INodeNo(ino), -1, 0)
        {
            log::debug!("could not invalidate the attributes of inode {ino}: {e}");
        }
    }

    fn touch(&self) {
        self.activity.touch();
    }

    fn inode(&self, ino: u64) -> Result<Arc<Inode>> {
        self.inodes.get(ino).ok_or_else(|| os(libc::ESTALE))
    }

    fn check_writable(&self) -> Result<()> {
        if self.opts.read_only {
            Err(os(libc::EROFS))
        } else {
            Ok(())
        }
    }

    /// The id of directory `dir` (zeros on plaintext-names volumes).
    fn dir_id(&self, dir: &Inode) -> Result<DirId> {
        if !self.vol.names().encrypted() {
            return Ok(DirId::default());
        }
        if let Some(id) = dir.dir_id.get() {
            return Ok(*id);
        }
        let fd = dir.fd()?;
        let id = read_or_renew_dir_id(fd.as_fd(), !self.opts.read_only)?;
        let st = rustix::fs::fstat(&fd)?;
        if self.dir_ids.see(&id, (st.st_dev, st.st_ino)) {
            log::warn!(
                "two directories share one directory id (a copy of a directory?): removing \
                 files in them leaves their key rows in place; `cofferfs fsck` lists them"
            );
        }
        Ok(*dir.dir_id.get_or_init(|| id))
    }

    /// True when `dir`'s id is also another directory's: its entries' owner digests do not
    /// tell them apart from that directory's, so no removal there may shred a row.
    fn dir_id_shared(&self, dir: &Inode) -> bool {
        self.vol.names().encrypted() && self.dir_id(dir).is_ok_and(|id| self.dir_ids.shared(&id))
    }

    /// The owner digest of the entry `disk` in directory `dir` (see `volume::owners`).
    fn entry_owner(&self, dir: &Inode, disk: &OsStr) -> Result<Owner> {
        Ok(self.vol.entry_owner(&self.dir_id(dir)?, disk))
    }

    /// The owner digest of the entry `inode` was last seen under, if that is known for sure.
    fn origin_owner(&self, inode: &Inode) -> Option<Owner> {
        let (dir, name) = inode.origin()?;
        self.entry_owner(&dir, &name).ok()
    }

    /// The on-disk name of `name` in directory `parent`.
    fn disk_name(&self, parent: &Inode, name: &OsStr) -> Result<DiskName> {
        let id = self.dir_id(parent)?;
        self.vol
            .names()
            .disk_name(&id, name, parent.ino == fuser::INodeNo::ROOT.0)
    }

    /// Like [`disk_name`](Self::disk_name) for a name about to be created: a long name's full
    /// form is recorded in the header store first.
    fn disk_name_for_create(&self, parent: &Inode, name: &OsStr) -> Result<DiskName> {
        let id = self.dir_id(parent)?;
        self.vol
            .disk_name_for_create(&id, name, parent.ino == fuser::INodeNo::ROOT.0)
    }

    fn attr_of(&self, ino: u64, st: &Stat) -> FileAttr {
        let mut attr = to_attr(st, ino, self.vol.plain_size(st));
        // A long symlink target's size is in its row, not in its backing link's length.
        if attr.kind == fuser::FileType::Symlink
            && self.vol.names().may_be_long_target(st.st_size as u64)
            && let Some(len) = self.long_target_len(ino)
        {
            attr.size = len;
        }
        attr
    }

    /// The plaintext length of node `ino`'s long symlink target, if it is one.
    fn long_target_len(&self, ino: u64) -> Option<u64> {
        let fd = self.inodes.get(ino)?.fd().ok()?;
        let backing = rustix::fs::readlinkat(&fd, "", Vec::new()).ok()?;
        self.vol.long_target_len(backing.as_bytes()).ok().flatten()
    }

    /// An `O_PATH` fd on the entry `disk` of `dir`, not following a symlink: the handle every
    /// inode keeps on its backing object.
    fn open_path(dir: &Inode, disk: &OsStr) -> Result<OwnedFd> {
        Ok(rustix::fs::openat(
            dir.fd()?,
            disk,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    /// The directory `parent`, for an operation that changes it: refuses on a read-only
    /// mount and when `parent` is not a directory.
    fn writable_dir(&self, parent: u64) -> Result<Arc<Inode>> {
        self.check_writable()?;
        let dir = self.inode(parent)?;
        Self::require_dir(&dir)?;
        Ok(dir)
    }

    /// Looks up `disk` in `parent` and records a kernel reference to it.
    fn lookup_disk(&self, parent: &Arc<Inode>, disk: &OsStr) -> Result<FileAttr> {
        let fd = Self::open_path(parent, disk)?;
        let st = rustix::fs::fstat(&fd)?;
        let inode = self.inodes.remember(&st, fd, parent, &disk.to_owned());
        Ok(self.attr_of(inode.ino, &st))
    }

    /// Current attributes of an inode.
    fn stat_inode(&self, inode: &Inode) -> Result<FileAttr> {
        let st = rustix::fs::fstat(inode.fd()?)?;
        Ok(self.attr_of(inode.ino, &st))
    }

    /// The `/proc/self/fd` name of an fd, for `openat(proc_fd, …)` and friends.
    fn proc_name(fd: BorrowedFd<'_>) -> String {
        fd.as_raw_fd().to_string()
    }

    /// Sets the permission bits of the object behind an `O_PATH` fd, which `fchmod` refuses:
    /// through its `/proc/self/fd` name, which names the object itself (never a path that
    /// could have changed since).
    fn chmod_backing(&self, fd: BorrowedFd<'_>, mode: u32) -> Result<()> {
        rustix::fs::chmodat(
            &self.proc_fd,
            Self::proc_name(fd),
            rustix::fs::Mode::from_raw_mode(mode & 0o7777),
            rustix::fs::AtFlags::empty(),
        )?;
        Ok(())
    }

    /// Reopens an inode with real access flags (the `O_PATH` fd cannot read or write).
    fn reopen(&self, inode: &Inode, flags: OFlags) -> Result<OwnedFd> {
        let fd = inode.fd()?;
        Ok(rustix::fs::openat(
            &self.proc_fd,
            Self::proc_name(fd.as_fd()),
            flags | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    /// Gives a new node the caller's ownership (the daemon creates as itself), honouring a
    /// set-group-id parent as the kernel would, and returns the node's attributes after that.
    /// The backing filesystem already gave the node the daemon's uid and the group its own
    /// set-group-id rule picks, so in the common case (a caller with the daemon's ids) this
    /// is one `fstat`: the parent is only looked at when the group differs, and `chown` runs
    /// only when something must change.
    fn own_new_node(&self, parent: &Inode, fd: BorrowedFd<'_>, uid: u32, gid: u32) -> Result<Stat> {
        let st = rustix::fs::fstat(fd)?;
        if !self.daemon_is_root {
            return Ok(st);
        }
        let gid =
            if st.st_gid != gid && rustix::fs::fstat(parent.fd()?)?.st_mode & libc::S_ISGID != 0 {
                // Inherited from the set-group-id parent by the backing filesystem: keep it.
                st.st_gid
            } else {
                gid
            };
        if (st.st_uid, st.st_gid) == (uid, gid) {
            return Ok(st);
        }
        rustix::fs::chownat(
            fd,
            "",
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
            rustix::fs::AtFlags::EMPTY_PATH | rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(rustix::fs::fstat(fd)?)
    }

    fn require_dir(inode: &Inode) -> Result<()> {
        if inode.kind == Kind::Dir {
            Ok(())
        } else {
            Err(os(libc::ENOTDIR))
        }
    }
}
