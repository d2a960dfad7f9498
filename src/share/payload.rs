//! The share payload: what the age file of a share decrypts to (docs/FORMAT.md, "Shares").
//! Pure encoding and decoding over bytes, like `format`; it lives here because it carries
//! FEKs, which only ever travel in [`Fek`] (out of core dumps, wiped on drop).
//!
//! ```text
//! offset  size  field
//!      0     8  magic "CFSSHARE"
//!      8     2  payload version, big-endian (1)
//!     10     2  flags, big-endian: bit 0 = names (path, size, mtime per file);
//!                  bit 1 = bundle (the ciphertexts follow the entries); others 0
//!     12     4  file count N, big-endian (1..=65536)
//!     16        N entries:
//!               16  file id (all zero for an empty file without a key)
//!                2  file format version (1 or 2; 0 for an empty file without a key)
//!                4  chunk size in bytes
//!               32  FEK (all zero for an empty file without a key)
//!               with the names flag only:
//!                2  path length L (1..=4096)
//!                L  path: relative, '/'-separated, no '.', '..' or empty component, no NUL
//!                8  plaintext size in bytes when shared
//!                8  mtime, seconds since the epoch (signed)
//!                4  mtime, nanoseconds (< 1e9)
//! ```
//! With the bundle flag, the entries are followed by each entry's ciphertext file, in entry
//! order: 8 bytes of length, then that many bytes. Nothing else may follow.

use std::path::{Component, Path, PathBuf};

use crate::crypto::Fek;
use crate::format::{FILE_ID_LEN, FileId};

/// The magic bytes that open every share payload.
pub const MAGIC: [u8; 8] = *b"CFSSHARE";
/// The payload version this build writes and reads.
pub const PAYLOAD_VERSION: u16 = 1;
/// Flag: every entry carries its plaintext path, size and mtime (not `--no-names`).
pub const FLAG_NAMES: u16 = 1;
/// Flag: the ciphertext files follow the entries (`--bundle`).
pub const FLAG_BUNDLE: u16 = 2;
/// Most files one share may hold (a bound for the decoder, not a limit anyone should meet).
pub const MAX_FILES: u32 = 65536;
/// Longest path an entry may carry (Linux's `PATH_MAX`).
pub const MAX_PATH_LEN: usize = 4096;

/// Why bytes are not a share payload this build reads.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    /// Not a cofferfs share at all (another age file).
    #[error("not a cofferfs share (bad magic)")]
    BadMagic,
    /// Written by a newer cofferfs.
    #[error("share payload version {0} is not supported (this cofferfs reads version 1)")]
    UnsupportedVersion(u16),
    /// Damaged or made by hand.
    #[error("malformed share payload: {0}")]
    Malformed(&'static str),
}

/// What a share says about one file's name, size and mtime at the time it was shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedName {
    /// The plaintext path inside the volume, relative (checked safe to join under a directory).
    pub path: PathBuf,
    /// Plaintext size in bytes when shared.
    pub size: u64,
    /// Modification time when shared, seconds since the epoch.
    pub mtime_secs: i64,
    /// Nanoseconds of the modification time.
    pub mtime_nsecs: u32,
}

/// One shared file: enough to authenticate and decrypt its ciphertext, and nothing else of
/// the volume.
#[derive(Debug)]
pub struct SharedFile {
    /// The file id its chunks are bound to; `None` for an empty file that has no key yet (its
    /// ciphertext is a 0-byte file).
    pub file_id: Option<FileId>,
    /// The file's format version (its chunk rules).
    pub file_version: u16,
    /// The volume's chunk size.
    pub chunk_len: u32,
    /// The file's key; `None` with `file_id`.
    pub fek: Option<Fek>,
    /// Path, size and mtime, unless shared with `--no-names`.
    pub name: Option<SharedName>,
}

/// Whether `path` is safe to write below a directory: relative, only normal components.
pub fn is_safe_relative(path: &Path) -> bool {
    let s = path.as_os_str().as_encoded_bytes();
    !s.is_empty()
        && !s.contains(&0)
        && !s.starts_with(b"/")
        && !s.ends_with(b"/")
        && !s.split(|&b| b == b'/').any(|c| c.is_empty())
        && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// Encodes a payload. Every entry must carry a name or none may (`names` says which).
pub fn encode(
    files: &[SharedFile],
    names: bool,
) -> Result<zeroize::Zeroizing<Vec<u8>>, PayloadError> {
    encode_bundled(files, names, None)
}

/// Encodes a payload, with `bundle` (one ciphertext file per entry, in order) after the
/// entries when given.
pub fn encode_bundled(
    files: &[SharedFile],
    names: bool,
    bundle: Option<&[Vec<u8>]>,
) -> Result<zeroize::Zeroizing<Vec<u8>>, PayloadError> {
    if files.is_empty() || files.len() as u64 > MAX_FILES as u64 {
        return Err(PayloadError::Malformed("file count"));
    }
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(16 + files.len() * 128));
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&PAYLOAD_VERSION.to_be_bytes());
    if bundle.is_some_and(|b| b.len() != files.len()) {
        return Err(PayloadError::Malformed("one bundled ciphertext per file"));
    }
    let flags = if names { FLAG_NAMES } else { 0 } | if bundle.is_some() { FLAG_BUNDLE } else { 0 };
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&(files.len() as u32).to_be_bytes());
    for f in files {
        out.extend_from_slice(&f.file_id.map_or([0; FILE_ID_LEN], |id| id.0));
        out.extend_from_slice(&f.file_version.to_be_bytes());
        out.extend_from_slice(&f.chunk_len.to_be_bytes());
        match &f.fek {
            Some(k) => out.extend_from_slice(k.expose()),
            None => out.extend_from_slice(&[0; Fek::LEN]),
        }
        match (&f.name, names) {
            (Some(n), true) => {
                let p = n.path.as_os_str().as_encoded_bytes();
                if !is_safe_relative(&n.path) || p.len() > MAX_PATH_LEN {
                    return Err(PayloadError::Malformed("path"));
                }
                out.extend_from_slice(&(p.len() as u16).to_be_bytes());
                out.extend_from_slice(p);
                out.extend_from_slice(&n.size.to_be_bytes());
                out.extend_from_slice(&n.mtime_secs.to_be_bytes());
                out.extend_from_slice(&n.mtime_nsecs.to_be_bytes());
            }
            (None, false) => {}
            _ => return Err(PayloadError::Malformed("names on some entries only")),
        }
    }
    for c in bundle.unwrap_or_default() {
        out.extend_from_slice(&(c.len() as u64).to_be_bytes());
        out.extend_from_slice(c);
    }
    Ok(out)
}

/// Reads fixed-size fields off the front of a slice.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PayloadError> {
        if self.0.len() < n {
            return Err(PayloadError::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PayloadError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }
}

/// Decodes a payload, refusing anything not exactly as [`encode`] writes it (a bundle's
/// ciphertexts are checked and left out: see [`decode_bundled`]).
pub fn decode(bytes: &[u8]) -> Result<Vec<SharedFile>, PayloadError> {
    decode_bundled(bytes).map(|(files, _)| files)
}

/// A decoded payload: its entries and, for a bundle, each entry's ciphertext file (in entry
/// order, borrowed from the payload).
pub type Decoded<'a> = (Vec<SharedFile>, Option<Vec<&'a [u8]>>);

/// Decodes a payload and, if it is a bundle, the ciphertext of each entry (in entry order).
pub fn decode_bundled(bytes: &[u8]) -> Result<Decoded<'_>, PayloadError> {
    let mut c = Cursor(bytes);
    if c.take(MAGIC.len()).map_err(|_| PayloadError::BadMagic)? != MAGIC {
        return Err(PayloadError::BadMagic);
    }
    let version = u16::from_be_bytes(c.array()?);
    if version != PAYLOAD_VERSION {
        return Err(PayloadError::UnsupportedVersion(version));
    }
    let flags = u16::from_be_bytes(c.array()?);
    if flags & !(FLAG_NAMES | FLAG_BUNDLE) != 0 {
        return Err(PayloadError::Malformed("unknown flags"));
    }
    let names = flags & FLAG_NAMES != 0;
    let count = u32::from_be_bytes(c.array()?);
    if count == 0 || count > MAX_FILES {
        return Err(PayloadError::Malformed("file count"));
    }
    let mut files = Vec::with_capacity(count.min(1024) as usize);
    for _ in 0..count {
        let id: [u8; FILE_ID_LEN] = c.array()?;
        let file_version = u16::from_be_bytes(c.array()?);
        let chunk_len = u32::from_be_bytes(c.array()?);
        let key = c.take(Fek::LEN)?;
        let keyless = id == [0; FILE_ID_LEN];
        if keyless != (file_version == 0) || (keyless && key.iter().any(|&b| b != 0)) {
            return Err(PayloadError::Malformed("keyless entry"));
        }
        let name = if names {
            let len = u16::from_be_bytes(c.array()?) as usize;
            if len == 0 || len > MAX_PATH_LEN {
                return Err(PayloadError::Malformed("path length"));
            }
            let raw = c.take(len)?;
            // SAFETY-free: Unix paths are bytes; `from_encoded_bytes_unchecked` is not needed.
            let path =
                PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(raw));
            if !is_safe_relative(&path) {
                return Err(PayloadError::Malformed("path not relative"));
            }
            let size = u64::from_be_bytes(c.array()?);
            let mtime_secs = i64::from_be_bytes(c.array()?);
            let mtime_nsecs = u32::from_be_bytes(c.array()?);
            if mtime_nsecs >= 1_000_000_000 {
                return Err(PayloadError::Malformed("mtime nanoseconds"));
            }
            Some(SharedName {
                path,
                size,
                mtime_secs,
                mtime_nsecs,
            })
        } else {
            None
        };
        files.push(SharedFile {
            file_id: (!keyless).then_some(FileId(id)),
            file_version,
            chunk_len,
            fek: if keyless { None } else { Fek::from_slice(key) },
            name,
        });
    }
    let bundle = if flags & FLAG_BUNDLE != 0 {
        let mut cts = Vec::with_capacity(files.len());
        for _ in 0..files.len() {
            let len = u64::from_be_bytes(c.array()?);
            let len = usize::try_from(len).map_err(|_| PayloadError::Malformed("truncated"))?;
            cts.push(c.take(len)?);
        }
        Some(cts)
    } else {
        None
    };
    if !c.0.is_empty() {
        return Err(PayloadError::Malformed("trailing bytes"));
    }
    Ok((files, bundle))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(names: bool) -> Vec<SharedFile> {
        vec![
            SharedFile {
                file_id: Some(FileId([7; 16])),
                file_version: 2,
                chunk_len: 4096,
                fek: Fek::from_slice(&[9; 32]),
                name: names.then(|| SharedName {
                    path: "docs/a.txt".into(),
                    size: 5,
                    mtime_secs: -3,
                    mtime_nsecs: 999_999_999,
                }),
            },
            SharedFile {
                file_id: None,
                file_version: 0,
                chunk_len: 4096,
                fek: None,
                name: names.then(|| SharedName {
                    path: "empty".into(),
                    size: 0,
                    mtime_secs: 1,
                    mtime_nsecs: 0,
                }),
            },
        ]
    }

    #[test]
    fn round_trips_with_and_without_names() {
        for names in [true, false] {
            let bytes = encode(&sample(names), names).unwrap();
            let back = decode(&bytes).unwrap();
            assert_eq!(back.len(), 2);
            assert_eq!(back[0].file_id, Some(FileId([7; 16])));
            assert_eq!(back[0].fek.as_ref().unwrap().expose(), &[9; 32]);
            assert_eq!(back[0].name, sample(names)[0].name);
            assert!(back[1].file_id.is_none() && back[1].fek.is_none());
            assert_eq!(encode(&back, names).unwrap(), bytes);
        }
    }

    #[test]
    fn bundles_round_trip_and_are_checked() {
        let cts = vec![b"ciphertext one".to_vec(), Vec::new()];
        let bytes = encode_bundled(&sample(true), true, Some(&cts)).unwrap();
        let (files, bundle) = decode_bundled(&bytes).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(bundle.unwrap(), [&b"ciphertext one"[..], &b""[..]]);
        for n in 0..bytes.len() {
            assert!(decode_bundled(&bytes[..n]).is_err(), "truncated to {n}");
        }
        assert!(encode_bundled(&sample(true), true, Some(&cts[..1])).is_err());
        assert!(
            decode_bundled(&encode(&sample(true), true).unwrap())
                .unwrap()
                .1
                .is_none()
        );
    }

    #[test]
    fn refuses_every_truncation_trailing_bytes_and_bad_fields() {
        let bytes = encode(&sample(true), true).unwrap();
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n]).is_err(), "truncated to {n}");
        }
        let mut longer = bytes.to_vec();
        longer.push(0);
        assert!(decode(&longer).is_err());
        let mut bad = bytes.to_vec();
        bad[0] ^= 1;
        assert_eq!(decode(&bad).unwrap_err(), PayloadError::BadMagic);
        let mut bad = bytes.to_vec();
        bad[9] = 2;
        assert_eq!(
            decode(&bad).unwrap_err(),
            PayloadError::UnsupportedVersion(2)
        );
    }

    #[test]
    fn unsafe_paths_are_refused_both_ways() {
        for p in ["/etc/passwd", "../x", "a/../b", "a//b", "./a", "a/", ""] {
            assert!(!is_safe_relative(Path::new(p)), "{p}");
            let mut files = sample(true);
            files[0].name.as_mut().unwrap().path = p.into();
            assert!(encode(&files, true).is_err(), "{p}");
        }
        // Written by hand: "../x" in place of "empty" (same length as "a/../"?) — patch bytes.
        let bytes = encode(&sample(true), true).unwrap();
        let at = bytes.windows(5).position(|w| w == b"empty").unwrap();
        let mut bad = bytes.to_vec();
        bad[at..at + 5].copy_from_slice(b"../xy");
        assert!(decode(&bad).is_err());
        bad[at..at + 5].copy_from_slice(b"/xyzw");
        assert!(decode(&bad).is_err());
    }
}
