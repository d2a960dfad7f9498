//! How names appear in the cipherdir: base64url (no padding) of the encrypted name, the
//! long-name rule, and the reserved names cofferfs keeps for itself. Imports std and the
//! `base64` codec only.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::FormatError;

/// Longest name most Linux filesystems accept, and so the longest on-disk name we write.
pub const MAX_NAME_LEN: usize = 255;
/// Prefix of the on-disk name of an entry whose encoded name is longer than `MAX_NAME_LEN`.
/// The rest is base64url(SHA-256(encoded name)); the full encoded name is kept in the header
/// store. It contains '.', which base64url never does, so it cannot collide with a short name.
pub const LONG_NAME_PREFIX: &str = "cofferfs.long.";
/// File in every ciphertext directory (encrypted-names volumes) that holds the directory's
/// random 16-byte id, the associated data of its children's names.
pub const DIR_ID_FILE: &str = ".cofferfs.dirid";
/// Length of a directory id.
pub const DIR_ID_LEN: usize = 16;
/// The header store's file name in the cipherdir root (its default place).
pub const HEADER_STORE_NAME: &str = "cofferfs.db";
/// The volume marker's file name in the cipherdir root: it pairs the cipherdir with its header
/// store by volume id and says where the store is (`format/marker.rs`).
pub const VOLUME_MARKER_NAME: &str = "cofferfs.volume";
/// Directory in the cipherdir root where `fsck --repair` moves entries it cannot read (never
/// deleting them). Hidden from the mount.
pub const QUARANTINE_DIR: &str = "cofferfs.quarantine";
/// Prefix, in the cipherdir root, of the copies `header restore` makes of the store: the one it
/// replaces (`cofferfs.db.before-restore-<time>`) and the one it is about to put in place
/// (`cofferfs.db.restoring`). cofferfs metadata, hidden from the mount like the store itself.
pub const HEADER_STORE_COPY_PREFIX: &str = "cofferfs.db.";
/// Prefix of the temporary file `reencrypt` writes next to the file it rewrites, before
/// renaming it over the original; anywhere in the tree. A leftover one is the trace of an
/// interrupted `reencrypt` (the original is intact) and `fsck --repair` removes it.
pub const TEMP_PREFIX: &str = ".cofferfs.tmp.";

/// Prefix of the backing target of a symlink whose encoded target is longer than
/// [`MAX_TARGET_LEN`] (format v3). The rest is base64url(SHA-256(encoded target)); the full
/// encoded target is kept in the header store (`long_targets`). It contains '.', which
/// base64url never does, so it cannot be mistaken for a short encoded target.
pub const LONG_TARGET_PREFIX: &str = "cofferfs.longlink.";
/// Longest symlink target, plaintext or backing: `PATH_MAX - 1`, what ext4 takes.
pub const MAX_TARGET_LEN: usize = 4095;
/// Length of a long target's backing link: the prefix and 43 base64url characters.
pub const LONG_TARGET_LINK_LEN: usize = LONG_TARGET_PREFIX.len() + 43;

/// The backing target of a long symlink target whose encoded form has SHA-256 `digest`.
pub fn long_target(digest: &[u8; 32]) -> String {
    format!("{LONG_TARGET_PREFIX}{}", encode(digest))
}

/// The digest in a long target's backing link, if `backing` is one and parses.
pub fn long_target_digest(backing: &[u8]) -> Option<[u8; 32]> {
    let rest = backing.strip_prefix(LONG_TARGET_PREFIX.as_bytes())?;
    decode(std::str::from_utf8(rest).ok()?)
        .ok()?
        .try_into()
        .ok()
}

/// Encodes encrypted name bytes for use as a file name.
pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes a name written by [`encode`].
pub fn decode(name: &str) -> Result<Vec<u8>, FormatError> {
    URL_SAFE_NO_PAD
        .decode(name)
        .map_err(|_| FormatError::InvalidName)
}

/// The on-disk name for an encoded name of any length: itself when it fits, otherwise the
/// long-name form built from `digest` (SHA-256 of the encoded name, computed by the caller).
pub fn long_name(digest: &[u8; 32]) -> String {
    format!("{LONG_NAME_PREFIX}{}", encode(digest))
}

/// True for the on-disk names that hold cofferfs metadata rather than user entries: they are
/// hidden from directory listings and cannot be created through the mount.
pub fn is_reserved(disk_name: &[u8], in_root: bool) -> bool {
    let reserved_anywhere = [DIR_ID_FILE.as_bytes()];
    let reserved_in_root = [
        HEADER_STORE_NAME.as_bytes(),
        b"cofferfs.db-wal",
        b"cofferfs.db-shm",
        b"cofferfs.db-journal",
        VOLUME_MARKER_NAME.as_bytes(),
        QUARANTINE_DIR.as_bytes(),
    ];
    reserved_anywhere.contains(&disk_name)
        || is_temp_name(disk_name)
        || (in_root
            && (reserved_in_root.contains(&disk_name)
                || disk_name.starts_with(HEADER_STORE_COPY_PREFIX.as_bytes())))
}

/// True for a `reencrypt` temporary file name (see [`TEMP_PREFIX`]).
pub fn is_temp_name(disk_name: &[u8]) -> bool {
    disk_name.starts_with(TEMP_PREFIX.as_bytes())
}

/// Plaintext length of a symlink target stored as `encoded_len` base64url characters of
/// AES-SIV output (the SIV tag is 16 bytes). Lets `stat` report a symlink's size without
/// reading the link, so the backing atime is never touched.
pub fn siv_encoded_len_to_plain_len(encoded_len: u64) -> u64 {
    (encoded_len * 3 / 4).saturating_sub(16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_round_trips_and_rejects_garbage() {
        for len in 0..64 {
            let bytes: Vec<u8> = (0..len as u8).collect();
            assert_eq!(decode(&encode(&bytes)).unwrap(), bytes);
        }
        assert_eq!(decode("a.b"), Err(FormatError::InvalidName));
        assert_eq!(decode("abc="), Err(FormatError::InvalidName));
    }

    #[test]
    fn long_names_fit_and_never_collide_with_short_ones() {
        let n = long_name(&[0xff; 32]);
        assert!(n.len() <= MAX_NAME_LEN);
        assert!(
            decode(&n).is_err(),
            "a long name must not parse as a short one"
        );
    }

    #[test]
    fn long_targets_never_parse_as_short_ones() {
        let t = long_target(&[0xab; 32]);
        assert_eq!(t.len(), LONG_TARGET_LINK_LEN);
        assert!(decode(&t).is_err());
        assert_eq!(long_target_digest(t.as_bytes()), Some([0xab; 32]));
        assert_eq!(long_target_digest(b"cofferfs.longlink.abc"), None);
    }

    #[test]
    fn reserved_names() {
        assert!(is_reserved(b".cofferfs.dirid", false));
        assert!(is_reserved(b"cofferfs.db", true));
        assert!(!is_reserved(b"cofferfs.db", false));
        assert!(is_reserved(
            b"cofferfs.db.before-restore-20261202T013000Z",
            true
        ));
        assert!(!is_reserved(
            b"cofferfs.db.before-restore-20261202T013000Z",
            false
        ));
        assert!(!is_reserved(b"abc", true));
        assert!(is_reserved(b"cofferfs.quarantine", true));
        assert!(!is_reserved(b"cofferfs.quarantine", false));
        assert!(is_reserved(b"cofferfs.volume", true));
        assert!(!is_reserved(b"cofferfs.volume", false));
        assert!(is_reserved(b".cofferfs.tmp.0123abcd", false));
        assert!(is_reserved(b".cofferfs.tmp.0123abcd", true));
        assert!(!is_reserved(b".cofferfs.tm", false));
    }

    #[test]
    fn siv_length_formula_matches_encoding() {
        for plain in 0..300usize {
            let enc = encode(&vec![0u8; plain + 16]);
            assert_eq!(siv_encoded_len_to_plain_len(enc.len() as u64), plain as u64);
        }
    }
}
