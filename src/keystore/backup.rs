//! Copies of the header store, as `cryptsetup luksHeaderBackup` keeps of a LUKS header: the
//! store is the only place the wrapped file keys live, so a corrupt or lost `cofferfs.db`
//! loses every file. A backup is taken with SQLite's online backup API, in one step under one
//! read transaction: a consistent snapshot even while a mount writes (WAL readers do not
//! block the writer), then compacted (`VACUUM`: no free page carries old bytes) into a
//! standalone file of mode 0600. It holds what the store holds: wrapped keys, never a key in
//! clear. Restoring swaps a backup in for the store and keeps the store it replaces aside.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::{HeaderStore, KeystoreError, Result};
use crate::format::FileId;

/// What a header store (or a backup of one) holds, to show and to compare before a restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSummary {
    /// The volume the store belongs to.
    pub volume_id: [u8; 16],
    /// KEK generation: a backup older than a `rotate` has a smaller one.
    pub kek_generation: u64,
    /// Number of key slots.
    pub slots: usize,
    /// Number of file key rows.
    pub file_keys: u64,
}

/// Reads a store's summary (read-only; refuses what is not a cofferfs header store).
pub fn summarize(path: &Path) -> Result<StoreSummary> {
    let store = HeaderStore::open(path, true)?;
    let p = store.params()?;
    Ok(StoreSummary {
        volume_id: p.volume_id,
        kek_generation: p.kek_generation,
        slots: store.slots()?.len(),
        file_keys: store.file_count()?,
    })
}

/// The file ids that have a key row in the store at `path`.
pub fn file_ids(path: &Path) -> Result<std::collections::HashSet<FileId>> {
    Ok(HeaderStore::open(path, true)?
        .file_ids()?
        .into_iter()
        .collect())
}

fn sync_dir_of(path: &Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Writes a consistent copy of the store at `store` to `dest`, a new file (never
/// overwritten) of mode 0600, made durable. Safe while the volume is mounted. On failure
/// `dest` is removed.
pub fn backup(store: &Path, dest: &Path) -> Result<StoreSummary> {
    // Checks that the source is a cofferfs store before anything is created.
    summarize(store)?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)?;
    let copied = copy_online(store, dest).and_then(|()| summarize(dest));
    if copied.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    sync_dir_of(dest)?;
    copied
}

fn copy_online(store: &Path, dest: &Path) -> Result<()> {
    let src = Connection::open_with_flags(
        store,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    src.busy_timeout(std::time::Duration::from_secs(10))?;
    let mut dst = Connection::open(dest)?;
    {
        use rusqlite::backup::{Backup, StepResult};
        let b = Backup::new(&src, &mut dst)?;
        // -1: every page in one step, under one read transaction of the source. A step that
        // finds the source busy is retried (for up to 10 s); one that did not finish starts
        // over, as SQLite restarts a backup whose source changed.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match b.step(-1)? {
                StepResult::Done => break,
                _ if std::time::Instant::now() > deadline => {
                    return Err(KeystoreError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the header store stayed busy for 10 s",
                    )));
                }
                _ => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    }
    drop(src);
    // A standalone file: no WAL to carry along, no free page with old bytes.
    dst.pragma_update_and_check(None, "journal_mode", "DELETE", |_| Ok(()))?;
    dst.execute_batch("VACUUM")?;
    dst.close().map_err(|(_, e)| KeystoreError::Sqlite(e))?;
    File::open(dest)?.sync_all()?;
    Ok(())
}

/// Where the store that a restore replaces is kept: `<store>.before-restore-<stamp>`, with
/// `-N` added when that exists.
fn aside_path(store: &Path, stamp: &str) -> PathBuf {
    let base = format!("{}.before-restore-{stamp}", store.display());
    let mut p = PathBuf::from(&base);
    let mut n = 1;
    while p.symlink_metadata().is_ok() {
        n += 1;
        p = PathBuf::from(format!("{base}-{n}"));
    }
    p
}

/// `path` with `suffix` appended to its file name (`cofferfs.db` → `cofferfs.db-wal`).
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Puts a copy of the backup at `backup` in place of the store at `store`: the copy is
/// written and synced next to the store first, then the current store (if any) and its WAL
/// are renamed aside (returned), then the copy is renamed into place. The caller holds the
/// volume lock and has checked that the backup belongs to the volume. Never deletes a store.
pub fn install(backup: &Path, store: &Path, stamp: &str) -> Result<Option<PathBuf>> {
    let tmp = with_suffix(store, ".restoring");
    let _ = std::fs::remove_file(&tmp);
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    std::io::copy(&mut File::open(backup)?, &mut out)?;
    out.sync_all()?;
    drop(out);
    let aside = if store.exists() {
        // Fold a WAL left by a crash into the store it belongs to, when the store still
        // opens; a damaged one is kept aside as it is, with its WAL next to it.
        if let Ok(old) = HeaderStore::open(store, false) {
            let _ = old.checkpoint();
        }
        let aside = aside_path(store, stamp);
        std::fs::rename(store, &aside)?;
        let wal = with_suffix(store, "-wal");
        if wal.exists() {
            std::fs::rename(&wal, with_suffix(&aside, "-wal"))?;
        }
        Some(aside)
    } else {
        None
    };
    // The shared-memory index describes the old WAL; SQLite rebuilds it.
    let _ = std::fs::remove_file(with_suffix(store, "-shm"));
    std::fs::rename(&tmp, store)?;
    sync_dir_of(store)?;
    Ok(aside)
}
