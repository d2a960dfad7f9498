//! Deferred crypto-shredding: the key rows of deleted files are deleted in batches.
//!
//! Deleting one row is one SQLite write transaction (locks, a WAL frame, `secure_delete`):
//! about a fifth of the daemon's CPU in an `rm -rf` of 20,000 files. The file itself is gone
//! when `unlink` answers; its key row only has to follow. So the row's id goes into this queue
//! (its cached FEK is dropped at once) and a background thread deletes what gathered within
//! [`GATHER`] in one transaction. Unmount deletes the rest. A daemon killed before that leaves
//! orphan key rows: harmless (no file carries those ids), reported and dropped by `cofferfs
//! fsck --repair`, as after any crash.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::format::FileId;
use crate::volume::Volume;

/// How long the first id of a batch waits for others.
pub const GATHER: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Pending {
    ids: Vec<FileId>,
    stopping: bool,
}

struct Shared {
    vol: Arc<Volume>,
    pending: Mutex<Pending>,
    wake: Condvar,
}

impl Shared {
    /// Deletes every queued row; on failure they stay queued for the next attempt.
    fn delete_pending(&self) -> crate::volume::Result<()> {
        let ids = std::mem::take(&mut self.pending.lock().ids);
        if ids.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.vol.keyring().shred_many(&ids) {
            self.pending.lock().ids.extend(ids);
            return Err(e.into());
        }
        Ok(())
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

    /// Queues the key row of a file whose last name is gone (and is no longer open); its FEK
    /// leaves the key cache now.
    pub fn push(&self, id: FileId) {
        self.shared.vol.keyring().forget_fek(&id);
        self.shared.pending.lock().ids.push(id);
        self.shared.wake.notify_one();
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
