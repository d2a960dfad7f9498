//! Key wrapping: `nonce (12) ‖ AES-256-GCM(wrapping key, key bytes, aad = label ‖ context) ‖ tag (16)`.
//!
//! The associated data names what is wrapped (a domain label) and for what (the file id of a
//! FEK, the volume id of a KEK or name key), so a wrapped key copied into another row, slot or
//! volume fails to unwrap. Nonces are random per wrap: re-wrapping never repeats one.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
use zeroize::Zeroizing;

use ring::aead::{Aad, Nonce, Tag};

use super::keys::{Fek, Kek, NameKey, SlotKey};
use super::ring_key::SecretKey;
use super::secure_mem::wipe_stack_below;
use super::{CryptoError, os_random};
use crate::format::FileId;
use crate::format::layout::{NONCE_LEN, TAG_LEN};

/// Domain label of a FEK wrapped under the KEK; the context is the file id.
pub const FEK_LABEL: &[u8] = b"cofferfs/v1/fek";
/// Domain label of the KEK wrapped under a slot key; the context is the volume id.
pub const KEK_LABEL: &[u8] = b"cofferfs/v1/kek";
/// Domain label of the name key wrapped under the KEK; the context is the volume id.
pub const NAME_KEY_LABEL: &[u8] = b"cofferfs/v1/name-key";
/// Domain label of the name key wrapped under the KEK from format v3 on; the context is the
/// volume id and every volume parameter that changes how bytes are written ([`VolumeBinding`]).
pub const NAME_KEY_V3_LABEL: &[u8] = b"cofferfs/v3/name-key";
/// Domain label of the previous KEK wrapped under the current one while a rotation is pending
/// (`volume.previous_kek`); the context is the volume id and both generations
/// ([`previous_kek_context`]), so the wrap opens for no other volume and no other rotation.
pub const PREVIOUS_KEK_LABEL: &[u8] = b"cofferfs/v3/previous-kek";
/// Bytes wrapping adds to a key.
pub const WRAP_OVERHEAD_LEN: usize = NONCE_LEN + TAG_LEN;
/// Length of a wrapped 32-byte key (FEK, KEK).
pub const WRAPPED_KEY_LEN: usize = 32 + WRAP_OVERHEAD_LEN;
/// Length of the wrapped 64-byte name key.
pub const WRAPPED_NAME_KEY_LEN: usize = 64 + WRAP_OVERHEAD_LEN;

fn aad(label: &[u8], context: &[u8]) -> Vec<u8> {
    [label, context].concat()
}

/// Wraps `key` under `wrapping_key` with an explicit nonce. Only test vectors choose the nonce;
/// everything else calls [`wrap`].
pub fn wrap_with_nonce(
    wrapping_key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    key: &[u8],
    aad: &[u8],
) -> Vec<u8> {
    let aead = Aes256Gcm::new_from_slice(wrapping_key).expect("32-byte key");
    let mut out = Vec::with_capacity(key.len() + WRAP_OVERHEAD_LEN);
    out.extend_from_slice(nonce);
    out.extend_from_slice(key);
    let tag = aead
        .encrypt_inout_detached(&(*nonce).into(), aad, (&mut out[NONCE_LEN..]).into())
        .expect("AES-GCM accepts a key-sized message");
    drop(aead);
    // The cipher's constructor and its block functions leave copies of the key schedule
    // (whose first round keys are the wrapping key itself: a KEK, most often) in their
    // frames; a daemon's stacks live as long as it does.
    wipe_stack_below();
    out.extend_from_slice(&tag);
    out
}

/// Wraps `key` under `wrapping_key` with a fresh random nonce.
pub fn wrap(wrapping_key: &[u8; 32], key: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    os_random(&mut nonce)?;
    Ok(wrap_with_nonce(wrapping_key, &nonce, key, aad))
}

/// Unwraps what [`wrap`] produced; the key bytes come back in a zeroizing buffer.
pub fn unwrap(
    wrapping_key: &[u8; 32],
    wrapped: &[u8],
    aad: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if wrapped.len() < WRAP_OVERHEAD_LEN {
        return Err(CryptoError::Malformed("wrapped key"));
    }
    let aead = Aes256Gcm::new_from_slice(wrapping_key).expect("32-byte key");
    let (nonce, rest) = wrapped.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut out = Zeroizing::new(body.to_vec());
    let opened = aead.decrypt_inout_detached(
        &nonce.try_into().expect("NONCE_LEN bytes"),
        aad,
        (&mut out[..]).into(),
        &tag.try_into().expect("TAG_LEN bytes"),
    );
    drop(aead);
    // As in `wrap_with_nonce`; the unwrapped key may have passed through those frames too.
    wipe_stack_below();
    opened.map_err(|_| CryptoError::AuthFailed)?;
    Ok(out)
}

/// A KEK with its AES-256-GCM key schedule built once, for wrapping or unwrapping many FEKs
/// in a row: a rotation rewraps every key row, and [`wrap_fek`] and [`unwrap_fek`] each build
/// the schedule and wipe 16 KiB of stack (`wipe_stack_below`) per call. This one builds and
/// wipes once (at [`new`](Self::new)), as the content cipher does for a file's chunks, and
/// uses *ring*'s AES-GCM like it: the same standard AES-256-GCM, so the same bytes as
/// [`wrap_fek`] (the unit tests check both ways).
pub struct PreparedKek {
    key: SecretKey,
}

impl std::fmt::Debug for PreparedKek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedKek(..)")
    }
}

impl Drop for PreparedKek {
    fn drop(&mut self) {
        // The frames of the seals and opens made with it, below the frame that drops it (the
        // one that called them), may hold copies of the schedule: overwritten here, once for
        // all of them. The schedule itself goes with its slot.
        wipe_stack_below();
    }
}

impl PreparedKek {
    /// `kek`'s key schedule, in wiped memory.
    pub fn new(kek: &Kek) -> Self {
        PreparedKek {
            key: SecretKey::new(kek.expose()),
        }
    }

    /// [`wrap_fek`] under this KEK, with nonce `nonce`: only [`Self::wrap_fek`] (a fresh random
    /// one) and the tests choose it.
    fn wrap_fek_with_nonce(&self, fek: &Fek, file_id: &FileId, nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
        let mut out = Vec::with_capacity(WRAPPED_KEY_LEN);
        out.extend_from_slice(nonce);
        out.extend_from_slice(fek.expose());
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad(FEK_LABEL, &file_id.0)),
                &mut out[NONCE_LEN..],
            )
            .expect("AES-GCM accepts a key-sized message");
        out.extend_from_slice(tag.as_ref());
        out
    }

    /// [`wrap_fek`] under this KEK, with a fresh random nonce.
    pub fn wrap_fek(&self, fek: &Fek, file_id: &FileId) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        os_random(&mut nonce)?;
        Ok(self.wrap_fek_with_nonce(fek, file_id, &nonce))
    }

    /// [`unwrap_fek`] under this KEK.
    pub fn unwrap_fek(&self, wrapped: &[u8], file_id: &FileId) -> Result<Fek, CryptoError> {
        if wrapped.len() != WRAPPED_KEY_LEN {
            return Err(CryptoError::Malformed("wrapped FEK"));
        }
        let (nonce, rest) = wrapped.split_at(NONCE_LEN);
        let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
        let mut out = Zeroizing::new([0u8; 32]);
        out.copy_from_slice(body);
        self.key
            .open_in_place_separate_tag(
                Nonce::try_assume_unique_for_key(nonce).expect("NONCE_LEN bytes"),
                Aad::from(aad(FEK_LABEL, &file_id.0)),
                Tag::try_from(tag).expect("TAG_LEN bytes"),
                &mut out[..],
                0..,
            )
            .map_err(|_| CryptoError::AuthFailed)?;
        Fek::from_slice(&out[..]).ok_or(CryptoError::Malformed("wrapped FEK"))
    }
}

/// Wraps a file's FEK under the KEK, bound to the file's id.
pub fn wrap_fek(kek: &Kek, fek: &Fek, file_id: &FileId) -> Result<Vec<u8>, CryptoError> {
    wrap(kek.expose(), fek.expose(), &aad(FEK_LABEL, &file_id.0))
}

/// Unwraps a FEK row; fails if the row was altered or belongs to another file id.
pub fn unwrap_fek(kek: &Kek, wrapped: &[u8], file_id: &FileId) -> Result<Fek, CryptoError> {
    let bytes = unwrap(kek.expose(), wrapped, &aad(FEK_LABEL, &file_id.0))?;
    Fek::from_slice(&bytes).ok_or(CryptoError::Malformed("wrapped FEK"))
}

/// Wraps the KEK under one slot's key, bound to the volume.
pub fn wrap_kek(slot_key: &SlotKey, kek: &Kek, volume_id: &[u8]) -> Result<Vec<u8>, CryptoError> {
    wrap(slot_key.expose(), kek.expose(), &aad(KEK_LABEL, volume_id))
}

/// Unwraps a slot's KEK. An authentication failure here means the secret was wrong (or the
/// slot record was altered, which we cannot tell apart and do not try to).
pub fn unwrap_kek(
    slot_key: &SlotKey,
    wrapped: &[u8],
    volume_id: &[u8],
) -> Result<Kek, CryptoError> {
    let bytes = unwrap(slot_key.expose(), wrapped, &aad(KEK_LABEL, volume_id))?;
    Kek::from_slice(&bytes).ok_or(CryptoError::Malformed("wrapped KEK"))
}

/// The 32-byte context of the previous-KEK wrap: `volume_id (16) ‖ old generation (u64) ‖
/// new generation (u64)`, big-endian.
pub fn previous_kek_context(
    volume_id: &[u8; 16],
    old_generation: u64,
    new_generation: u64,
) -> Vec<u8> {
    let mut c = Vec::with_capacity(32);
    c.extend_from_slice(volume_id);
    c.extend_from_slice(&old_generation.to_be_bytes());
    c.extend_from_slice(&new_generation.to_be_bytes());
    c
}

/// Wraps the KEK of `old_generation` under the KEK of `new_generation` for the time an
/// incremental rotation runs: every slot opens the new KEK, and through this wrap the old one,
/// which the key rows not re-wrapped yet still need.
pub fn wrap_previous_kek(
    new_kek: &Kek,
    old_kek: &Kek,
    volume_id: &[u8; 16],
    old_generation: u64,
    new_generation: u64,
) -> Result<Vec<u8>, CryptoError> {
    let context = previous_kek_context(volume_id, old_generation, new_generation);
    wrap(
        new_kek.expose(),
        old_kek.expose(),
        &aad(PREVIOUS_KEK_LABEL, &context),
    )
}

/// Unwraps what [`wrap_previous_kek`] produced; fails for any other volume id or pair of
/// generations, or an altered wrap.
pub fn unwrap_previous_kek(
    new_kek: &Kek,
    wrapped: &[u8],
    volume_id: &[u8; 16],
    old_generation: u64,
    new_generation: u64,
) -> Result<Kek, CryptoError> {
    let context = previous_kek_context(volume_id, old_generation, new_generation);
    let bytes = unwrap(
        new_kek.expose(),
        wrapped,
        &aad(PREVIOUS_KEK_LABEL, &context),
    )?;
    Kek::from_slice(&bytes).ok_or(CryptoError::Malformed("wrapped previous KEK"))
}

/// The volume parameters a v3 name-key wrap authenticates: a store-only attacker who changes
/// any of them (turns names to clear text, changes the chunk size, lowers the format version,
/// swaps the volume id) makes the name key fail to unwrap, and the volume is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeBinding {
    /// The volume id.
    pub volume_id: [u8; 16],
    /// `volume.format_version`.
    pub format_version: u16,
    /// Plaintext bytes per chunk.
    pub chunk_len: u32,
    /// Names are stored in clear.
    pub plaintext_names: bool,
}

impl VolumeBinding {
    /// The 23-byte context of the v3 wrap: `volume_id (16) ‖ format_version (u16) ‖
    /// chunk_len (u32) ‖ plaintext_names (u8)`, big-endian.
    pub fn context(&self) -> Vec<u8> {
        let mut c = Vec::with_capacity(23);
        c.extend_from_slice(&self.volume_id);
        c.extend_from_slice(&self.format_version.to_be_bytes());
        c.extend_from_slice(&self.chunk_len.to_be_bytes());
        c.push(u8::from(self.plaintext_names));
        c
    }

    /// The associated data of the v3 name-key wrap: label ‖ context (43 bytes).
    pub fn aad(&self) -> Vec<u8> {
        aad(NAME_KEY_V3_LABEL, &self.context())
    }
}

/// Wraps the name key under the KEK, bound to the volume and its parameters (format v3).
pub fn wrap_name_key_bound(
    kek: &Kek,
    nk: &NameKey,
    binding: &VolumeBinding,
) -> Result<Vec<u8>, CryptoError> {
    wrap(kek.expose(), nk.expose(), &binding.aad())
}

/// Unwraps a v3 name key; fails when any bound parameter differs from the one it was wrapped
/// with.
pub fn unwrap_name_key_bound(
    kek: &Kek,
    wrapped: &[u8],
    binding: &VolumeBinding,
) -> Result<NameKey, CryptoError> {
    let bytes = unwrap(kek.expose(), wrapped, &binding.aad())?;
    NameKey::from_slice(&bytes).ok_or(CryptoError::Malformed("wrapped name key"))
}

/// Wraps the name key under the KEK, bound to the volume (formats v1 and v2).
pub fn wrap_name_key(kek: &Kek, nk: &NameKey, volume_id: &[u8]) -> Result<Vec<u8>, CryptoError> {
    wrap(kek.expose(), nk.expose(), &aad(NAME_KEY_LABEL, volume_id))
}

/// Unwraps the name key of a v1 or v2 volume.
pub fn unwrap_name_key(
    kek: &Kek,
    wrapped: &[u8],
    volume_id: &[u8],
) -> Result<NameKey, CryptoError> {
    let bytes = unwrap(kek.expose(), wrapped, &aad(NAME_KEY_LABEL, volume_id))?;
    NameKey::from_slice(&bytes).ok_or(CryptoError::Malformed("wrapped name key"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_kek_writes_and_reads_the_same_bytes_as_the_one_shot_functions() {
        let kek = Kek::generate().unwrap();
        let fek = Fek::generate().unwrap();
        let id = FileId([3; 16]);
        let prepared = PreparedKek::new(&kek);
        let nonce = [0x5a; NONCE_LEN];
        let one_shot = wrap_with_nonce(kek.expose(), &nonce, fek.expose(), &aad(FEK_LABEL, &id.0));
        assert_eq!(prepared.wrap_fek_with_nonce(&fek, &id, &nonce), one_shot);
        let w = prepared.wrap_fek(&fek, &id).unwrap();
        assert_eq!(unwrap_fek(&kek, &w, &id).unwrap().expose(), fek.expose());
        let w = wrap_fek(&kek, &fek, &id).unwrap();
        assert_eq!(prepared.unwrap_fek(&w, &id).unwrap().expose(), fek.expose());
        // Bound to the file id and the KEK, and authenticated, as the one-shot unwrap.
        assert_eq!(
            prepared.unwrap_fek(&w, &FileId([4; 16])).unwrap_err(),
            CryptoError::AuthFailed
        );
        let other = PreparedKek::new(&Kek::generate().unwrap());
        assert_eq!(
            other.unwrap_fek(&w, &id).unwrap_err(),
            CryptoError::AuthFailed
        );
        for at in [0, NONCE_LEN, WRAPPED_KEY_LEN - 1] {
            let mut bad = w.clone();
            bad[at] ^= 1;
            assert_eq!(
                prepared.unwrap_fek(&bad, &id).unwrap_err(),
                CryptoError::AuthFailed
            );
        }
        assert!(matches!(
            prepared.unwrap_fek(&w[..WRAPPED_KEY_LEN - 1], &id),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn fek_round_trips_and_is_bound_to_its_file_id() {
        let kek = Kek::generate().unwrap();
        let fek = Fek::generate().unwrap();
        let id = FileId([9; 16]);
        let w = wrap_fek(&kek, &fek, &id).unwrap();
        assert_eq!(w.len(), WRAPPED_KEY_LEN);
        assert_eq!(unwrap_fek(&kek, &w, &id).unwrap().expose(), fek.expose());
        assert_eq!(
            unwrap_fek(&kek, &w, &FileId([8; 16])).unwrap_err(),
            CryptoError::AuthFailed
        );
        let other = Kek::generate().unwrap();
        assert_eq!(
            unwrap_fek(&other, &w, &id).unwrap_err(),
            CryptoError::AuthFailed
        );
        let mut bad = w.clone();
        bad[20] ^= 1;
        assert_eq!(
            unwrap_fek(&kek, &bad, &id).unwrap_err(),
            CryptoError::AuthFailed
        );
        assert_eq!(
            unwrap_fek(&kek, &w[..27], &id).unwrap_err(),
            CryptoError::Malformed("wrapped key")
        );
    }

    #[test]
    fn a_previous_kek_is_bound_to_the_volume_and_both_generations() {
        let new = Kek::generate().unwrap();
        let old = Kek::generate().unwrap();
        let vol = [3u8; 16];
        let w = wrap_previous_kek(&new, &old, &vol, 4, 5).unwrap();
        assert_eq!(w.len(), WRAPPED_KEY_LEN);
        let back = unwrap_previous_kek(&new, &w, &vol, 4, 5).unwrap();
        assert_eq!(back.expose(), old.expose());
        for (v, a, b) in [([4u8; 16], 4, 5), (vol, 3, 5), (vol, 4, 6), (vol, 5, 4)] {
            assert_eq!(
                unwrap_previous_kek(&new, &w, &v, a, b).unwrap_err(),
                CryptoError::AuthFailed
            );
        }
        assert_eq!(
            unwrap_previous_kek(&old, &w, &vol, 4, 5).unwrap_err(),
            CryptoError::AuthFailed
        );
        // Not a slot's KEK wrap either.
        let slot_key = SlotKey::from_slice(new.expose()).unwrap();
        assert!(unwrap_kek(&slot_key, &w, &vol).is_err());
    }

    #[test]
    fn labels_separate_domains() {
        let kek = Kek::generate().unwrap();
        let nk = NameKey::generate().unwrap();
        let w = wrap_name_key(&kek, &nk, b"vol").unwrap();
        assert_eq!(w.len(), WRAPPED_NAME_KEY_LEN);
        assert!(unwrap_name_key(&kek, &w, b"vol").is_ok());
        assert!(unwrap(kek.expose(), &w, &aad(FEK_LABEL, b"vol")).is_err());
    }

    #[test]
    fn a_v3_name_key_is_bound_to_every_parameter() {
        let kek = Kek::generate().unwrap();
        let nk = NameKey::generate().unwrap();
        let b = VolumeBinding {
            volume_id: [7; 16],
            format_version: 3,
            chunk_len: 4096,
            plaintext_names: false,
        };
        assert_eq!(b.aad().len(), 43);
        let w = wrap_name_key_bound(&kek, &nk, &b).unwrap();
        assert!(unwrap_name_key_bound(&kek, &w, &b).is_ok());
        for other in [
            VolumeBinding {
                plaintext_names: true,
                ..b
            },
            VolumeBinding {
                chunk_len: 8192,
                ..b
            },
            VolumeBinding {
                format_version: 2,
                ..b
            },
            VolumeBinding {
                volume_id: [8; 16],
                ..b
            },
        ] {
            assert_eq!(
                unwrap_name_key_bound(&kek, &w, &other).unwrap_err(),
                CryptoError::AuthFailed
            );
        }
        assert!(
            unwrap_name_key(&kek, &w, &b.volume_id).is_err(),
            "no legacy unwrap"
        );
    }
}
