//! The on-disk format of cofferfs: ciphertext file headers (`header.rs`), chunk geometry
//! (`layout.rs`), the volume marker (`marker.rs`) and the encoding of names, long names and
//! long targets (`names.rs`), with the format version constants and `FormatError`. Pure
//! functions over bytes and integers, so every rule in `docs/FORMAT.md` can be tested in
//! isolation; reading them from files is `volume::ciphertext`'s.
//!
//! Imports std, `thiserror` and `base64` only: no other layer of this crate, nothing of FUSE
//! or SQLite, no file I/O (the last three checked by `scripts/test.sh`).

pub mod header;
pub mod layout;
pub mod marker;
pub mod names;

pub use header::{FILE_ID_LEN, FileHeader, FileId, HEADER_LEN};
pub use layout::Layout;

/// Format version of the volume, written into the header store of every new volume (3: the
/// name-key wrap authenticates the volume parameters, key rows record their owner; see
/// `docs/FORMAT.md`). A reader refuses anything newer, because a newer writer may rely on
/// rules this reader does not know.
pub const FORMAT_VERSION: u16 = 3;

/// Format version written into the header of every new file (2: the chunk associated data
/// carries a final-chunk flag). Format v3 changed only the header store, so files keep 2;
/// headers of any other version but 1 are refused.
pub const FILE_FORMAT_VERSION: u16 = 2;

/// Oldest format version this build still reads and writes. A file keeps the version it was
/// created with (its chunks follow that version's rules) until `reencrypt` rewrites it.
pub const OLDEST_FORMAT_VERSION: u16 = 1;

/// Why bytes could not be decoded as cofferfs format data.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// The bytes are shorter than the structure they should hold.
    #[error("truncated {what}: {len} bytes, need {need}")]
    Truncated {
        /// Which structure was being decoded.
        what: &'static str,
        /// How many bytes there were.
        len: usize,
        /// How many bytes the structure needs.
        need: usize,
    },
    /// The magic bytes are wrong: this is not a cofferfs ciphertext file.
    #[error("bad magic: not a cofferfs ciphertext file")]
    BadMagic,
    /// Written by a newer cofferfs.
    #[error(
        "unsupported format version {0} (this cofferfs reads volumes of versions \
         {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}, files of {OLDEST_FORMAT_VERSION} to \
         {FILE_FORMAT_VERSION})"
    )]
    UnsupportedVersion(u16),
    /// A chunk size outside the allowed range or not a power of two.
    #[error("invalid chunk size {0}: must be a power of two from 4096 to 1048576")]
    InvalidChunkSize(u64),
    /// A ciphertext size that no plaintext size maps to.
    #[error("invalid ciphertext size {0}")]
    InvalidCipherSize(u64),
    /// An encoded name that is not valid base64url.
    #[error("invalid encoded name")]
    InvalidName,
    /// The volume marker's bytes are not a marker this reader understands.
    #[error("not a cofferfs volume marker: {0}")]
    BadMarker(&'static str),
}
