//! Unlocking: trying one secret on the slots of one kind until one yields the KEK. The work a
//! tampered slot table can make an unlock spend is bounded here, before any hashing.

use super::{MAX_SLOTS, SlotKind, SlotRecord};
use crate::crypto::{CryptoError, Kek, wrap};
use crate::keystore::store::{HeaderStore, corrupt};
use crate::keystore::{KeystoreError, Result};

/// Most Argon2id work one unlock may spend over all the slots it would try, as memory × passes
/// in KiB: 8 GiB·passes. Each slot's parameters are bounded on their own, but a tampered store
/// could put many costly slots before the real one (eight 1 GiB slots: 18 s and GiB of
/// memory). 32 slots at the defaults (64 MiB, 3 passes) take 6 GiB·passes.
pub const MAX_UNLOCK_WORK_KIB: u64 = 8 * 1024 * 1024;

impl HeaderStore {
    /// Tries the password `secret` on every password slot (or only `only_slot`); see
    /// [`HeaderStore::unlock_with`].
    pub fn unlock(&self, secret: &[u8], only_slot: Option<u32>) -> Result<(u32, Kek)> {
        self.unlock_with(SlotKind::Password, secret, only_slot)
    }

    /// Tries `secret` on every slot of `kind` (or only `only_slot`) and returns the KEK of the
    /// first that opens. A password is never tried on a key-file slot nor the reverse. A slot
    /// whose KDF parameters are out of bounds is reported as such, never hashed.
    pub fn unlock_with(
        &self,
        kind: SlotKind,
        secret: &[u8],
        only_slot: Option<u32>,
    ) -> Result<(u32, Kek)> {
        let volume_id = self.params()?.volume_id;
        let slots = self.slots()?;
        if slots.is_empty() {
            return Err(corrupt("no key slots"));
        }
        check_unlock_work(&slots, kind, only_slot)?;
        let mut bounds_error = None;
        for slot in slots
            .iter()
            .filter(|s| s.kind == kind && only_slot.is_none_or(|id| id == s.slot_id))
        {
            let key = match slot.slot_key(secret) {
                Ok(k) => k,
                Err(
                    e @ KeystoreError::Crypto(
                        CryptoError::KdfParamsOutOfBounds { .. } | CryptoError::Malformed(_),
                    ),
                ) => {
                    bounds_error = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match wrap::unwrap_kek(&key, &slot.wrapped_kek, &volume_id) {
                Ok(kek) => return Ok((slot.slot_id, kek)),
                Err(CryptoError::AuthFailed) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(bounds_error.unwrap_or(KeystoreError::WrongPassword))
    }
}

/// Refuses, before any hashing, a slot table that is too large or whose password slots (those
/// of `kind`, or only `only_slot`) would cost more than [`MAX_UNLOCK_WORK_KIB`] to try.
fn check_unlock_work(slots: &[SlotRecord], kind: SlotKind, only_slot: Option<u32>) -> Result<()> {
    if let Some(extra) = slots.get(MAX_SLOTS) {
        return Err(corrupt(format!(
            "{} key slots, more than the {MAX_SLOTS} a volume may have (slot {} and after): \
             the store was tampered with",
            slots.len(),
            extra.slot_id
        )));
    }
    // Only Argon2id costs time and memory worth bounding; the other kinds derive in
    // microseconds.
    let costly = match kind {
        SlotKind::Password => true,
        SlotKind::Keyfile | SlotKind::Transit => false,
    };
    if !costly {
        return Ok(());
    }
    let mut work = 0u64;
    for slot in slots
        .iter()
        .filter(|s| s.kind == kind && only_slot.is_none_or(|id| id == s.slot_id))
        .filter(|s| s.kdf.check(true).is_ok())
    {
        work += u64::from(slot.kdf.m_kib) * u64::from(slot.kdf.t);
        if work > MAX_UNLOCK_WORK_KIB {
            return Err(corrupt(format!(
                "trying the password slots up to slot {} would take {} MiB·passes of Argon2id, \
                 more than the {} MiB·passes one unlock may spend: the store was tampered with \
                 (`--slot N` tries one slot alone)",
                slot.slot_id,
                work / 1024,
                MAX_UNLOCK_WORK_KIB / 1024
            )));
        }
    }
    Ok(())
}
