//! Vault/OpenBao Transit slots: the slot key is random, kept encrypted by a Transit key in
//! `slots.params` ([`TransitParams`]); the CLI asks Vault to decrypt it and hands the answer
//! in as the secret. The salt is empty and the Argon2 columns hold 0.

use super::{SlotKind, SlotRecord};
use crate::crypto::{CryptoError, Kek, SlotKey};
use crate::keystore::Result;
use crate::keystore::store::corrupt;
use crate::keystore::transit_params::TransitParams;

impl SlotRecord {
    /// A new Transit slot wrapping `kek` under `slot_key`, the random key that Vault encrypted
    /// into `params.ciphertext`. The KEK itself never goes to Vault: Vault's answer is only
    /// trusted once the KEK it opens authenticates (AES-GCM over `wrapped_kek`, bound to the
    /// volume id), so a wrong or substituted ciphertext can never yield a wrong KEK.
    pub fn new_transit(
        slot_id: u32,
        label: &str,
        slot_key: &[u8],
        params: &TransitParams,
        kek: &Kek,
        volume_id: &[u8; 16],
    ) -> Result<Self> {
        Self::new_service(
            SlotKind::Transit,
            slot_id,
            label,
            &self::slot_key(slot_key)?,
            params.encode(),
            kek,
            volume_id,
        )
    }

    /// The Transit parameters of a Transit slot (`None` for other kinds); a Transit slot
    /// whose `params` do not parse is a damaged store.
    pub fn transit(&self) -> Result<Option<TransitParams>> {
        let Some(text) = self.service_params(SlotKind::Transit)? else {
            return Ok(None);
        };
        TransitParams::decode(text)
            .map(Some)
            .map_err(|e| corrupt(format!("Transit slot {}: params: {e}", self.slot_id)))
    }
}

/// The slot key of a Transit slot: Vault's answer itself, which must be 32 bytes.
pub(super) fn slot_key(vault_answer: &[u8]) -> Result<SlotKey> {
    Ok(SlotKey::from_slice(vault_answer)
        .ok_or(CryptoError::Malformed("a Transit slot key is 32 bytes"))?)
}
