//! The store itself: creating and opening `cofferfs.db` (read-write, read-only, immutable),
//! its schema version and the volume parameters. What the store holds lives beside it, one
//! file per table family: `slots/` (key slots and unlocking), `file_keys.rs`, `owners.rs`,
//! `quarantine.rs`, `long_names.rs`, `shares.rs`; `durability.rs` says when commits reach the
//! disk. No unwrapping happens in the store except the slot unlock, which needs only the
//! slot rows.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::schema::{CONNECTION_PRAGMAS, CREATE_TABLES, LEGACY_SCHEMA_VERSION, SCHEMA_VERSION};
use super::slots::insert_slot_in;
use super::{KeystoreError, Result};
use crate::crypto::wrap::VolumeBinding;
use crate::crypto::{Kek, NameKey, os_random, wrap};

// The slot and row types, at the path the crate has always named them by.
pub use super::owners::Owner;
pub use super::slots::{MAX_SLOTS, MAX_UNLOCK_WORK_KIB, SlotKind, SlotRecord};

/// First format version whose name-key wrap authenticates the volume parameters.
pub const BOUND_PARAMS_VERSION: u16 = 3;

/// Volume-wide parameters, fixed at `init` except the KEK generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeParams {
    /// On-disk format version.
    pub format_version: u16,
    /// Random id of the volume; binds slots and the name key to it.
    pub volume_id: [u8; 16],
    /// Plaintext bytes per chunk.
    pub chunk_len: u32,
    /// Names are stored in clear (debugging volumes).
    pub plaintext_names: bool,
    /// Incremented by every KEK rotation.
    pub kek_generation: u64,
    /// The name key wrapped under the KEK.
    pub wrapped_name_key: Vec<u8>,
    /// Creation time, seconds since the epoch.
    pub created: i64,
}

impl VolumeParams {
    /// The parameters a v3 name-key wrap binds.
    pub fn binding(&self) -> VolumeBinding {
        VolumeBinding {
            volume_id: self.volume_id,
            format_version: self.format_version,
            chunk_len: self.chunk_len,
            plaintext_names: self.plaintext_names,
        }
    }

    /// True when the stored parameters are authenticated by the name-key wrap (format v3 on).
    pub fn bound(&self) -> bool {
        self.format_version >= BOUND_PARAMS_VERSION
    }

    /// Wraps `nk` under `kek` as this volume's format requires: bound to every parameter from
    /// v3 on, to the volume id alone before.
    pub fn wrap_name_key(&self, kek: &Kek, nk: &NameKey) -> Result<Vec<u8>> {
        Ok(if self.bound() {
            wrap::wrap_name_key_bound(kek, nk, &self.binding())?
        } else {
            wrap::wrap_name_key(kek, nk, &self.volume_id)?
        })
    }

    /// Unwraps the name key, which verifies the parameters of a v3 volume: any failure is
    /// [`KeystoreError::ParamsDoNotVerify`] (a changed parameter, a lowered format version,
    /// or an altered wrapped key are the same thing to a reader).
    pub fn unwrap_name_key(&self, kek: &Kek) -> Result<NameKey> {
        let r = if self.bound() {
            wrap::unwrap_name_key_bound(kek, &self.wrapped_name_key, &self.binding())
        } else {
            wrap::unwrap_name_key(kek, &self.wrapped_name_key, &self.volume_id)
        };
        r.map_err(|_| {
            KeystoreError::ParamsDoNotVerify(if self.bound() {
                "the name key does not unwrap under the volume's parameters".into()
            } else {
                format!(
                    "the name key does not unwrap (format version {})",
                    self.format_version
                )
            })
        })
    }
}

/// Seconds since the epoch, for `created` columns.
pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// An open header store. The connection sits behind a mutex: SQLite connections are not
/// shareable across threads, and the mount's worker threads all use this one.
pub struct HeaderStore {
    /// Guards the only connection to the database.
    pub(super) conn: Mutex<Connection>,
    path: PathBuf,
    /// `user_version` of the open store: 1 until the migration to format v3 ran.
    pub(super) schema: std::sync::atomic::AtomicU32,
}

impl std::fmt::Debug for HeaderStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeaderStore({})", self.path.display())
    }
}

pub(super) fn corrupt(e: impl std::fmt::Display) -> KeystoreError {
    KeystoreError::Corrupt(e.to_string())
}

/// Maps SQLite's "this is not a database" family of errors to `Corrupt`.
fn classify(e: rusqlite::Error) -> KeystoreError {
    use rusqlite::ffi::ErrorCode;
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) =>
        {
            corrupt(e)
        }
        _ => KeystoreError::Sqlite(e),
    }
}

impl HeaderStore {
    /// Creates a new store at `path` (which must not exist) with mode 0600, the schema, the
    /// volume parameters and the first slot, all in one transaction.
    pub fn create(path: &Path, params: &VolumeParams, first_slot: &SlotRecord) -> Result<Self> {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        let mut conn = Connection::open(path)?;
        conn.execute_batch(CONNECTION_PRAGMAS)?;
        let tx = conn.transaction()?;
        tx.execute_batch(CREATE_TABLES)?;
        tx.execute(
            "INSERT INTO volume (id, format_version, volume_id, chunk_len, plaintext_names,
                kek_generation, wrapped_name_key, created) VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                params.format_version,
                &params.volume_id[..],
                params.chunk_len,
                params.plaintext_names,
                params.kek_generation as i64,
                params.wrapped_name_key,
                params.created
            ],
        )?;
        insert_slot_in(&tx, first_slot)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        let store = HeaderStore {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            schema: SCHEMA_VERSION.into(),
        };
        store.checkpoint()?;
        Ok(store)
    }

    /// Opens an existing store, checking that it is one and that we can read its version.
    /// Read-only opens never write (for `info` on a volume someone else owns).
    pub fn open(path: &Path, read_only: bool) -> Result<Self> {
        if !path.exists() {
            return Err(KeystoreError::Missing(path.to_owned()));
        }
        let rw = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = if read_only {
            Self::open_read_only(path)?
        } else {
            Connection::open_with_flags(path, rw).map_err(classify)?
        };
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(classify)?;
        if version == 0 {
            return Err(corrupt("no cofferfs schema (user_version 0)"));
        }
        if version > SCHEMA_VERSION {
            return Err(KeystoreError::NewerVersion {
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version < LEGACY_SCHEMA_VERSION {
            return Err(corrupt(format!("unknown schema version {version}")));
        }
        if !read_only {
            conn.execute_batch(CONNECTION_PRAGMAS).map_err(classify)?;
        }
        let store = HeaderStore {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            schema: version.into(),
        };
        store.params()?;
        Ok(store)
    }

    /// Reads the volume id without opening the store for use: an immutable read-only open
    /// creates no -wal or -shm file, so refusing a store of another volume leaves its
    /// directory untouched. The id is written once by `init`, whose WAL is checkpointed at
    /// once, so the main database file always holds it.
    pub fn peek_volume_id(path: &Path) -> Result<[u8; 16]> {
        let conn = Self::open_immutable(path)?;
        let id: Vec<u8> = conn
            .query_row("SELECT volume_id FROM volume WHERE id = 1", [], |r| {
                r.get(0)
            })
            .map_err(classify)?;
        id.try_into()
            .map_err(|_| corrupt("volume id is not 16 bytes"))
    }

    /// A connection that only reads and writes nothing, on read-only media too (`mount
    /// --ro`, `fsck`, `info`). A store at rest (no `-wal` with commits in it, and no `-shm`:
    /// no connection is open) is the main file alone, opened `immutable`: SQLite then takes
    /// no lock and creates no `-wal` or `-shm`. A store with a write-ahead log (mounted
    /// elsewhere, or left by a crash) has commits that only the log holds, so it is opened as
    /// an ordinary read-only WAL reader: SQLite uses the `-shm` file (from heap memory when
    /// the file cannot be written) and creates it if missing; where it can do neither (a
    /// copy without its `-shm` on read-only media) the first read fails with `CANTOPEN`,
    /// which [`HeaderStore::open`] reports as [`KeystoreError::WalUnreadable`] rather than
    /// reading the store without its newest commits.
    fn open_read_only(path: &Path) -> Result<Connection> {
        let sidecar = |suffix: &str| {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            PathBuf::from(p)
        };
        let at_rest = match std::fs::metadata(sidecar("-wal")) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            // An empty log and no -shm: no connection is open, and the log holds nothing.
            Ok(m) => m.len() == 0 && !sidecar("-shm").exists(),
            Err(e) => return Err(e.into()),
        };
        if at_rest {
            return Self::open_immutable(path);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(classify)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // SQLite reaches for the log and its index at the first read.
        match conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(())) {
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ffi::ErrorCode::CannotOpen =>
            {
                Err(KeystoreError::WalUnreadable(path.to_owned()))
            }
            Err(e) => Err(classify(e)),
            Ok(()) => Ok(conn),
        }
    }

    fn open_immutable(path: &Path) -> Result<Connection> {
        let mut uri = String::from("file:");
        for b in path.as_os_str().as_encoded_bytes() {
            match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'.' | b'-' | b'_' => {
                    uri.push(*b as char)
                }
                _ => uri.push_str(&format!("%{b:02X}")),
            }
        }
        uri.push_str("?immutable=1");
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Connection::open_with_flags(uri, flags).map_err(classify)
    }

    /// The schema version of the open store (`PRAGMA user_version`): 1 for a format v1/v2
    /// volume not migrated yet, 2 from format v3 on.
    pub fn schema_version(&self) -> u32 {
        self.schema.load(std::sync::atomic::Ordering::Acquire)
    }

    /// True when the store has the v3 tables and columns (owners, quarantine, long targets).
    pub fn has_v3_schema(&self) -> bool {
        self.schema_version() >= SCHEMA_VERSION
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The volume parameters.
    pub fn params(&self) -> Result<VolumeParams> {
        let conn = self.conn.lock();
        let row = conn
            .query_row(
                "SELECT format_version, volume_id, chunk_len, plaintext_names, kek_generation,
                        wrapped_name_key, created FROM volume WHERE id = 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, bool>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Vec<u8>>(5)?,
                        r.get::<_, i64>(6)?,
                    ))
                },
            )
            .optional()
            .map_err(|e| corrupt(format!("volume table: {e}")))?
            .ok_or_else(|| corrupt("volume table has no row"))?;
        let (format_version, volume_id, chunk_len, plaintext_names, generation, wnk, created) = row;
        Ok(VolumeParams {
            format_version: u16::try_from(format_version).map_err(corrupt)?,
            volume_id: volume_id
                .try_into()
                .map_err(|_| corrupt("volume_id length"))?,
            chunk_len: u32::try_from(chunk_len).map_err(corrupt)?,
            plaintext_names,
            kek_generation: u64::try_from(generation).map_err(corrupt)?,
            wrapped_name_key: wnk,
            created,
        })
    }
}

/// Generates a new random volume id.
pub fn new_volume_id() -> Result<[u8; 16]> {
    let mut id = [0u8; 16];
    os_random(&mut id)?;
    Ok(id)
}
