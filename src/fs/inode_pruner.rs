//! Keeps the inodes the kernel holds, and so the daemon's memory, under a budget.
//!
//! The kernel keeps an inode and its dentry for every name it has looked up, for as long as
//! it has memory to spare, and the daemon must keep its side of each (an [`Inode`] with its
//! `O_PATH` fd, its on-disk name and its map entry: about 350 bytes) until the kernel sends
//! FORGET. A walk of a million files left the daemon at 353 MiB, all of it for inodes nobody
//! was using. Past the budget (`mount --max-inodes`), this thread asks the kernel to drop the
//! names of the least recently used files (`FUSE_NOTIFY_INVAL_ENTRY`): an unused dentry so
//! invalidated is freed at once, its inode is evicted, and the kernel FORGETs it. The next
//! use of such a name costs one LOOKUP, as after the kernel's own reclaim.
//!
//! Directories are not counted and never picked, nor are open files (see
//! [`InodeTable::pick_to_prune`]). An inode the kernel keeps after all (another name of a hard
//! link, a name in use) counts again two rounds later and is not asked again until it is
//! looked up again. A notification for a name whose directory a request holds locked waits
//! for that request's reply, so this thread holds no lock of the daemon's while it writes one.

use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use fuser::{INodeNo, Notifier};

use super::inodes::{Inode, InodeTable};
use crate::volume::Volume;
use crate::volume::names::DirId;

/// How long the thread rests when the table is over budget but too little in it may be
/// dropped (it holds mostly directories and open files), before it looks again: each look
/// walks the whole table.
const NOTHING_TO_DROP_PAUSE: Duration = Duration::from_secs(1);

/// How long unmount waits for the pruning thread.
const STOP_WAIT: Duration = Duration::from_secs(2);

/// The pruning thread of one mount.
pub struct InodePruner {
    table: Arc<InodeTable>,
    thread: Option<JoinHandle<()>>,
}

impl InodePruner {
    /// Starts pruning `table` (a no-op without a budget); names are decrypted with `vol`'s
    /// keys and the kernel is told through the notifier the mount puts in `notifier`.
    pub fn start(
        table: Arc<InodeTable>,
        vol: Arc<Volume>,
        notifier: Arc<OnceLock<Notifier>>,
    ) -> Self {
        let thread = (table.max_inodes() > 0).then(|| {
            let table = table.clone();
            std::thread::Builder::new()
                .name("inode-pruner".into())
                .spawn(move || run(&table, &vol, &notifier))
                .expect("spawning the inode pruner thread")
        });
        InodePruner { table, thread }
    }

    /// Stops the thread: at unmount. Waits for it at most [`STOP_WAIT`]: a notification
    /// blocks while a request holds its directory locked, and if the loop ended with requests
    /// unanswered that one never returns; the thread is then left to the process's exit.
    pub fn stop(&mut self) {
        self.table.stop_pruning();
        let Some(t) = self.thread.take() else {
            return;
        };
        let deadline = std::time::Instant::now() + STOP_WAIT;
        while !t.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if t.is_finished() {
            let _ = t.join();
        } else {
            log::warn!("the inode pruner did not stop within {STOP_WAIT:?}: left running");
        }
    }
}

impl Drop for InodePruner {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(table: &InodeTable, vol: &Volume, notifier: &OnceLock<Notifier>) {
    while table.wait_over_budget() {
        let (picked, enough) = table.pick_to_prune();
        let mut asked = 0usize;
        for inode in &picked {
            let sent = !table.pruning_stopped()
                && notifier.get().is_some_and(|n| ask_to_drop(vol, n, inode));
            if sent {
                asked += 1;
            } else {
                table.not_dropped(inode.ino);
            }
        }
        log::debug!(
            "asked the kernel to drop {asked} of {} least recently used inodes",
            picked.len()
        );
        if !enough {
            table.rest(NOTHING_TO_DROP_PAUSE);
        }
    }
}

/// Tells the kernel to drop the name `inode` was last seen under; false when that name is
/// not known for sure, cannot be decrypted, or the kernel no longer has it.
fn ask_to_drop(vol: &Volume, notifier: &Notifier, inode: &Inode) -> bool {
    let Some((dir, disk)) = inode.origin() else {
        return false;
    };
    let dir_id = if vol.names().encrypted() {
        match dir.dir_id.get() {
            Some(id) => *id,
            None => return false,
        }
    } else {
        DirId::default()
    };
    let in_root = dir.ino == INodeNo::ROOT.0;
    let Ok(Some(name)) = vol.plain_name(&dir_id, &disk, in_root) else {
        return false;
    };
    match notifier.inval_entry(INodeNo(dir.ino), &name) {
        Ok(()) => true,
        Err(e) => {
            log::trace!("inode {}: the kernel did not drop its name: {e}", inode.ino);
            false
        }
    }
}
