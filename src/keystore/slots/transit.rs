//! Vault/OpenBao Transit slots: the slot key is random, kept encrypted by a Transit key in
//! `slots.params` ([`TransitParams`]); the CLI asks Vault to decrypt it and hands the answer
//! in as the secret. The salt is empty and the Argon2 columns hold 0.

use super::{NO_KDF, SlotKind, SlotRecord};
use crate::crypto::{CryptoError, Kek, SlotKey, wrap};
use crate::keystore::Result;
use crate::keystore::store::{corrupt, now_secs};
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
        let wrapped_kek = wrap::wrap_kek(&self::slot_key(slot_key)?, kek, volume_id)?;
        Ok(SlotRecord {
            slot_id,
            kind: SlotKind::Transit,
            label: label.to_owned(),
            salt: Vec::new(),
            kdf: NO_KDF,
            wrapped_kek,
            created: now_secs(),
            params: Some(params.encode()),
        })
    }

    /// The Transit parameters of a Transit slot (`None` for other kinds); a Transit slot
    /// whose `params` do not parse is a damaged store.
    pub fn transit(&self) -> Result<Option<TransitParams>> {
        if self.kind != SlotKind::Transit {
            return Ok(None);
        }
        let text = self
            .params
            .as_deref()
            .ok_or_else(|| corrupt(format!("Transit slot {} has no params", self.slot_id)))?;
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
