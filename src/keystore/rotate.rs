//! KEK rotation: every wrapped FEK, the name key and the kept slot are re-wrapped under a new
//! KEK in ONE SQLite transaction, so a crash at any point leaves the store under the old KEK or
//! under the new one, never a mix. No ciphertext file is touched.

use rusqlite::{Connection, TransactionBehavior, params};

use super::slots::SlotRecord;
use super::store::{HeaderStore, corrupt};
use super::{KeystoreError, Result};
use crate::crypto::{CryptoError, Kek, wrap};
use crate::format::FileId;

/// Rows read per batch. Updating rows while a `SELECT` over the same table is still stepping
/// is not something to rely on, so rows are read in key order in batches, then updated.
const BATCH_ROWS: usize = 4096;
/// Page cache for the rotation's connection: 256 MiB (negative = KiB), enough to keep a
/// million-row `file_keys` b-tree in memory for the whole transaction instead of spilling
/// dirty pages to the WAL mid-way.
const ROTATE_CACHE_KIB: i64 = 256 * 1024;

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateReport {
    /// FEK rows re-wrapped.
    pub file_keys: u64,
    /// The new KEK generation.
    pub generation: u64,
    /// Slots removed because their secret was not supplied.
    pub dropped_slots: Vec<u32>,
}

/// Progress callback: (rows done, rows in total).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

impl HeaderStore {
    /// Re-wraps everything under `new_kek`. `keep` is the slot whose secret was supplied,
    /// already rebuilt around `new_kek`; every other slot still wraps `old_kek`, so they are
    /// deleted when `drop_others` is set, and the rotation is refused otherwise.
    pub fn rotate(
        &self,
        old_kek: &Kek,
        new_kek: &Kek,
        keep: &SlotRecord,
        drop_others: bool,
        progress: Progress<'_>,
    ) -> Result<RotateReport> {
        let params = self.params()?;
        let others: Vec<u32> = self
            .slots()?
            .iter()
            .map(|s| s.slot_id)
            .filter(|&id| id != keep.slot_id)
            .collect();
        if !others.is_empty() && !drop_others {
            return Err(KeystoreError::OtherSlots(others));
        }
        let generation = params.kek_generation + 1;
        let mut conn = self.conn.lock();
        conn.pragma_update(None, "cache_size", -ROTATE_CACHE_KIB)?;
        let result = (|| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let file_keys = rewrap_file_keys(
                &tx,
                "file_keys",
                old_kek,
                new_kek,
                generation,
                progress,
                false,
            )?;
            if self.has_v3_schema() {
                // Quarantined rows may be needed again: they follow the KEK too.
                rewrap_file_keys(
                    &tx,
                    "quarantined_keys",
                    old_kek,
                    new_kek,
                    generation,
                    &mut |_, _| {},
                    true,
                )?;
            }
            // Re-wrapped as the volume's format requires: bound to every parameter from v3 on.
            let name_key = params.unwrap_name_key(old_kek)?;
            tx.execute(
                "UPDATE volume SET wrapped_name_key = ?1, kek_generation = ?2 WHERE id = 1",
                params![params.wrap_name_key(new_kek, &name_key)?, generation as i64],
            )?;
            let n = tx.execute(
                "UPDATE slots SET kind = ?2, salt = ?3, argon2_m = ?4, argon2_t = ?5,
                    argon2_p = ?6, wrapped_kek = ?7 WHERE slot_id = ?1",
                params![
                    keep.slot_id,
                    keep.kind.to_string(),
                    keep.salt,
                    keep.kdf.m_kib,
                    keep.kdf.t,
                    keep.kdf.p,
                    keep.wrapped_kek
                ],
            )?;
            if n != 1 {
                return Err(KeystoreError::NoSuchSlot(keep.slot_id));
            }
            if let Some(p) = &keep.params {
                // A kept Transit slot may come back with a new Vault ciphertext.
                tx.execute(
                    "UPDATE slots SET params = ?2 WHERE slot_id = ?1",
                    params![keep.slot_id, p],
                )?;
            }
            tx.execute("DELETE FROM slots WHERE slot_id != ?1", [keep.slot_id])?;
            tx.commit()?;
            Ok(file_keys)
        })();
        conn.execute_batch(super::schema::CONNECTION_PRAGMAS)?;
        drop(conn);
        let file_keys = result?;
        self.checkpoint()?;
        Ok(RotateReport {
            file_keys,
            generation,
            dropped_slots: others,
        })
    }
}

/// Re-wraps every row of `table` (`file_keys` or `quarantined_keys`, which share these
/// columns) inside the caller's transaction; returns the row count. With `skip_bad`, a row
/// that does not unwrap under the old KEK is left as it is (a quarantined row may be garbage:
/// it is unreadable under any KEK, and must not block a rotation); without, it fails it.
fn rewrap_file_keys(
    conn: &Connection,
    table: &str,
    old_kek: &Kek,
    new_kek: &Kek,
    generation: u64,
    progress: Progress<'_>,
    skip_bad: bool,
) -> Result<u64> {
    let total: i64 = conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))?;
    let total = total as u64;
    let mut select = conn.prepare(&format!(
        "SELECT file_id, wrapped_fek FROM {table} WHERE file_id > ?1 ORDER BY file_id LIMIT ?2"
    ))?;
    let mut update = conn.prepare(&format!(
        "UPDATE {table} SET wrapped_fek = ?2, kek_generation = ?3 WHERE file_id = ?1"
    ))?;
    let mut after: Vec<u8> = Vec::new();
    let mut done = 0u64;
    progress(0, total);
    loop {
        let batch = select
            .query_map(params![after, BATCH_ROWS as i64], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get_ref(1)?
                        .as_bytes()
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default(),
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let Some((last, _)) = batch.last() else {
            break;
        };
        after = last.clone();
        for (id, wrapped) in &batch {
            let file_id = FileId::from_slice(id).ok_or_else(|| corrupt("file_id length"))?;
            let fek = match wrap::unwrap_fek(old_kek, wrapped, &file_id) {
                Ok(k) => k,
                Err(CryptoError::AuthFailed | CryptoError::Malformed(_)) if skip_bad => {
                    log::warn!("quarantined key row {file_id} does not unwrap: left as it is");
                    continue;
                }
                Err(CryptoError::AuthFailed | CryptoError::Malformed(_)) => {
                    return Err(KeystoreError::TamperedKey(file_id));
                }
                Err(other) => return Err(other.into()),
            };
            let rewrapped = wrap::wrap_fek(new_kek, &fek, &file_id)?;
            update.execute(params![id, rewrapped, generation as i64])?;
        }
        done += batch.len() as u64;
        progress(done, total);
    }
    Ok(done)
}
