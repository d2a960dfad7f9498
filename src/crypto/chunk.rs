//! Chunk sealing: `nonce ‖ AES-256-GCM(FEK, plaintext, aad = file_id ‖ chunk_index) ‖ tag`.
//!
//! The associated data binds a chunk to its file and position, so a chunk altered, moved to
//! another index, or copied from another file fails to open. The caller's duty: a fresh random
//! nonce for every seal (see [`super::random_nonce`]); a (FEK, nonce) pair must **never** repeat.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};

use super::{CryptoError, Fek};
use crate::format::FileId;
use crate::format::layout::{NONCE_LEN, TAG_LEN};

/// Length of a chunk's associated data: file_id (16) ‖ chunk_index (8, big-endian).
pub const CHUNK_AAD_LEN: usize = 24;

/// The associated data of chunk `chunk_index` of file `file_id`.
pub fn chunk_aad(file_id: &FileId, chunk_index: u64) -> [u8; CHUNK_AAD_LEN] {
    let mut aad = [0u8; CHUNK_AAD_LEN];
    aad[..16].copy_from_slice(&file_id.0);
    aad[16..].copy_from_slice(&chunk_index.to_be_bytes());
    aad
}

/// AES-256-GCM keyed with one file's FEK, with the key schedule computed once per open file.
pub struct ChunkCipher {
    aead: Aes256Gcm,
    file_id: FileId,
}

impl std::fmt::Debug for ChunkCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkCipher({:?})", self.file_id)
    }
}

impl ChunkCipher {
    /// A cipher for the chunks of `file_id` under `fek`.
    pub fn new(fek: &Fek, file_id: FileId) -> Self {
        let aead = Aes256Gcm::new_from_slice(fek.expose()).expect("a Fek is exactly 32 bytes");
        ChunkCipher { aead, file_id }
    }

    /// The file these chunks belong to.
    pub fn file_id(&self) -> FileId {
        self.file_id
    }

    /// Seals `chunk[NONCE_LEN..len-TAG_LEN]` (the plaintext, in place) into a complete on-disk
    /// chunk: writes `nonce` in front and the tag behind. `chunk` is the whole on-disk chunk.
    pub fn seal_in_place(&self, chunk_index: u64, nonce: &[u8; NONCE_LEN], chunk: &mut [u8]) {
        assert!(
            chunk.len() >= NONCE_LEN + TAG_LEN,
            "chunk buffer holds nonce and tag"
        );
        let aad = chunk_aad(&self.file_id, chunk_index);
        let tag_at = chunk.len() - TAG_LEN;
        chunk[..NONCE_LEN].copy_from_slice(nonce);
        let tag = self
            .aead
            .encrypt_inout_detached(
                &Nonce::from(*nonce),
                &aad,
                (&mut chunk[NONCE_LEN..tag_at]).into(),
            )
            .expect("AES-GCM accepts any chunk up to 1 MiB");
        chunk[tag_at..].copy_from_slice(&tag);
    }

    /// Opens an on-disk chunk in place; on success the plaintext is `chunk[NONCE_LEN..len-TAG_LEN]`.
    /// On failure the buffer holds garbage and must not be used.
    pub fn open_in_place(&self, chunk_index: u64, chunk: &mut [u8]) -> Result<(), CryptoError> {
        if chunk.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Malformed("chunk"));
        }
        let aad = chunk_aad(&self.file_id, chunk_index);
        let tag_at = chunk.len() - TAG_LEN;
        let nonce = Nonce::try_from(&chunk[..NONCE_LEN]).expect("NONCE_LEN bytes");
        let tag = Tag::try_from(&chunk[tag_at..]).expect("TAG_LEN bytes");
        let (_, rest) = chunk.split_at_mut(NONCE_LEN);
        let (body, _) = rest.split_at_mut(tag_at - NONCE_LEN);
        self.aead
            .decrypt_inout_detached(&nonce, &aad, body.into(), &tag)
            .map_err(|_| CryptoError::AuthFailed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(c: &ChunkCipher, index: u64, plain: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; plain.len() + NONCE_LEN + TAG_LEN];
        buf[NONCE_LEN..NONCE_LEN + plain.len()].copy_from_slice(plain);
        c.seal_in_place(index, &crate::crypto::random_nonce(), &mut buf);
        buf
    }

    #[test]
    fn chunk_round_trips_at_every_interesting_length() {
        let fek = Fek::generate().unwrap();
        let c = ChunkCipher::new(&fek, FileId([1; 16]));
        for len in [0usize, 1, 4095, 4096, 65536] {
            let plain: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut buf = sealed(&c, 3, &plain);
            c.open_in_place(3, &mut buf).unwrap();
            assert_eq!(&buf[NONCE_LEN..NONCE_LEN + len], &plain[..]);
        }
    }

    #[test]
    fn chunk_fails_to_open_when_moved_altered_or_foreign() {
        let fek = Fek::generate().unwrap();
        let c = ChunkCipher::new(&fek, FileId([1; 16]));
        let other_file = ChunkCipher::new(&fek, FileId([2; 16]));
        let other_key = ChunkCipher::new(&Fek::generate().unwrap(), FileId([1; 16]));
        let good = sealed(&c, 5, b"hello chunk");
        assert_eq!(
            c.open_in_place(6, &mut good.clone()),
            Err(CryptoError::AuthFailed)
        );
        assert_eq!(
            other_file.open_in_place(5, &mut good.clone()),
            Err(CryptoError::AuthFailed)
        );
        assert_eq!(
            other_key.open_in_place(5, &mut good.clone()),
            Err(CryptoError::AuthFailed)
        );
        for pos in [0, NONCE_LEN, good.len() - 1] {
            let mut bad = good.clone();
            bad[pos] ^= 0x01;
            assert_eq!(
                c.open_in_place(5, &mut bad),
                Err(CryptoError::AuthFailed),
                "byte {pos}"
            );
        }
        assert_eq!(
            c.open_in_place(5, &mut [0u8; 27]),
            Err(CryptoError::Malformed("chunk"))
        );
    }

    #[test]
    fn two_seals_of_the_same_plaintext_differ() {
        let c = ChunkCipher::new(&Fek::generate().unwrap(), FileId([1; 16]));
        assert_ne!(sealed(&c, 0, b"same"), sealed(&c, 0, b"same"));
    }
}
