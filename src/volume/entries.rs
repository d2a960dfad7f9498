//! Entries of the cipherdir as the mount creates, reads and removes them, with every rule the
//! header store adds to them: a long name's row is recorded before its entry is created and
//! deleted after its entry is gone (a crash leaves at worst an unused row, never an entry
//! without one); a long symlink target's row likewise; a directory gets its id before anything
//! can be created in it and loses it only when it is about to go. The mount (`fs`) asks for
//! these by on-disk name and backing fd, and never touches the header store itself.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags, Stat};

use super::names::{DirId, DiskName, EmptiedDir, create_dir_id};
use super::{Result, Volume};
use crate::format::FileId;
use crate::format::names::{DIR_ID_FILE, siv_encoded_len_to_plain_len};
use crate::keystore::Owner;

/// A directory just made by [`Volume::make_dir`]: its `O_PATH` fd and its id (`None` on
/// plaintext-names volumes).
#[derive(Debug)]
pub struct NewDir {
    /// `O_PATH | O_DIRECTORY` on the new directory, not following a symlink.
    pub fd: OwnedFd,
    /// The id written into it.
    pub id: Option<DirId>,
}

impl Volume {
    /// The on-disk name of `name`, about to be created in the directory with id `dir_id`: a
    /// long name's full form is recorded in the header store first.
    pub fn disk_name_for_create(
        &self,
        dir_id: &DirId,
        name: &OsStr,
        in_root: bool,
    ) -> Result<DiskName> {
        let dn = self.names().disk_name(dir_id, name, in_root)?;
        self.record_long_name(&dn)?;
        Ok(dn)
    }

    /// Records the long form of `dn` (if it is a long name) before an entry takes that name:
    /// for a name that comes back (the old name of a `RENAME_EXCHANGE`).
    pub fn record_long_name(&self, dn: &DiskName) -> Result<()> {
        if let Some((digest, encoded)) = &dn.long {
            self.keyring().store().put_long_name(digest, encoded)?;
        }
        Ok(())
    }

    /// The entry named `dn` is gone: its long-name row goes too. A row left behind is
    /// harmless (fsck removes it), so a failure is only logged.
    pub fn forget_long_name(&self, dn: &DiskName) {
        if let Some((digest, _)) = &dn.long
            && let Err(e) = self.keyring().store().delete_long_name(digest)
        {
            log::warn!("could not delete a long-name row: {e}");
        }
    }

    /// Refuses the long name `dn` when its row in the header store holds another name (see
    /// [`NameMap::check_long_name_row`](super::NameMap::check_long_name_row)).
    pub fn check_long_name(&self, dn: &DiskName) -> Result<()> {
        self.names().check_long_name_row(dn, self.keyring().store())
    }

    /// The plaintext name of the on-disk entry `disk` in the directory with id `dir_id`, or
    /// `None` for cofferfs's own files.
    pub fn plain_name(
        &self,
        dir_id: &DirId,
        disk: &OsStr,
        in_root: bool,
    ) -> Result<Option<OsString>> {
        self.names()
            .plain_name(dir_id, disk, in_root, self.keyring().store())
    }

    /// Removes the non-directory entry `dn` from `parent`, then its long-name row.
    pub fn unlink_entry(&self, parent: BorrowedFd<'_>, dn: &DiskName) -> Result<()> {
        rustix::fs::unlinkat(parent, &dn.name, AtFlags::empty())?;
        self.forget_long_name(dn);
        Ok(())
    }

    /// Creates the symlink `name` to `target` in `parent` (with id `dir_id`) and returns its
    /// on-disk name: the target is checked first (`ENAMETOOLONG` past `PATH_MAX - 1`), then
    /// the long-name row and a long target's row are recorded, then the link is made.
    pub fn create_symlink(
        &self,
        parent: BorrowedFd<'_>,
        dir_id: &DirId,
        in_root: bool,
        name: &OsStr,
        target: &OsStr,
    ) -> Result<DiskName> {
        let stored = self.names().stored_target(target)?;
        let dn = self.disk_name_for_create(dir_id, name, in_root)?;
        if let Some((digest, encoded)) = &stored.long {
            // The row first, as for long names: a crash leaves at worst an unused row.
            self.keyring().store().put_long_target(digest, encoded)?;
        }
        rustix::fs::symlinkat(&stored.backing, parent, &dn.name)?;
        Ok(dn)
    }

    /// The plaintext target of a symlink whose backing link points to `backing`.
    pub fn symlink_target(&self, backing: &[u8]) -> Result<Vec<u8>> {
        self.names().plain_target(backing, self.keyring().store())
    }

    /// The plaintext length of the long symlink target behind `backing` (`None` when it is
    /// not a long target).
    pub fn long_target_len(&self, backing: &[u8]) -> Result<Option<u64>> {
        self.names()
            .long_target_len(backing, self.keyring().store())
    }

    /// The plaintext size of the backing object `st`: a regular file's content, an
    /// encrypted symlink's target (but a long target's, see
    /// [`long_target_len`](Self::long_target_len)), anything else as it is.
    pub fn plain_size(&self, st: &Stat) -> u64 {
        let size = st.st_size as u64;
        match rustix::fs::FileType::from_raw_mode(st.st_mode) {
            rustix::fs::FileType::RegularFile => {
                self.layout().cipher_size_to_plain_size_lenient(size)
            }
            rustix::fs::FileType::Symlink if self.names().encrypted() => {
                siv_encoded_len_to_plain_len(size)
            }
            _ => size,
        }
    }

    /// Makes the directory `disk` in `parent`, private (mode 0700: the caller sets the bits
    /// asked for once the id is in, so the id file never leaks into them), with its id on
    /// encrypted-names volumes. A failure after the directory exists removes it again.
    pub fn make_dir(&self, parent: BorrowedFd<'_>, disk: &OsStr) -> Result<NewDir> {
        rustix::fs::mkdirat(parent, disk, Mode::from_raw_mode(0o700))?;
        let made = (|| -> Result<NewDir> {
            let fd = rustix::fs::openat(
                parent,
                disk,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let id = if self.names().encrypted() {
                Some(create_dir_id(fd.as_fd())?)
            } else {
                None
            };
            Ok(NewDir { fd, id })
        })();
        if made.is_err() {
            Self::unmake_dir(parent, disk);
        }
        made
    }

    /// Removes the directory `disk` that [`make_dir`](Self::make_dir) just made, id and all,
    /// after a later step of its creation failed (best effort: it holds nothing else).
    pub fn unmake_dir(parent: BorrowedFd<'_>, disk: &OsStr) {
        let _ = rustix::fs::unlinkat(
            parent,
            format!("{}/{DIR_ID_FILE}", disk.to_string_lossy()),
            AtFlags::empty(),
        );
        let _ = rustix::fs::unlinkat(parent, disk, AtFlags::REMOVEDIR);
    }

    /// Removes the directory `dn` from `parent` (`rmdir`): ENOTEMPTY unless it holds nothing
    /// but its id; the id goes first (or the backing `rmdir` would find it not empty) and
    /// comes back if the removal fails; then the long-name row goes.
    pub fn remove_dir(&self, parent: BorrowedFd<'_>, dn: &DiskName) -> Result<()> {
        let emptied = EmptiedDir::prepare(parent, &dn.name)?;
        if let Err(e) = rustix::fs::unlinkat(parent, &dn.name, AtFlags::REMOVEDIR) {
            // Put the id back, or every name inside would become unreadable.
            emptied.restore()?;
            return Err(e.into());
        }
        self.forget_long_name(dn);
        Ok(())
    }

    /// Deletes the key rows of removed files in one transaction, each only if the entry
    /// removed (its owner digest) still owns it (see `keystore::owners`); their FEKs leave
    /// the cache. Returns the ids whose rows were left in place (owned by another entry).
    pub fn shred_removed(&self, rows: &[(FileId, Owner)]) -> Result<Vec<FileId>> {
        Ok(self.keyring().shred_many(rows)?.kept)
    }

    /// Drops the cached FEK of `id` (its file is gone, its row about to follow).
    pub fn forget_key(&self, id: &FileId) {
        self.keyring().forget_fek(id);
    }

    /// At unmount: folds the header store's write-ahead log into the store and wipes every
    /// cached FEK.
    pub fn close_store(&self) -> Result<()> {
        let checkpoint = self.keyring().store().checkpoint();
        self.keyring().clear_cache();
        Ok(checkpoint?)
    }
}
