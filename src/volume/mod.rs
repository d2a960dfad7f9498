//! A cipherdir opened with its KEK: creating and opening volumes, the volume lock, name
//! mapping, and `ChunkedFile` for random-access content I/O. Knows nothing of FUSE.

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
