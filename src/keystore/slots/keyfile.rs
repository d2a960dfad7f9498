//! Key-file slots: the slot key is HKDF-SHA256 of the key file's bytes under the slot's salt;
//! the Argon2 columns hold 0 (a key file is random already: nothing to slow down).

use super::{NO_KDF, SlotKind, SlotRecord};
use crate::crypto::kdf::{SALT_LEN, keyfile_slot_key};
use crate::crypto::{Kek, SlotKey, os_random, wrap};
use crate::keystore::Result;
use crate::keystore::store::now_secs;

impl SlotRecord {
    /// A new key-file slot wrapping `kek`: random salt, key from HKDF-SHA256 of the file.
    pub fn new_keyfile(
        slot_id: u32,
        label: &str,
        keyfile: &[u8],
        kek: &Kek,
        volume_id: &[u8; 16],
    ) -> Result<Self> {
        let mut salt = vec![0u8; SALT_LEN];
        os_random(&mut salt)?;
        let slot_key = keyfile_slot_key(keyfile, &salt)?;
        let wrapped_kek = wrap::wrap_kek(&slot_key, kek, volume_id)?;
        Ok(SlotRecord {
            slot_id,
            kind: SlotKind::Keyfile,
            label: label.to_owned(),
            salt,
            kdf: NO_KDF,
            wrapped_kek,
            created: now_secs(),
            params: None,
        })
    }
}

/// The slot key of key-file slot `slot`.
pub(super) fn slot_key(slot: &SlotRecord, keyfile: &[u8]) -> Result<SlotKey> {
    Ok(keyfile_slot_key(keyfile, &slot.salt)?)
}
