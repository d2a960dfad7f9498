//! `header backup` and `header restore` at the volume level: which store belongs to which
//! cipherdir, the volume lock, and what a restore means for the files of the cipherdir. The
//! SQLite work is `keystore::backup`'s.

use std::path::{Path, PathBuf};

use super::ciphertext::file_id_at;
use super::{Location, Result, VolumeError, location::hex};
use crate::format::names::is_reserved;
use crate::keystore::backup::{self, StoreSummary};

/// Writes a consistent copy of the volume's header store to `dest` (a new file, mode 0600).
/// Works while the volume is mounted: it takes no lock and changes nothing in the volume.
pub fn backup_header(loc: &Location, dest: &Path) -> Result<StoreSummary> {
    let root_times = super::RootTimes::capture(loc.cipherdir());
    let summary = backup::backup(loc.store(), dest)?;
    drop(root_times);
    Ok(summary)
}

/// What a restore did.
#[derive(Debug)]
pub struct RestoreReport {
    /// Where the store now in use is.
    pub store: PathBuf,
    /// What the restored store holds.
    pub restored: StoreSummary,
    /// Where the replaced store was kept (`None`: there was none, it was lost).
    pub aside: Option<PathBuf>,
    /// Files of the cipherdir whose file id has no key row in the restored store: created
    /// (or re-encrypted) after the backup was taken. They cannot be read.
    pub files_without_key: u64,
}

/// Puts the backup at `backup_file` in place of the header store of the volume in
/// `cipherdir`, keeping the current store (if any) aside. Refuses while the volume is in use,
/// and refuses a backup of another volume (its volume id is not the marker's, or, for a
/// volume without a marker, not the current store's) unless `force`. `stamp` (the time, e.g.
/// `20261202T013514Z`) names the copy kept aside.
pub fn restore_header(
    cipherdir: &Path,
    header_store: Option<&Path>,
    backup_file: &Path,
    force: bool,
    stamp: &str,
) -> Result<RestoreReport> {
    let loc = Location::resolve_for_restore(cipherdir, header_store)?;
    let restored = backup::summarize(backup_file)?;
    let _lock = loc.lock()?;
    let volume_id = loc
        .marker_volume_id()
        .or_else(|| crate::keystore::HeaderStore::peek_volume_id(loc.store()).ok());
    if let Some(id) = volume_id
        && id != restored.volume_id
        && !force
    {
        return Err(VolumeError::StoreMismatch {
            store: backup_file.to_owned(),
            cipherdir: cipherdir.to_owned(),
            store_id: hex(&restored.volume_id),
            marker_id: hex(&id),
        });
    }
    let root_times = super::RootTimes::capture(loc.cipherdir());
    let aside = backup::install(backup_file, loc.store(), stamp)?;
    drop(root_times);
    let keyed = backup::file_ids(loc.store())?;
    let mut files_without_key = 0;
    count_unkeyed(loc.cipherdir(), true, &keyed, &mut files_without_key)?;
    Ok(RestoreReport {
        store: loc.store().to_owned(),
        restored,
        aside,
        files_without_key,
    })
}

/// Counts the regular files under `dir` whose header's file id is not in `keyed` (raw walk
/// of the cipherdir; no key needed: the file id is in clear in each header).
fn count_unkeyed(
    dir: &Path,
    in_root: bool,
    keyed: &std::collections::HashSet<crate::format::FileId>,
    n: &mut u64,
) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if is_reserved(e.file_name().as_encoded_bytes(), in_root) {
            continue;
        }
        let t = e.file_type()?;
        if t.is_dir() {
            count_unkeyed(&e.path(), false, keyed, n)?;
        } else if t.is_file() {
            // Empty files have no header and no key; unreadable ones are fsck's business.
            if let Some(id) = file_id_at(&e.path())
                && !keyed.contains(&id)
            {
                *n += 1;
            }
        }
    }
    Ok(())
}
