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

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::volume::{FileId, Owner, Volume};

/// How long the first id of a batch waits for others.
pub const GATHER: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Pending {
    ids: Vec<(FileId, Owner)>,
    stopping: bool,
}

struct Shared {
    vol: Arc<Volume>,
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    /// Deletes every queued row; on failure they stay queued for the next attempt.
    ///
    /// The queue lock is held from taking the batch until its `DELETE` is done: a rename
    /// ([`ShredQueue::cancel_then`]) takes the same lock to cancel and to move an owner, so it
    /// sees a deletion either not yet taken (and cancels it) or finished, never one in flight
    /// that would then hit the renamed entry. Lock order is always queue lock, then the
    /// store's connection lock (inside the volume's keyring); nothing takes the queue lock while
    /// holding the connection lock, so the two cannot deadlock.
    fn delete_pending(&self) -> crate::volume::Result<()> {
        let mut pending = self.pending.lock();
        let ids = std::mem::take(&mut pending.ids);
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
                pending.ids.extend(ids);
                Err(e)
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
    /// Starts the thread that deletes queued rows for `vol`.
    pub fn start(vol: Arc<Volume>) -> Self {
        let shared = Arc::new(Shared {
            vol,
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
        });
        let worker = shared.clone();
        let thread = std::thread::Builder::new()
            .name("shredder".into())
            .spawn(move || {
                loop {
                    {
                        let mut p = worker.pending.lock();
                        while p.ids.is_empty() && !p.stopping {
                            worker.wake.wait(&mut p);
                        }
                        if p.stopping {
                            return;
                        }
                    }
                    std::thread::sleep(GATHER);
                    if let Err(e) = worker.delete_pending() {
                        log::warn!("could not delete key rows of deleted files (retrying): {e}");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                }
            })
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
        self.shared.pending.lock().ids.push((id, owner));
        self.shared.wake.notify_one();
    }

    /// Takes `ids` out of the queue, then runs `then` (the rename's owner `UPDATE`) still
    /// under the queue lock: entries that carry them were just renamed (see the module doc),
    /// so no deletion of their rows may run on what was decided before, and none in flight
    /// can land between the cancel and the update (see `Shared::delete_pending` for the
    /// lock order).
    pub fn cancel_then<R>(&self, ids: &[FileId], then: impl FnOnce() -> R) -> R {
        let mut pending = self.shared.pending.lock();
        pending.ids.retain(|(i, _)| !ids.contains(i));
        then()
    }

    /// Deletes every queued row now and stops the thread: at unmount.
    pub fn finish(&mut self) -> crate::volume::Result<()> {
        self.shared.pending.lock().stopping = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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
