//! A read-only view of one shared file's ciphertext, with the FEK from a share and no volume:
//! the mount's header reader and chunk rule (`volume::ciphertext`, a leaf that needs no
//! volume) over a plain `File`. Every chunk
//! is authenticated under the share's file id, its index and (file version 2) its final flag;
//! an all-zero chunk is a hole (zeros) except a version-2 file's last chunk, which is never a
//! hole. The first chunk that fails ends the read with its index.

use std::fs::File;

use crate::crypto::ChunkCipher;
use crate::format::layout::{CHUNK_OVERHEAD_LEN, NONCE_LEN, TAG_LEN};
use crate::format::{FileId, HEADER_LEN, Layout};
use crate::volume::ciphertext::{
    ChunkVerdict, classify_chunk, read_full_at, read_header, read_header_required,
};

use super::payload::SharedFile;

/// Why a ciphertext does not give the shared file's plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CiphertextError {
    /// Not the ciphertext of the shared file: another file's, a re-encrypted one, or no
    /// cofferfs ciphertext at all.
    #[error("not the ciphertext of the shared file: {0}")]
    Foreign(String),
    /// A chunk is missing, cut short or fails authentication.
    #[error("chunk {index} does not authenticate (tampered, truncated or foreign ciphertext)")]
    Chunk {
        /// The chunk's index (0 is the first after the header).
        index: u64,
    },
    /// The ciphertext could not be read.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// One chunk's worth of plaintext, in file order.
pub enum Piece<'a> {
    /// Authenticated plaintext.
    Data(&'a [u8]),
    /// A hole of this many zero bytes.
    Hole(usize),
}

/// One shared file's ciphertext, opened with the share's key.
pub struct SharedCiphertext {
    file: File,
    /// `None` for an empty file without a key (a 0-byte ciphertext).
    cipher: Option<ChunkCipher>,
    layout: Layout,
    plain_size: u64,
}

/// The file id in a ciphertext's header, if it has a valid one (to match ciphertexts to
/// entries of a share).
pub fn header_file_id(file: &File) -> std::io::Result<Option<FileId>> {
    Ok(read_header(file)?.and_then(Result::ok).map(|h| h.file_id))
}

impl SharedCiphertext {
    /// Checks that `file` is the ciphertext of `entry` (header magic, version and file id)
    /// and that its size is one a ciphertext can have; reads no chunk yet.
    pub fn open(file: File, entry: &SharedFile) -> Result<Self, CiphertextError> {
        let layout = Layout::new(entry.chunk_len as u64)
            .map_err(|e| CiphertextError::Foreign(format!("share entry: {e}")))?;
        let cipher_size = file.metadata()?.len();
        let (Some(id), Some(fek)) = (entry.file_id, entry.fek.as_ref()) else {
            if cipher_size != 0 {
                return Err(CiphertextError::Foreign(
                    "the file was empty and had no key when shared; this ciphertext is not empty"
                        .into(),
                ));
            }
            return Ok(SharedCiphertext {
                file,
                cipher: None,
                layout,
                plain_size: 0,
            });
        };
        let header =
            read_header_required(&file)?.map_err(|e| CiphertextError::Foreign(e.to_string()))?;
        if header.file_id != id {
            return Err(CiphertextError::Foreign(format!(
                "its file id is {}, the share is for {id} (another file, or re-encrypted since)",
                header.file_id
            )));
        }
        if header.version != entry.file_version {
            return Err(CiphertextError::Foreign(format!(
                "file format version {} in the header, {} in the share",
                header.version, entry.file_version
            )));
        }
        let plain_size = layout.cipher_size_to_plain_size(cipher_size).map_err(|_| {
            // A size no ciphertext has: the chunk it ends in is cut short.
            let body = cipher_size.saturating_sub(HEADER_LEN as u64);
            CiphertextError::Chunk {
                index: body / layout.chunk_cipher_len(),
            }
        })?;
        Ok(SharedCiphertext {
            file,
            cipher: Some(ChunkCipher::new(fek, header)),
            layout,
            plain_size,
        })
    }

    /// The plaintext size (from the ciphertext's size, as the mount computes it).
    pub fn plain_size(&self) -> u64 {
        self.plain_size
    }

    /// Authenticates and decrypts every chunk in order, handing each to `sink`; stops at the
    /// first chunk that fails. The plaintext buffer is wiped when done.
    pub fn for_each_piece(
        &self,
        mut sink: impl FnMut(Piece<'_>) -> std::io::Result<()>,
    ) -> Result<(), CiphertextError> {
        let Some(cipher) = &self.cipher else {
            return Ok(());
        };
        let count = self.layout.chunk_count(self.plain_size);
        let final_index = self.layout.last_chunk_index(self.plain_size);
        let mut buf = zeroize::Zeroizing::new(vec![0u8; self.layout.chunk_cipher_len() as usize]);
        for index in 0..count {
            let plain_len = self.layout.chunk_plain_len(index, self.plain_size);
            let chunk = &mut buf[..plain_len + CHUNK_OVERHEAD_LEN as usize];
            let at = self.layout.chunk_index_to_cipher_off(index);
            if read_full_at(&self.file, chunk, at)? != chunk.len() {
                return Err(CiphertextError::Chunk { index });
            }
            let is_final = Some(index) == final_index;
            match classify_chunk(cipher, index, is_final, chunk) {
                ChunkVerdict::Hole => sink(Piece::Hole(plain_len))?,
                ChunkVerdict::Sealed => {
                    sink(Piece::Data(&chunk[NONCE_LEN..chunk.len() - TAG_LEN]))?
                }
                ChunkVerdict::HoleAtEnd | ChunkVerdict::Failed => {
                    return Err(CiphertextError::Chunk { index });
                }
            }
        }
        Ok(())
    }
}
