//! Name encryption: AES-SIV-CMAC-256 under the name key, deterministic so a lookup can
//! encrypt the name it is asked for and find the entry. The associated data is a domain label
//! and the parent directory's random id, so equal names in different directories encrypt
//! differently and an entry moved to another directory no longer decrypts. Symlink targets use
//! their own label.

use aes_siv::KeyInit;
use aes_siv::siv::Aes256Siv;
use sha2::{Digest, Sha256};

use super::secure_mem::wipe_stack_below;
use super::{CryptoError, NameKey};

/// Domain label of an entry name; the second header is the parent directory id.
pub const NAME_LABEL: &[u8] = b"cofferfs/v1/name";
/// Domain label of a symlink target.
pub const SYMLINK_LABEL: &[u8] = b"cofferfs/v1/symlink";
/// Domain label of an extended attribute name.
pub const XATTR_NAME_LABEL: &[u8] = b"cofferfs/v1/xattr-name";
/// Domain label of an extended attribute value; the second header is the attribute's name.
pub const XATTR_VALUE_LABEL: &[u8] = b"cofferfs/v1/xattr-value";

/// Encrypts and decrypts names, symlink targets and xattr names under one name key.
pub struct NameCipher {
    key: NameKey,
}

impl std::fmt::Debug for NameCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NameCipher(..)")
    }
}

impl NameCipher {
    /// A cipher over `key`.
    pub fn new(key: NameKey) -> Self {
        NameCipher { key }
    }

    fn siv(&self) -> Aes256Siv {
        Aes256Siv::new_from_slice(self.key.expose()).expect("NameKey is 64 bytes")
    }

    /// Encrypts `data` with the associated-data headers `ad`. The cipher is set up for each
    /// call, in a frame of its own that is wiped afterwards: its key schedules (which hold the
    /// name key) must not stay behind on a worker's stack.
    pub fn seal(&self, ad: &[&[u8]], data: &[u8]) -> Vec<u8> {
        let out = self.seal_inner(ad, data);
        wipe_stack_below();
        out
    }

    #[inline(never)]
    fn seal_inner(&self, ad: &[&[u8]], data: &[u8]) -> Vec<u8> {
        self.siv()
            .encrypt(ad, data)
            .expect("AES-SIV accepts these headers")
    }

    /// Decrypts what [`seal`](Self::seal) produced with the same headers (wiping the stack
    /// the same way).
    pub fn open(&self, ad: &[&[u8]], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let out = self.open_inner(ad, data);
        wipe_stack_below();
        out
    }

    #[inline(never)]
    fn open_inner(&self, ad: &[&[u8]], data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.siv()
            .decrypt(ad, data)
            .map_err(|_| CryptoError::AuthFailed)
    }

    /// Encrypts one entry name for the directory with id `dir_id`.
    pub fn encrypt_name(&self, dir_id: &[u8], name: &[u8]) -> Vec<u8> {
        self.seal(&[NAME_LABEL, dir_id], name)
    }

    /// Decrypts one entry name found in the directory with id `dir_id`.
    pub fn decrypt_name(&self, dir_id: &[u8], enc: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.open(&[NAME_LABEL, dir_id], enc)
    }

    /// Encrypts a symlink target.
    pub fn encrypt_symlink(&self, target: &[u8]) -> Vec<u8> {
        self.seal(&[SYMLINK_LABEL], target)
    }

    /// Decrypts a symlink target.
    pub fn decrypt_symlink(&self, enc: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.open(&[SYMLINK_LABEL], enc)
    }
}

/// SHA-256, for the long-name rule (the digest of an encoded name that is too long to use).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_depend_on_the_directory() {
        let c = NameCipher::new(NameKey::generate().unwrap());
        let a = c.encrypt_name(&[1; 16], b"report.txt");
        assert_eq!(a, c.encrypt_name(&[1; 16], b"report.txt"), "deterministic");
        assert_ne!(a, c.encrypt_name(&[2; 16], b"report.txt"));
        assert_eq!(c.decrypt_name(&[1; 16], &a).unwrap(), b"report.txt");
        assert_eq!(c.decrypt_name(&[2; 16], &a), Err(CryptoError::AuthFailed));
        assert_eq!(c.decrypt_symlink(&a), Err(CryptoError::AuthFailed));
        let mut bad = a.clone();
        bad[0] ^= 1;
        assert_eq!(c.decrypt_name(&[1; 16], &bad), Err(CryptoError::AuthFailed));
    }
}
