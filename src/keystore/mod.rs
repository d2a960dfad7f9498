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
mod error;
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

pub use error::{KeystoreError, Result};
pub use keyring::Keyring;
pub use owners::Owner;
pub use rotate::RotateReport;
pub use slots::{Pkcs11Params, SlotKind, SlotRecord};
pub use store::{HeaderStore, VolumeParams};
pub use transit_params::TransitParams;
