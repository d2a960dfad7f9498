//! Deferred crypto-shredding: the key rows of deleted files are deleted in batches.
//!
//! Deleting one row is one SQLite write transaction (locks, a WAL frame, `secure_delete`):
//! about a fifth of the daemon's CPU in an `rm -rf` of 20,000 files. The file itself is gone
//! when `unlink` answers; its key row only has to follow. So the row's id goes into this queue
//! (its cached FEK is dropped at once) and a background thread deletes what gathered within
//! [`GATHER`] in one transaction. Unmount deletes the rest. A daemon killed before that leaves
//! orphan key rows: harmless (no file carries those ids), reported and moved aside by
//! `cofferfs fsck --repair`, as after any crash.
//!
//! Each queued id comes with the owner digest of the entry removed: the store deletes the row
//! only if that entry is its owner (`keystore::owners`), so removing a copy of a ciphertext
//! file never destroys the original's key. A rename of a file whose id is queued takes the id
//! out of the queue ([`ShredQueue::cancel_then`]): the renamed entry carries the id, and its new
//! name may be the very owner the queued deletion names (`rm B; mv A B` of a duplicate).
//!
//! An unlink whose file id the mount does not remember (a file not opened since the kernel
//! last looked it up) would have to read the file's header first: after a cold cache, one
//! disk read on the unlink's path, a third of an `rm -rf`'s time. It queues the file opened
//! instead ([`ShredQueue::push_unread`]), and the thread reads the header as soon as it wakes,
//! before it waits for the batch: the open file keeps the unlinked inode (and its blocks)
//! only that long. A rename's cancel reads what is still unread first, so it sees every id.

use std::fs::File;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::volume::ciphertext::read_file_id;
use crate::volume::{FileId, Owner, Volume};

/// How long the first id of a batch waits for others.
pub const GATHER: Duration = Duration::from_millis(50);

/// Most unlinked files held open for their header at once: each is an fd, and the mount's
/// fds are budgeted (`path_fds.rs`): an eighth of the `O_PATH` budget, at most this many.
/// Past it, an unlink reads the header itself, as before.
const UNREAD_CAP_MAX: usize = 256;

/// What the thread is told.
#[derive(Default)]
struct Signal {
    work: bool,
    stopping: bool,
}

struct Shared {
    vol: Arc<Volume>,
    /// Most files in `unread`.
    unread_cap: usize,
    /// Rows to delete, with the owner digest of the name removed.
    pending: Mutex<Vec<(FileId, Owner)>>,
    /// Unlinked files whose header (their id) is not read yet, with the owner digest.
    unread: Mutex<Vec<(File, Owner)>>,
    /// Held from taking files out of `unread` until their ids are in `pending`, so that a
    /// rename's cancel never misses an id in flight between the two.
    resolving: Mutex<()>,
    signal: Mutex<Signal>,
    wake: Condvar,
}

impl Shared {
    fn notify(&self) {
        self.signal.lock().work = true;
        self.wake.notify_one();
    }

    /// Reads the header of every unread file and queues its id; closing the file lets the
    /// backing filesystem free it. The caller holds `resolving`.
    fn resolve_unread(&self, _resolving: &parking_lot::MutexGuard<'_, ()>) {
        let files = std::mem::take(&mut *self.unread.lock());
        if files.is_empty() {
            return;
        }
        let ids: Vec<(FileId, Owner)> = files
            .into_iter()
            // A file without a valid header has no key: nothing to shred.
            .filter_map(|(file, owner)| Some((read_file_id(&file)?, owner)))
            .collect();
        for (id, _) in &ids {
            self.vol.forget_key(id);
        }
        self.pending.lock().extend(ids);
    }

    /// Deletes every queued row; on failure they stay queued for the next attempt.
    ///
    /// The queue lock is held from taking the batch until its `DELETE` is done: a rename
    /// ([`ShredQueue::cancel_then`]) takes the same lock to cancel and to move an owner, so it
    /// sees a deletion either not yet taken (and cancels it) or finished, never one in flight
    /// that would then hit the renamed entry. Lock order is `resolving`, then `unread` (only
    /// to take or add to it), then the queue lock, then the store's connection lock (inside
    /// the volume's keyring); nothing takes them in another order, so they cannot deadlock.
    fn delete_pending(&self) -> crate::volume::Result<()> {
        let mut pending = self.pending.lock();
        let ids = std::mem::take(&mut *pending);
        if ids.is_empty() {
            return Ok(());
        }
        match self.vol.shred_removed(&ids) {
            Ok(kept) => {
                for id in kept {
                    log::info!(
                        "key row of file {id} left in place: the entry removed does not own it \
                         (a copy of another file, or a hard link); `fsck` reports it once no \
                         file carries it"
                    );
                }
                Ok(())
            }
            Err(e) => {
                pending.extend(ids);
                Err(e)
            }
        }
    }

    /// The thread: waits for work, reads unread headers at once, gathers for [`GATHER`],
    /// then deletes the batch in one transaction.
    fn run(&self) {
        loop {
            {
                let mut s = self.signal.lock();
                while !s.work && !s.stopping {
                    self.wake.wait(&mut s);
                }
                if s.stopping {
                    return;
                }
                s.work = false;
            }
            self.resolve_unread(&self.resolving.lock());
            std::thread::sleep(GATHER);
            self.resolve_unread(&self.resolving.lock());
            if let Err(e) = self.delete_pending() {
                log::warn!("could not delete key rows of deleted files (retrying): {e}");
                std::thread::sleep(Duration::from_secs(1));
                self.signal.lock().work = true;
            }
        }
    }
}

/// The queue and its deleting thread, one per mount.
pub struct ShredQueue {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl ShredQueue {
    /// Starts the thread that deletes queued rows for `vol`, on a mount whose `O_PATH` fd
    /// budget is `path_fd_budget`.
    pub fn start(vol: Arc<Volume>, path_fd_budget: usize) -> Self {
        let shared = Arc::new(Shared {
            vol,
            unread_cap: (path_fd_budget / 8).clamp(1, UNREAD_CAP_MAX),
            pending: Mutex::default(),
            unread: Mutex::default(),
            resolving: Mutex::new(()),
            signal: Mutex::default(),
            wake: Condvar::new(),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("shredder".into())
            .spawn(move || worker.run())
            .expect("spawning the shredder thread");
        ShredQueue {
            shared,
            thread: Some(thread),
        }
    }

    /// Queues the key row of a file whose last name, with owner digest `owner`, is gone (and
    /// is no longer open); its FEK leaves the key cache now.
    pub fn push(&self, id: FileId, owner: Owner) {
        self.shared.vol.forget_key(&id);
        self.shared.pending.lock().push((id, owner));
        self.shared.notify();
    }

    /// Like [`push`](Self::push) for a file whose id is in its header, not yet read: `file`
    /// is the unlinked file opened for reading (`volume::ciphertext::open_for_header`). Its
    /// FEK leaves the key cache once the header is read, moments later.
    pub fn push_unread(&self, file: File, owner: Owner) {
        let mut unread = self.shared.unread.lock();
        if unread.len() >= self.shared.unread_cap {
            drop(unread);
            if let Some(id) = read_file_id(&file) {
                self.push(id, owner);
            }
            return;
        }
        unread.push((file, owner));
        drop(unread);
        self.shared.notify();
    }

    /// Reads every unread header now, closing those files: for an unlink that could not
    /// open its file (out of fds) and must try again.
    pub fn read_unread_now(&self) {
        self.shared.resolve_unread(&self.shared.resolving.lock());
    }

    /// Takes `ids` out of the queue, then runs `then` (the rename's owner `UPDATE`) still
    /// under the queue lock: entries that carry them were just renamed (see the module doc),
    /// so no deletion of their rows may run on what was decided before, and none in flight
    /// can land between the cancel and the update (see `Shared::delete_pending` for the
    /// lock order). Unread headers are read first, as they may carry one of `ids`.
    pub fn cancel_then<R>(&self, ids: &[FileId], then: impl FnOnce() -> R) -> R {
        let resolving = self.shared.resolving.lock();
        self.shared.resolve_unread(&resolving);
        let mut pending = self.shared.pending.lock();
        pending.retain(|(i, _)| !ids.contains(i));
        then()
    }

    /// Deletes every queued row now and stops the thread: at unmount.
    pub fn finish(&mut self) -> crate::volume::Result<()> {
        self.shared.signal.lock().stopping = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.shared.resolve_unread(&self.shared.resolving.lock());
        self.shared.delete_pending()
    }
}

impl Drop for ShredQueue {
    fn drop(&mut self) {
        if self.thread.is_some()
            && let Err(e) = self.finish()
        {
            log::error!("key rows of deleted files left in the header store: {e}");
        }
    }
}
