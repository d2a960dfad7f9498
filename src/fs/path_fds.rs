//! The bound on `O_PATH` fds. Every inode the kernel knows has an `O_PATH` fd on its backing
//! object (see `inodes.rs`), but the kernel may know more inodes than the process may open
//! files: the hard `RLIMIT_NOFILE` is often 1024–20000 and cannot be raised without
//! `CAP_SYS_RESOURCE`, and a 20,000-file tree failed with EMFILE. Past a budget, the fds of
//! the inodes that got theirs longest ago are closed; such an inode is found again through the
//! directory and on-disk name it was last seen under (its origin, kept current by the daemon,
//! the only writer of the cipherdir), and the backing inode number is checked. An inode whose
//! name may be stale keeps its fd: one with no origin, an open regular file (it may be
//! unlinked), and a file with several links.
//!
//! Lock order: `PathFds::queue` before any `Inode::path` (only ever `try_lock`ed under it).

use std::collections::VecDeque;
use std::sync::Weak;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::inodes::Inode;

/// How many evictions one acquisition may attempt (pinned inodes are skipped and requeued).
const MAX_TRIES: usize = 64;

/// The fd budget shared by all inodes of one mount.
#[derive(Debug)]
pub struct PathFds {
    budget: usize,
    /// `O_PATH` fds held by inodes other than the root.
    held: AtomicUsize,
    /// Guards the queue of inodes holding a closable fd, oldest acquisition first. Entries
    /// may be stale (inode gone, or its fd closed and reopened since); they are skipped.
    queue: Mutex<VecDeque<Weak<Inode>>>,
}

/// What [`Inode::try_close_fd`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// The fd was closed.
    Yes,
    /// The inode has no fd (closed already).
    NoFd,
    /// The inode must keep its fd for now (busy, open, several links, no origin).
    Pinned,
}

impl PathFds {
    /// A budget of `budget` fds (at least 16).
    pub fn new(budget: usize) -> Self {
        PathFds {
            budget: budget.max(16),
            held: AtomicUsize::new(0),
            queue: Mutex::new(VecDeque::new()),
        }
    }

    /// Number of fds held (for tests and memory accounting).
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Records that `inode` got an fd, then closes the oldest closable ones while over budget.
    /// Must be called with no `Inode::path` lock held.
    pub fn acquired(&self, inode: Weak<Inode>) {
        let mut queue = self.queue.lock();
        queue.push_back(inode);
        let mut held = self.held.fetch_add(1, Ordering::Relaxed) + 1;
        let mut tries = MAX_TRIES;
        while held > self.budget && tries > 0 {
            tries -= 1;
            let Some(weak) = queue.pop_front() else {
                break;
            };
            let Some(inode) = weak.upgrade() else {
                continue;
            };
            match inode.try_close_fd() {
                Closed::Yes => held = self.held.fetch_sub(1, Ordering::Relaxed) - 1,
                Closed::NoFd => {}
                Closed::Pinned => queue.push_back(weak),
            }
        }
        if queue.len() > 2 * self.budget + 1024 {
            queue.retain(|w| w.strong_count() > 0);
        }
    }

    /// Records that an inode holding an fd went away (its fd closed with it).
    pub fn released(&self) {
        self.held.fetch_sub(1, Ordering::Relaxed);
    }
}
