//! Open file and directory handles. A file handle points at its inode's shared
//! `ChunkedFile` (one backing fd and one content lock per inode, whatever the number of
//! opens), so two handles on one file can never tear each other's chunks.
//!
//! Lock order: `HandleTable::files`/`dirs` are leaf locks, never held while taking another.

use std::collections::HashMap;
use std::ffi::OsString;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fuser::FileType;
use parking_lot::Mutex;

use super::Activity;
use super::inodes::Inode;
use crate::volume::ChunkedFile;

/// One `open()` of a regular file.
#[derive(Debug)]
pub struct FileHandle {
    /// The inode (kept alive while the handle is open, even if the kernel forgets it).
    pub inode: Arc<Inode>,
    /// The shared content.
    pub file: Arc<ChunkedFile>,
    /// Opened with `O_APPEND` (and no writeback cache): every write goes to the end.
    pub append: bool,
    /// Opened `O_WRONLY`: a read through it is the kernel filling a page for a partial
    /// write (writeback cache), never a user's read, so it must not move the atime.
    pub write_only: bool,
}

/// One directory entry in a listing snapshot.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// Node id to report (the kernel re-looks names up; readdir ids are hints).
    pub ino: u64,
    /// Type of the entry.
    pub kind: FileType,
    /// Plaintext name.
    pub name: OsString,
    /// On-disk name (empty for "." and ".."), for readdirplus's lookups.
    pub disk: OsString,
}

/// One `opendir()`: the listing, taken at open time (offsets stay stable under changes).
#[derive(Debug)]
pub struct DirHandle {
    /// The directory.
    pub inode: Arc<Inode>,
    /// Entries, "." and ".." first.
    pub entries: Vec<DirEntry>,
}

/// File handle number → handle.
#[derive(Debug)]
pub struct HandleTable {
    activity: Arc<Activity>,
    next: AtomicU64,
    /// Guards the open files.
    files: Mutex<HashMap<u64, Arc<FileHandle>>>,
    /// Guards the open directories.
    dirs: Mutex<HashMap<u64, Arc<DirHandle>>>,
}

impl HandleTable {
    /// An empty table reporting opens and closes to `activity`.
    pub fn new(activity: Arc<Activity>) -> Self {
        HandleTable {
            activity,
            next: AtomicU64::new(0),
            files: Mutex::default(),
            dirs: Mutex::default(),
        }
    }

    fn next_fh(&self) -> u64 {
        self.activity.opened();
        self.next.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Registers an open file and returns its handle number.
    pub fn add_file(&self, h: FileHandle) -> u64 {
        let fh = self.next_fh();
        self.files.lock().insert(fh, Arc::new(h));
        fh
    }

    /// The open file `fh`.
    pub fn file(&self, fh: u64) -> Option<Arc<FileHandle>> {
        self.files.lock().get(&fh).cloned()
    }

    /// Removes the open file `fh`.
    pub fn remove_file(&self, fh: u64) -> Option<Arc<FileHandle>> {
        let h = self.files.lock().remove(&fh);
        if h.is_some() {
            self.activity.closed();
        }
        h
    }

    /// Registers an open directory.
    pub fn add_dir(&self, h: DirHandle) -> u64 {
        let fh = self.next_fh();
        self.dirs.lock().insert(fh, Arc::new(h));
        fh
    }

    /// The open directory `fh`.
    pub fn dir(&self, fh: u64) -> Option<Arc<DirHandle>> {
        self.dirs.lock().get(&fh).cloned()
    }

    /// Removes the open directory `fh`.
    pub fn remove_dir(&self, fh: u64) {
        if self.dirs.lock().remove(&fh).is_some() {
            self.activity.closed();
        }
    }
}
