//! The header store opened without a secret: read-only (`info`, `keys list`, the checks a
//! command makes before it asks for one) or read-write under the volume lock (`keys rewrap`);
//! and the checks that refuse read-only media and a volume in use before a secret is asked.

use std::path::Path;

use super::location::VolumeLock;
use super::{Location, Result, RootTimes, VolumeError};
use crate::keystore::HeaderStore;

/// Refuses, with a message that says what works instead, a volume to be opened for writing
/// whose cipherdir or header store lies on a read-only filesystem (a backup disk, a snapshot,
/// a read-only bind mount or NFS export): SQLite would only say "unable to open database
/// file". Commands that will write call it before they ask for a secret; every read-write
/// open checks again.
pub fn check_writable_media(loc: &Location) -> Result<()> {
    refuse_read_only_media(loc.cipherdir())?;
    refuse_read_only_media(loc.store())
}

fn refuse_read_only_media(path: &Path) -> Result<()> {
    match rustix::fs::statvfs(path) {
        Ok(st) if st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) => {
            Err(VolumeError::Io(std::io::Error::new(
                std::io::ErrorKind::ReadOnlyFilesystem,
                format!(
                    "{} is on a read-only filesystem: only reading works there \
                     (mount --ro, fsck without --repair, info)",
                    path.display()
                ),
            )))
        }
        _ => Ok(()),
    }
}

/// The header store opened without a secret (for `info` and pre-mount checks). Closing it
/// leaves the cipherdir exactly as it was, root timestamps included.
#[derive(Debug)]
pub struct ReadOnlyStore {
    store: HeaderStore,
    /// Dropped after `store`. A store at rest is opened without touching the root; one with a
    /// write-ahead log may make SQLite create `-shm` there, whose mtime change this undoes.
    _root_times: RootTimes,
}

impl std::ops::Deref for ReadOnlyStore {
    type Target = HeaderStore;
    fn deref(&self) -> &HeaderStore {
        &self.store
    }
}

/// Fails with `Locked` when another process holds the volume (it is mounted), without keeping
/// the lock: lets a command refuse before it asks for a password. `Volume::open` checks again.
pub fn check_not_locked(loc: &Location) -> Result<()> {
    loc.lock().map(drop)
}

/// Opens the header store of the volume in `cipherdir` (store inside) read-only, without a
/// secret: see [`open_store_read_only_at`].
pub fn open_store_read_only(cipherdir: &Path) -> Result<ReadOnlyStore> {
    open_store_read_only_at(&Location::resolve(cipherdir, None)?)
}

/// Opens the header store read-only, without a secret (`info`, `keys list`, and the checks a
/// command makes before it asks for one), refusing a store of another volume.
pub fn open_store_read_only_at(loc: &Location) -> Result<ReadOnlyStore> {
    let root_times = RootTimes::capture(loc.cipherdir());
    let store = HeaderStore::open(loc.store(), true)?;
    loc.check_volume_id(&store.params()?.volume_id)?;
    Ok(ReadOnlyStore {
        store,
        _root_times: root_times,
    })
}

/// The header store opened read-write under the volume lock, without a secret: for the one
/// change that needs none (`keys rewrap`, a new Vault ciphertext of the same slot key).
pub struct LockedStore {
    store: HeaderStore,
    _lock: VolumeLock,
}

impl std::ops::Deref for LockedStore {
    type Target = HeaderStore;
    fn deref(&self) -> &HeaderStore {
        &self.store
    }
}

/// Takes the volume lock and opens the store read-write, refusing a store of another volume.
pub fn open_store_locked_at(loc: &Location) -> Result<LockedStore> {
    check_writable_media(loc)?;
    let lock = loc.lock()?;
    let store = HeaderStore::open(loc.store(), false)?;
    loc.check_volume_id(&store.params()?.volume_id)?;
    Ok(LockedStore { store, _lock: lock })
}

/// Everything a command checks before it asks for a secret: the volume is not in use and its
/// store belongs to its cipherdir.
pub fn precheck(loc: &Location) -> Result<()> {
    check_not_locked(loc)?;
    open_store_read_only_at(loc).map(drop)
}
