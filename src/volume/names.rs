//! Mapping between plaintext names and on-disk names, and the per-directory ids that bind a
//! name to its directory.

use std::ffi::{OsStr, OsString};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use rustix::fs::{Mode, OFlags};

use super::{Result, VolumeError};
use crate::crypto::names::{NameCipher, sha256};
use crate::crypto::os_random;
use crate::format::names::{
    self as fnames, DIR_ID_FILE, DIR_ID_LEN, LONG_NAME_PREFIX, MAX_NAME_LEN,
};
use crate::keystore::HeaderStore;

/// A directory's random id: the associated data of its children's encrypted names.
pub type DirId = [u8; DIR_ID_LEN];

/// An entry's on-disk name, plus what must be recorded in the header store before the entry
/// is created when the name is a long one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskName {
    /// The name in the ciphertext directory.
    pub name: OsString,
    /// For a long name: the digest and the full encoded name to keep in the header store.
    pub long: Option<([u8; 32], String)>,
}

/// Encrypts and decrypts names, or passes them through on a plaintext-names volume.
#[derive(Debug)]
pub struct NameMap {
    cipher: Option<NameCipher>,
}

impl NameMap {
    /// A map over `cipher`; `None` means plaintext names.
    pub fn new(cipher: Option<NameCipher>) -> Self {
        NameMap { cipher }
    }

    /// True when names are encrypted (and directories carry ids).
    pub fn encrypted(&self) -> bool {
        self.cipher.is_some()
    }

    /// The name cipher, if names are encrypted.
    pub fn cipher(&self) -> Option<&NameCipher> {
        self.cipher.as_ref()
    }

    /// The on-disk name of `plain` in the directory with id `dir_id`. Fails with ENAMETOOLONG
    /// past 255 bytes and refuses names cofferfs reserves on plaintext-names volumes.
    pub fn disk_name(&self, dir_id: &DirId, plain: &OsStr, in_root: bool) -> Result<DiskName> {
        if plain.len() > MAX_NAME_LEN {
            return Err(std::io::Error::from_raw_os_error(libc::ENAMETOOLONG).into());
        }
        let Some(cipher) = &self.cipher else {
            if fnames::is_reserved(plain.as_bytes(), in_root) {
                return Err(std::io::Error::from_raw_os_error(libc::EPERM).into());
            }
            return Ok(DiskName {
                name: plain.to_owned(),
                long: None,
            });
        };
        let encoded = fnames::encode(&cipher.encrypt_name(dir_id, plain.as_bytes()));
        if encoded.len() <= MAX_NAME_LEN {
            return Ok(DiskName {
                name: encoded.into(),
                long: None,
            });
        }
        let digest = sha256(encoded.as_bytes());
        Ok(DiskName {
            name: fnames::long_name(&digest).into(),
            long: Some((digest, encoded)),
        })
    }

    /// The plaintext name of an on-disk entry, or `None` for cofferfs's own files.
    pub fn plain_name(
        &self,
        dir_id: &DirId,
        disk: &OsStr,
        in_root: bool,
        store: &HeaderStore,
    ) -> Result<Option<OsString>> {
        if fnames::is_reserved(disk.as_bytes(), in_root) {
            return Ok(None);
        }
        let Some(cipher) = &self.cipher else {
            return Ok(Some(disk.to_owned()));
        };
        let bad = || VolumeError::CorruptName(disk.to_string_lossy().into_owned());
        let text = disk.to_str().ok_or_else(bad)?;
        let encoded = match text.strip_prefix(LONG_NAME_PREFIX) {
            Some(d) => {
                let digest: [u8; 32] = fnames::decode(d)
                    .ok()
                    .and_then(|v| v.try_into().ok())
                    .ok_or_else(bad)?;
                let row = store.long_name(&digest)?.ok_or_else(bad)?;
                if !long_row_matches(&digest, &row) {
                    return Err(bad());
                }
                row
            }
            None => text.to_owned(),
        };
        let enc = fnames::decode(&encoded).map_err(|_| bad())?;
        let plain = cipher.decrypt_name(dir_id, &enc).map_err(|_| bad())?;
        Ok(Some(OsString::from_vec(plain)))
    }

    /// Refuses the long name `dn` when the header store's row under its digest holds another
    /// encoded name (a swapped or altered row): `CorruptName`, so EIO. The lookup itself needs
    /// no row (it hashes the name it was asked for), but it must not serve an entry that
    /// `readdir` shows under a different name. A missing row is left to `fsck`.
    pub fn check_long_name_row(&self, dn: &DiskName, store: &HeaderStore) -> Result<()> {
        let Some((digest, encoded)) = &dn.long else {
            return Ok(());
        };
        match store.long_name(digest)? {
            Some(row) if row != *encoded => Err(VolumeError::CorruptName(
                dn.name.to_string_lossy().into_owned(),
            )),
            _ => Ok(()),
        }
    }
}

/// True when `encoded`, a long-name row's name, is the one the row's `digest` names. The
/// digest is not keyed, so this catches rows swapped or altered in the header store; the name
/// AEAD then checks that the name belongs to its directory.
pub fn long_row_matches(digest: &[u8; 32], encoded: &str) -> bool {
    sha256(encoded.as_bytes()) == *digest
}

/// Writes a new random id into the directory `dir` (the `.cofferfs.dirid` file, mode 0444).
pub fn create_dir_id(dir: BorrowedFd<'_>) -> Result<DirId> {
    let mut id = [0u8; DIR_ID_LEN];
    os_random(&mut id)?;
    write_dir_id(dir, &id)?;
    Ok(id)
}

/// Writes `id` as the id of directory `dir` (restoring it after a failed `rmdir`).
pub fn write_dir_id(dir: BorrowedFd<'_>, id: &DirId) -> Result<()> {
    let fd = rustix::fs::openat(
        dir,
        DIR_ID_FILE,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o444),
    )?;
    let file = std::fs::File::from(fd);
    std::os::unix::fs::FileExt::write_all_at(&file, id, 0)?;
    Ok(())
}

/// Reads the id of the directory `dir`.
pub fn read_dir_id(dir: BorrowedFd<'_>) -> Result<DirId> {
    let fd = rustix::fs::openat(
        dir,
        DIR_ID_FILE,
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let file = std::fs::File::from(fd);
    let mut id = [0u8; DIR_ID_LEN];
    let n = super::chunked::read_full_at(&file, &mut id, 0)?;
    if n != DIR_ID_LEN {
        return Err(VolumeError::CorruptFile {
            file_id: None,
            reason: format!("directory id file is {n} bytes, not {DIR_ID_LEN}"),
        });
    }
    Ok(id)
}

/// Serialises the repairs of [`read_or_renew_dir_id`], so that two threads never give one
/// directory two different ids. Taken only when an id is missing or short: a rare path.
static RENEW_LOCK: parking_lot::Mutex<()> = parking_lot::const_mutex(());

/// The id of directory `dir`, or `None` when its id file is missing or short.
fn read_dir_id_if_any(dir: BorrowedFd<'_>) -> Result<Option<DirId>> {
    match read_dir_id(dir) {
        Ok(id) => Ok(Some(id)),
        Err(VolumeError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(VolumeError::CorruptFile { file_id: None, .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// True when `dir` holds no entry but (maybe) its id file.
fn holds_only_id(dir: BorrowedFd<'_>) -> Result<bool> {
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for entry in rustix::fs::Dir::read_from(&fd)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." && name != DIR_ID_FILE.as_bytes() {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Reads the id of directory `dir`; when its id file is missing or short and the directory
/// holds nothing else, gives it a new id (if `writable`). That is what a crash leaves inside
/// `mkdir` (directory made, id not yet written) or `rmdir` (id removed, directory not yet):
/// no name is bound to the id of an empty directory, so a new one loses nothing. A directory
/// with entries that lost its id is damage for `fsck --repair` (`CorruptFile`, so EIO).
pub fn read_or_renew_dir_id(dir: BorrowedFd<'_>, writable: bool) -> Result<DirId> {
    if let Some(id) = read_dir_id_if_any(dir)? {
        return Ok(id);
    }
    let _g = RENEW_LOCK.lock();
    if let Some(id) = read_dir_id_if_any(dir)? {
        return Ok(id);
    }
    if !writable || !holds_only_id(dir)? {
        return Err(VolumeError::CorruptFile {
            file_id: None,
            reason: format!("directory id file {DIR_ID_FILE} is missing or damaged"),
        });
    }
    match rustix::fs::unlinkat(dir, DIR_ID_FILE, rustix::fs::AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    log::warn!("an empty directory had no id (interrupted mkdir or rmdir): given a new one");
    create_dir_id(dir)
}
