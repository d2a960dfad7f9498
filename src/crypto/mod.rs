//! The cryptography of cofferfs: key newtypes, chunk sealing, key wrapping, the password KDF
//! and name encryption. Pure functions over bytes built on audited primitives: ring's
//! AES-256-GCM for file content (the hot path, see `chunk.rs`), RustCrypto's AES-256-GCM for
//! key wrapping, AES-SIV for names and Argon2id for passwords; no I/O, no FUSE, no SQLite.
//! Imports nothing of the crate but `format` (ids, lengths) and `sys` (locking key pages in
//! memory); the FUSE and SQLite crates and file-system calls stay out (checked by
//! `scripts/test.sh`).

pub mod chunk;
pub mod kdf;
pub mod keys;
pub mod names;
mod ring_key;
pub mod secure_mem;
pub mod wrap;

pub use chunk::ChunkCipher;
pub use kdf::KdfParams;
pub use keys::{Fek, Kek, NameKey, SlotKey};

/// Why a cryptographic operation failed. Authentication failures carry no detail on purpose:
/// which byte was wrong is not something an attacker should learn from us.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    /// AES-GCM or AES-SIV rejected the tag: the data was altered, moved, or belongs to another
    /// key or position.
    #[error("authentication failed")]
    AuthFailed,
    /// A wrapped key or sealed value has the wrong length.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// KDF parameters outside the bounds this build accepts (a tampered store, or a slot made
    /// for a much larger machine).
    #[error("refusing Argon2id parameters m={m_kib} KiB, t={t}, p={p}: {why}")]
    KdfParamsOutOfBounds {
        /// Memory in KiB.
        m_kib: u32,
        /// Passes.
        t: u32,
        /// Lanes.
        p: u32,
        /// Which bound was broken.
        why: &'static str,
    },
    /// The operating system's random source failed.
    #[error("OS random source failed")]
    Random,
}

/// Fills `buf` from the OS CSPRNG (getrandom(2)). Used for every key, id and salt.
pub fn os_random(buf: &mut [u8]) -> Result<(), CryptoError> {
    getrandom::fill(buf).map_err(|_| CryptoError::Random)
}

/// A fresh random 96-bit nonce for one chunk write, from the thread-local CSPRNG (ChaCha,
/// seeded and periodically reseeded from the OS). Random nonces stay safe for far more than
/// the 2^32 writes per FEK NIST allows, which no single file of ours approaches.
pub fn random_nonce() -> [u8; crate::format::layout::NONCE_LEN] {
    use rand::Rng;
    let mut n = [0u8; crate::format::layout::NONCE_LEN];
    rand::rng().fill_bytes(&mut n);
    n
}
