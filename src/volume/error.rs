//! `VolumeError`: why a volume operation failed, one variant per kind of failure the layers
//! below and the cipherdir itself can give. `fs/errno.rs` and `cli/exit.rs` match it
//! exhaustively, so a new variant must get its errno and exit code chosen.

use std::path::PathBuf;

use crate::crypto::CryptoError;
use crate::format::names::HEADER_STORE_NAME;
use crate::format::{FileId, FormatError};
use crate::keystore::KeystoreError;

/// Why a volume operation failed. Corruption (`CorruptChunk`, `CorruptFile`, a tampered key)
/// is kept apart from I/O errors: the first becomes EIO plus a warning, the second passes the
/// OS errno through.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A chunk failed authentication (altered, moved, swapped or foreign) or is cut short; or,
    /// in a v2 file, it is the last chunk but is a hole or was not sealed as the last one (the
    /// file was cut or extended), or was sealed as the last one but chunks follow it.
    #[error("file {file_id}: chunk {chunk_index} is corrupt or was tampered with")]
    CorruptChunk {
        /// The file.
        file_id: FileId,
        /// The chunk.
        chunk_index: u64,
    },
    /// A file's header or size is invalid.
    #[error("corrupt ciphertext file{}: {reason}", .file_id.map(|i| format!(" {i}")).unwrap_or_default())]
    CorruptFile {
        /// The file, when its header could be read.
        file_id: Option<FileId>,
        /// What is wrong.
        reason: String,
    },
    /// A name in the cipherdir does not decrypt in its directory.
    #[error("corrupt or foreign name {0:?}")]
    CorruptName(String),
    /// The directory is not a cofferfs cipherdir.
    #[error("{0} is not a cofferfs cipherdir (no {HEADER_STORE_NAME})")]
    NotACipherdir(PathBuf),
    /// `init` on a directory that already holds something.
    #[error("{0} is not empty: init needs an empty (or new) directory")]
    NotEmpty(PathBuf),
    /// Another process (a mount or a management command) holds the volume.
    #[error("{0} is in use by another cofferfs process (mounted?)")]
    Locked(PathBuf),
    /// The cipherdir's marker says its header store is kept elsewhere, and none was given.
    #[error("{0} keeps its header store elsewhere: pass --header-store PATH")]
    StoreElsewhere(PathBuf),
    /// The header store belongs to another volume than the cipherdir (their ids differ).
    #[error(
        "header store {store} does not belong to {cipherdir}: the store is volume {store_id}, \
         the cipherdir is volume {marker_id}"
    )]
    StoreMismatch {
        /// The store given.
        store: PathBuf,
        /// The cipherdir given.
        cipherdir: PathBuf,
        /// The store's volume id, hex.
        store_id: String,
        /// The volume id in the cipherdir's marker, hex.
        marker_id: String,
    },
    /// `--header-store` was given for a cipherdir that keeps its store inside it.
    #[error("{0} keeps its header store inside it ({HEADER_STORE_NAME}): drop --header-store")]
    StoreInside(PathBuf),
    /// A `--header-store` path that cannot be used (exists at `init`, inside the cipherdir).
    #[error("header store {path}: {reason}")]
    StorePath {
        /// The path given.
        path: PathBuf,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The cipherdir has a marker but its header store file is missing.
    #[error("header store {0} does not exist")]
    StoreMissing(PathBuf),
    /// The cipherdir's volume marker is damaged or from a newer cofferfs.
    #[error("volume marker {path}: {source}")]
    BadMarker {
        /// The marker file.
        path: PathBuf,
        /// What is wrong with its bytes.
        source: FormatError,
    },
    /// A control file of the volume (the marker, the header store) is a symlink, a FIFO, a
    /// device or a directory where a regular file must be: damage or an attack, refused.
    #[error("{path}: {reason}; refused (it must be a regular file)")]
    ControlFile {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },
    /// Bad volume parameters.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The header store failed.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// A cryptographic step of the volume's own failed: the OS random source (a new
    /// directory id, a new key), or parameters refused before use (Argon2id bounds at
    /// `init`). Failures inside the header store (unwrapping a slot or a key row) stay
    /// `Keystore`.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The operating system failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<rustix::io::Errno> for VolumeError {
    fn from(e: rustix::io::Errno) -> Self {
        VolumeError::Io(e.into())
    }
}

/// Result of volume operations.
pub type Result<T> = std::result::Result<T, VolumeError>;
