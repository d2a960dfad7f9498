//! Password slots: the slot key is Argon2id of the password under the slot's salt and its
//! own stored parameters (bounded before any hashing: see `unlock.rs`).

use super::{SlotKind, SlotRecord};
use crate::crypto::kdf::SALT_LEN;
use crate::crypto::{KdfParams, Kek, SlotKey, os_random, wrap};
use crate::keystore::Result;
use crate::keystore::store::now_secs;

impl SlotRecord {
    /// A new password slot wrapping `kek`: random salt, key derived with `kdf`.
    pub fn new_password(
        slot_id: u32,
        label: &str,
        password: &[u8],
        kdf: KdfParams,
        kek: &Kek,
        volume_id: &[u8; 16],
    ) -> Result<Self> {
        let mut salt = vec![0u8; SALT_LEN];
        os_random(&mut salt)?;
        let slot_key = kdf.derive(password, &salt)?;
        let wrapped_kek = wrap::wrap_kek(&slot_key, kek, volume_id)?;
        Ok(SlotRecord {
            slot_id,
            kind: SlotKind::Password,
            label: label.to_owned(),
            salt,
            kdf,
            wrapped_kek,
            created: now_secs(),
            params: None,
        })
    }
}

/// The slot key of password slot `slot`: the slow step, Argon2id.
pub(super) fn slot_key(slot: &SlotRecord, password: &[u8]) -> Result<SlotKey> {
    Ok(slot.kdf.derive(password, &slot.salt)?)
}
