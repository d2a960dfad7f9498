//! File-key rows (`file_keys`): one wrapped FEK per file, the KEK generation it is wrapped
//! under, and (format v3) the entry it was created for. Who may delete a row is `owners.rs`;
//! rows set aside by fsck are `quarantine.rs`. Unwrapping happens in the keyring, not here.

use rusqlite::{Connection, OptionalExtension, params};

use super::owners::Owner;
use super::store::{HeaderStore, corrupt};
use super::{KeystoreError, Result};
use crate::format::FileId;

impl HeaderStore {
    /// Number of file key rows.
    pub fn file_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .lock()
            .query_row("SELECT count(*) FROM file_keys", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Stores a new file's wrapped FEK and the entry it is created for (`None`: unknown, the
    /// row is then never shredded by an unlink, only found by fsck). Committed (to the WAL)
    /// before returning, so the row exists before the ciphertext file does. One statement,
    /// the owner included: a create costs no more than before.
    pub fn insert_file_key(
        &self,
        file_id: &FileId,
        wrapped: &[u8],
        generation: u64,
        owner: Option<&Owner>,
    ) -> Result<()> {
        let v3 = self.has_v3_schema();
        self.write_retrying_when_full(|conn| {
            if v3 {
                conn.prepare_cached(
                    "INSERT INTO file_keys (file_id, wrapped_fek, kek_generation, owner)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    &file_id.0[..],
                    wrapped,
                    generation as i64,
                    owner.map(|o| &o[..])
                ])
            } else {
                conn.prepare_cached(
                    "INSERT INTO file_keys (file_id, wrapped_fek, kek_generation)
                     VALUES (?1, ?2, ?3)",
                )?
                .execute(params![&file_id.0[..], wrapped, generation as i64])
            }
        })?;
        Ok(())
    }

    /// A file's wrapped FEK and the KEK generation it was wrapped under.
    pub fn file_key(&self, file_id: &FileId) -> Result<Option<(Vec<u8>, u64)>> {
        wrapped_row(
            &self.conn.lock(),
            "SELECT wrapped_fek, kek_generation FROM file_keys WHERE file_id = ?1",
            file_id,
        )
    }

    /// Deletes a file's key row (crypto-shredding: `secure_delete` overwrites it).
    pub fn delete_file_key(&self, file_id: &FileId) -> Result<bool> {
        let n = self.write_retrying_when_full(|conn| {
            conn.prepare_cached("DELETE FROM file_keys WHERE file_id = ?1")?
                .execute([&file_id.0[..]])
        })?;
        Ok(n > 0)
    }

    /// Deletes the key rows of many files in one transaction; returns how many existed.
    pub fn delete_file_keys(&self, file_ids: &[FileId]) -> Result<usize> {
        self.write_retrying_when_full(|conn| {
            let tx = conn.unchecked_transaction()?;
            let mut n = 0;
            {
                let mut stmt = tx.prepare_cached("DELETE FROM file_keys WHERE file_id = ?1")?;
                for id in file_ids {
                    n += stmt.execute([&id.0[..]])?;
                }
            }
            tx.commit()?;
            Ok(n)
        })
    }

    /// Every file id with a key row, for fsck.
    pub fn file_ids(&self) -> Result<Vec<FileId>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT file_id FROM file_keys")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))?
            .map(|r| {
                r.map_err(KeystoreError::from)
                    .and_then(|v| FileId::from_slice(&v).ok_or_else(|| corrupt("file_id length")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ids)
    }
}

/// The `(wrapped_fek, kek_generation)` row of `file_id` that `sql` selects (from `file_keys`
/// or `quarantined_keys`).
pub(super) fn wrapped_row(
    conn: &Connection,
    sql: &str,
    file_id: &FileId,
) -> Result<Option<(Vec<u8>, u64)>> {
    let row = conn
        .prepare_cached(sql)?
        // as_bytes accepts TEXT too: a row rewritten as text by hand is tampered, and must
        // fail authentication rather than surface as a type error.
        .query_row([&file_id.0[..]], |r| {
            Ok((
                r.get_ref(0)?
                    .as_bytes()
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default(),
                r.get::<_, i64>(1)?,
            ))
        })
        .optional()?;
    Ok(row.map(|(w, g)| (w, g as u64)))
}
