//! PKCS#11 slots: the slot key is random, kept encrypted in `slots.params` by an AES-256 key
//! that never leaves a token ([`Pkcs11Params`]); the CLI has the token decrypt it and hands
//! the answer in as the secret. The salt is empty and the Argon2 columns hold 0. What the
//! slot keeps is a small JSON object, readable with `sqlite3`:
//!
//! ```json
//! {"v":1,"module":"/usr/lib/softhsm/libsofthsm2.so","token":"coffer","serial":"6f7e…",
//!  "key":"cofferfs","mechanism":"CKM_AES_GCM","blob":"<base64 nonce ‖ ciphertext ‖ tag>"}
//! ```
//!
//! The column is untrusted input (the store may be tampered with): `decode` checks every
//! field, and nothing the token answers is trusted before the KEK it opens authenticates.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

use super::{SlotKind, SlotRecord};
use crate::crypto::{CryptoError, Kek, SlotKey};
use crate::keystore::Result;
use crate::keystore::store::corrupt;

/// Version of the JSON object; a different one is refused (as an unknown slot kind would be).
pub const PKCS11_PARAMS_VERSION: u32 = 1;

/// The one mechanism a slot may name (the `pkcs11` layer's [`MECHANISM_AES_GCM`](crate::pkcs11::MECHANISM_AES_GCM)).
pub const MECHANISM: &str = "CKM_AES_GCM";

/// Bytes of a blob: a 12-byte nonce, the 32-byte slot key encrypted, a 16-byte tag.
pub const BLOB_LEN: usize = 12 + 32 + 16;

/// What the token's AES-GCM binds besides the slot key: this context and the volume id, so
/// a blob copied into another volume's slot does not decrypt there.
pub fn aad(volume_id: &[u8; 16]) -> Vec<u8> {
    let mut aad = b"cofferfs pkcs11 slot key v1\0".to_vec();
    aad.extend_from_slice(volume_id);
    aad
}

/// The parameters of one PKCS#11 slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Params {
    /// [`PKCS11_PARAMS_VERSION`].
    pub v: u32,
    /// Absolute path of the PKCS#11 module (`--pkcs11-module`).
    pub module: String,
    /// The token's label (`CK_TOKEN_INFO.label`, at most 32 bytes).
    pub token: String,
    /// The token's serial number, so that another token given the same label is not used.
    pub serial: String,
    /// The label of the AES key on the token.
    pub key: String,
    /// [`MECHANISM`].
    pub mechanism: String,
    /// Base64 of the blob the token's key made of the slot key.
    pub blob: String,
}

impl Pkcs11Params {
    /// The `slots.params` text.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("plain strings serialise")
    }

    /// Parses and checks a `slots.params` text.
    pub fn decode(text: &str) -> std::result::Result<Self, String> {
        let p: Pkcs11Params = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if p.v != PKCS11_PARAMS_VERSION {
            return Err(format!(
                "version {} (this cofferfs reads {PKCS11_PARAMS_VERSION})",
                p.v
            ));
        }
        check_module_path(&p.module)?;
        check_label("token", &p.token, 32)?;
        if p.serial.len() > 64 || p.serial.chars().any(char::is_control) {
            return Err("serial: at most 64 printable characters".into());
        }
        check_label("key", &p.key, 256)?;
        if p.mechanism != MECHANISM {
            return Err(format!(
                "mechanism {:?} (this cofferfs uses {MECHANISM})",
                p.mechanism
            ));
        }
        if p.blob_bytes().is_none() {
            return Err(format!("blob is not {BLOB_LEN} bytes of base64"));
        }
        Ok(p)
    }

    /// The blob's bytes, if it is the right size.
    pub fn blob_bytes(&self) -> Option<Vec<u8>> {
        B64.decode(&self.blob).ok().filter(|b| b.len() == BLOB_LEN)
    }

    /// The `blob` text for `bytes`.
    pub fn encode_blob(bytes: &[u8]) -> String {
        B64.encode(bytes)
    }
}

/// A module path is absolute, printable and of sane length (whether the file may be loaded
/// is the `pkcs11` layer's check, at load time).
pub fn check_module_path(path: &str) -> std::result::Result<(), String> {
    if !path.starts_with('/') || path.len() > 4096 || path.chars().any(char::is_control) {
        return Err(format!("module {path:?}: an absolute path is needed"));
    }
    Ok(())
}

/// A token or key label: not empty, at most `max` bytes, no control characters.
pub fn check_label(what: &str, s: &str, max: usize) -> std::result::Result<(), String> {
    if s.is_empty() || s.len() > max || s.chars().any(char::is_control) {
        return Err(format!(
            "{what} label {s:?}: 1 to {max} bytes, no control characters"
        ));
    }
    Ok(())
}

impl SlotRecord {
    /// A new PKCS#11 slot wrapping `kek` under `slot_key`, the random key that the token's
    /// key encrypted into `params.blob`. The KEK never goes to the token: what the token
    /// answers is only trusted once the KEK it opens authenticates (AES-GCM over
    /// `wrapped_kek`, bound to the volume id).
    pub fn new_pkcs11(
        slot_id: u32,
        label: &str,
        slot_key: &[u8],
        params: &Pkcs11Params,
        kek: &Kek,
        volume_id: &[u8; 16],
    ) -> Result<Self> {
        Self::new_service(
            SlotKind::Pkcs11,
            slot_id,
            label,
            &self::slot_key(slot_key)?,
            params.encode(),
            kek,
            volume_id,
        )
    }

    /// The parameters of a PKCS#11 slot (`None` for other kinds); a PKCS#11 slot whose
    /// `params` do not parse is a damaged store.
    pub fn pkcs11(&self) -> Result<Option<Pkcs11Params>> {
        let Some(text) = self.service_params(SlotKind::Pkcs11)? else {
            return Ok(None);
        };
        Pkcs11Params::decode(text)
            .map(Some)
            .map_err(|e| corrupt(format!("PKCS#11 slot {}: params: {e}", self.slot_id)))
    }
}

/// The slot key of a PKCS#11 slot: what the token decrypted, which must be 32 bytes.
pub(super) fn slot_key(token_answer: &[u8]) -> Result<SlotKey> {
    Ok(SlotKey::from_slice(token_answer)
        .ok_or(CryptoError::Malformed("a PKCS#11 slot key is 32 bytes"))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Pkcs11Params {
        Pkcs11Params {
            v: 1,
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token: "coffer".into(),
            serial: "6f7eed51934ddfb7".into(),
            key: "cofferfs".into(),
            mechanism: MECHANISM.into(),
            blob: Pkcs11Params::encode_blob(&[1u8; BLOB_LEN]),
        }
    }

    #[test]
    fn round_trip() {
        let p = sample();
        assert_eq!(Pkcs11Params::decode(&p.encode()).unwrap(), p);
        assert_eq!(p.blob_bytes().unwrap(), vec![1u8; BLOB_LEN]);
    }

    #[test]
    fn hostile_params_are_refused() {
        let bad = [
            Pkcs11Params {
                module: "libsofthsm2.so".into(),
                ..sample()
            },
            Pkcs11Params {
                token: "".into(),
                ..sample()
            },
            Pkcs11Params {
                token: "x".repeat(33),
                ..sample()
            },
            Pkcs11Params {
                key: "a\nb".into(),
                ..sample()
            },
            Pkcs11Params {
                mechanism: "CKM_AES_ECB".into(),
                ..sample()
            },
            Pkcs11Params {
                blob: Pkcs11Params::encode_blob(&[1u8; BLOB_LEN - 1]),
                ..sample()
            },
            Pkcs11Params {
                blob: "not base64!".into(),
                ..sample()
            },
            Pkcs11Params { v: 2, ..sample() },
        ];
        for p in bad {
            assert!(Pkcs11Params::decode(&p.encode()).is_err(), "{p:?}");
        }
        assert!(Pkcs11Params::decode("{\"v\":1}").is_err());
        assert!(Pkcs11Params::decode("not json").is_err());
    }
}
