//! Mapping between plaintext names and on-disk names, and the per-directory ids that bind a
//! name to its directory.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
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
        // Authentic but impossible: only a crafted entry decrypts to one of these, and
        // passing it up would break the whole listing (the kernel refuses a readdir with `/`)
        // or alias another entry.
        if !is_valid_name(&plain) {
            return Err(bad());
        }
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

/// True for a name a directory entry may have: not empty, `.` or `..`, without `/` or NUL.
pub fn is_valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
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

/// Reads the id of the directory `dir`. The id file comes from the (untrusted) cipherdir and
/// is read by a daemon that often runs as root, so it is never followed if a symlink, never
/// opened unless it is a regular file of exactly [`DIR_ID_LEN`] bytes (a FIFO would block a
/// worker, a device could be read or rewound), and opened `O_NOFOLLOW|O_NONBLOCK` in case it
/// is swapped in between. Anything else is damage (`CorruptFile`: EIO, an fsck finding).
pub fn read_dir_id(dir: BorrowedFd<'_>) -> Result<DirId> {
    let damaged = |what: String| VolumeError::CorruptFile {
        file_id: None,
        reason: format!("directory id file {DIR_ID_FILE} {what}"),
    };
    let check = |st: &rustix::fs::Stat| {
        let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
        if kind != rustix::fs::FileType::RegularFile {
            return Err(damaged(format!("is not a regular file ({kind:?})")));
        }
        if st.st_size != DIR_ID_LEN as i64 {
            return Err(damaged(format!(
                "is {} bytes, not {DIR_ID_LEN}",
                st.st_size
            )));
        }
        Ok(())
    };
    check(&rustix::fs::statat(
        dir,
        DIR_ID_FILE,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )?)?;
    let fd = match rustix::fs::openat(
        dir,
        DIR_ID_FILE,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::LOOP) => return Err(damaged("is a symbolic link".into())),
        Err(e) => return Err(e.into()),
    };
    check(&rustix::fs::fstat(&fd)?)?;
    let file = std::fs::File::from(fd);
    let mut id = [0u8; DIR_ID_LEN];
    let n = super::ciphertext::read_full_at(&file, &mut id, 0)?;
    if n != DIR_ID_LEN {
        return Err(damaged(format!("is {n} bytes, not {DIR_ID_LEN}")));
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

/// True when `dir` holds no entry but (maybe) its id file: what makes a ciphertext directory
/// empty to the user, whose `rmdir` or `rename` over it must then succeed.
pub fn holds_only_id(dir: BorrowedFd<'_>) -> Result<bool> {
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
/// `mkdir` (directory made, id not yet written), `rmdir` or a `rename` over it (id removed,
/// directory not yet): no name is bound to the id of an empty directory, so a new one loses
/// nothing. Read-only (`mount --ro`, read-only media), such a directory gets a stand-in id
/// that is never written: it has no name to decrypt, and nothing can be created in it. A
/// directory with entries that lost its id is damage for `fsck --repair` (`CorruptFile`, so
/// EIO).
pub fn read_or_renew_dir_id(dir: BorrowedFd<'_>, writable: bool) -> Result<DirId> {
    if let Some(id) = read_dir_id_if_any(dir)? {
        return Ok(id);
    }
    let _g = RENEW_LOCK.lock();
    if let Some(id) = read_dir_id_if_any(dir)? {
        return Ok(id);
    }
    if !holds_only_id(dir)? {
        return Err(VolumeError::CorruptFile {
            file_id: None,
            reason: format!("directory id file {DIR_ID_FILE} is missing or damaged"),
        });
    }
    if !writable {
        return Ok(DirId::default());
    }
    match rustix::fs::unlinkat(dir, DIR_ID_FILE, rustix::fs::AtFlags::empty()) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    log::warn!("an empty directory had no id (interrupted mkdir or rmdir): given a new one");
    create_dir_id(dir)
}

/// A ciphertext directory about to be removed (`rmdir`) or replaced (`rename` over it): it
/// held no user entry, and its id file, the one entry the backing filesystem would count, is
/// gone. If the removal then fails, [`restore`](Self::restore) puts the id back. A crash in
/// between leaves an empty directory without an id, which [`read_or_renew_dir_id`] gives a
/// new one at its next use: no name was bound to the old one, so both the directory and
/// whatever was to take its place stay readable.
#[derive(Debug)]
pub struct EmptiedDir {
    dir: OwnedFd,
    id: Option<DirId>,
}

impl EmptiedDir {
    /// Empties the ciphertext directory `name` in `parent` for its removal, or fails with
    /// ENOTEMPTY (nothing changed) when it holds anything but its id file. A directory
    /// without an id (plaintext names, or a crash) needs nothing removed.
    pub fn prepare(parent: BorrowedFd<'_>, name: &OsStr) -> Result<Self> {
        let dir = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        if !holds_only_id(dir.as_fd())? {
            return Err(std::io::Error::from_raw_os_error(libc::ENOTEMPTY).into());
        }
        let id = read_dir_id_if_any(dir.as_fd())?;
        match rustix::fs::unlinkat(&dir, DIR_ID_FILE, rustix::fs::AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(EmptiedDir { dir, id })
    }

    /// The removal failed: gives the directory its id back, so that the id cached for it
    /// stays its id. One it got meanwhile (an `opendir` renewed the missing id) is kept: the
    /// directory is still empty, so no name is bound to either.
    pub fn restore(self) -> Result<()> {
        let Some(id) = self.id else {
            return Ok(());
        };
        match write_dir_id(self.dir.as_fd(), &id) {
            Err(VolumeError::Io(e)) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_fd(p: &std::path::Path) -> OwnedFd {
        rustix::fs::open(p, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    #[test]
    fn emptied_dir_refuses_user_entries_and_restores_its_id() {
        let t = tempfile::tempdir().unwrap();
        let parent = dir_fd(t.path());
        let d = t.path().join("d");
        std::fs::create_dir(&d).unwrap();
        let id = create_dir_id(dir_fd(&d).as_fd()).unwrap();

        let emptied = EmptiedDir::prepare(parent.as_fd(), OsStr::new("d")).unwrap();
        assert!(
            !d.join(DIR_ID_FILE).exists(),
            "the id file is in the way of rmdir"
        );
        emptied.restore().unwrap();
        assert_eq!(read_dir_id(dir_fd(&d).as_fd()).unwrap(), id);

        std::fs::write(d.join("x"), b"").unwrap();
        let err = EmptiedDir::prepare(parent.as_fd(), OsStr::new("d")).unwrap_err();
        assert!(
            matches!(&err, VolumeError::Io(e) if e.raw_os_error() == Some(libc::ENOTEMPTY)),
            "{err:?}"
        );
        assert_eq!(
            read_dir_id(dir_fd(&d).as_fd()).unwrap(),
            id,
            "nothing changed"
        );
        std::fs::remove_file(d.join("x")).unwrap();

        // Without an id (plaintext names, or a crash inside mkdir): nothing to remove or restore.
        std::fs::remove_file(d.join(DIR_ID_FILE)).unwrap();
        EmptiedDir::prepare(parent.as_fd(), OsStr::new("d"))
            .unwrap()
            .restore()
            .unwrap();
        assert!(!d.join(DIR_ID_FILE).exists());
    }
}
