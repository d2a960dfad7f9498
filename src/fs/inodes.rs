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

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;
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
}

/// Node id → inode, with the kernel's lookup counts.
pub struct InodeTable {
    /// Guards the map and every lookup count.
    map: Mutex<HashMap<u64, Entry>>,
    root_backing_ino: u64,
    fds: Arc<PathFds>,
}

impl InodeTable {
    /// A table holding the root, allowing `fd_budget` `O_PATH` fds for the other inodes.
    pub fn new(root_fd: OwnedFd, root: &Stat, fd_budget: usize) -> Self {
        let root_backing_ino = root.st_ino;
        let root = Inode::new(fuser::INodeNo::ROOT.0, root, root_fd, None, None);
        let mut map = HashMap::new();
        map.insert(
            root.ino,
            Entry {
                inode: root,
                lookups: 1,
            },
        );
        InodeTable {
            map: Mutex::new(map),
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

    /// The inode with node id `ino`, if the kernel still knows it.
    pub fn get(&self, ino: u64) -> Option<Arc<Inode>> {
        self.map.lock().get(&ino).map(|e| e.inode.clone())
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
        let mut map = self.map.lock();
        let (inode, got_fd) = match map.get_mut(&ino) {
            Some(e) => {
                e.lookups += 1;
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
                (inode, got_fd)
            }
            None => {
                let inode = Inode::new(ino, st, fd, Some(origin), Some(self.fds.clone()));
                map.insert(
                    ino,
                    Entry {
                        inode: inode.clone(),
                        lookups: 1,
                    },
                );
                (inode, true)
            }
        };
        drop(map);
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
        let mut map = self.map.lock();
        if let Some(e) = map.get_mut(&ino) {
            e.lookups = e.lookups.saturating_sub(n);
            if e.lookups == 0 {
                map.remove(&ino);
            }
        }
    }

    /// Number of inodes held (for tests and memory accounting).
    pub fn len(&self) -> usize {
        self.map.lock().len()
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
