//! A cipherdir opened with its KEK, and every rule about what lies in it. Owns: creating
//! (`init.rs`) and opening volumes (`open.rs`: `Volume`, the volume lock from `location.rs`),
//! the header store opened without a secret (`stores.rs`), the root's timestamps
//! (`root_times.rs`), the error type (`error.rs`); name mapping and directory ids
//! (`names.rs`), symlink targets (`symlinks.rs`), xattrs (`xattrs.rs`) and the entries the
//! mount creates and removes with their header-store rows (`entries.rs`); the ciphertext
//! header reader and the chunk rule (`ciphertext.rs`), random-access content I/O
//! (`chunked.rs`); key-row owners (`owners.rs`), and the whole-volume tools: `fsck/`,
//! `reencrypt.rs`, `header.rs` (backup, restore), `share.rs` (what a share takes), `walk.rs`.
//!
//! Imports `crypto`, `format`, `keystore` and `share::payload` (the share entry it fills),
//! std and rustix; never `fuser` (checked by `scripts/test.sh`), `fs` or `cli`. Everything
//! the mount needs from the layers below comes through here.

pub mod chunked;
pub mod ciphertext;
pub mod entries;
mod error;
pub mod fsck;
pub mod header;
mod init;
pub mod location;
pub mod names;
mod open;
pub mod owners;
pub mod reencrypt;
mod root_times;
pub mod share;
mod stores;
pub mod symlinks;
pub mod walk;
pub mod xattrs;

/// Types of the layers below that the mount needs, re-exported so that `fs` imports only
/// `volume`: a file's id, an entry's owner digest, the header store's errors (for errno).
pub use crate::format::FileId;
pub use crate::keystore::{KeystoreError, Owner};
pub use chunked::ChunkedFile;
pub use entries::NewDir;
pub use error::{Result, VolumeError};
pub use init::{FirstSlot, InitOptions, check_init, init, init_with};
pub use location::{Location, lock_probe_path};
pub use names::NameMap;
pub use open::Volume;
pub use root_times::RootTimes;
pub use stores::{
    LockedStore, ReadOnlyStore, check_not_locked, check_writable_media, open_store_locked_at,
    open_store_read_only, open_store_read_only_at, precheck,
};
