//! The inode table. Every inode the kernel knows holds an `O_PATH` fd on its backing object,
//! as libfuse's passthrough_ll does: operations go through that fd, never through a path, so
//! renames and unlinks by anyone never make an inode point at the wrong file, and fd-based
//! calls on an unlinked file still work. Node ids are backing inode numbers (root swapped with
//! 1): hard links are one node, and a backing number cannot be reused while we hold its fd.
//! The number of those fds is bounded (`path_fds.rs`): past the budget, an inode whose name is
//! known for sure gives its fd back and finds its object again by name when next used.
//!
//! Lock order: `InodeTable::map` before `Inode::content`; never the other way round.
//! `Inode::content` before `Inode::path`; a child's `Inode::path` before its directory's.
//! `Inode::mtime_lock` before the `ChunkedFile` content lock.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::{Condvar, Mutex};
use rustix::fs::{Mode, OFlags, Stat};

use super::errno::os;
use super::path_fds::{Closed, PathFds};
use crate::volume::names::DirId;
use crate::volume::{ChunkedFile, FileId, Owner, Result};

/// The kind of a backing object, as far as cofferfs treats them differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory (has a dir id on encrypted-names volumes).
    Dir,
    /// A regular file (has a header and chunks).
    File,
    /// A symlink (has an encrypted target).
    Symlink,
    /// A fifo, socket or device node (passed through).
    Special,
}

/// Content shared by every open handle of one regular file.
#[derive(Debug, Default)]
pub struct OpenContent {
    /// The open ciphertext file, while any handle is open.
    pub file: Option<Arc<ChunkedFile>>,
    /// Number of open handles.
    pub opens: usize,
    /// Set when the last name went while handles were open, to the owner digest of that
    /// name: the key is shredded at the last release if the row belongs to it.
    pub shred_on_release: Option<Owner>,
    /// The backing file as the last release left it (see `CofferFs::keep_cache`).
    pub cache_stamp: Option<CacheStamp>,
}

/// What the page cache of a file is checked against at open: the backing mtime and size,
/// the way gocryptfs and libfuse's passthrough decide `FOPEN_KEEP_CACHE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStamp {
    /// Backing mtime, seconds.
    pub mtime: i64,
    /// Backing mtime, nanoseconds.
    pub mtime_nsec: i64,
    /// Backing (ciphertext) size.
    pub size: i64,
}

impl CacheStamp {
    /// The stamp of backing attributes `st`.
    pub fn of(st: &Stat) -> Self {
        CacheStamp {
            mtime: st.st_mtime,
            mtime_nsec: st.st_mtime_nsec as i64,
            size: st.st_size,
        }
    }
}

/// Where an inode's object was last seen: its directory and its on-disk name there.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The directory.
    pub dir: Arc<Inode>,
    /// The on-disk name in it.
    pub name: OsString,
}

/// An inode's `O_PATH` fd and how to find its object again.
#[derive(Debug)]
struct PathState {
    /// The fd, unless closed by the budget (never for the root).
    fd: Option<Arc<OwnedFd>>,
    /// Where to reopen it; `None` when no name is known for sure (the fd is then kept).
    origin: Option<Origin>,
    /// The file id the content had at its last release. A keyed file keeps its id for as
    /// long as the volume is mounted, and the fd pins the backing inode (its number cannot
    /// go to another file), so the id is trusted while this fd stays open: it goes with it.
    file_id: Option<FileId>,
}

/// One inode known to the kernel.
#[derive(Debug)]
pub struct Inode {
    /// The node id the kernel uses.
    pub ino: u64,
    /// The backing inode number (checked when the fd is reopened by name).
    backing_ino: u64,
    /// What it is.
    pub kind: Kind,
    /// Directory id, read on first use (directories on encrypted-names volumes).
    pub dir_id: OnceLock<DirId>,
    /// Guards the open content of a regular file.
    pub content: Mutex<OpenContent>,
    /// Serialises changes of the backing mtime: a write that puts the old mtime back (see
    /// `CofferFs::keeping_mtime`) against a SETATTR that sets a new one.
    pub mtime_lock: Mutex<()>,
    /// Guards the `O_PATH` fd and the origin.
    path: Mutex<PathState>,
    /// The fd budget (`None` for the root, whose fd is never counted nor closed).
    fds: Option<Arc<PathFds>>,
    /// This inode, for the budget's queue.
    me: Weak<Inode>,
}

impl Inode {
    fn new(
        ino: u64,
        st: &Stat,
        fd: OwnedFd,
        origin: Option<Origin>,
        fds: Option<Arc<PathFds>>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Inode {
            ino,
            backing_ino: st.st_ino,
            kind: super::attr::kind_of(st),
            dir_id: OnceLock::new(),
            content: Mutex::new(OpenContent::default()),
            mtime_lock: Mutex::new(()),
            path: Mutex::new(PathState {
                fd: Some(Arc::new(fd)),
                origin,
                file_id: None,
            }),
            fds,
            me: me.clone(),
        })
    }

    /// The `O_PATH` fd on the backing object, reopened by name if the budget closed it. Keep
    /// the returned `Arc` alive for as long as the fd (or a `/proc/self/fd` name of it) is
    /// used: a closed fd's number may be reused at once.
    pub fn fd(&self) -> Result<Arc<OwnedFd>> {
        let mut path = self.path.lock();
        if let Some(fd) = &path.fd {
            return Ok(fd.clone());
        }
        let origin = path.origin.clone().ok_or_else(|| os(libc::ESTALE))?;
        let dir_fd = origin.dir.fd()?;
        let stale = |e: rustix::io::Errno| match e {
            rustix::io::Errno::NOENT => os(libc::ESTALE),
            e => e.into(),
        };
        let fd = rustix::fs::openat(
            &dir_fd,
            &origin.name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(stale)?;
        if rustix::fs::fstat(&fd)?.st_ino != self.backing_ino {
            return Err(os(libc::ESTALE));
        }
        let fd = Arc::new(fd);
        path.fd = Some(fd.clone());
        drop(path);
        if let Some(fds) = &self.fds {
            fds.acquired(self.me.clone());
        }
        Ok(fd)
    }

    /// Records where the object is now (after a lookup, create or rename).
    pub fn set_origin(&self, dir: &Arc<Inode>, name: &OsString) {
        if self.fds.is_some() {
            self.path.lock().origin = Some(Origin {
                dir: dir.clone(),
                name: name.clone(),
            });
        }
    }

    /// Remembers the file id of a released content (see `PathState::file_id`), so that
    /// unlinking the last name needs no header read to find the key row to shred.
    pub fn remember_file_id(&self, id: Option<FileId>) {
        let mut path = self.path.lock();
        if path.fd.is_some() {
            path.file_id = id;
        }
    }

    /// The file id remembered at the last release, if the fd stayed open since.
    pub fn known_file_id(&self) -> Option<FileId> {
        self.path.lock().file_id
    }

    /// The directory and on-disk name the object was last seen under, if known for sure.
    pub fn origin(&self) -> Option<(Arc<Inode>, OsString)> {
        self.path
            .lock()
            .origin
            .as_ref()
            .map(|o| (o.dir.clone(), o.name.clone()))
    }

    /// Forgets the origin (a name of the object went away: the one recorded may be it), so
    /// the fd is kept until a lookup records a name again.
    pub fn clear_origin(&self) {
        self.path.lock().origin = None;
    }

    /// Closes the fd if the object can surely be found again by name (see `path_fds.rs`).
    pub(super) fn try_close_fd(&self) -> Closed {
        let Some(mut path) = self.path.try_lock() else {
            return Closed::Pinned;
        };
        let Some(fd) = &path.fd else {
            return Closed::NoFd;
        };
        if path.origin.is_none() || self.fds.is_none() {
            return Closed::Pinned;
        }
        if self.kind != Kind::Dir {
            let open = self.content.try_lock().is_none_or(|c| c.opens > 0);
            if open || rustix::fs::fstat(fd.as_fd()).map_or(true, |st| st.st_nlink != 1) {
                return Closed::Pinned;
            }
        }
        path.fd = None;
        path.file_id = None;
        Closed::Yes
    }
}

impl Drop for Inode {
    fn drop(&mut self) {
        if let Some(fds) = &self.fds
            && self.path.get_mut().fd.is_some()
        {
            fds.released();
        }
    }
}

struct Entry {
    inode: Arc<Inode>,
    lookups: u64,
    /// The table's epoch when the kernel last looked this inode up or sent a request on it:
    /// how recently it was used, for [`InodeTable::pick_to_prune`].
    used: u32,
    /// Where it stands with the pruner.
    pruning: Pruning,
}

/// Where an entry stands with the pruner (see `inode_pruner.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pruning {
    /// Counted, and may be picked by recency.
    Candidate,
    /// Its name was sent to the kernel in pruning round `.0`; its FORGET is expected, so it
    /// is not counted.
    Asked(u32),
    /// Asked, but the kernel kept it (through another name of a hard link, or a name in use),
    /// or its name could not be sent: counted again, and not picked again until the kernel
    /// looks it up again.
    Kept,
    /// Neither counted nor ever picked: the root and directories (a dropped directory name
    /// would make `getcwd` fail in a process sitting in it).
    Exempt,
}

impl Pruning {
    fn of(kind: Kind) -> Self {
        if kind == Kind::Dir {
            Pruning::Exempt
        } else {
            Pruning::Candidate
        }
    }
}

/// The entries held past the inode budget, and the waiting pruner (see `inode_pruner.rs`).
struct Budget {
    /// Most inodes other than directories the kernel should keep (0: no bound).
    max: usize,
    /// Entries [`Pruning::Asked`].
    asked: usize,
    /// Entries [`Pruning::Exempt`].
    exempt: usize,
    /// Advanced once per pruning round: entries used since are the newest.
    epoch: u32,
    /// Set at unmount: the pruner stops.
    stopping: bool,
}

/// The map, with the number of its entries asked to be dropped.
struct Map {
    entries: HashMap<u64, Entry>,
    budget: Budget,
}

impl Map {
    /// Entries the budget counts: those the kernel is expected to keep, directories aside.
    fn kept(&self) -> usize {
        self.entries.len() - self.budget.asked - self.budget.exempt
    }

    /// Takes entry `ino` out of the asked ones, into `to`.
    fn unask(&mut self, ino: u64, to: Pruning) {
        if let Some(e) = self.entries.get_mut(&ino)
            && matches!(e.pruning, Pruning::Asked(_))
        {
            e.pruning = to;
            self.budget.asked -= 1;
        }
    }

    fn over_budget(&self) -> bool {
        self.budget.max > 0 && self.kept() > self.budget.max
    }
}

/// Node id → inode, with the kernel's lookup counts.
pub struct InodeTable {
    /// Guards the map, every lookup count and the budget's counts.
    map: Mutex<Map>,
    /// Signalled when a new inode takes the table past its budget, or at unmount.
    over_budget: Condvar,
    root_backing_ino: u64,
    fds: Arc<PathFds>,
}

impl InodeTable {
    /// A table holding the root, allowing `fd_budget` `O_PATH` fds for the other inodes, and
    /// asking the kernel to drop inodes past `max_inodes` of them (0: never).
    pub fn new(root_fd: OwnedFd, root: &Stat, fd_budget: usize, max_inodes: usize) -> Self {
        let root_backing_ino = root.st_ino;
        let root = Inode::new(fuser::INodeNo::ROOT.0, root, root_fd, None, None);
        let mut entries = HashMap::new();
        entries.insert(
            root.ino,
            Entry {
                inode: root,
                lookups: 1,
                used: 0,
                pruning: Pruning::Exempt,
            },
        );
        InodeTable {
            map: Mutex::new(Map {
                entries,
                budget: Budget {
                    max: max_inodes,
                    asked: 0,
                    exempt: 1,
                    epoch: 0,
                    stopping: false,
                },
            }),
            over_budget: Condvar::new(),
            root_backing_ino,
            fds: Arc::new(PathFds::new(fd_budget)),
        }
    }

    /// The node id of a backing inode number (the cipherdir root is node 1, and a backing
    /// inode 1, if any, takes the root's number).
    pub fn node_id(&self, backing_ino: u64) -> u64 {
        if backing_ino == self.root_backing_ino {
            fuser::INodeNo::ROOT.0
        } else if backing_ino == fuser::INodeNo::ROOT.0 {
            self.root_backing_ino
        } else {
            backing_ino
        }
    }

    /// The inode with node id `ino`, if the kernel still knows it; the request on it counts
    /// as a use.
    pub fn get(&self, ino: u64) -> Option<Arc<Inode>> {
        let mut map = self.map.lock();
        let epoch = map.budget.epoch;
        map.entries.get_mut(&ino).map(|e| {
            e.used = epoch;
            e.inode.clone()
        })
    }

    /// Records one more kernel reference to the object `st` opened as `fd`, found as `name`
    /// in `dir`; inserts it if new. A known inode takes the new fd if the budget had closed
    /// its own (else the new fd is dropped), and the new origin.
    pub fn remember(
        &self,
        st: &Stat,
        fd: OwnedFd,
        dir: &Arc<Inode>,
        name: &OsString,
    ) -> Arc<Inode> {
        let ino = self.node_id(st.st_ino);
        let origin = Origin {
            dir: dir.clone(),
            name: name.clone(),
        };
        let mut guard = self.map.lock();
        let map = &mut *guard;
        let epoch = map.budget.epoch;
        let (inode, got_fd) = match map.entries.get_mut(&ino) {
            Some(e) => {
                e.lookups += 1;
                e.used = epoch;
                let was = e.pruning;
                if was == Pruning::Kept {
                    e.pruning = Pruning::Candidate;
                }
                let inode = e.inode.clone();
                let mut path = inode.path.lock();
                let got_fd = path.fd.is_none();
                if got_fd {
                    path.fd = Some(Arc::new(fd));
                }
                if inode.fds.is_some() {
                    path.origin = Some(origin);
                }
                drop(path);
                if matches!(was, Pruning::Asked(_)) {
                    map.unask(ino, Pruning::Candidate);
                    if map.over_budget() {
                        self.over_budget.notify_one();
                    }
                }
                (inode, got_fd)
            }
            None => {
                let inode = Inode::new(ino, st, fd, Some(origin), Some(self.fds.clone()));
                let pruning = Pruning::of(inode.kind);
                if pruning == Pruning::Exempt {
                    map.budget.exempt += 1;
                }
                map.entries.insert(
                    ino,
                    Entry {
                        inode: inode.clone(),
                        lookups: 1,
                        used: epoch,
                        pruning,
                    },
                );
                if map.over_budget() {
                    self.over_budget.notify_one();
                }
                (inode, true)
            }
        };
        drop(guard);
        if got_fd && inode.fds.is_some() {
            self.fds.acquired(Arc::downgrade(&inode));
        }
        inode
    }

    /// Drops `n` kernel references; the inode (and its fd) goes when none is left.
    pub fn forget(&self, ino: u64, n: u64) {
        if ino == fuser::INodeNo::ROOT.0 {
            return;
        }
        let mut guard = self.map.lock();
        let map = &mut *guard;
        if let Some(e) = map.entries.get_mut(&ino) {
            e.lookups = e.lookups.saturating_sub(n);
            if e.lookups == 0 {
                match e.pruning {
                    Pruning::Asked(_) => map.budget.asked -= 1,
                    Pruning::Exempt => map.budget.exempt -= 1,
                    Pruning::Candidate | Pruning::Kept => {}
                }
                map.entries.remove(&ino);
            }
        }
    }

    /// Number of inodes held (for tests and memory accounting).
    pub fn len(&self) -> usize {
        self.map.lock().entries.len()
    }

    /// Waits until the table holds more inodes than its budget, or [`stop_pruning`]
    /// (Self::stop_pruning) was called (then returns false). Never returns true on a table
    /// without a budget.
    pub fn wait_over_budget(&self) -> bool {
        let mut map = self.map.lock();
        loop {
            if map.budget.stopping {
                return false;
            }
            if map.over_budget() {
                return true;
            }
            self.over_budget.wait(&mut map);
        }
    }

    /// Waits `d`, or less if [`stop_pruning`](Self::stop_pruning) is called meanwhile (new
    /// inodes do not cut it short).
    pub fn rest(&self, d: std::time::Duration) {
        let deadline = std::time::Instant::now() + d;
        let mut map = self.map.lock();
        while !map.budget.stopping && !self.over_budget.wait_until(&mut map, deadline).timed_out() {
        }
    }

    /// The inode budget (0: none).
    pub fn max_inodes(&self) -> usize {
        self.map.lock().budget.max
    }

    /// Ends [`wait_over_budget`](Self::wait_over_budget): at unmount.
    pub fn stop_pruning(&self) {
        let mut map = self.map.lock();
        map.budget.stopping = true;
        self.over_budget.notify_all();
    }

    /// The least recently used inodes whose names the kernel should drop to bring the table
    /// to seven eighths of its budget, each marked as asked; the flag is false when fewer
    /// could be picked than needed. Only regular files and symlinks that no handle has open:
    /// an open file's name would show as deleted in `/proc` (and the kernel would keep the
    /// inode anyway); a FIFO or socket may be open without the daemon knowing. Entries asked
    /// two rounds ago and still here were kept by the kernel: they count again.
    pub fn pick_to_prune(&self) -> (Vec<Arc<Inode>>, bool) {
        let mut guard = self.map.lock();
        let map = &mut *guard;
        if map.budget.max == 0 {
            return (Vec::new(), true);
        }
        let epoch = map.budget.epoch;
        let prunable = |e: &Entry| {
            e.pruning == Pruning::Candidate
                && matches!(e.inode.kind, Kind::File | Kind::Symlink)
                && e.inode.content.try_lock().is_some_and(|c| c.opens == 0)
        };
        // One walk: entries the kernel kept count again, and how many of those that may be
        // dropped were last used in each epoch (the oldest epochs then cover the excess).
        let mut kept_by_kernel = 0;
        let mut by_epoch: BTreeMap<u32, usize> = BTreeMap::new();
        for e in map.entries.values_mut() {
            if let Pruning::Asked(round) = e.pruning
                && round.saturating_add(1) < epoch
            {
                e.pruning = Pruning::Kept;
                kept_by_kernel += 1;
            } else if prunable(e) {
                *by_epoch.entry(e.used).or_default() += 1;
            }
        }
        map.budget.asked -= kept_by_kernel;
        let low = map.budget.max - map.budget.max / 8;
        let excess = map.kept().saturating_sub(low);
        if excess == 0 {
            return (Vec::new(), true);
        }
        // Entries used from now on are newer than any picked here.
        map.budget.epoch += 1;
        let mut covered = 0;
        let mut newest = 0;
        for (&used, &n) in &by_epoch {
            newest = used;
            covered += n;
            if covered >= excess {
                break;
            }
        }
        let mut picked = Vec::with_capacity(excess.min(covered));
        for e in map.entries.values_mut() {
            if picked.len() == excess {
                break;
            }
            if e.used <= newest && prunable(e) {
                e.pruning = Pruning::Asked(epoch);
                picked.push(e.inode.clone());
            }
        }
        map.budget.asked += picked.len();
        let enough = picked.len() == excess;
        (picked, enough)
    }

    /// The name of `ino`, picked by [`pick_to_prune`](Self::pick_to_prune), could not be sent
    /// to the kernel: it counts again, and is not picked again until looked up again.
    pub fn not_dropped(&self, ino: u64) {
        self.map.lock().unask(ino, Pruning::Kept);
    }

    /// True once [`stop_pruning`](Self::stop_pruning) was called.
    pub fn pruning_stopped(&self) -> bool {
        self.map.lock().budget.stopping
    }

    /// True when only the root is held.
    pub fn is_empty(&self) -> bool {
        self.len() <= 1
    }

    /// Number of `O_PATH` fds held by inodes other than the root.
    pub fn fds_held(&self) -> usize {
        self.fds.held()
    }
}
