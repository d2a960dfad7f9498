//! The ciphertext file header: the first bytes of every ciphertext file.
//!
//! ```text
//! offset  size  field
//!      0     4  magic  "CFS\x01"
//!      4     2  format version, big-endian (2; files written before v2 keep 1)
//!      6    16  file_id: random, the key of the file's row in the header store
//!     22        first chunk
//! ```
//! Imports std only.

use super::{FILE_FORMAT_VERSION, FormatError, OLDEST_FORMAT_VERSION};

/// Magic bytes that open every ciphertext file.
pub const MAGIC: [u8; 4] = *b"CFS\x01";
/// Offset of the big-endian format version.
pub const VERSION_OFFSET: usize = MAGIC.len();
/// Offset of the 128-bit file id.
pub const FILE_ID_OFFSET: usize = VERSION_OFFSET + size_of::<u16>();
/// Length of a file id in bytes.
pub const FILE_ID_LEN: usize = 16;
/// Total header length; the first chunk starts here.
pub const HEADER_LEN: usize = FILE_ID_OFFSET + FILE_ID_LEN;

/// The random 128-bit identity of a ciphertext file. It names the file's key row in the header
/// store and is bound into every chunk's associated data, so it must never be reused: a fresh
/// one comes from the OS CSPRNG for every new file (hard links share their inode's id).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId(pub [u8; FILE_ID_LEN]);

impl std::fmt::Debug for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FileId({self})")
    }
}

impl std::fmt::Display for FileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl FileId {
    /// Builds an id from a slice read back from storage; `None` if the length is wrong.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(FileId)
    }
}

/// A decoded file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Format version the file was created with; its chunks follow that version's rules.
    pub version: u16,
    /// The file's identity.
    pub file_id: FileId,
}

impl FileHeader {
    /// A header for a new file at the current format version.
    pub fn new(file_id: FileId) -> Self {
        FileHeader {
            version: FILE_FORMAT_VERSION,
            file_id,
        }
    }

    /// The exact bytes that open the ciphertext file.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..VERSION_OFFSET].copy_from_slice(&MAGIC);
        out[VERSION_OFFSET..FILE_ID_OFFSET].copy_from_slice(&self.version.to_be_bytes());
        out[FILE_ID_OFFSET..HEADER_LEN].copy_from_slice(&self.file_id.0);
        out
    }

    /// Decodes a header, refusing wrong magic and versions this reader does not know (0, and
    /// anything newer than [`FILE_FORMAT_VERSION`]).
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() < HEADER_LEN {
            return Err(FormatError::Truncated {
                what: "file header",
                len: bytes.len(),
                need: HEADER_LEN,
            });
        }
        if bytes[..VERSION_OFFSET] != MAGIC {
            return Err(FormatError::BadMagic);
        }
        let version = u16::from_be_bytes([bytes[VERSION_OFFSET], bytes[VERSION_OFFSET + 1]]);
        if !(OLDEST_FORMAT_VERSION..=FILE_FORMAT_VERSION).contains(&version) {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let file_id = FileId::from_slice(&bytes[FILE_ID_OFFSET..HEADER_LEN])
            .expect("slice is exactly FILE_ID_LEN long");
        Ok(FileHeader { version, file_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = FileHeader::new(FileId([7; 16]));
        assert_eq!(FileHeader::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn new_headers_are_v2_and_v1_headers_still_decode() {
        let mut b = FileHeader::new(FileId([1; 16])).encode();
        assert_eq!(&b[VERSION_OFFSET..FILE_ID_OFFSET], &[0, 2]);
        b[5] = 1;
        let h = FileHeader::decode(&b).unwrap();
        assert_eq!((h.version, h.file_id), (1, FileId([1; 16])));
        assert_eq!(h.encode(), b, "a v1 header re-encodes as v1");
    }

    #[test]
    fn header_rejects_bad_magic_version_and_truncation() {
        let mut b = FileHeader::new(FileId([1; 16])).encode();
        assert!(matches!(
            FileHeader::decode(&b[..HEADER_LEN - 1]),
            Err(FormatError::Truncated { .. })
        ));
        for bad in [0u8, 3, 0xff] {
            b[5] = bad;
            assert_eq!(
                FileHeader::decode(&b),
                Err(FormatError::UnsupportedVersion(u16::from(bad)))
            );
        }
        b[4] = 1;
        b[5] = 2;
        assert_eq!(
            FileHeader::decode(&b),
            Err(FormatError::UnsupportedVersion(0x0102))
        );
        b[0] ^= 1;
        assert_eq!(FileHeader::decode(&b), Err(FormatError::BadMagic));
    }

    #[test]
    fn file_id_displays_as_hex() {
        let mut id = [0u8; 16];
        id[15] = 0xab;
        assert_eq!(FileId(id).to_string(), "000000000000000000000000000000ab");
    }

    #[test]
    fn fuzz_style_decode_never_panics() {
        for len in 0..40 {
            for fill in [0u8, 0x43, 0xff] {
                let _ = FileHeader::decode(&vec![fill; len]);
            }
        }
    }
}
