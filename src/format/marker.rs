//! The volume marker: the small file `cofferfs.volume` in the cipherdir root that names the
//! volume the cipherdir belongs to, so a header store kept elsewhere (`--header-store`) can be
//! matched with its cipherdir, and says where that store is.
//!
//! ```text
//! offset  size  field
//!      0     4  magic  "CFSV"
//!      4     2  marker version, big-endian (1; not the content format version)
//!      6     1  store location: 0 = cofferfs.db in the cipherdir, 1 = elsewhere
//!      7    16  volume_id: the same 16 bytes as `volume.volume_id` in the header store
//!     23        end (the file is exactly 23 bytes)
//! ```
//! Imports std only.

use super::FormatError;

/// Magic bytes that open the marker.
pub const MARKER_MAGIC: [u8; 4] = *b"CFSV";
/// Version of the marker's own layout. It is not the content format version (which file
/// headers and `volume.format_version` carry): the marker did not change when v2 added the
/// final-chunk flag, so v1 and v2 volumes write the same marker.
pub const MARKER_VERSION: u16 = 1;
/// Offset of the big-endian marker version.
pub const MARKER_VERSION_OFFSET: usize = MARKER_MAGIC.len();
/// Offset of the store-location byte.
pub const STORE_LOCATION_OFFSET: usize = MARKER_VERSION_OFFSET + size_of::<u16>();
/// Offset of the volume id.
pub const VOLUME_ID_OFFSET: usize = STORE_LOCATION_OFFSET + size_of::<u8>();
/// Length of a volume id.
pub const VOLUME_ID_LEN: usize = 16;
/// Exact length of the marker file.
pub const MARKER_LEN: usize = VOLUME_ID_OFFSET + VOLUME_ID_LEN;

/// Where a volume's header store lives. Recorded in the marker so that a cipherdir whose
/// store is elsewhere says so, instead of looking like a cipherdir that lost its store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreLocation {
    /// `cofferfs.db` in the cipherdir root (the default).
    InCipherdir,
    /// A file outside the cipherdir, given with `--header-store PATH`.
    Elsewhere,
}

impl StoreLocation {
    fn to_byte(self) -> u8 {
        match self {
            StoreLocation::InCipherdir => 0,
            StoreLocation::Elsewhere => 1,
        }
    }

    fn from_byte(b: u8) -> Option<Self> {
        match b {
            0 => Some(StoreLocation::InCipherdir),
            1 => Some(StoreLocation::Elsewhere),
            _ => None,
        }
    }
}

/// A decoded volume marker. It is neither secret nor authenticated: it only pairs a cipherdir
/// with its header store (a mistake check), and everything that matters is authenticated by
/// the keys the store holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeMarker {
    /// Where the header store is.
    pub store: StoreLocation,
    /// The volume's id, as in the header store.
    pub volume_id: [u8; VOLUME_ID_LEN],
}

impl VolumeMarker {
    /// The exact bytes of the marker file.
    pub fn encode(&self) -> [u8; MARKER_LEN] {
        let mut out = [0u8; MARKER_LEN];
        out[..MARKER_VERSION_OFFSET].copy_from_slice(&MARKER_MAGIC);
        out[MARKER_VERSION_OFFSET..STORE_LOCATION_OFFSET]
            .copy_from_slice(&MARKER_VERSION.to_be_bytes());
        out[STORE_LOCATION_OFFSET] = self.store.to_byte();
        out[VOLUME_ID_OFFSET..].copy_from_slice(&self.volume_id);
        out
    }

    /// Decodes a marker file's whole content: exactly `MARKER_LEN` bytes, the right magic, a
    /// version this reader knows and a known store location.
    pub fn decode(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() < MARKER_LEN {
            return Err(FormatError::Truncated {
                what: "volume marker",
                len: bytes.len(),
                need: MARKER_LEN,
            });
        }
        if bytes.len() > MARKER_LEN {
            return Err(FormatError::BadMarker("longer than 23 bytes"));
        }
        if bytes[..MARKER_VERSION_OFFSET] != MARKER_MAGIC {
            return Err(FormatError::BadMarker("bad magic"));
        }
        let version = u16::from_be_bytes([
            bytes[MARKER_VERSION_OFFSET],
            bytes[MARKER_VERSION_OFFSET + 1],
        ]);
        if version != MARKER_VERSION {
            return Err(FormatError::UnsupportedVersion(version));
        }
        let store = StoreLocation::from_byte(bytes[STORE_LOCATION_OFFSET])
            .ok_or(FormatError::BadMarker("unknown store location"))?;
        let volume_id = bytes[VOLUME_ID_OFFSET..]
            .try_into()
            .expect("the slice is exactly VOLUME_ID_LEN long");
        Ok(VolumeMarker { store, volume_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(store: StoreLocation) -> VolumeMarker {
        VolumeMarker {
            store,
            volume_id: std::array::from_fn(|i| i as u8),
        }
    }

    #[test]
    fn marker_round_trips_both_locations() {
        for store in [StoreLocation::InCipherdir, StoreLocation::Elsewhere] {
            let m = marker(store);
            assert_eq!(VolumeMarker::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn marker_rejects_wrong_length_magic_version_and_location() {
        let good = marker(StoreLocation::Elsewhere).encode();
        assert!(matches!(
            VolumeMarker::decode(&good[..MARKER_LEN - 1]),
            Err(FormatError::Truncated { .. })
        ));
        let mut long = good.to_vec();
        long.push(0);
        assert_eq!(
            VolumeMarker::decode(&long),
            Err(FormatError::BadMarker("longer than 23 bytes"))
        );
        let mut b = good;
        b[STORE_LOCATION_OFFSET] = 2;
        assert_eq!(
            VolumeMarker::decode(&b),
            Err(FormatError::BadMarker("unknown store location"))
        );
        let mut b = good;
        b[MARKER_VERSION_OFFSET + 1] = 2;
        assert_eq!(
            VolumeMarker::decode(&b),
            Err(FormatError::UnsupportedVersion(2))
        );
        let mut b = good;
        b[0] ^= 1;
        assert_eq!(
            VolumeMarker::decode(&b),
            Err(FormatError::BadMarker("bad magic"))
        );
    }

    #[test]
    fn marker_is_23_bytes_with_the_documented_layout() {
        let b = marker(StoreLocation::Elsewhere).encode();
        assert_eq!(b.len(), 23);
        assert_eq!(&b[..7], b"CFSV\x00\x01\x01");
        assert_eq!(b[7], 0);
        assert_eq!(b[22], 15);
    }

    #[test]
    fn fuzz_style_decode_never_panics() {
        for len in 0..30 {
            for fill in [0u8, 0x43, 0xff] {
                let _ = VolumeMarker::decode(&vec![fill; len]);
            }
        }
    }
}
