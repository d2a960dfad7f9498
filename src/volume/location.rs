//! Where a volume's parts are: the cipherdir, its header store (`cofferfs.db` in the cipherdir
//! root, or a file elsewhere given with `--header-store PATH`), and the volume marker
//! (`cofferfs.volume`) that pairs the two by volume id; and the volume lock over both.
//! Every command resolves a `Location` before it asks for a secret or opens anything, so a
//! store that does not belong to the cipherdir is refused with nothing changed.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::{Result, VolumeError};
use crate::format::marker::{MARKER_LEN, StoreLocation, VOLUME_ID_LEN, VolumeMarker};
use crate::format::names::{HEADER_STORE_NAME, VOLUME_MARKER_NAME};
use crate::keystore::HeaderStore;

/// A volume's cipherdir and header store, checked to belong together as far as paths and the
/// marker tell (the volume id inside the store is compared when the store is opened).
#[derive(Debug, Clone)]
pub struct Location {
    /// The cipherdir, as the user gave it.
    cipherdir: PathBuf,
    /// The header store: `cipherdir/cofferfs.db`, or the `--header-store` path as given.
    store: PathBuf,
    /// Whether `store` is the default one in the cipherdir or a file elsewhere.
    store_location: StoreLocation,
    /// The marker read from the cipherdir; `None` for volumes made before markers existed
    /// (their store is always `cofferfs.db` inside), and at `init` before it is written.
    marker: Option<VolumeMarker>,
}

/// Hex of a volume id, as `info` prints it: the crate's one hex encoder under the name the
/// volume's messages use.
pub use crate::hex::encode as hex;

/// `p` made absolute with every symlink resolved; when `p` does not exist, its directory is
/// resolved and its last component kept.
fn resolved(p: &Path) -> std::io::Result<PathBuf> {
    if let Ok(c) = std::fs::canonicalize(p) {
        return Ok(c);
    }
    let name = p
        .file_name()
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Ok(std::fs::canonicalize(dir)?.join(name))
}

/// Where `store` lies relative to `cipherdir`: `Some(true)` for the default `cofferfs.db` in
/// its root, `Some(false)` for anywhere else inside it, `None` outside it (or unresolvable).
fn place_in(cipherdir: &Path, store: &Path) -> Option<bool> {
    let (dir, file) = (resolved(cipherdir).ok()?, resolved(store).ok()?);
    if file == dir.join(HEADER_STORE_NAME) {
        Some(true)
    } else {
        file.starts_with(&dir).then_some(false)
    }
}

/// What is wrong with `meta` for a control file, or `None` for a regular file.
fn not_regular(meta: &std::fs::Metadata) -> Option<String> {
    let t = meta.file_type();
    (!t.is_file()).then(|| {
        let what = if t.is_symlink() {
            "a symbolic link"
        } else if t.is_dir() {
            "a directory"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_block_device() || t.is_char_device() {
            "a device"
        } else {
            "not a regular file"
        };
        format!("is {what}")
    })
}

/// Opens a control file of the cipherdir for reading the way an untrusted file must be
/// opened: never through a symlink, never blocking on a FIFO (`O_NOFOLLOW|O_NONBLOCK`), and
/// only when it is a regular file. `Ok(None)` when it does not exist.
fn open_control_file(path: &Path) -> Result<Option<File>> {
    let refuse = |reason: String| VolumeError::ControlFile {
        path: path.to_owned(),
        reason,
    };
    if let Ok(meta) = path.symlink_metadata()
        && let Some(why) = not_regular(&meta)
    {
        return Err(refuse(why));
    }
    let f = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(refuse("is a symbolic link".into()));
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(why) = not_regular(&f.metadata()?) {
        return Err(refuse(why));
    }
    Ok(Some(f))
}

/// Checks that the header store at `store` is a regular file before SQLite opens it. The
/// default `cofferfs.db` lies in the (untrusted) cipherdir and must not be a symlink; a
/// `--header-store` path is the user's own choice and may be one, but must lead to a regular
/// file (SQLite would block on a FIFO).
fn check_store_file(store: &Path, location: StoreLocation) -> Result<()> {
    let meta = match location {
        StoreLocation::InCipherdir => store.symlink_metadata(),
        StoreLocation::Elsewhere => store.metadata(),
    };
    match meta {
        Ok(m) => match not_regular(&m) {
            Some(why) => Err(VolumeError::ControlFile {
                path: store.to_owned(),
                reason: why,
            }),
            None => Ok(()),
        },
        Err(e) => Err(e.into()),
    }
}

/// Reads the cipherdir's marker; `None` when it has none.
fn read_marker(cipherdir: &Path) -> Result<Option<VolumeMarker>> {
    let path = cipherdir.join(VOLUME_MARKER_NAME);
    let Some(f) = open_control_file(&path)? else {
        return Ok(None);
    };
    let mut bytes = Vec::with_capacity(MARKER_LEN);
    f.take(MARKER_LEN as u64 + 1).read_to_end(&mut bytes)?;
    VolumeMarker::decode(&bytes)
        .map(Some)
        .map_err(|source| VolumeError::BadMarker { path, source })
}

/// Takes an exclusive, non-blocking `flock` on `path`; `busy` is the error when another
/// process holds it. Opened `O_NONBLOCK` (a FIFO swapped in must not block us) and, for a
/// file of the cipherdir (`in_cipherdir`), `O_NOFOLLOW`.
fn flock(path: &Path, in_cipherdir: bool, busy: impl FnOnce() -> VolumeError) -> Result<File> {
    let nofollow = if in_cipherdir { libc::O_NOFOLLOW } else { 0 };
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | nofollow)
        .open(path)?;
    match rustix::fs::flock(&f, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(f),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(busy()),
        Err(e) => Err(e.into()),
    }
}

/// The volume lock: exclusive `flock`s on the marker (the cipherdir) and on the header store.
/// Not SQLite's own (POSIX) locks, so they coexist with them, and they die with the process.
/// Locking both refuses a second mount of one cipherdir with a copy of its store, and of one
/// store with a copy of its cipherdir.
#[derive(Debug)]
pub struct VolumeLock {
    _marker: Option<File>,
    _store: Option<File>,
}

impl Location {
    /// Finds the header store of `cipherdir`: `header_store` when given (a path that names
    /// the default `cofferfs.db` counts as not given), otherwise `cofferfs.db` inside. Refuses
    /// a cipherdir whose marker says its store is elsewhere when none is given, a
    /// `header_store` for a cipherdir that keeps its store inside, a store path inside the
    /// cipherdir, a missing store, and a store whose volume id is not the marker's (read
    /// without creating any file next to the store).
    pub fn resolve(cipherdir: &Path, header_store: Option<&Path>) -> Result<Self> {
        Self::resolve_with(cipherdir, header_store, true)
    }

    /// Like [`Location::resolve`], but a missing store file is accepted when the cipherdir's
    /// marker says where it should be, and the store is not compared with the marker:
    /// `header restore` puts a lost or wrong store right.
    pub fn resolve_for_restore(cipherdir: &Path, header_store: Option<&Path>) -> Result<Self> {
        Self::resolve_with(cipherdir, header_store, false)
    }

    fn resolve_with(
        cipherdir: &Path,
        header_store: Option<&Path>,
        store_must_exist: bool,
    ) -> Result<Self> {
        if !cipherdir.is_dir() {
            return Err(VolumeError::NotACipherdir(cipherdir.to_owned()));
        }
        let marker = read_marker(cipherdir)?;
        let default = cipherdir.join(HEADER_STORE_NAME);
        let given = header_store.filter(|p| place_in(cipherdir, p) != Some(true));
        let elsewhere = marker.is_some_and(|m| m.store == StoreLocation::Elsewhere);
        let (store, store_location) = match (given, elsewhere) {
            (None, true) => return Err(VolumeError::StoreElsewhere(cipherdir.to_owned())),
            (Some(p), true) => (p.to_owned(), StoreLocation::Elsewhere),
            (None, false) => (default, StoreLocation::InCipherdir),
            (Some(_), false) if marker.is_some() || default.exists() => {
                return Err(VolumeError::StoreInside(cipherdir.to_owned()));
            }
            (Some(_), false) => return Err(VolumeError::NotACipherdir(cipherdir.to_owned())),
        };
        if store_location == StoreLocation::Elsewhere && place_in(cipherdir, &store).is_some() {
            return Err(VolumeError::StorePath {
                path: store,
                reason: "lies inside the cipherdir (only its own cofferfs.db may)",
            });
        }
        // The cipherdir's own store is judged without following a symlink (refused below).
        let present = match store_location {
            StoreLocation::InCipherdir => store.symlink_metadata().is_ok(),
            StoreLocation::Elsewhere => store.exists(),
        };
        if !present && (store_must_exist || marker.is_none()) {
            return Err(match marker {
                Some(_) => VolumeError::StoreMissing(store),
                None => VolumeError::NotACipherdir(cipherdir.to_owned()),
            });
        }
        // Only `header restore` gets here without a store file; there is nothing to check.
        if present {
            check_store_file(&store, store_location)?;
        }
        let loc = Location {
            cipherdir: cipherdir.to_owned(),
            store,
            store_location,
            marker,
        };
        // A store that cannot be peeked at is checked again, with a proper error, when it
        // is opened. The store that a restore replaces may be anything.
        if store_must_exist && let Ok(id) = HeaderStore::peek_volume_id(&loc.store) {
            loc.check_volume_id(&id)?;
        }
        Ok(loc)
    }

    /// Where `init` puts a new volume: `header_store` must not exist (not even as a dangling
    /// symlink), its directory must, and it must not lie inside the cipherdir unless it is
    /// the default `cofferfs.db`.
    pub fn for_init(cipherdir: &Path, header_store: Option<&Path>) -> Result<Self> {
        let refuse = |p: &Path, reason| VolumeError::StorePath {
            path: p.to_owned(),
            reason,
        };
        let (store, store_location) = match header_store {
            None => (
                cipherdir.join(HEADER_STORE_NAME),
                StoreLocation::InCipherdir,
            ),
            Some(p) if p.symlink_metadata().is_ok() => {
                return Err(refuse(p, "exists already (init never overwrites a store)"));
            }
            Some(p) if resolved(p).is_err() => {
                return Err(refuse(p, "its directory does not exist"));
            }
            Some(p) => match place_in(cipherdir, p) {
                Some(true) => (
                    cipherdir.join(HEADER_STORE_NAME),
                    StoreLocation::InCipherdir,
                ),
                Some(false) => {
                    return Err(refuse(
                        p,
                        "lies inside the cipherdir (only its own cofferfs.db may)",
                    ));
                }
                None => (p.to_owned(), StoreLocation::Elsewhere),
            },
        };
        Ok(Location {
            cipherdir: cipherdir.to_owned(),
            store,
            store_location,
            marker: None,
        })
    }

    /// The cipherdir.
    pub fn cipherdir(&self) -> &Path {
        &self.cipherdir
    }

    /// The header store file.
    pub fn store(&self) -> &Path {
        &self.store
    }

    /// True when the header store lives outside the cipherdir.
    pub fn is_external(&self) -> bool {
        self.store_location == StoreLocation::Elsewhere
    }

    /// Writes the marker of a new volume (mode 0444, synced). Part of `init`.
    pub(super) fn write_marker(&mut self, volume_id: [u8; VOLUME_ID_LEN]) -> Result<()> {
        let marker = VolumeMarker {
            store: self.store_location,
            volume_id,
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(self.cipherdir.join(VOLUME_MARKER_NAME))?;
        f.write_all(&marker.encode())?;
        f.sync_all()?;
        self.marker = Some(marker);
        Ok(())
    }

    /// Makes the new store's directory entry durable when it is outside the cipherdir (the
    /// cipherdir root is synced by `init` itself).
    pub(super) fn sync_store_dir(&self) -> Result<()> {
        if self.is_external() {
            File::open(resolved(&self.store)?.parent().unwrap_or(Path::new("/")))?.sync_all()?;
        }
        Ok(())
    }

    /// The volume id in the cipherdir's marker (`None` for volumes made before markers).
    pub fn marker_volume_id(&self) -> Option<[u8; VOLUME_ID_LEN]> {
        self.marker.map(|m| m.volume_id)
    }

    /// Refuses a store whose volume id is not the one in the cipherdir's marker.
    pub(super) fn check_volume_id(&self, store_id: &[u8; VOLUME_ID_LEN]) -> Result<()> {
        match self.marker {
            Some(m) if &m.volume_id != store_id => Err(VolumeError::StoreMismatch {
                store: self.store.clone(),
                cipherdir: self.cipherdir.clone(),
                store_id: hex(store_id),
                marker_id: hex(&m.volume_id),
            }),
            _ => Ok(()),
        }
    }

    /// Takes the volume lock (see [`VolumeLock`]).
    pub(super) fn lock(&self) -> Result<VolumeLock> {
        let busy = |p: &Path| VolumeError::Locked(p.to_owned());
        let marker = match self.marker {
            Some(_) => Some(flock(
                &self.cipherdir.join(VOLUME_MARKER_NAME),
                true,
                || busy(&self.cipherdir),
            )?),
            None => None,
        };
        let store_name = match self.store_location {
            StoreLocation::InCipherdir => &self.cipherdir,
            StoreLocation::Elsewhere => &self.store,
        };
        let in_cipherdir = self.store_location == StoreLocation::InCipherdir;
        // Only `header restore` gets here without a store file (see `resolve_for_restore`):
        // the marker's lock alone then keeps a mount out.
        let store = if self.marker.is_some() && !self.store.exists() {
            None
        } else {
            Some(flock(&self.store, in_cipherdir, || busy(store_name))?)
        };
        Ok(VolumeLock {
            _marker: marker,
            _store: store,
        })
    }
}

/// The file a waiting `umount` probes to learn that the daemon of the volume mounted from
/// `cipherdir` has let go: the marker when there is one (its store may be anywhere), else
/// `cofferfs.db`.
pub fn lock_probe_path(cipherdir: &Path) -> PathBuf {
    let marker = cipherdir.join(VOLUME_MARKER_NAME);
    if marker.exists() {
        marker
    } else {
        cipherdir.join(HEADER_STORE_NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_store_path_counts_as_default_however_spelled() {
        let t = tempfile::tempdir().unwrap();
        let c = t.path().join("c");
        std::fs::create_dir(&c).unwrap();
        assert_eq!(place_in(&c, &c.join("cofferfs.db")), Some(true));
        assert_eq!(place_in(&c, &c.join("x.db")), Some(false));
        assert_eq!(place_in(&c, &t.path().join("x.db")), None);
        std::os::unix::fs::symlink(&c, t.path().join("link")).unwrap();
        assert_eq!(place_in(&c, &t.path().join("link/cofferfs.db")), Some(true));
    }

    #[test]
    fn init_refuses_existing_and_inside_paths() {
        let t = tempfile::tempdir().unwrap();
        let c = t.path().join("c");
        let existing = t.path().join("existing.db");
        std::fs::write(&existing, b"").unwrap();
        let reason = |r: Result<Location>| match r {
            Err(VolumeError::StorePath { reason, .. }) => reason,
            other => panic!("{other:?}"),
        };
        assert!(reason(Location::for_init(&c, Some(&existing))).starts_with("exists"));
        assert!(
            reason(Location::for_init(&c, Some(&t.path().join("no/dir/x.db"))))
                .contains("directory does not exist")
        );
        std::fs::create_dir(&c).unwrap();
        assert!(reason(Location::for_init(&c, Some(&c.join("x.db")))).contains("inside"));
        let l = Location::for_init(&c, Some(&c.join("cofferfs.db"))).unwrap();
        assert!(!l.is_external());
        let l = Location::for_init(&c, Some(&t.path().join("s.db"))).unwrap();
        assert!(l.is_external());
    }
}
