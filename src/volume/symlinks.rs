//! Symlink targets as they are stored: encrypted and base64url-encoded on encrypted-names
//! volumes (in clear otherwise), and for targets whose encoded form does not fit in a backing
//! link (over 4095 bytes, a plaintext target over about 3,055 bytes) the long-target scheme of
//! format v3: the backing link holds `cofferfs.longlink.` ‖ base64url(SHA-256(encoded)) and the
//! encoded target is kept in the header store (`long_targets`), as long names are. A row is
//! checked against its digest when read, so a swapped or altered row is refused (`EIO`).
//! Several symlinks with one target share one row (the encryption is deterministic), so
//! removing a symlink leaves its row: an unreferenced row is harmless.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use super::names::{NameMap, long_row_matches};
use super::{Result, VolumeError};
use crate::crypto::names::sha256;
use crate::format::names::{
    self as fnames, LONG_TARGET_LINK_LEN, MAX_TARGET_LEN, long_target_digest,
    siv_encoded_len_to_plain_len,
};
use crate::keystore::HeaderStore;

/// A symlink target ready to be written: the backing link's target, and for a long one the
/// row to record (digest, encoded target) before the link is created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTarget {
    /// What the backing symlink points to.
    pub backing: OsString,
    /// For a long target: its digest and full encoded form for `long_targets`.
    pub long: Option<([u8; 32], String)>,
}

fn too_long() -> VolumeError {
    std::io::Error::from_raw_os_error(libc::ENAMETOOLONG).into()
}

fn bad(what: &str) -> VolumeError {
    VolumeError::CorruptName(format!("symlink target ({what})"))
}

impl NameMap {
    /// How `target` is stored; `ENAMETOOLONG` past `PATH_MAX - 1` bytes.
    pub fn stored_target(&self, target: &OsStr) -> Result<StoredTarget> {
        if target.len() > MAX_TARGET_LEN {
            return Err(too_long());
        }
        let Some(c) = self.cipher() else {
            return Ok(StoredTarget {
                backing: target.to_owned(),
                long: None,
            });
        };
        let encoded = fnames::encode(&c.encrypt_symlink(target.as_bytes()));
        if encoded.len() <= MAX_TARGET_LEN {
            return Ok(StoredTarget {
                backing: encoded.into(),
                long: None,
            });
        }
        let digest = sha256(encoded.as_bytes());
        Ok(StoredTarget {
            backing: fnames::long_target(&digest).into(),
            long: Some((digest, encoded)),
        })
    }

    /// The encoded target behind the backing link `backing`: itself, or a long target's
    /// row, checked against its digest.
    fn encoded_target(backing: &[u8], store: &HeaderStore) -> Result<Vec<u8>> {
        let Some(digest) = long_target_digest(backing) else {
            return Ok(backing.to_vec());
        };
        let row = store
            .long_target(&digest)?
            .ok_or_else(|| bad("its long-target row is missing"))?;
        if !long_row_matches(&digest, &row) {
            return Err(bad("its long-target row does not match its digest"));
        }
        Ok(row.into_bytes())
    }

    /// The plaintext target of a symlink whose backing link points to `backing`.
    pub fn plain_target(&self, backing: &[u8], store: &HeaderStore) -> Result<Vec<u8>> {
        let Some(c) = self.cipher() else {
            return Ok(backing.to_vec());
        };
        let encoded = Self::encoded_target(backing, store)?;
        let text = std::str::from_utf8(&encoded).map_err(|_| bad("not base64url"))?;
        let enc = fnames::decode(text).map_err(|_| bad("not base64url"))?;
        c.decrypt_symlink(&enc).map_err(|_| bad("does not decrypt"))
    }

    /// True when a backing link of `len` bytes may be a long target (the only ones whose
    /// plaintext length cannot be told from the backing length alone).
    pub fn may_be_long_target(&self, len: u64) -> bool {
        self.encrypted() && len == LONG_TARGET_LINK_LEN as u64
    }

    /// The plaintext length of the long target behind `backing`, from its row's length
    /// (`None` when `backing` is not a long target).
    pub fn long_target_len(&self, backing: &[u8], store: &HeaderStore) -> Result<Option<u64>> {
        if !self.encrypted() || long_target_digest(backing).is_none() {
            return Ok(None);
        }
        let encoded = Self::encoded_target(backing, store)?;
        Ok(Some(siv_encoded_len_to_plain_len(encoded.len() as u64)))
    }
}
