//! Which directory entry a key row belongs to (`file_keys.owner`, format v3), and the walk
//! that gives the rows of a migrated v1/v2 volume their owners.
//!
//! An entry's owner digest is `SHA-256("cofferfs/v3/owner" ‖ dir_id ‖ on-disk name)`, with the
//! parent directory's 16-byte id (16 zero bytes on plaintext-names volumes, which have none).
//! It changes only when the entry is renamed (a rename of a directory moves neither its
//! children's names nor its id), so it identifies the entry without a path. A ciphertext file
//! copied under another name or into another directory carries the same `file_id` but is
//! another entry: removing the copy leaves the original's key alone. On plaintext-names
//! volumes (debugging only) the digest covers the name but not the directory.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::names::{DirId, read_dir_id};
use super::{Result, Volume};
use crate::crypto::names::sha256;
use crate::format::FileId;
use crate::format::names::{self as fnames, QUARANTINE_DIR};
use crate::keystore::Owner;

/// Domain label of an entry's owner digest.
pub const OWNER_LABEL: &[u8] = b"cofferfs/v3/owner";

/// The owner digest of the entry `disk_name` in the directory with id `dir_id`.
pub fn entry_owner(dir_id: &DirId, disk_name: &OsStr) -> Owner {
    sha256(&[OWNER_LABEL, &dir_id[..], disk_name.as_bytes()].concat())
}

/// Domain label of the owner a row gets while its file is open without a name.
pub const UNLINKED_OPEN_LABEL: &[u8] = b"cofferfs/v3/unlinked-open-owner";

/// The owner a key row gets when `name` (an owner digest), the last name of its file, goes
/// while the file is still open: no entry can have it (it is no digest of a name, and its
/// label is no prefix of [`OWNER_LABEL`]'s input), so the deletion at the last close, which
/// asks for this owner, cannot match a live entry. It names the entry that went, so a copy
/// renamed onto that name in between (`rm B; mv A B` while B is open) takes the row back
/// (see `Volume::entry_renamed`) and keeps its key.
pub fn unlinked_open_owner(name: &Owner) -> Owner {
    sha256(&[UNLINKED_OPEN_LABEL, &name[..]].concat())
}

/// The directory ids a mount has met, by the backing directory (device, inode) that has
/// each: two directories with one id (a restored copy of a directory next to the renamed
/// original) give their children identical owner digests, so removing a child of either
/// could shred the other's key. Once a second directory shows an id, that id is shared and
/// no removal in either directory shreds a row (its owner is as good as unknown; fsck reports
/// the shared directory id and finds the rows once no file carries them).
#[derive(Debug, Default)]
pub struct DirIdSightings {
    seen: parking_lot::Mutex<HashMap<DirId, Sighting>>,
}

#[derive(Debug)]
enum Sighting {
    One((u64, u64)),
    Shared,
}

impl DirIdSightings {
    /// Records that the directory `(dev, ino)` has `id`; true the first time `id` turns out
    /// to be shared by two directories (for a single warning).
    pub fn see(&self, id: &DirId, dir: (u64, u64)) -> bool {
        let mut seen = self.seen.lock();
        match seen.get(id) {
            None => {
                seen.insert(*id, Sighting::One(dir));
                false
            }
            Some(Sighting::One(d)) if *d == dir => false,
            Some(Sighting::One(_)) => {
                seen.insert(*id, Sighting::Shared);
                true
            }
            Some(Sighting::Shared) => false,
        }
    }

    /// True when two directories were seen with `id`: owners in them do not identify an entry.
    pub fn shared(&self, id: &DirId) -> bool {
        matches!(self.seen.lock().get(id), Some(Sighting::Shared))
    }
}

/// Who carries a file id in the tree.
enum Carriers {
    /// One inode (maybe several hard links): the first name met, in name order.
    One { inode: (u64, u64), owner: Owner },
    /// Two or more inodes, or one the mount cannot unlink (quarantined, a temporary file).
    Several,
}

/// Walks the whole tree once and returns every file id carried by exactly one inode, with
/// the owner digest of its first name (in name order): the owners a migration records. Ids
/// carried by two or more inodes (copies, conflict duplicates) and entries in the quarantine
/// or `reencrypt` temporary files are left out, so their rows keep an unknown owner and no
/// unlink shreds them. Directories that cannot be read are skipped: their files' rows stay
/// unknown too (never shredded by unlink; fsck finds them once no file carries them).
pub fn migration_owners(vol: &Volume) -> Result<Vec<(FileId, Owner)>> {
    let mut carriers: HashMap<FileId, Carriers> = HashMap::new();
    let mut stack = vec![vol.root().to_owned()];
    let mut root = true;
    while let Some(dir) = stack.pop() {
        let dir_id = if vol.names().encrypted() {
            let f = match std::fs::File::open(&dir) {
                Ok(f) => f,
                Err(_) => continue,
            };
            read_dir_id(std::os::fd::AsFd::as_fd(&f)).unwrap_or_default()
        } else {
            DirId::default()
        };
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<_> = rd.filter_map(|e| e.ok()).collect();
        names.sort_by_key(|e| e.file_name());
        for e in names {
            let name = e.file_name();
            let Ok(meta) = std::fs::symlink_metadata(e.path()) else {
                continue;
            };
            let quarantine = root && name == QUARANTINE_DIR;
            if fnames::is_reserved(name.as_bytes(), root) && !quarantine && !is_temp(&name) {
                continue;
            }
            if meta.is_dir() {
                if quarantine {
                    mark_all_several(&e.path(), &mut carriers);
                } else {
                    stack.push(e.path());
                }
                continue;
            }
            if !meta.is_file() {
                continue;
            }
            let Some(id) = header_id(&e.path()) else {
                continue;
            };
            let inode = (meta.dev(), meta.ino());
            let owned = !is_temp(&name);
            carriers
                .entry(id)
                .and_modify(|c| {
                    if !matches!(c, Carriers::One { inode: i, .. } if *i == inode && owned) {
                        *c = Carriers::Several;
                    }
                })
                .or_insert_with(|| match owned {
                    true => Carriers::One {
                        inode,
                        owner: entry_owner(&dir_id, &name),
                    },
                    false => Carriers::Several,
                });
        }
        root = false;
    }
    let mut out: Vec<(FileId, Owner)> = carriers
        .into_iter()
        .filter_map(|(id, c)| match c {
            Carriers::One { owner, .. } => Some((id, owner)),
            Carriers::Several => None,
        })
        .collect();
    out.sort();
    Ok(out)
}

fn is_temp(name: &OsStr) -> bool {
    fnames::is_temp_name(name.as_bytes())
}

/// Every file in the quarantine carries its id for an entry the mount cannot reach.
fn mark_all_several(dir: &Path, carriers: &mut HashMap<FileId, Carriers>) {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.filter_map(|e| e.ok()) {
            match std::fs::symlink_metadata(e.path()) {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) if m.is_file() => {
                    if let Some(id) = header_id(&e.path()) {
                        carriers.insert(id, Carriers::Several);
                    }
                }
                _ => {}
            }
        }
    }
}

impl Volume {
    /// The owner digest of the entry `disk_name` in the directory with id `dir_id` (zeros on
    /// plaintext-names volumes): see the module doc.
    pub fn entry_owner(&self, dir_id: &DirId, disk_name: &std::ffi::OsStr) -> Owner {
        entry_owner(dir_id, disk_name)
    }

    /// The owner entry of `file_id`'s key row was renamed from `from` to `to`: the row
    /// follows it (one `UPDATE`). A rename of any other name carrying the id (a copy, a
    /// second hard link) changes nothing, except onto the name of the row's owner that went
    /// while still open: that copy becomes the owner (the same `UPDATE`).
    pub fn entry_renamed(&self, file_id: &FileId, from: &Owner, to: &Owner) -> Result<()> {
        let store = self.keyring().store();
        // The row's owner `to` went while open (its deletion waits for the last close) and a
        // copy carrying the same id now takes that name: the row is the copy's again, and the
        // deletion at the close no longer matches.
        store.move_owner_from_either(file_id, [from, &unlinked_open_owner(to)], to)?;
        Ok(())
    }

    /// Two entries carrying `a` and `b` swapped names (`RENAME_EXCHANGE`): each row that was
    /// owned by one of the names follows its entry, in one transaction.
    pub fn entries_exchanged(&self, a: (FileId, Owner), b: (FileId, Owner)) -> Result<()> {
        self.keyring()
            .store()
            .move_owners(&[(a.0, a.1, Some(b.1)), (b.0, b.1, Some(a.1))])?;
        Ok(())
    }

    /// A name of a file that keeps other hard links went away: if it was the row's owner,
    /// the owner moves to `heir`, another live link of the file the caller knows, or becomes
    /// unknown without one (the other names are not known without a walk): no unlink then
    /// shreds the row, and fsck finds it once no file carries it.
    pub fn link_removed(
        &self,
        file_id: &FileId,
        owner: &Owner,
        heir: Option<&Owner>,
    ) -> Result<()> {
        self.keyring().store().move_owner(file_id, owner, heir)?;
        Ok(())
    }

    /// The last name of an open file went: if `owner` (that name's digest) owned the key row
    /// of `file_id`, the row is marked as belonging to no name any more (see
    /// [`unlinked_open_owner`]); returns the owner the deletion at the last close must
    /// name.
    pub fn last_name_gone_while_open(
        &self,
        file_id: Option<&FileId>,
        owner: &Owner,
    ) -> Result<Owner> {
        let gone = unlinked_open_owner(owner);
        if let Some(id) = file_id {
            self.keyring().store().move_owner(id, owner, Some(&gone))?;
        }
        Ok(gone)
    }
}

/// The file id in the header of the ciphertext file at `path`, if it has a valid one: what
/// `reencrypt --all` groups files by, so that it leaves alone an id two files carry.
pub use super::ciphertext::file_id_at as header_id;

#[cfg(test)]
mod tests {
    use super::DirIdSightings;

    #[test]
    fn a_directory_id_is_shared_once_a_second_directory_shows_it() {
        let s = DirIdSightings::default();
        let (id, other) = ([1u8; 16], [2u8; 16]);
        assert!(!s.see(&id, (1, 10)));
        assert!(
            !s.see(&id, (1, 10)),
            "the same directory again is no second one"
        );
        assert!(!s.shared(&id));
        assert!(
            s.see(&id, (1, 11)),
            "the first sighting of a second directory warns"
        );
        assert!(!s.see(&id, (1, 12)), "and only once");
        assert!(s.shared(&id));
        assert!(!s.see(&other, (1, 11)) && !s.shared(&other));
    }
}
