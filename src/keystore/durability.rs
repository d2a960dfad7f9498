//! Durability of the header store: when commits reach the disk (`make_durable` at a file's
//! `fsync`), folding the write-ahead log in (`checkpoint` at unmount and after management
//! commands), and writes that must succeed on a full disk.

use rusqlite::Connection;

use super::Result;
use super::store::HeaderStore;

impl HeaderStore {
    /// Makes every commit so far durable. Commits use `synchronous=NORMAL`: their WAL frames
    /// are written but not synced. Syncing the WAL file itself makes them survive a power cut
    /// (recovery replays the WAL); a checkpoint would not do, as SQLite skips its sync when a
    /// reader holds the checkpoint back. Called by `fsync` of a file, so a synced file's key
    /// row is durable too.
    pub fn make_durable(&self) -> Result<()> {
        let _conn = self.conn.lock();
        let mut wal = self.path().to_owned().into_os_string();
        wal.push("-wal");
        match std::fs::File::open(&wal) {
            Ok(f) => f.sync_all()?,
            // No WAL: every commit is already in the (synced) database file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Runs the one-statement write `op`. When the disk is full, folds the WAL into the
    /// database and truncates it — the WAL only grows between checkpoints, so this frees its
    /// space — and tries once more: deleting a file's key must work on a full disk, and a
    /// create should fail only when there is really no room.
    pub(super) fn write_retrying_when_full<T>(
        &self,
        op: impl Fn(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let conn = self.conn.lock();
        match op(&conn) {
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ffi::ErrorCode::DiskFull =>
            {
                log::warn!("header store: disk full; folding the WAL in to free its space");
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                Ok(op(&conn)?)
            }
            other => Ok(other?),
        }
    }

    /// [`write_retrying_when_full`](Self::write_retrying_when_full) for a write of several
    /// statements: `op` runs inside one transaction, committed when it returns `Ok`.
    pub(super) fn write_retrying_when_full_tx<T>(
        &self,
        op: impl Fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.write_retrying_when_full(|conn| {
            let tx = conn.unchecked_transaction()?;
            let out = op(&tx)?;
            tx.commit()?;
            Ok(out)
        })
    }

    /// Copies the WAL into the database and truncates it, so a store at rest is one file
    /// (what rsync and backups should see). Called at unmount and after management commands.
    pub fn checkpoint(&self) -> Result<()> {
        let conn = self.conn.lock();
        // A read-only open (`mount --ro`) folds nothing in: a log left by a crash stays for
        // the next read-write open to recover.
        if conn.is_readonly(rusqlite::MAIN_DB)? {
            return Ok(());
        }
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}
