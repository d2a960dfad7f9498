//! The header store: `cofferfs.db`, a SQLite database holding the volume parameters, the key
//! slots, one wrapped FEK per file and the long names. `store` opens and creates the
//! database and reads the volume parameters; each table family has its file (`slots/` with
//! one file per slot kind and the unlock, `file_keys`, `owners`, `quarantine`, `long_names`,
//! `shares`), `durability` says when commits reach the disk, `schema` and `migrate` are the
//! tables and their upgrade, `backup` the header backup file; `keyring` adds the unlocked KEK
//! and an LRU of unwrapped FEKs, `rotate` the KEK rotation.
//!
//! Owns: every byte of `cofferfs.db` and the unwrapping of keys stored in it. Must not
//! import: `fuser`, `crate::fs`, `crate::volume`, `crate::cli` (it knows nothing of mounts,
//! the cipherdir's files or printing), nor touch any file of the volume beyond its database
//! (and its `-wal`/`-shm`) and the header backup it is asked to write or read.

pub mod backup;
mod durability;
mod file_keys;
pub mod keyring;
mod long_names;
pub mod migrate;
pub mod owners;
pub mod quarantine;
pub mod rotate;
pub mod schema;
pub mod shares;
pub mod slots;
pub mod store;
pub mod transit_params;

pub use keyring::Keyring;
pub use owners::Owner;
pub use rotate::RotateReport;
pub use slots::{SlotKind, SlotRecord};
pub use store::{HeaderStore, VolumeParams};
pub use transit_params::TransitParams;

use crate::crypto::CryptoError;
use crate::format::FileId;

/// Why the header store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// There is no header store where one should be.
    #[error("header store {0} does not exist: not a cofferfs cipherdir, or the store was removed")]
    Missing(std::path::PathBuf),
    /// The store is not a cofferfs header store, or its contents are damaged.
    #[error("header store is corrupt: {0}")]
    Corrupt(String),
    /// The store was written by a newer cofferfs.
    #[error(
        "header store schema version {found} is newer than this cofferfs supports ({supported})"
    )]
    NewerVersion {
        /// Version found in the store.
        found: u32,
        /// Highest version this build reads.
        supported: u32,
    },
    /// The volume parameters (name mode, chunk size, format version, volume id) are not the
    /// ones the KEK authenticated: the header store was altered.
    #[error("volume parameters do not verify: header store tampered with? ({0})")]
    ParamsDoNotVerify(String),
    /// A read-only open of a store whose write-ahead log holds commits, where SQLite can
    /// neither use nor create the `-shm` file it needs to read that log.
    #[error(
        "header store {0}: its write-ahead log ({0}-wal) holds changes that are not in the \
         store file yet, and SQLite cannot read it here without {0}-shm, which is missing and \
         cannot be created (read-only medium?): copy the cipherdir, with its -wal file, to \
         writable storage and use the copy, or include the -shm file in the copy"
    )]
    WalUnreadable(std::path::PathBuf),
    /// No key slot opened with the given secret.
    #[error("wrong password or key: no key slot opens with it")]
    WrongPassword,
    /// No slot has this id.
    #[error("key slot {0} does not exist")]
    NoSuchSlot(u32),
    /// Removing this slot would leave the volume without any.
    #[error("key slot {0} is the last one: removing it would lock the volume forever")]
    LastSlot(u32),
    /// A rotation would leave these slots holding the old KEK.
    #[error(
        "key slot(s) {} would keep the old KEK usable: supply --drop-other-slots to remove \
         them (add them again afterwards with `cofferfs keys add`)",
        .0.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
    )]
    OtherSlots(Vec<u32>),
    /// The volume has the most key slots it may have.
    #[error("the volume has {0} key slots, the most it may have: remove one first")]
    TooManySlots(usize),
    /// A file's key row is missing (deleted, or the store is older than the file).
    #[error("no key row for file {0}")]
    MissingKey(FileId),
    /// A file's key row exists but does not unwrap under the KEK: it was altered.
    #[error("key row of file {0} fails authentication")]
    TamperedKey(FileId),
    /// A key row of a KEK generation the keyring does not hold: neither the volume's nor,
    /// while a rotation is pending, the one before (the generation column was altered, or
    /// the row was copied in from another store).
    #[error(
        "key row of file {file_id} is of KEK generation {row}, but the volume is at generation \
         {volume}{}",
        if *pending { " with a rotation pending from the one before" } else { " with no rotation pending" }
    )]
    KeyRowGeneration {
        /// The row's file id.
        file_id: FileId,
        /// The generation the row claims.
        row: u64,
        /// The volume's generation.
        volume: u64,
        /// A rotation is pending (rows of `volume - 1` are accepted).
        pending: bool,
    },
    /// A rotation was asked to begin while another is pending: finish that one first
    /// (`Keyring::rotation_step`).
    #[error("a KEK rotation from generation {from} to {to} is pending: finish it first")]
    RotationPending {
        /// The old generation.
        from: u64,
        /// The new generation.
        to: u64,
    },
    /// An incremental rotation needs `volume.previous_kek`, which a schema 1 store (format
    /// v1/v2 not migrated yet) lacks: `Keyring::rotate` rotates such a store in one
    /// transaction instead.
    #[error(
        "an incremental rotation needs a format v3 store: mount the volume read-write once to \
         upgrade it"
    )]
    RotationNeedsV3,
    /// A rotation was asked to keep no slot: nothing could open the new KEK.
    #[error("a rotation must keep at least one key slot")]
    NoSlotKept,
    /// A cryptographic failure other than the cases above.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// SQLite reported an error.
    #[error("header store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// An I/O error on the store's files.
    #[error("header store: {0}")]
    Io(#[from] std::io::Error),
}

impl KeystoreError {
    /// The OS error this failure stands for when it is one (disk full, read-only, …), so the
    /// mount can pass ENOSPC or EROFS through instead of a generic EIO.
    pub fn raw_os_error(&self) -> Option<i32> {
        use rusqlite::ffi::ErrorCode;
        match self {
            KeystoreError::Io(e) => e.raw_os_error(),
            KeystoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _)) => match f.code {
                ErrorCode::DiskFull => Some(libc::ENOSPC),
                ErrorCode::ReadOnly => Some(libc::EROFS),
                ErrorCode::PermissionDenied => Some(libc::EACCES),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Result of keystore operations.
pub type Result<T> = std::result::Result<T, KeystoreError>;
