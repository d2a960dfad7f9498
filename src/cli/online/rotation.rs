//! The daemon's rotation thread: re-wraps the key rows of a pending rotation in batches of
//! [`ONLINE_BATCH_ROWS`] (one short transaction each, `Keyring::rotation_step`) while the
//! mount goes on creating and reading keys, then lets the keyring destroy the old KEK. It
//! starts when an online `rotate` begins a rotation, and at a read-write mount that finds one
//! pending (a crash mid-rotation: it resumes). Unmount stops it between two batches; the
//! next mount resumes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::json;

use crate::volume::Volume;

/// Rows per transaction online: a create waits for at most one batch. Measured with 1,000,000
/// rows under a create+write+close loop (docs/PERFORMANCE.md): batches of 1000 (the offline
/// default) gave the writer a p99 of 106 ms, batches of 200 a p99 of 8 ms, for a rotation of
/// 19.7 s instead of 12.9 s.
pub const ONLINE_BATCH_ROWS: usize = 200;

/// Pause between two batches: a create waiting for the store gets it between them.
const BETWEEN_BATCHES: Duration = Duration::from_millis(1);

/// What `status` shows of the rotation.
#[derive(Debug, Clone, Default)]
struct Progress {
    from: u64,
    to: u64,
    /// Rows still at `from` when this daemon began (or resumed) the rotation.
    total: u64,
    /// Rows this daemon re-wrapped so far.
    done: u64,
    running: bool,
    finished: bool,
    error: Option<String>,
    /// Seconds the rotation took in this daemon, once finished.
    secs: f64,
}

/// The rotation thread and what it reports.
#[derive(Default)]
pub struct Rotation {
    progress: Arc<Mutex<Option<Progress>>>,
    stop: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Rotation {
    /// Whether the thread is re-wrapping rows now.
    pub fn running(&self) -> bool {
        self.progress.lock().as_ref().is_some_and(|p| p.running)
    }

    /// Starts the thread for the rotation pending on `vol` (none pending: nothing happens).
    pub fn start(&self, vol: &Arc<Volume>, batch_rows: usize) {
        let keyring = vol.keyring();
        let Some(pending) = keyring.rotation_pending() else {
            return;
        };
        let mut thread = self.thread.lock();
        if let Some(t) = thread.take() {
            // A finished thread of an earlier rotation.
            let _ = t.join();
        }
        let total = match keyring.rotation_counts() {
            Ok(c) => c.map_or(0, |c| c.left),
            Err(e) => {
                log::warn!("rotation: counting rows failed: {e}");
                0
            }
        };
        *self.progress.lock() = Some(Progress {
            from: pending.from,
            to: pending.to,
            total,
            running: true,
            ..Progress::default()
        });
        log::info!(
            "rotation to generation {}: re-wrapping {total} key rows in the background",
            pending.to
        );
        let (vol, progress, stop) = (vol.clone(), self.progress.clone(), self.stop.clone());
        let batch = if batch_rows == 0 {
            ONLINE_BATCH_ROWS
        } else {
            batch_rows
        };
        *thread = std::thread::Builder::new()
            .name("rotation".into())
            .spawn(move || drive(&vol, batch, &progress, &stop))
            .map_err(|e| log::error!("rotation: no thread: {e}"))
            .ok();
    }

    /// The rotation as `status` reports it (`null`: none since the mount, none pending).
    pub fn status(&self) -> serde_json::Value {
        match &*self.progress.lock() {
            None => serde_json::Value::Null,
            Some(p) => json!({
                "state": if p.error.is_some() {
                    "failed"
                } else if p.finished {
                    "finished"
                } else if p.running {
                    "running"
                } else {
                    "stopped"
                },
                "from_generation": p.from,
                "to_generation": p.to,
                "total": p.total,
                "done": p.done,
                "secs": p.secs,
                "error": p.error,
            }),
        }
    }

    /// Stops the thread between two batches and waits for it (unmount).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}

fn drive(vol: &Volume, batch: usize, progress: &Mutex<Option<Progress>>, stop: &AtomicBool) {
    let started = Instant::now();
    let keyring = vol.keyring();
    loop {
        if stop.load(Ordering::SeqCst) {
            log::info!("rotation stopped at unmount: the next mount resumes it");
            if let Some(p) = progress.lock().as_mut() {
                p.running = false;
            }
            return;
        }
        match keyring.rotation_step(batch) {
            Ok(step) => {
                let mut guard = progress.lock();
                if let Some(p) = guard.as_mut() {
                    p.done = step.rewrapped_total;
                    if step.finished {
                        p.finished = true;
                        p.running = false;
                        p.secs = started.elapsed().as_secs_f64();
                        log::info!(
                            "rotation to generation {} finished: {} key rows re-wrapped in \
                             {:.3} s; the old KEK is destroyed",
                            p.to,
                            p.done,
                            p.secs
                        );
                        return;
                    }
                }
            }
            Err(e) => {
                log::error!("rotation step failed: {e} (the next mount or `rotate` resumes it)");
                if let Some(p) = progress.lock().as_mut() {
                    p.error = Some(e.to_string());
                    p.running = false;
                }
                return;
            }
        }
        std::thread::sleep(BETWEEN_BATCHES);
    }
}
