//! Key-slot management on the header store: add, re-wrap and remove slots. Each change is one
//! statement or one transaction, so a crash leaves the old slot table or the new one.

use rusqlite::{TransactionBehavior, params};

use super::store::{HeaderStore, SlotRecord};
use super::{KeystoreError, Result};

impl HeaderStore {
    /// The lowest slot id not in use (as LUKS picks a free slot); refused when the volume has
    /// [`MAX_SLOTS`](super::store::MAX_SLOTS) already.
    pub fn free_slot_id(&self) -> Result<u32> {
        let used: Vec<u32> = self.slots()?.iter().map(|s| s.slot_id).collect();
        if used.len() >= super::store::MAX_SLOTS {
            return Err(KeystoreError::TooManySlots(used.len()));
        }
        Ok((0..)
            .find(|id| !used.contains(id))
            .expect("fewer than 2^32 slots"))
    }

    /// Adds a slot; its id must be free.
    pub fn add_slot(&self, slot: &SlotRecord) -> Result<()> {
        let conn = self.conn.lock();
        Self::insert_slot_in(&conn, slot)
    }

    /// Replaces the secret of an existing slot (salt, KDF parameters, wrapped KEK, kind); its
    /// label and creation time stay.
    pub fn replace_slot_secret(&self, slot: &SlotRecord) -> Result<()> {
        let n = self.conn.lock().execute(
            "UPDATE slots SET kind = ?2, salt = ?3, argon2_m = ?4, argon2_t = ?5, argon2_p = ?6,
                wrapped_kek = ?7 WHERE slot_id = ?1",
            params![
                slot.slot_id,
                slot.kind.to_string(),
                slot.salt,
                slot.kdf.m_kib,
                slot.kdf.t,
                slot.kdf.p,
                slot.wrapped_kek
            ],
        )?;
        if let Some(p) = &slot.params {
            self.replace_slot_params(slot.slot_id, p)?;
        }
        if n == 0 {
            return Err(KeystoreError::NoSuchSlot(slot.slot_id));
        }
        Ok(())
    }

    /// Replaces the `params` of slot `slot_id` alone (`keys rewrap`: a new Transit ciphertext
    /// of the same slot key); one statement.
    pub fn replace_slot_params(&self, slot_id: u32, params: &str) -> Result<()> {
        let n = self.conn.lock().execute(
            "UPDATE slots SET params = ?2 WHERE slot_id = ?1",
            params![slot_id, params],
        )?;
        if n == 0 {
            return Err(KeystoreError::NoSuchSlot(slot_id));
        }
        Ok(())
    }

    /// Removes a slot; refuses to remove the last one (the volume would be locked forever).
    /// The check and the delete are one transaction.
    pub fn remove_slot(&self, slot_id: u32) -> Result<()> {
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let total: i64 = tx.query_row("SELECT count(*) FROM slots", [], |r| r.get(0))?;
        let n = tx.execute("DELETE FROM slots WHERE slot_id = ?1", [slot_id])?;
        if n == 0 {
            return Err(KeystoreError::NoSuchSlot(slot_id));
        }
        if total <= 1 {
            return Err(KeystoreError::LastSlot(slot_id));
        }
        tx.commit()?;
        Ok(())
    }
}
