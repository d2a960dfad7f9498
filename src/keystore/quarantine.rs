//! The quarantine of key rows (`quarantined_keys`, format v3): `fsck --repair` moves a key
//! row no file carries here instead of deleting it, so a file that was only away (a sync not
//! finished, a partial restore, one flipped header byte repaired later) is readable again when
//! it comes back. Rows stay until `fsck --repair --purge-quarantine` destroys them
//! (`secure_delete` overwrites them); `rotate` re-wraps them with the live rows. Each move is
//! one transaction: a row is in `file_keys` or in the quarantine, never in both or neither.

use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::params;

use super::Result;
use super::store::{HeaderStore, corrupt, now_secs};
use crate::format::FileId;

/// Moves of key rows between `file_keys` and the quarantine in this process (counted while
/// the store's connection is held): a rotation pass during which none happened has seen every
/// row (`keystore::rotate`). Process-wide rather than per store: another store's moves only
/// cost a rotation one more pass.
static KEY_ROW_MOVES: AtomicU64 = AtomicU64::new(0);

/// How many key rows moved between the tables so far (see [`KEY_ROW_MOVES`]).
pub(super) fn key_row_moves() -> u64 {
    KEY_ROW_MOVES.load(Ordering::SeqCst)
}

/// One quarantined key row, as `fsck` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedKey {
    /// The file id the row is for.
    pub file_id: FileId,
    /// Why it was moved here.
    pub reason: String,
    /// When, seconds since the epoch.
    pub quarantined_at: i64,
}

impl HeaderStore {
    /// Moves the key rows of `ids` into the quarantine with `reason`, in one transaction;
    /// returns how many moved. An id without a row is skipped.
    pub fn quarantine_file_keys(&self, ids: &[FileId], reason: &str) -> Result<usize> {
        if !self.has_v3_schema() {
            return Err(corrupt(
                "the key-row quarantine needs a v3 store (migrate first)",
            ));
        }
        let now = now_secs();
        self.write_retrying_when_full_tx(|tx| {
            KEY_ROW_MOVES.fetch_add(1, Ordering::SeqCst);
            let mut copy = tx.prepare_cached(
                "INSERT OR REPLACE INTO quarantined_keys
                    (file_id, wrapped_fek, kek_generation, owner, reason, quarantined_at)
                 SELECT file_id, wrapped_fek, kek_generation, owner, ?2, ?3
                 FROM file_keys WHERE file_id = ?1",
            )?;
            let mut delete = tx.prepare_cached("DELETE FROM file_keys WHERE file_id = ?1")?;
            let mut n = 0;
            for id in ids {
                if copy.execute(params![&id.0[..], reason, now])? > 0 {
                    delete.execute([&id.0[..]])?;
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    /// Moves the quarantined row of `id` back into `file_keys` (its file is back); returns
    /// whether there was one. A live row for the id wins: the quarantined one is then left.
    pub fn restore_quarantined_key(&self, id: &FileId) -> Result<bool> {
        if !self.has_v3_schema() {
            return Ok(false);
        }
        self.write_retrying_when_full_tx(|tx| {
            KEY_ROW_MOVES.fetch_add(1, Ordering::SeqCst);
            let n = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO file_keys (file_id, wrapped_fek, kek_generation, owner)
                     SELECT file_id, wrapped_fek, kek_generation, owner
                     FROM quarantined_keys WHERE file_id = ?1",
                )?
                .execute([&id.0[..]])?;
            if n > 0 {
                tx.prepare_cached("DELETE FROM quarantined_keys WHERE file_id = ?1")?
                    .execute([&id.0[..]])?;
            }
            Ok(n > 0)
        })
    }

    /// The wrapped FEK and KEK generation of a quarantined row: a file whose row was moved
    /// aside while it was away still reads (its row goes back at the next `fsck --repair`).
    pub fn quarantined_file_key(&self, id: &FileId) -> Result<Option<(Vec<u8>, u64)>> {
        if !self.has_v3_schema() {
            return Ok(None);
        }
        super::file_keys::wrapped_row(
            &self.conn.lock(),
            "SELECT wrapped_fek, kek_generation FROM quarantined_keys WHERE file_id = ?1",
            id,
        )
    }

    /// Every quarantined row, by file id.
    pub fn quarantined_keys(&self) -> Result<Vec<QuarantinedKey>> {
        if !self.has_v3_schema() {
            return Ok(Vec::new());
        }
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT file_id, reason, quarantined_at FROM quarantined_keys ORDER BY file_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, reason, quarantined_at) = row?;
            out.push(QuarantinedKey {
                file_id: FileId::from_slice(&id).ok_or_else(|| corrupt("file_id length"))?,
                reason,
                quarantined_at,
            });
        }
        Ok(out)
    }

    /// Destroys the quarantined rows of `ids` only (`secure_delete` overwrites them), in one
    /// transaction; returns how many:
    /// `fsck --purge-quarantine` purges what earlier runs quarantined, never what the same
    /// run just moved there (that run may be wrong about a file it could not see).
    pub fn purge_quarantined_file_keys(&self, ids: &[FileId]) -> Result<usize> {
        if !self.has_v3_schema() || ids.is_empty() {
            return Ok(0);
        }
        self.write_retrying_when_full_tx(|tx| {
            let mut delete =
                tx.prepare_cached("DELETE FROM quarantined_keys WHERE file_id = ?1")?;
            let mut n = 0;
            for id in ids {
                n += delete.execute([&id.0[..]])?;
            }
            Ok(n)
        })
    }
}
