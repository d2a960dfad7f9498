//! KEK rotation, store side. A format v3 store rotates *incrementally*, so that a mounted
//! volume never waits for more than one short transaction:
//!
//! 1. **Begin** (one transaction, [`HeaderStore::begin_rotation`]): `volume.kek_generation`
//!    becomes g+1, the name key is re-wrapped under the new KEK, the kept slots (already rebuilt
//!    around the new KEK by the caller) replace the old ones and the others are deleted, and
//!    `volume.previous_kek` holds the old KEK wrapped under the new one
//!    ([`wrap::wrap_previous_kek`]: bound to the volume id and both generations). From then on
//!    every slot opens the new KEK, and through it the old one.
//! 2. **Steps** ([`HeaderStore::rewrap_batch`]): the key rows of generation g, in `file_keys`
//!    then in `quarantined_keys`, are re-wrapped to g+1 a batch at a time, in file-id order,
//!    each batch its own `BEGIN IMMEDIATE` transaction (the wrapped key and its generation
//!    change in the same `UPDATE`). New rows are written at g+1 from the begin on.
//! 3. **Finish** ([`HeaderStore::finish_rotation`]): once a whole pass over both tables found
//!    nothing left, one transaction sets `previous_kek` NULL; the caller zeroizes the old KEK.
//!
//! A crash anywhere leaves a store that opens with any kept slot and reads every row: before
//! the begin commits it is wholly at g, after it every row is at g or g+1 and both KEKs are
//! reachable. The keyring resumes where the rows say (`keystore::keyring`).
//!
//! A schema 1 store (format v1/v2, not migrated yet) has no `previous_kek` column: it rotates
//! the old way, every row in ONE transaction ([`HeaderStore::rotate_at_once`]).

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::slots::SlotRecord;
use super::store::{HeaderStore, corrupt};
use super::{KeystoreError, Result};
use crate::crypto::{CryptoError, Kek, wrap};
use crate::format::FileId;

/// Rows re-wrapped per step by default: about 5 ms of work in a release build, so a create
/// that arrives during a step waits for no more than that (see docs/PERFORMANCE.md).
pub const DEFAULT_BATCH_ROWS: usize = 1000;
/// Rows read per batch by the one-transaction rotation of a schema 1 store. Updating rows
/// while a `SELECT` over the same table is still stepping is not something to rely on, so rows
/// are read in key order in batches, then updated.
const AT_ONCE_BATCH_ROWS: usize = 4096;
/// Page cache for the one-transaction rotation: 256 MiB (negative = KiB), enough to keep a
/// million-row `file_keys` b-tree in memory for the whole transaction.
const AT_ONCE_CACHE_KIB: i64 = 256 * 1024;

/// The two tables of key rows, in the order a rotation pass visits them.
pub const KEY_ROW_TABLES: [KeyRowTable; 2] = [KeyRowTable::Live, KeyRowTable::Quarantined];

/// A table of key rows (`file_keys` or `quarantined_keys`, which share the columns used here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRowTable {
    /// `file_keys`: the key of every file.
    Live,
    /// `quarantined_keys` (format v3): rows `fsck --repair` moved aside.
    Quarantined,
}

impl KeyRowTable {
    fn name(self) -> &'static str {
        match self {
            KeyRowTable::Live => "file_keys",
            KeyRowTable::Quarantined => "quarantined_keys",
        }
    }
}

/// What a whole rotation did (`cofferfs rotate` prints it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotateReport {
    /// Key rows re-wrapped (live and quarantined).
    pub file_keys: u64,
    /// The new KEK generation.
    pub generation: u64,
    /// Slots removed because their secret was not supplied.
    pub dropped_slots: Vec<u32>,
}

/// Progress callback: (rows done, rows in total).
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// What one batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// Rows visited (of any generation); fewer than asked: the table ends here.
    pub visited: usize,
    /// Rows re-wrapped from the old generation to the new one.
    pub rewrapped: u64,
    /// Quarantined rows of the old generation that unwrap under no KEK: garbage, moved to the
    /// new generation as they are (no KEK can open them, so nothing is lost).
    pub unreadable: u64,
    /// The last file id visited: the next batch starts after it.
    pub last: Option<Vec<u8>>,
}

/// Key rows per generation while a rotation is pending (`info`, `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationCounts {
    /// The generation rows are re-wrapped from.
    pub from: u64,
    /// The generation rows are re-wrapped to (the volume's).
    pub to: u64,
    /// Rows (live and quarantined) still at `from`.
    pub left: u64,
    /// Rows at `to`: re-wrapped, or created since the rotation began.
    pub done: u64,
}

impl HeaderStore {
    /// `volume.previous_kek`: the old KEK wrapped under the current one while a rotation is
    /// pending, `None` otherwise (and always on a schema 1 store, which has no such column).
    pub fn previous_kek(&self) -> Result<Option<Vec<u8>>> {
        if !self.has_v3_schema() {
            return Ok(None);
        }
        let conn = self.conn.lock();
        let w: Option<Option<Vec<u8>>> = conn
            .query_row("SELECT previous_kek FROM volume WHERE id = 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| corrupt(format!("volume.previous_kek: {e}")))?;
        Ok(w.flatten())
    }

    /// Step 1, one transaction: the volume moves to generation `from + 1` under `new_kek`.
    /// `wrapped_name_key` is the name key under `new_kek`, `previous` the old KEK under it;
    /// `kept` replace their slots, `dropped` are deleted. Refused unless the store is at
    /// generation `from` with no rotation pending (it did not change underneath the caller).
    pub fn begin_rotation(
        &self,
        from: u64,
        wrapped_name_key: &[u8],
        previous: &[u8],
        kept: &[SlotRecord],
        dropped: &[u32],
    ) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE volume SET kek_generation = ?2, wrapped_name_key = ?3, previous_kek = ?4
             WHERE id = 1 AND kek_generation = ?1 AND previous_kek IS NULL",
            params![from as i64, (from + 1) as i64, wrapped_name_key, previous],
        )?;
        if n != 1 {
            return Err(corrupt(format!(
                "the volume is no longer at KEK generation {from} with no rotation pending"
            )));
        }
        replace_slots(&tx, kept, dropped)?;
        tx.commit()?;
        Ok(())
    }

    /// Step 2, one short `BEGIN IMMEDIATE` transaction: visits up to `max_rows` rows of
    /// `table` after file id `after` (in file-id order) and re-wraps those of generation
    /// `from` under `new_kek` as generation `to`. Rows of any other generation are only
    /// stepped over, so a batch costs at most `max_rows` row reads however far a resumed
    /// rotation had got. A live row that does not unwrap fails the batch (nothing of it is
    /// committed) with [`KeystoreError::TamperedKey`]; a quarantined one is garbage and moves
    /// to `to` as it is (see [`Batch::unreadable`]).
    #[allow(clippy::too_many_arguments)]
    pub fn rewrap_batch(
        &self,
        table: KeyRowTable,
        after: &[u8],
        old_kek: &Kek,
        new_kek: &Kek,
        from: u64,
        to: u64,
        max_rows: usize,
    ) -> Result<Batch> {
        if table == KeyRowTable::Quarantined && !self.has_v3_schema() {
            return Ok(Batch::default());
        }
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let keys = Rewrap {
            old_kek,
            new_kek,
            from: Some(from),
            to,
        };
        let batch = keys.batch(&tx, table, after, max_rows)?;
        tx.commit()?;
        Ok(batch)
    }

    /// Step 3, one transaction: the rotation to generation `to` is over, `previous_kek` goes.
    /// `still_valid` runs inside the transaction (the connection is held): when it says no, a
    /// row may have moved behind the pass (see `quarantine::key_row_moves`) and nothing is
    /// changed (returns false). The caller then runs another pass.
    pub fn finish_rotation(&self, to: u64, still_valid: impl FnOnce() -> bool) -> Result<bool> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !still_valid() {
            return Ok(false);
        }
        let n = tx.execute(
            "UPDATE volume SET previous_kek = NULL WHERE id = 1 AND kek_generation = ?1",
            [to as i64],
        )?;
        if n != 1 {
            return Err(corrupt(format!(
                "the volume left KEK generation {to} during its rotation"
            )));
        }
        tx.commit()?;
        Ok(true)
    }

    /// Counts the key rows of a pending rotation (both tables, generation `to - 1` and `to`),
    /// or `None` when none is pending. A full scan of both tables (0.2 s for a million rows):
    /// for `info` and `status`, never for a step.
    pub fn rotation_counts(&self) -> Result<Option<RotationCounts>> {
        if self.previous_kek()?.is_none() {
            return Ok(None);
        }
        let to = self.params()?.kek_generation;
        let from = to.saturating_sub(1);
        let conn = self.conn.lock();
        let (mut left, mut done) = (0u64, 0u64);
        for table in KEY_ROW_TABLES {
            let (l, d): (i64, i64) = conn.query_row(
                &format!(
                    "SELECT count(*) FILTER (WHERE kek_generation = ?1),
                            count(*) FILTER (WHERE kek_generation = ?2) FROM {}",
                    table.name()
                ),
                params![from as i64, to as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            left += l as u64;
            done += d as u64;
        }
        Ok(Some(RotationCounts {
            from,
            to,
            left,
            done,
        }))
    }

    /// The rotation of a schema 1 store (format v1/v2 not migrated yet: no `previous_kek`):
    /// every row, the name key and the slots in ONE transaction, so a crash leaves the store
    /// wholly at the old generation or wholly at the new one. `wrapped_name_key` is the name
    /// key under `new_kek`. Returns the rows re-wrapped.
    pub fn rotate_at_once(
        &self,
        old_kek: &Kek,
        new_kek: &Kek,
        wrapped_name_key: &[u8],
        kept: &[SlotRecord],
        dropped: &[u32],
        progress: Progress<'_>,
    ) -> Result<u64> {
        let generation = self.params()?.kek_generation + 1;
        let mut conn = self.conn.lock();
        conn.pragma_update(None, "cache_size", -AT_ONCE_CACHE_KIB)?;
        let result = (|| -> Result<u64> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let total: i64 = tx.query_row("SELECT count(*) FROM file_keys", [], |r| r.get(0))?;
            // Every row, whatever its generation says: before this round the column was not
            // read, so a row is whatever the one KEK opens.
            let keys = Rewrap {
                old_kek,
                new_kek,
                from: None,
                to: generation,
            };
            let mut after = Vec::new();
            let mut done = 0u64;
            progress(0, total as u64);
            loop {
                let b = keys.batch(&tx, KeyRowTable::Live, &after, AT_ONCE_BATCH_ROWS)?;
                done += b.rewrapped;
                progress(done, total as u64);
                match b.last {
                    Some(last) if b.visited == AT_ONCE_BATCH_ROWS => after = last,
                    _ => break,
                }
            }
            tx.execute(
                "UPDATE volume SET wrapped_name_key = ?1, kek_generation = ?2 WHERE id = 1",
                params![wrapped_name_key, generation as i64],
            )?;
            replace_slots(&tx, kept, dropped)?;
            tx.commit()?;
            Ok(done)
        })();
        conn.execute_batch(super::schema::CONNECTION_PRAGMAS)?;
        drop(conn);
        let done = result?;
        self.checkpoint()?;
        Ok(done)
    }
}

/// Writes the kept slots over their old records and deletes the dropped ones.
fn replace_slots(conn: &Connection, kept: &[SlotRecord], dropped: &[u32]) -> Result<()> {
    for keep in kept {
        let n = conn.execute(
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
            // A kept Transit slot comes back with a new Vault ciphertext.
            conn.execute(
                "UPDATE slots SET params = ?2 WHERE slot_id = ?1",
                params![keep.slot_id, p],
            )?;
        }
    }
    for id in dropped {
        conn.execute("DELETE FROM slots WHERE slot_id = ?1", [id])?;
    }
    Ok(())
}

/// The keys of one re-wrap: rows of generation `from` (every row when `None`) go from
/// `old_kek` to `new_kek` as generation `to`.
struct Rewrap<'a> {
    old_kek: &'a Kek,
    new_kek: &'a Kek,
    from: Option<u64>,
    to: u64,
}

impl Rewrap<'_> {
    /// One batch inside the caller's transaction.
    fn batch(
        &self,
        conn: &Connection,
        table: KeyRowTable,
        after: &[u8],
        max_rows: usize,
    ) -> Result<Batch> {
        let name = table.name();
        let rows = conn
            .prepare_cached(&format!(
                "SELECT file_id, wrapped_fek, kek_generation FROM {name}
                 WHERE file_id > ?1 ORDER BY file_id LIMIT ?2"
            ))?
            .query_map(params![after, max_rows as i64], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    // as_bytes accepts TEXT too: a row rewritten as text is tampered, and
                    // must fail authentication rather than surface as a type error.
                    r.get_ref(1)?
                        .as_bytes()
                        .map(<[u8]>::to_vec)
                        .unwrap_or_default(),
                    r.get::<_, i64>(2)?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut update = conn.prepare_cached(&format!(
            "UPDATE {name} SET wrapped_fek = ?2, kek_generation = ?3 WHERE file_id = ?1"
        ))?;
        let mut move_only = conn.prepare_cached(&format!(
            "UPDATE {name} SET kek_generation = ?2 WHERE file_id = ?1"
        ))?;
        // One key schedule per KEK for the whole batch, not two per row.
        let old_kek = wrap::PreparedKek::new(self.old_kek);
        let new_kek = wrap::PreparedKek::new(self.new_kek);
        let mut batch = Batch {
            visited: rows.len(),
            last: rows.last().map(|r| r.0.clone()),
            ..Batch::default()
        };
        for (id, wrapped, generation) in &rows {
            if self.from.is_some_and(|f| f as i64 != *generation) {
                continue;
            }
            let file_id = FileId::from_slice(id).ok_or_else(|| corrupt("file_id length"))?;
            let fek = match old_kek.unwrap_fek(wrapped, &file_id) {
                Ok(k) => k,
                Err(CryptoError::AuthFailed | CryptoError::Malformed(_))
                    if table == KeyRowTable::Quarantined =>
                {
                    log::warn!("quarantined key row {file_id} does not unwrap: left as it is");
                    move_only.execute(params![id, self.to as i64])?;
                    batch.unreadable += 1;
                    continue;
                }
                Err(CryptoError::AuthFailed | CryptoError::Malformed(_)) => {
                    return Err(KeystoreError::TamperedKey(file_id));
                }
                Err(other) => return Err(other.into()),
            };
            let rewrapped = new_kek.wrap_fek(&fek, &file_id)?;
            update.execute(params![id, rewrapped, self.to as i64])?;
            batch.rewrapped += 1;
        }
        Ok(batch)
    }
}
