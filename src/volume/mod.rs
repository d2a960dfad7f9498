//! A cipherdir opened with its KEK: creating and opening volumes, the volume lock, name
//! mapping, and `ChunkedFile` for random-access content I/O. Knows nothing of FUSE.

pub mod chunked;
pub mod fsck;
pub mod header;
pub mod location;
pub mod names;
pub mod owners;
pub mod reencrypt;
pub mod share;
pub mod symlinks;
pub mod walk;

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use chunked::ChunkedFile;
pub use location::{Location, lock_probe_path};
pub use names::NameMap;

use crate::crypto::names::NameCipher;
use crate::crypto::{CryptoError, KdfParams, Kek, NameKey};
use crate::format::names::{DIR_ID_FILE, HEADER_STORE_NAME};
use crate::format::{FORMAT_VERSION, FileId, FormatError, Layout};
use crate::keystore::migrate::MigrationReport;
use crate::keystore::store::{new_volume_id, now_secs};
use crate::keystore::{
    HeaderStore, Keyring, KeystoreError, Owner, SlotKind, SlotRecord, VolumeParams,
};

/// Why a volume operation failed. Corruption (`CorruptChunk`, `CorruptFile`, a tampered key)
/// is kept apart from I/O errors: the first becomes EIO plus a warning, the second passes the
/// OS errno through.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A chunk failed authentication (altered, moved, swapped or foreign) or is cut short; or,
    /// in a v2 file, it is the last chunk but is a hole or was not sealed as the last one (the
    /// file was cut or extended), or was sealed as the last one but chunks follow it.
    #[error("file {file_id}: chunk {chunk_index} is corrupt or was tampered with")]
    CorruptChunk {
        /// The file.
        file_id: FileId,
        /// The chunk.
        chunk_index: u64,
    },
    /// A file's header or size is invalid.
    #[error("corrupt ciphertext file{}: {reason}", .file_id.map(|i| format!(" {i}")).unwrap_or_default())]
    CorruptFile {
        /// The file, when its header could be read.
        file_id: Option<FileId>,
        /// What is wrong.
        reason: String,
    },
    /// A name in the cipherdir does not decrypt in its directory.
    #[error("corrupt or foreign name {0:?}")]
    CorruptName(String),
    /// The directory is not a cofferfs cipherdir.
    #[error("{0} is not a cofferfs cipherdir (no {HEADER_STORE_NAME})")]
    NotACipherdir(PathBuf),
    /// `init` on a directory that already holds something.
    #[error("{0} is not empty: init needs an empty (or new) directory")]
    NotEmpty(PathBuf),
    /// Another process (a mount or a management command) holds the volume.
    #[error("{0} is in use by another cofferfs process (mounted?)")]
    Locked(PathBuf),
    /// The cipherdir's marker says its header store is kept elsewhere, and none was given.
    #[error("{0} keeps its header store elsewhere: pass --header-store PATH")]
    StoreElsewhere(PathBuf),
    /// The header store belongs to another volume than the cipherdir (their ids differ).
    #[error(
        "header store {store} does not belong to {cipherdir}: the store is volume {store_id}, \
         the cipherdir is volume {marker_id}"
    )]
    StoreMismatch {
        /// The store given.
        store: PathBuf,
        /// The cipherdir given.
        cipherdir: PathBuf,
        /// The store's volume id, hex.
        store_id: String,
        /// The volume id in the cipherdir's marker, hex.
        marker_id: String,
    },
    /// `--header-store` was given for a cipherdir that keeps its store inside it.
    #[error("{0} keeps its header store inside it ({HEADER_STORE_NAME}): drop --header-store")]
    StoreInside(PathBuf),
    /// A `--header-store` path that cannot be used (exists at `init`, inside the cipherdir).
    #[error("header store {path}: {reason}")]
    StorePath {
        /// The path given.
        path: PathBuf,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The cipherdir has a marker but its header store file is missing.
    #[error("header store {0} does not exist")]
    StoreMissing(PathBuf),
    /// The cipherdir's volume marker is damaged or from a newer cofferfs.
    #[error("volume marker {path}: {source}")]
    BadMarker {
        /// The marker file.
        path: PathBuf,
        /// What is wrong with its bytes.
        source: FormatError,
    },
    /// A control file of the volume (the marker, the header store) is a symlink, a FIFO, a
    /// device or a directory where a regular file must be: damage or an attack, refused.
    #[error("{path}: {reason}; refused (it must be a regular file)")]
    ControlFile {
        /// The file.
        path: PathBuf,
        /// What it is instead.
        reason: String,
    },
    /// Bad volume parameters.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// The header store failed.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The operating system failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<CryptoError> for VolumeError {
    fn from(e: CryptoError) -> Self {
        VolumeError::Keystore(KeystoreError::Crypto(e))
    }
}

impl From<rustix::io::Errno> for VolumeError {
    fn from(e: rustix::io::Errno) -> Self {
        VolumeError::Io(e.into())
    }
}

/// Result of volume operations.
pub type Result<T> = std::result::Result<T, VolumeError>;

/// Choices made once, at `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Plaintext bytes per chunk.
    pub chunk_len: u32,
    /// Keep names in clear (debugging only).
    pub plaintext_names: bool,
    /// Argon2id parameters of the first password slot.
    pub kdf: KdfParams,
    /// Label of the first slot.
    pub label: String,
    /// Where to create the header store instead of `cofferfs.db` in the cipherdir (a new
    /// file outside the cipherdir), for volumes whose keys live apart from their blobs.
    pub header_store: Option<PathBuf>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunk_len: crate::format::layout::DEFAULT_CHUNK_LEN,
            plaintext_names: false,
            kdf: KdfParams::default(),
            label: "password".into(),
            header_store: None,
        }
    }
}

/// What `init`'s checks found: everything it needs to go on.
struct InitPlan {
    layout: Layout,
    /// The cipherdir exists (and is empty).
    exists: bool,
    loc: Location,
}

/// Every check `init` makes, in one place, creating nothing.
fn plan_init(cipherdir: &Path, opts: &InitOptions) -> Result<InitPlan> {
    let layout = Layout::new(u64::from(opts.chunk_len))?;
    opts.kdf.check(true)?;
    let exists = match std::fs::read_dir(cipherdir) {
        Ok(mut entries) => match entries.next() {
            Some(_) => return Err(VolumeError::NotEmpty(cipherdir.to_owned())),
            None => true,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e.into()),
    };
    let loc = Location::for_init(cipherdir, opts.header_store.as_deref())?;
    Ok(InitPlan {
        layout,
        exists,
        loc,
    })
}

/// Runs every check [`init`] makes (chunk size, Argon2id bounds, an empty or new cipherdir,
/// a usable `--header-store` path) without creating anything, so that the command line can
/// refuse a mistake before it asks for a password, as gocryptfs does. `init` checks again.
pub fn check_init(cipherdir: &Path, opts: &InitOptions) -> Result<()> {
    plan_init(cipherdir, opts).map(drop)
}

/// Creates a new volume in `cipherdir` (created if missing; must be empty otherwise) with one
/// password slot, its marker, and its header store (in the cipherdir or at
/// `opts.header_store`). Every check runs before anything is created. Returns where the
/// volume's parts are.
pub fn init(cipherdir: &Path, password: &[u8], opts: &InitOptions) -> Result<Location> {
    init_with(cipherdir, FirstSlot::Password(password), opts)
}

/// What opens the first slot of a new volume.
pub enum FirstSlot<'a> {
    /// A password (Argon2id with `InitOptions::kdf`).
    Password(&'a [u8]),
    /// A slot key that Vault/OpenBao Transit encrypted into `params` (`init --transit`): the
    /// volume then has no password at all.
    Transit {
        /// The random slot key.
        slot_key: &'a [u8],
        /// Where it is encrypted, and its ciphertext.
        params: &'a crate::keystore::TransitParams,
    },
    /// A slot key that a PKCS#11 token's key sealed into `params` (`init --pkcs11-module`),
    /// bound to `volume_id`, which the new volume then takes: the volume has no password.
    Pkcs11 {
        /// The id the blob is bound to; the new volume's id.
        volume_id: [u8; 16],
        /// The random slot key.
        slot_key: &'a [u8],
        /// The token, its key, and the blob.
        params: &'a crate::keystore::Pkcs11Params,
    },
}

/// [`init`] with any kind of first slot.
pub fn init_with(cipherdir: &Path, first: FirstSlot<'_>, opts: &InitOptions) -> Result<Location> {
    let InitPlan {
        layout,
        exists,
        mut loc,
    } = plan_init(cipherdir, opts)?;
    let volume_id = match &first {
        FirstSlot::Pkcs11 { volume_id, .. } => *volume_id,
        FirstSlot::Password(_) | FirstSlot::Transit { .. } => new_volume_id()?,
    };
    let kek = Kek::generate()?;
    let name_key = NameKey::generate()?;
    let mut params = VolumeParams {
        format_version: FORMAT_VERSION,
        volume_id,
        chunk_len: layout.chunk_len() as u32,
        plaintext_names: opts.plaintext_names,
        kek_generation: 1,
        wrapped_name_key: Vec::new(),
        created: now_secs(),
    };
    // Bound to every parameter above: a store whose parameters change no longer opens.
    params.wrapped_name_key = params.wrap_name_key(&kek, &name_key)?;
    let slot = match first {
        FirstSlot::Password(password) => {
            SlotRecord::new_password(0, &opts.label, password, opts.kdf, &kek, &volume_id)?
        }
        FirstSlot::Transit { slot_key, params } => {
            SlotRecord::new_transit(0, &opts.label, slot_key, params, &kek, &volume_id)?
        }
        FirstSlot::Pkcs11 {
            slot_key, params, ..
        } => SlotRecord::new_pkcs11(0, &opts.label, slot_key, params, &kek, &volume_id)?,
    };
    if !exists {
        // Private whatever the umask (as `ssh-keygen` makes ~/.ssh): file names, sizes and
        // the header store are nobody else's business. An existing directory keeps its mode.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(cipherdir)?;
        std::fs::set_permissions(
            cipherdir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
    }
    let root = File::open(cipherdir)?;
    if !opts.plaintext_names {
        names::create_dir_id(root.as_fd())?;
    }
    loc.write_marker(volume_id)?;
    // Last: a complete store marks a complete init.
    let store = HeaderStore::create(loc.store(), &params, &slot)?;
    drop(store);
    root.sync_all()?;
    loc.sync_store_dir()?;
    Ok(loc)
}

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
    _lock: location::VolumeLock,
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

/// The cipherdir root's timestamps as the plaintext root should show them. SQLite creates and
/// deletes `cofferfs.db-wal`/`-shm` in the root at every open and close, which would bump the
/// root's mtime on every mount cycle (and make rsync touch it); when the volume closes, the
/// root gets back the times of its last real change.
#[derive(Debug)]
pub struct RootTimes {
    path: PathBuf,
    /// Guards the (atime, mtime) to restore.
    times: parking_lot::Mutex<Option<rustix::fs::Timestamps>>,
}

impl RootTimes {
    fn stat(path: &Path) -> Option<rustix::fs::Timestamps> {
        let st = rustix::fs::stat(path).ok()?;
        Some(rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: st.st_atime,
                tv_nsec: st.st_atime_nsec as _,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: st.st_mtime,
                tv_nsec: st.st_mtime_nsec as _,
            },
        })
    }

    fn capture(path: &Path) -> Self {
        RootTimes {
            path: path.to_owned(),
            times: parking_lot::Mutex::new(Self::stat(path)),
        }
    }

    /// Records the root's current times as its real ones: called after every change made
    /// through the mount to the root directory itself.
    pub fn record_now(&self) {
        *self.times.lock() = Self::stat(&self.path);
    }
}

impl Drop for RootTimes {
    fn drop(&mut self) {
        // Restoring an mtime that did not change would still move the root's ctime (and fail
        // on read-only media): only a root whose mtime moved is touched. A moved atime alone
        // is a read's, as on any directory.
        if let Some(t) = self.times.lock().take()
            && Self::stat(&self.path).is_none_or(|now| !same_mtime(&now, &t))
        {
            let _ = rustix::fs::utimensat(
                rustix::fs::CWD,
                &self.path,
                &t,
                rustix::fs::AtFlags::empty(),
            );
        }
    }
}

/// The name mode of a v1/v2 volume is not authenticated: cross-check it against the root's
/// `.cofferfs.dirid`, which encrypted-names volumes always have and plaintext-names volumes
/// never have, and refuse a mismatch (a store whose `plaintext_names` was flipped) before the
/// mount could write a single name in clear.
fn check_legacy_name_mode(cipherdir: &Path, params: &VolumeParams) -> Result<()> {
    let has_id = match std::fs::symlink_metadata(cipherdir.join(DIR_ID_FILE)) {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e.into()),
    };
    if has_id == params.plaintext_names {
        return Err(KeystoreError::ParamsDoNotVerify(format!(
            "the store says {} names, but the cipherdir root {} {DIR_ID_FILE}",
            if params.plaintext_names {
                "plaintext"
            } else {
                "encrypted"
            },
            if has_id { "has" } else { "has no" }
        ))
        .into());
    }
    Ok(())
}

fn same_mtime(a: &rustix::fs::Timestamps, b: &rustix::fs::Timestamps) -> bool {
    let (a, b) = (&a.last_modification, &b.last_modification);
    (a.tv_sec, a.tv_nsec) == (b.tv_sec, b.tv_nsec)
}

/// A volume opened with its KEK.
#[derive(Debug)]
pub struct Volume {
    root: PathBuf,
    /// Shared with every open `ChunkedFile`, which may need a key for a file created keyless.
    keyring: Arc<Keyring>,
    layout: Layout,
    names: NameMap,
    slot_id: u32,
    _lock: location::VolumeLock,
    /// Dropped after `keyring` (fields drop in order): the store's files are gone by then.
    root_times: RootTimes,
}

impl Volume {
    /// Opens `cipherdir` with `secret`, trying every slot (or only `slot`). Holds the volume
    /// lock until dropped, so a second mount of the same volume is refused.
    pub fn open(cipherdir: &Path, secret: &[u8], slot: Option<u32>) -> Result<Self> {
        Self::open_with(cipherdir, SlotKind::Password, secret, slot)
    }

    /// Opens `cipherdir` (its header store inside it) with a secret of `kind` (a password or
    /// a key file's bytes), trying every slot of that kind (or only `slot`). Holds the volume
    /// lock until dropped.
    pub fn open_with(
        cipherdir: &Path,
        kind: SlotKind,
        secret: &[u8],
        slot: Option<u32>,
    ) -> Result<Self> {
        Self::open_at(&Location::resolve(cipherdir, None)?, kind, secret, slot)
    }

    /// Opens the volume at `loc` with a secret of `kind`, trying every slot of that kind (or
    /// only `slot`), after checking that the store belongs to the cipherdir. Holds the volume
    /// lock until dropped.
    pub fn open_at(
        loc: &Location,
        kind: SlotKind,
        secret: &[u8],
        slot: Option<u32>,
    ) -> Result<Self> {
        Self::open_at_as(loc, kind, secret, slot, false)
    }

    /// Opens the volume at `loc` as [`open_at`](Self::open_at) does, for reading only
    /// (`mount --ro`, `fsck` without `--repair`): the header store is opened read-only (see
    /// `HeaderStore::open`), so the cipherdir and the store keep every byte and timestamp,
    /// and read-only media work. Nothing may write through such a volume.
    pub fn open_read_only_at(
        loc: &Location,
        kind: SlotKind,
        secret: &[u8],
        slot: Option<u32>,
    ) -> Result<Self> {
        Self::open_at_as(loc, kind, secret, slot, true)
    }

    fn open_at_as(
        loc: &Location,
        kind: SlotKind,
        secret: &[u8],
        slot: Option<u32>,
        read_only: bool,
    ) -> Result<Self> {
        let cipherdir = loc.cipherdir();
        if !read_only {
            check_writable_media(loc)?;
        }
        let lock = loc.lock()?;
        let root_times = RootTimes::capture(cipherdir);
        let store = HeaderStore::open(loc.store(), read_only)?;
        let params = store.params()?;
        loc.check_volume_id(&params.volume_id)?;
        if params.format_version > FORMAT_VERSION {
            return Err(FormatError::UnsupportedVersion(params.format_version).into());
        }
        let layout = Layout::new(u64::from(params.chunk_len))?;
        let (slot_id, kek) = store.unlock_with(kind, secret, slot)?;
        let keyring = Keyring::new(store, kek)?;
        // Verifies the parameters (v3: they are bound to the name key's wrap; a lowered
        // format version fails too) before anything can be written with them.
        let name_cipher = keyring.name_cipher()?;
        if !params.bound() {
            check_legacy_name_mode(cipherdir, &params)?;
        }
        let cipher: Option<NameCipher> = if params.plaintext_names {
            None
        } else {
            Some(name_cipher)
        };
        Ok(Volume {
            root: cipherdir.to_owned(),
            names: NameMap::new(cipher),
            keyring: Arc::new(keyring),
            layout,
            slot_id,
            _lock: lock,
            root_times,
        })
    }

    /// The cipherdir.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Keys and the header store.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// Keys and the header store, for management commands that change the KEK. They run
    /// with no file open, so the keyring is not shared then.
    pub fn keyring_mut(&mut self) -> &mut Keyring {
        Arc::get_mut(&mut self.keyring)
            .expect("no open file shares the keyring during a KEK change")
    }

    /// Chunk geometry.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Name mapping.
    pub fn names(&self) -> &NameMap {
        &self.names
    }

    /// The root timestamps to restore at close.
    pub fn root_times(&self) -> &RootTimes {
        &self.root_times
    }

    /// The slot that unlocked the volume.
    pub fn slot_id(&self) -> u32 {
        self.slot_id
    }

    /// Migrates a volume made by an older cofferfs (format v1 or v2) to the current format
    /// (v3): called before anything that may write (a read-write mount, `reencrypt`,
    /// `fsck --repair`), so an older cofferfs then refuses the volume cleanly. One walk of
    /// the tree finds the owner of every key row carried by exactly one entry, then one
    /// transaction adds the v3 schema, records those owners, re-wraps the name key bound to
    /// the volume parameters and sets the format version (see `keystore::migrate`). Existing
    /// files keep their own version. Returns whether the volume was migrated.
    pub fn upgrade_format_version(&self) -> Result<bool> {
        Ok(self.migrate()?.is_some())
    }

    /// [`upgrade_format_version`](Self::upgrade_format_version), with what it did.
    pub fn migrate(&self) -> Result<Option<MigrationReport>> {
        let store = self.keyring.store();
        if store.params()?.format_version >= FORMAT_VERSION && store.has_v3_schema() {
            return Ok(None);
        }
        let owners = owners::migration_owners(self)?;
        let report = self.keyring.migrate_to_v3(FORMAT_VERSION, &owners)?;
        if let Some(r) = &report {
            log::info!(
                "volume migrated from format {} to {FORMAT_VERSION}: {} key rows have an owner",
                r.from_version,
                r.owned_rows
            );
        }
        Ok(report)
    }

    /// The owner digest of the entry `disk_name` in the directory with id `dir_id` (zeros on
    /// plaintext-names volumes): see [`owners`].
    pub fn entry_owner(&self, dir_id: &names::DirId, disk_name: &std::ffi::OsStr) -> Owner {
        owners::entry_owner(dir_id, disk_name)
    }

    /// The owner entry of `file_id`'s key row was renamed from `from` to `to`: the row
    /// follows it (one `UPDATE`). A rename of any other name carrying the id (a copy, a
    /// second hard link) changes nothing, except onto the name of the row's owner that went
    /// while still open: that copy becomes the owner (the same `UPDATE`).
    pub fn entry_renamed(&self, file_id: &FileId, from: &Owner, to: &Owner) -> Result<()> {
        let store = self.keyring.store();
        // The row's owner `to` went while open (its deletion waits for the last close) and a
        // copy carrying the same id now takes that name: the row is the copy's again, and the
        // deletion at the close no longer matches.
        store.move_owner_from_either(file_id, [from, &owners::unlinked_open_owner(to)], to)?;
        Ok(())
    }

    /// Two entries carrying `a` and `b` swapped names (`RENAME_EXCHANGE`): each row that was
    /// owned by one of the names follows its entry, in one transaction.
    pub fn entries_exchanged(&self, a: (FileId, Owner), b: (FileId, Owner)) -> Result<()> {
        self.keyring
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
        self.keyring.store().move_owner(file_id, owner, heir)?;
        Ok(())
    }

    /// The last name of an open file went: if `owner` (that name's digest) owned the key row
    /// of `file_id`, the row is marked as belonging to no name any more (see
    /// [`owners::unlinked_open_owner`]); returns the owner the deletion at the last close must
    /// name.
    pub fn last_name_gone_while_open(
        &self,
        file_id: Option<&FileId>,
        owner: &Owner,
    ) -> Result<Owner> {
        let gone = owners::unlinked_open_owner(owner);
        if let Some(id) = file_id {
            self.keyring.store().move_owner(id, owner, Some(&gone))?;
        }
        Ok(gone)
    }

    /// Opens an existing ciphertext file for plaintext I/O.
    pub fn open_file(&self, file: File) -> Result<ChunkedFile> {
        ChunkedFile::open(&self.keyring, self.layout, file)
    }

    /// Turns a newly created, empty file into a ciphertext file with its own key (owner
    /// unknown: for the volume API and tests; entries in a tree use
    /// [`create_file_owned`](Self::create_file_owned)).
    pub fn create_file(&self, file: File) -> Result<ChunkedFile> {
        ChunkedFile::create(&self.keyring, self.layout, file, None)
    }

    /// Turns a newly created, empty file into a ciphertext file with its own key, whose row
    /// records `owner` as the entry it belongs to.
    pub fn create_file_owned(&self, file: File, owner: Owner) -> Result<ChunkedFile> {
        ChunkedFile::create(&self.keyring, self.layout, file, Some(owner))
    }

    /// Takes a newly created, empty file as one that gets its key at its first change (the
    /// mount's `create`: an empty file costs no key row, header or transaction). `owner` is
    /// the entry it is created as.
    pub fn create_file_keyless(&self, file: File, owner: Option<Owner>) -> ChunkedFile {
        ChunkedFile::create_keyless(&self.keyring, self.layout, file, owner)
    }
}
