//! `Volume`: a cipherdir opened with its KEK, under the volume lock. Opening checks that the
//! store belongs to the cipherdir, that its format is one this build reads and that its
//! parameters verify, before anything can be written; and migrates an older volume before the
//! first write.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::location::{self, Location};
use super::stores::check_writable_media;
use super::{ChunkedFile, NameMap, Owner, Result, RootTimes, owners};
use crate::crypto::names::NameCipher;
use crate::format::names::DIR_ID_FILE;
use crate::format::{FORMAT_VERSION, FormatError, Layout};
use crate::keystore::migrate::MigrationReport;
use crate::keystore::{HeaderStore, Keyring, KeystoreError, SlotKind, VolumeParams};

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

    /// Opens an existing ciphertext file for plaintext I/O.
    pub fn open_file(&self, file: File) -> Result<ChunkedFile> {
        ChunkedFile::open(&self.keyring, self.layout, file)
    }

    /// Like [`open_file`](Self::open_file), with the `O_NOATIME` read-only twin of `file`
    /// (for cofferfs's own reads, which must not move the atime) opened by the caller, who
    /// can do so more cheaply (see [`ChunkedFile::open_with_quiet`]).
    pub fn open_file_with_quiet(&self, file: File, quiet: File) -> Result<ChunkedFile> {
        ChunkedFile::open_with_quiet(&self.keyring, self.layout, file, quiet)
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
