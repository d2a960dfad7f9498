//! The inode table. Every inode the kernel knows holds an `O_PATH` fd on its backing object,
//! as libfuse's passthrough_ll does: operations go through that fd, never through a path, so
//! renames and unlinks by anyone never make an inode point at the wrong file, and fd-based
//! calls on an unlinked file still work. Node ids are backing inode numbers (root swapped with
//! 1): hard links are one node, and a backing number cannot be reused while we hold its fd.
//!
//! Lock order: `InodeTable::map` before `Inode::content`; never the other way round.
//! `Inode::mtime_lock` before the `ChunkedFile` content lock.

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::volume::ChunkedFile;
use crate::volume::names::DirId;

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
    /// Set when the last name went while handles were open: the key is shredded at the
    /// last release.
    pub shred_on_release: bool,
}

/// One inode known to the kernel.
#[derive(Debug)]
pub struct Inode {
    /// The node id the kernel uses.
    pub ino: u64,
    /// `O_PATH` fd on the backing object.
    pub fd: OwnedFd,
    /// What it is.
    pub kind: Kind,
    /// Directory id, read on first use (directories on encrypted-names volumes).
    pub dir_id: OnceLock<DirId>,
    /// Guards the open content of a regular file.
    pub content: Mutex<OpenContent>,
    /// Serialises changes of the backing mtime: a write that puts the old mtime back (see
    /// `CofferFs::do_write`) against a SETATTR that sets a new one.
    pub mtime_lock: Mutex<()>,
}

impl Inode {
    /// The backing fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
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
}

impl InodeTable {
    /// A table holding the root.
    pub fn new(root_fd: OwnedFd, root_backing_ino: u64) -> Self {
        let root = Arc::new(Inode {
            ino: fuser::INodeNo::ROOT.0,
            fd: root_fd,
            kind: Kind::Dir,
            dir_id: OnceLock::new(),
            content: Mutex::new(OpenContent::default()),
            mtime_lock: Mutex::new(()),
        });
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

    /// Records one more kernel reference to the node for `fd`, inserting it if new (the new
    /// fd is dropped when the node is already known).
    pub fn remember(&self, ino: u64, fd: OwnedFd, kind: Kind) -> Arc<Inode> {
        let mut map = self.map.lock();
        let entry = map.entry(ino).or_insert_with(|| Entry {
            inode: Arc::new(Inode {
                ino,
                fd,
                kind,
                dir_id: OnceLock::new(),
                content: Mutex::new(OpenContent::default()),
                mtime_lock: Mutex::new(()),
            }),
            lookups: 0,
        });
        entry.lookups += 1;
        entry.inode.clone()
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
}
