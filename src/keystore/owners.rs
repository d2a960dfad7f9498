//! The owner of each key row (`file_keys.owner`, format v3): which directory entry the row was
//! created for. The rules that keep an unlink from reaching beyond its own file live here:
//!
//! - an unlink of a file's last link deletes the row only when its owner is the entry removed;
//!   a row whose owner is another entry (a copy of the ciphertext file carried the same
//!   `file_id`) or unknown (`NULL`) is left alone, for fsck to find once no file carries it;
//! - a rename of the owner moves the owner with it (one `UPDATE`); a rename of any other name
//!   carrying the row changes nothing;
//! - removing the owner name of a file that keeps other hard links makes the owner unknown;
//! - a row in `quarantined_keys` follows the same rule: the owner-checked delete removes it
//!   too (its file came back and was removed again), so `rm` always shreds what it owns.
//!
//! On a store not migrated to v3 (no owner column) rows are never deleted by these calls: the
//! mount migrates before it writes, so only the volume API can get here, and it gets the safe
//! answer.

use rusqlite::{OptionalExtension, params};

use super::Result;
use super::store::HeaderStore;
use crate::format::FileId;

/// The 32-byte digest of the directory entry a key row was created for (`file_keys.owner`):
/// an unlink shreds a row only when the entry removed is its owner, so a copy of a ciphertext
/// file under another name can never destroy the original's key. Computed by the volume layer,
/// which knows what identifies an entry; the store only compares them.
pub type Owner = [u8; 32];

/// What a batch of owner-checked deletions did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShredOutcome {
    /// Rows deleted (their owner was the entry removed).
    pub deleted: usize,
    /// Rows that exist but belong to another entry, or to none known: left in place.
    pub kept: Vec<FileId>,
}

impl HeaderStore {
    /// Deletes, in one transaction, the key row of each `(file_id, owner)` whose stored owner
    /// is `owner`, in `file_keys` and in `quarantined_keys`; rows owned by another entry or by
    /// none known stay (see the module doc).
    pub fn delete_owned_file_keys(&self, rows: &[(FileId, Owner)]) -> Result<ShredOutcome> {
        if !self.has_v3_schema() {
            return Ok(ShredOutcome {
                deleted: 0,
                kept: rows.iter().map(|r| r.0).collect(),
            });
        }
        self.write_retrying_when_full_tx(|tx| {
            let mut out = ShredOutcome::default();
            let mut delete =
                tx.prepare_cached("DELETE FROM file_keys WHERE file_id = ?1 AND owner = ?2")?;
            // A row `fsck --repair` quarantined while its file was away still opens the file
            // once it is back (`Keyring::fek`), so the same owner rule shreds it there too.
            let mut delete_quarantined = tx
                .prepare_cached("DELETE FROM quarantined_keys WHERE file_id = ?1 AND owner = ?2")?;
            let mut exists = tx.prepare_cached(
                "SELECT 1 FROM file_keys WHERE file_id = ?1
                 UNION ALL SELECT 1 FROM quarantined_keys WHERE file_id = ?1",
            )?;
            for (id, owner) in rows {
                let live = delete.execute(params![&id.0[..], &owner[..]])?;
                let quarantined = delete_quarantined.execute(params![&id.0[..], &owner[..]])?;
                if live + quarantined > 0 {
                    out.deleted += 1;
                } else if exists.exists([&id.0[..]])? {
                    out.kept.push(*id);
                }
            }
            Ok(out)
        })
    }

    /// Sets the owner of `file_id`'s row to `new` if it is `expected` now (a rename of the
    /// owner entry: `new` is the entry's new identity; the owner name of a file with other
    /// links going away: `None`). Returns whether the row changed. One statement.
    pub fn move_owner(
        &self,
        file_id: &FileId,
        expected: &Owner,
        new: Option<&Owner>,
    ) -> Result<bool> {
        if !self.has_v3_schema() {
            return Ok(false);
        }
        let n = self.write_retrying_when_full(|conn| {
            conn.prepare_cached(
                "UPDATE file_keys SET owner = ?3 WHERE file_id = ?1 AND owner = ?2",
            )?
            .execute(params![&file_id.0[..], &expected[..], new.map(|o| &o[..])])
        })?;
        Ok(n > 0)
    }

    /// [`move_owner`](Self::move_owner) when the row's owner is either of `expected`: one
    /// statement where a rename would otherwise need two (a row has one owner, so at most
    /// one of them can match).
    pub fn move_owner_from_either(
        &self,
        file_id: &FileId,
        expected: [&Owner; 2],
        new: &Owner,
    ) -> Result<bool> {
        if !self.has_v3_schema() {
            return Ok(false);
        }
        let n = self.write_retrying_when_full(|conn| {
            conn.prepare_cached(
                "UPDATE file_keys SET owner = ?3 WHERE file_id = ?1 AND owner IN (?2, ?4)",
            )?
            .execute(params![
                &file_id.0[..],
                &expected[0][..],
                &new[..],
                &expected[1][..]
            ])
        })?;
        Ok(n > 0)
    }

    /// Applies several [`move_owner`](Self::move_owner) changes in one transaction, each
    /// against the owners as they were before any of them (`RENAME_EXCHANGE` swaps two).
    pub fn move_owners(&self, moves: &[(FileId, Owner, Option<Owner>)]) -> Result<()> {
        if !self.has_v3_schema() || moves.is_empty() {
            return Ok(());
        }
        self.write_retrying_when_full_tx(|tx| {
            let mut before = Vec::new();
            for (id, expected, _) in moves {
                before.push(owner_in(tx, id)? == Some(Some(*expected)));
            }
            let mut set =
                tx.prepare_cached("UPDATE file_keys SET owner = ?2 WHERE file_id = ?1")?;
            for ((id, _, new), matched) in moves.iter().zip(before) {
                if matched {
                    set.execute(params![&id.0[..], new.as_ref().map(|o| &o[..])])?;
                }
            }
            Ok(())
        })
    }

    /// The owner of `file_id`'s row: `None` without a row, `Some(None)` when unknown.
    pub fn file_owner(&self, file_id: &FileId) -> Result<Option<Option<Owner>>> {
        if !self.has_v3_schema() {
            return Ok(self.file_key(file_id)?.map(|_| None));
        }
        let conn = self.conn.lock();
        Ok(owner_in(&conn, file_id)?)
    }
}

fn owner_in(conn: &rusqlite::Connection, id: &FileId) -> rusqlite::Result<Option<Option<Owner>>> {
    let row: Option<Option<Vec<u8>>> = conn
        .prepare_cached("SELECT owner FROM file_keys WHERE file_id = ?1")?
        .query_row([&id.0[..]], |r| r.get(0))
        .optional()?;
    Ok(row.map(|o| o.and_then(|v| v.try_into().ok())))
}
