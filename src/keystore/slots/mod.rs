//! Key slots: the rows of `slots`, each holding the KEK wrapped under a key derived from one
//! secret. This module owns the slot table (read, add, re-wrap, remove) and the dispatch from
//! a slot's [`SlotKind`] to the file of that kind; each kind lives in a file of its own
//! (`password.rs`, `keyfile.rs`, `transit.rs`) holding how a new slot of that kind is built
//! and how its slot key is derived from the secret given to unlock. Unlocking, which tries a
//! secret on the slots of one kind, is `unlock.rs`.
//!
//! A new slot kind is one new file here plus one arm in each `match` on [`SlotKind`] below
//! (none has a catch-all, so the compiler lists them), in `SlotKind::parse`, and wherever the
//! CLI describes or asks for a kind.
//!
//! Each change to the table is one statement or one transaction, so a crash leaves the old
//! slot table or the new one. Must not import `fuser` or touch the volume's files.

mod keyfile;
mod password;
mod transit;
mod unlock;

pub use unlock::MAX_UNLOCK_WORK_KIB;

use rusqlite::{Connection, TransactionBehavior, params};

use super::store::{HeaderStore, corrupt};
use super::{KeystoreError, Result};
use crate::crypto::{KdfParams, Kek, SlotKey};

/// Most key slots a volume may have, as LUKS2. A store with more was not made by cofferfs
/// (`keys add` refuses the next one): it is treated as tampered with.
pub const MAX_SLOTS: usize = 32;

/// What kind of secret opens a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// A password through Argon2id (`password.rs`).
    Password,
    /// A key file (32+ random bytes) through HKDF-SHA256; the Argon2 columns hold 0
    /// (`keyfile.rs`).
    Keyfile,
    /// A random slot key kept encrypted by a Vault/OpenBao Transit key: `slots.params` holds
    /// the Transit ciphertext and where it comes from ([`TransitParams`](super::TransitParams)); the secret given
    /// to unlock is the slot key the `decrypt` call returned. The salt is empty and the
    /// Argon2 columns hold 0. Older cofferfs refuse the store (unknown kind) rather than
    /// mis-read it (`transit.rs`).
    Transit,
}

impl SlotKind {
    /// The `slots.kind` column of this kind.
    fn as_str(self) -> &'static str {
        match self {
            SlotKind::Password => "password",
            SlotKind::Keyfile => "keyfile",
            SlotKind::Transit => "transit",
        }
    }

    /// The kind a `slots.kind` column names, if any. Public for the fuzz target over slot
    /// columns (`fuzz/fuzz_targets/slots.rs`): the column is untrusted.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "password" => Some(SlotKind::Password),
            "keyfile" => Some(SlotKind::Keyfile),
            "transit" => Some(SlotKind::Transit),
            // Not a kind: a string this build does not know (a newer cofferfs, or tampering).
            _ => None,
        }
    }
}

impl std::fmt::Display for SlotKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One key slot: the KEK wrapped under a key derived from one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRecord {
    /// Slot number, stable for the slot's life.
    pub slot_id: u32,
    /// Kind of secret.
    pub kind: SlotKind,
    /// Free text chosen by the user.
    pub label: String,
    /// Random salt of the KDF.
    pub salt: Vec<u8>,
    /// Argon2id parameters (all 0 for a key-file slot).
    pub kdf: KdfParams,
    /// The KEK wrapped under this slot's key.
    pub wrapped_kek: Vec<u8>,
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// `slots.params` (schema 2): the parameters of a slot kind that needs more than the
    /// columns above (a [`TransitParams`](super::TransitParams) for Transit); `None` for password and key-file slots.
    pub params: Option<String>,
}

/// The Argon2 columns of a slot whose key is not derived by Argon2id: all 0.
const NO_KDF: KdfParams = KdfParams {
    m_kib: 0,
    t: 0,
    p: 0,
};

impl SlotRecord {
    /// A new slot of the same kind, id, label and (for passwords) `kdf`, wrapping `kek` under
    /// `secret` with a fresh salt.
    pub fn rebuilt(
        &self,
        secret: &[u8],
        kdf: KdfParams,
        kek: &Kek,
        volume_id: &[u8; 16],
    ) -> Result<Self> {
        let mut s = match self.kind {
            SlotKind::Password => {
                Self::new_password(self.slot_id, &self.label, secret, kdf, kek, volume_id)?
            }
            SlotKind::Keyfile => {
                Self::new_keyfile(self.slot_id, &self.label, secret, kek, volume_id)?
            }
            // The same Vault ciphertext, so the same slot key: it re-wraps the new KEK.
            SlotKind::Transit => {
                let params = self.transit()?.expect("a Transit slot");
                Self::new_transit(self.slot_id, &self.label, secret, &params, kek, volume_id)?
            }
        };
        s.created = self.created;
        Ok(s)
    }

    /// Derives this slot's key from `secret` (for passwords the slow step: Argon2id).
    fn slot_key(&self, secret: &[u8]) -> Result<SlotKey> {
        match self.kind {
            SlotKind::Password => password::slot_key(self, secret),
            SlotKind::Keyfile => keyfile::slot_key(self, secret),
            SlotKind::Transit => transit::slot_key(secret),
        }
    }
}

impl HeaderStore {
    /// All key slots, by slot id.
    pub fn slots(&self) -> Result<Vec<SlotRecord>> {
        let v3 = self.has_v3_schema();
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(if v3 {
            "SELECT slot_id, kind, label, salt, argon2_m, argon2_t, argon2_p, wrapped_kek, created,
                params FROM slots ORDER BY slot_id"
        } else {
            "SELECT slot_id, kind, label, salt, argon2_m, argon2_t, argon2_p, wrapped_kek, created,
                NULL FROM slots ORDER BY slot_id"
        })?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                KdfParams {
                    m_kib: r.get(4)?,
                    t: r.get(5)?,
                    p: r.get(6)?,
                },
                r.get::<_, Vec<u8>>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, Option<String>>(9)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (slot_id, kind, label, salt, kdf, wrapped_kek, created, params) =
                row.map_err(|e| corrupt(format!("slots table: {e}")))?;
            let kind =
                SlotKind::parse(&kind).ok_or_else(|| corrupt(format!("slot kind {kind:?}")))?;
            out.push(SlotRecord {
                slot_id,
                kind,
                label,
                salt,
                kdf,
                wrapped_kek,
                created,
                params,
            });
        }
        Ok(out)
    }

    /// The lowest slot id not in use (as LUKS picks a free slot); refused when the volume has
    /// [`MAX_SLOTS`] already.
    pub fn free_slot_id(&self) -> Result<u32> {
        let used: Vec<u32> = self.slots()?.iter().map(|s| s.slot_id).collect();
        if used.len() >= MAX_SLOTS {
            return Err(KeystoreError::TooManySlots(used.len()));
        }
        Ok((0..)
            .find(|id| !used.contains(id))
            .expect("fewer than 2^32 slots"))
    }

    /// Adds a slot; its id must be free.
    pub fn add_slot(&self, slot: &SlotRecord) -> Result<()> {
        let conn = self.conn.lock();
        insert_slot_in(&conn, slot)
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

/// Inserts slot `s` on `conn` (inside the caller's transaction when `init` creates the store
/// or a rotation rewrites the table).
pub(in crate::keystore) fn insert_slot_in(conn: &Connection, s: &SlotRecord) -> Result<()> {
    let kind = s.kind.as_str();
    let columns: [&dyn rusqlite::ToSql; 9] = [
        &s.slot_id,
        &kind,
        &s.label,
        &s.salt,
        &s.kdf.m_kib,
        &s.kdf.t,
        &s.kdf.p,
        &s.wrapped_kek,
        &s.created,
    ];
    match &s.params {
        // Only schema 2 has the column; a v1 store is migrated by its first read-write
        // mount, and `add_transit_slot` refuses a v1 store.
        Some(params) => {
            let mut with_params = columns.to_vec();
            with_params.push(params);
            conn.execute(
                "INSERT INTO slots (slot_id, kind, label, salt, argon2_m, argon2_t, argon2_p,
                    wrapped_kek, created, params)
                    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                &*with_params,
            )?
        }
        None => conn.execute(
            "INSERT INTO slots (slot_id, kind, label, salt, argon2_m, argon2_t, argon2_p,
                wrapped_kek, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            &columns[..],
        )?,
    };
    Ok(())
}
