//! The raw header store: rows in and out of SQLite. No unwrapping happens here except the slot
//! unlock, which needs only the slot rows.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use super::schema::{CONNECTION_PRAGMAS, CREATE_TABLES, LEGACY_SCHEMA_VERSION, SCHEMA_VERSION};
use super::transit_params::TransitParams;
use super::{KeystoreError, Result};
use crate::crypto::kdf::{SALT_LEN, keyfile_slot_key};
use crate::crypto::wrap::VolumeBinding;
use crate::crypto::{CryptoError, KdfParams, Kek, NameKey, SlotKey, os_random, wrap};
use crate::format::FileId;

/// First format version whose name-key wrap authenticates the volume parameters.
pub const BOUND_PARAMS_VERSION: u16 = 3;

/// The 32-byte digest of the directory entry a key row was created for (`file_keys.owner`):
/// an unlink shreds a row only when the entry removed is its owner, so a copy of a ciphertext
/// file under another name can never destroy the original's key. Computed by the volume layer,
/// which knows what identifies an entry; the store only compares them.
pub type Owner = [u8; 32];

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

/// What kind of secret opens a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotKind {
    /// A password through Argon2id.
    Password,
    /// A key file (32+ random bytes) through HKDF-SHA256; the Argon2 columns hold 0.
    Keyfile,
    /// A random slot key kept encrypted by a Vault/OpenBao Transit key: `slots.params` holds
    /// the Transit ciphertext and where it comes from ([`TransitParams`]); the secret given
    /// to unlock is the slot key the `decrypt` call returned. The salt is empty and the
    /// Argon2 columns hold 0. Older cofferfs refuse the store (unknown kind) rather than
    /// mis-read it.
    Transit,
}

impl SlotKind {
    fn as_str(self) -> &'static str {
        match self {
            SlotKind::Password => "password",
            SlotKind::Keyfile => "keyfile",
            SlotKind::Transit => "transit",
        }
    }

    /// The kind a `slots.kind` column names, if any. Public for the fuzz target over slot
    /// columns (`fuzz/fuzz_targets/slots.rs`): the column is untrusted.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "password" => Some(SlotKind::Password),
            "keyfile" => Some(SlotKind::Keyfile),
            "transit" => Some(SlotKind::Transit),
            _ => None,
        }
    }
}

impl std::fmt::Display for SlotKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One key slot: the KEK wrapped under a key derived from one secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRecord {
    /// Slot number, stable for the slot's life.
    pub slot_id: u32,
    /// Kind of secret.
    pub kind: SlotKind,
    /// Free text chosen by the user.
    pub label: String,
    /// Random salt of the KDF.
    pub salt: Vec<u8>,
    /// Argon2id parameters (all 0 for a key-file slot).
    pub kdf: KdfParams,
    /// The KEK wrapped under this slot's key.
    pub wrapped_kek: Vec<u8>,
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// `slots.params` (schema 2): the parameters of a slot kind that needs more than the
    /// columns above (a [`TransitParams`] for Transit); `None` for password and key-file slots.
    pub params: Option<String>,
}

impl SlotRecord {
    /// A new password slot wrapping `kek`: random salt, key derived with `kdf`.
    pub fn new_password(
        slot_id: u32,
        label: &str,
        password: &[u8],
        kdf: KdfParams,
        kek: &Kek,
        volume_id: &[u8; 16],
    ) -> Result<Self> {
        let mut salt = vec![0u8; SALT_LEN];
        os_random(&mut salt)?;
        let slot_key = kdf.derive(password, &salt)?;
        let wrapped_kek = wrap::wrap_kek(&slot_key, kek, volume_id)?;
        Ok(SlotRecord {
            slot_id,
            kind: SlotKind::Password,
            label: label.to_owned(),
            salt,
            kdf,
            wrapped_kek,
            created: now_secs(),
            params: None,
        })
    }

    /// A new key-file slot wrapping `kek`: random salt, key from HKDF-SHA256 of the file.
    pub fn new_keyfile(
        slot_id: u32,
        label: &str,
        keyfile: &[u8],
        kek: &Kek,
        volume_id: &[u8; 16],
    ) -> Result<Self> {
        let mut salt = vec![0u8; SALT_LEN];
        os_random(&mut salt)?;
        let slot_key = keyfile_slot_key(keyfile, &salt)?;
        let wrapped_kek = wrap::wrap_kek(&slot_key, kek, volume_id)?;
        Ok(SlotRecord {
            slot_id,
            kind: SlotKind::Keyfile,
            label: label.to_owned(),
            salt,
            kdf: KdfParams {
                m_kib: 0,
                t: 0,
                p: 0,
            },
            wrapped_kek,
            created: now_secs(),
            params: None,
        })
    }

    /// A new Transit slot wrapping `kek` under `slot_key`, the random key that Vault encrypted
    /// into `params.ciphertext`. The KEK itself never goes to Vault: Vault's answer is only
    /// trusted once the KEK it opens authenticates (AES-GCM over `wrapped_kek`, bound to the
    /// volume id), so a wrong or substituted ciphertext can never yield a wrong KEK.
    pub fn new_transit(
        slot_id: u32,
        label: &str,
        slot_key: &[u8],
        params: &TransitParams,
        kek: &Kek,
        volume_id: &[u8; 16],
    ) -> Result<Self> {
        let key = SlotKey::from_slice(slot_key)
            .ok_or(CryptoError::Malformed("a Transit slot key is 32 bytes"))?;
        let wrapped_kek = wrap::wrap_kek(&key, kek, volume_id)?;
        Ok(SlotRecord {
            slot_id,
            kind: SlotKind::Transit,
            label: label.to_owned(),
            salt: Vec::new(),
            kdf: KdfParams {
                m_kib: 0,
                t: 0,
                p: 0,
            },
            wrapped_kek,
            created: now_secs(),
            params: Some(params.encode()),
        })
    }

    /// The Transit parameters of a Transit slot (`None` for other kinds); a Transit slot
    /// whose `params` do not parse is a damaged store.
    pub fn transit(&self) -> Result<Option<TransitParams>> {
        if self.kind != SlotKind::Transit {
            return Ok(None);
        }
        let text = self
            .params
            .as_deref()
            .ok_or_else(|| corrupt(format!("Transit slot {} has no params", self.slot_id)))?;
        TransitParams::decode(text)
            .map(Some)
            .map_err(|e| corrupt(format!("Transit slot {}: params: {e}", self.slot_id)))
    }

    /// A new slot of the same kind, id, label and (for passwords) `kdf`, wrapping `kek` under
    /// `secret` with a fresh salt.
    pub fn rebuilt(
        &self,
        secret: &[u8],
        kdf: KdfParams,
        kek: &Kek,
        volume_id: &[u8; 16],
    ) -> Result<Self> {
        let mut s = match self.kind {
            SlotKind::Password => {
                Self::new_password(self.slot_id, &self.label, secret, kdf, kek, volume_id)?
            }
            SlotKind::Keyfile => {
                Self::new_keyfile(self.slot_id, &self.label, secret, kek, volume_id)?
            }
            // The same Vault ciphertext, so the same slot key: it re-wraps the new KEK.
            SlotKind::Transit => {
                let params = self.transit()?.expect("a Transit slot");
                Self::new_transit(self.slot_id, &self.label, secret, &params, kek, volume_id)?
            }
        };
        s.created = self.created;
        Ok(s)
    }

    /// Derives this slot's key from `secret` (for passwords the slow step: Argon2id).
    fn slot_key(&self, secret: &[u8]) -> Result<SlotKey> {
        Ok(match self.kind {
            SlotKind::Password => self.kdf.derive(secret, &self.salt)?,
            SlotKind::Keyfile => keyfile_slot_key(secret, &self.salt)?,
            SlotKind::Transit => SlotKey::from_slice(secret)
                .ok_or(CryptoError::Malformed("a Transit slot key is 32 bytes"))?,
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

/// Most key slots a volume may have, as LUKS2. A store with more was not made by cofferfs
/// (`keys add` refuses the next one): it is treated as tampered with.
pub const MAX_SLOTS: usize = 32;

/// Most Argon2id work one unlock may spend over all the slots it would try, as memory × passes
/// in KiB: 8 GiB·passes. Each slot's parameters are bounded on their own, but a tampered store
/// could put many costly slots before the real one (eight 1 GiB slots: 18 s and GiB of
/// memory). 32 slots at the defaults (64 MiB, 3 passes) take 6 GiB·passes.
pub const MAX_UNLOCK_WORK_KIB: u64 = 8 * 1024 * 1024;

/// Refuses, before any hashing, a slot table that is too large or whose password slots (those
/// of `kind`, or only `only_slot`) would cost more than [`MAX_UNLOCK_WORK_KIB`] to try.
fn check_unlock_work(slots: &[SlotRecord], kind: SlotKind, only_slot: Option<u32>) -> Result<()> {
    if let Some(extra) = slots.get(MAX_SLOTS) {
        return Err(corrupt(format!(
            "{} key slots, more than the {MAX_SLOTS} a volume may have (slot {} and after): \
             the store was tampered with",
            slots.len(),
            extra.slot_id
        )));
    }
    if kind != SlotKind::Password {
        return Ok(());
    }
    let mut work = 0u64;
    for slot in slots
        .iter()
        .filter(|s| s.kind == kind && only_slot.is_none_or(|id| id == s.slot_id))
        .filter(|s| s.kdf.check(true).is_ok())
    {
        work += u64::from(slot.kdf.m_kib) * u64::from(slot.kdf.t);
        if work > MAX_UNLOCK_WORK_KIB {
            return Err(corrupt(format!(
                "trying the password slots up to slot {} would take {} MiB·passes of Argon2id, \
                 more than the {} MiB·passes one unlock may spend: the store was tampered with \
                 (`--slot N` tries one slot alone)",
                slot.slot_id,
                work / 1024,
                MAX_UNLOCK_WORK_KIB / 1024
            )));
        }
    }
    Ok(())
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
        Self::insert_slot_in(&tx, first_slot)?;
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

    pub(super) fn insert_slot_in(conn: &Connection, s: &SlotRecord) -> Result<()> {
        let kind = s.kind.as_str();
        let columns: [&dyn rusqlite::ToSql; 9] = [
            &s.slot_id,
            &kind,
            &s.label,
            &s.salt,
            &s.kdf.m_kib,
            &s.kdf.t,
            &s.kdf.p,
            &s.wrapped_kek,
            &s.created,
        ];
        match &s.params {
            // Only schema 2 has the column; a v1 store is migrated by its first read-write
            // mount, and `add_transit_slot` refuses a v1 store.
            Some(params) => {
                let mut with_params = columns.to_vec();
                with_params.push(params);
                conn.execute(
                    "INSERT INTO slots (slot_id, kind, label, salt, argon2_m, argon2_t, argon2_p,
                        wrapped_kek, created, params)
                        VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    &*with_params,
                )?
            }
            None => conn.execute(
                "INSERT INTO slots (slot_id, kind, label, salt, argon2_m, argon2_t, argon2_p,
                    wrapped_kek, created) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                &columns[..],
            )?,
        };
        Ok(())
    }

    /// All key slots, by slot id.
    pub fn slots(&self) -> Result<Vec<SlotRecord>> {
        let v3 = self.has_v3_schema();
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(if v3 {
            "SELECT slot_id, kind, label, salt, argon2_m, argon2_t, argon2_p, wrapped_kek, created,
                params FROM slots ORDER BY slot_id"
        } else {
            "SELECT slot_id, kind, label, salt, argon2_m, argon2_t, argon2_p, wrapped_kek, created,
                NULL FROM slots ORDER BY slot_id"
        })?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, u32>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Vec<u8>>(3)?,
                KdfParams {
                    m_kib: r.get(4)?,
                    t: r.get(5)?,
                    p: r.get(6)?,
                },
                r.get::<_, Vec<u8>>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, Option<String>>(9)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (slot_id, kind, label, salt, kdf, wrapped_kek, created, params) =
                row.map_err(|e| corrupt(format!("slots table: {e}")))?;
            let kind =
                SlotKind::parse(&kind).ok_or_else(|| corrupt(format!("slot kind {kind:?}")))?;
            out.push(SlotRecord {
                slot_id,
                kind,
                label,
                salt,
                kdf,
                wrapped_kek,
                created,
                params,
            });
        }
        Ok(out)
    }

    /// Tries the password `secret` on every password slot (or only `only_slot`); see
    /// [`HeaderStore::unlock_with`].
    pub fn unlock(&self, secret: &[u8], only_slot: Option<u32>) -> Result<(u32, Kek)> {
        self.unlock_with(SlotKind::Password, secret, only_slot)
    }

    /// Tries `secret` on every slot of `kind` (or only `only_slot`) and returns the KEK of the
    /// first that opens. A password is never tried on a key-file slot nor the reverse. A slot
    /// whose KDF parameters are out of bounds is reported as such, never hashed.
    pub fn unlock_with(
        &self,
        kind: SlotKind,
        secret: &[u8],
        only_slot: Option<u32>,
    ) -> Result<(u32, Kek)> {
        let volume_id = self.params()?.volume_id;
        let slots = self.slots()?;
        if slots.is_empty() {
            return Err(corrupt("no key slots"));
        }
        check_unlock_work(&slots, kind, only_slot)?;
        let mut bounds_error = None;
        for slot in slots
            .iter()
            .filter(|s| s.kind == kind && only_slot.is_none_or(|id| id == s.slot_id))
        {
            let key = match slot.slot_key(secret) {
                Ok(k) => k,
                Err(
                    e @ KeystoreError::Crypto(
                        CryptoError::KdfParamsOutOfBounds { .. } | CryptoError::Malformed(_),
                    ),
                ) => {
                    bounds_error = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            match wrap::unwrap_kek(&key, &slot.wrapped_kek, &volume_id) {
                Ok(kek) => return Ok((slot.slot_id, kek)),
                Err(CryptoError::AuthFailed) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(bounds_error.unwrap_or(KeystoreError::WrongPassword))
    }

    /// Number of file key rows.
    pub fn file_count(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .lock()
            .query_row("SELECT count(*) FROM file_keys", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Stores a new file's wrapped FEK and the entry it is created for (`None`: unknown, the
    /// row is then never shredded by an unlink, only found by fsck). Committed (to the WAL)
    /// before returning, so the row exists before the ciphertext file does. One statement,
    /// the owner included: a create costs no more than before.
    pub fn insert_file_key(
        &self,
        file_id: &FileId,
        wrapped: &[u8],
        generation: u64,
        owner: Option<&Owner>,
    ) -> Result<()> {
        let v3 = self.has_v3_schema();
        self.write_retrying_when_full(|conn| {
            if v3 {
                conn.prepare_cached(
                    "INSERT INTO file_keys (file_id, wrapped_fek, kek_generation, owner)
                     VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    &file_id.0[..],
                    wrapped,
                    generation as i64,
                    owner.map(|o| &o[..])
                ])
            } else {
                conn.prepare_cached(
                    "INSERT INTO file_keys (file_id, wrapped_fek, kek_generation)
                     VALUES (?1, ?2, ?3)",
                )?
                .execute(params![&file_id.0[..], wrapped, generation as i64])
            }
        })?;
        Ok(())
    }

    /// A file's wrapped FEK and the KEK generation it was wrapped under.
    pub fn file_key(&self, file_id: &FileId) -> Result<Option<(Vec<u8>, u64)>> {
        wrapped_row(
            &self.conn.lock(),
            "SELECT wrapped_fek, kek_generation FROM file_keys WHERE file_id = ?1",
            file_id,
        )
    }

    /// Deletes a file's key row (crypto-shredding: `secure_delete` overwrites it).
    pub fn delete_file_key(&self, file_id: &FileId) -> Result<bool> {
        let n = self.write_retrying_when_full(|conn| {
            conn.prepare_cached("DELETE FROM file_keys WHERE file_id = ?1")?
                .execute([&file_id.0[..]])
        })?;
        Ok(n > 0)
    }

    /// Deletes the key rows of many files in one transaction; returns how many existed.
    pub fn delete_file_keys(&self, file_ids: &[FileId]) -> Result<usize> {
        self.write_retrying_when_full(|conn| {
            let tx = conn.unchecked_transaction()?;
            let mut n = 0;
            {
                let mut stmt = tx.prepare_cached("DELETE FROM file_keys WHERE file_id = ?1")?;
                for id in file_ids {
                    n += stmt.execute([&id.0[..]])?;
                }
            }
            tx.commit()?;
            Ok(n)
        })
    }

    /// Every file id with a key row, for fsck.
    pub fn file_ids(&self) -> Result<Vec<FileId>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT file_id FROM file_keys")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))?
            .map(|r| {
                r.map_err(KeystoreError::from)
                    .and_then(|v| FileId::from_slice(&v).ok_or_else(|| corrupt("file_id length")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ids)
    }

    /// Records the full encoded form of a long name under its digest.
    pub fn put_long_name(&self, digest: &[u8; 32], encoded: &str) -> Result<()> {
        self.write_retrying_when_full(|conn| {
            conn.prepare_cached("INSERT OR REPLACE INTO long_names (digest, name) VALUES (?1, ?2)")?
                .execute(params![&digest[..], encoded])
        })?;
        Ok(())
    }

    /// The full encoded form of a long name.
    pub fn long_name(&self, digest: &[u8; 32]) -> Result<Option<String>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached("SELECT name FROM long_names WHERE digest = ?1")?;
        Ok(stmt.query_row([&digest[..]], |r| r.get(0)).optional()?)
    }

    /// Every digest with a long-name row, for fsck.
    pub fn long_name_digests(&self) -> Result<Vec<[u8; 32]>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT digest FROM long_names")?;
        let digests = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))?
            .map(|r| {
                r.map_err(KeystoreError::from)
                    .and_then(|v| v.try_into().map_err(|_| corrupt("long name digest length")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(digests)
    }

    /// Forgets a long name whose entry is gone.
    pub fn delete_long_name(&self, digest: &[u8; 32]) -> Result<()> {
        self.write_retrying_when_full(|conn| {
            conn.prepare_cached("DELETE FROM long_names WHERE digest = ?1")?
                .execute([&digest[..]])
        })?;
        Ok(())
    }

    /// Records the full encoded form of a long symlink target under its digest (format v3).
    pub fn put_long_target(&self, digest: &[u8; 32], encoded: &str) -> Result<()> {
        if !self.has_v3_schema() {
            return Err(corrupt(
                "long symlink targets need a v3 store (migrate first)",
            ));
        }
        self.write_retrying_when_full(|conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO long_targets (digest, target) VALUES (?1, ?2)",
            )?
            .execute(params![&digest[..], encoded])
        })?;
        Ok(())
    }

    /// The full encoded form of a long symlink target.
    pub fn long_target(&self, digest: &[u8; 32]) -> Result<Option<String>> {
        if !self.has_v3_schema() {
            return Ok(None);
        }
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached("SELECT target FROM long_targets WHERE digest = ?1")?;
        Ok(stmt.query_row([&digest[..]], |r| r.get(0)).optional()?)
    }

    /// Makes every commit so far durable. Commits use `synchronous=NORMAL`: their WAL frames
    /// are written but not synced. Syncing the WAL file itself makes them survive a power cut
    /// (recovery replays the WAL); a checkpoint would not do, as SQLite skips its sync when a
    /// reader holds the checkpoint back. Called by `fsync` of a file, so a synced file's key
    /// row is durable too.
    pub fn make_durable(&self) -> Result<()> {
        let _conn = self.conn.lock();
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        match std::fs::File::open(&wal) {
            Ok(f) => f.sync_all()?,
            // No WAL: every commit is already in the (synced) database file.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Runs the one-statement write `op`. When the disk is full, folds the WAL into the
    /// database and truncates it — the WAL only grows between checkpoints, so this frees its
    /// space — and tries once more: deleting a file's key must work on a full disk, and a
    /// create should fail only when there is really no room.
    pub(super) fn write_retrying_when_full<T>(
        &self,
        op: impl Fn(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let conn = self.conn.lock();
        match op(&conn) {
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ffi::ErrorCode::DiskFull =>
            {
                log::warn!("header store: disk full; folding the WAL in to free its space");
                conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
                Ok(op(&conn)?)
            }
            other => Ok(other?),
        }
    }

    /// [`write_retrying_when_full`](Self::write_retrying_when_full) for a write of several
    /// statements: `op` runs inside one transaction, committed when it returns `Ok`.
    pub(super) fn write_retrying_when_full_tx<T>(
        &self,
        op: impl Fn(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T> {
        self.write_retrying_when_full(|conn| {
            let tx = conn.unchecked_transaction()?;
            let out = op(&tx)?;
            tx.commit()?;
            Ok(out)
        })
    }

    /// Copies the WAL into the database and truncates it, so a store at rest is one file
    /// (what rsync and backups should see). Called at unmount and after management commands.
    pub fn checkpoint(&self) -> Result<()> {
        let conn = self.conn.lock();
        // A read-only open (`mount --ro`) folds nothing in: a log left by a crash stays for
        // the next read-write open to recover.
        if conn.is_readonly(rusqlite::MAIN_DB)? {
            return Ok(());
        }
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

/// The `(wrapped_fek, kek_generation)` row of `file_id` that `sql` selects (from `file_keys`
/// or `quarantined_keys`).
pub(super) fn wrapped_row(
    conn: &Connection,
    sql: &str,
    file_id: &FileId,
) -> Result<Option<(Vec<u8>, u64)>> {
    let row = conn
        .prepare_cached(sql)?
        // as_bytes accepts TEXT too: a row rewritten as text by hand is tampered, and must
        // fail authentication rather than surface as a type error.
        .query_row([&file_id.0[..]], |r| {
            Ok((
                r.get_ref(0)?
                    .as_bytes()
                    .map(<[u8]>::to_vec)
                    .unwrap_or_default(),
                r.get::<_, i64>(1)?,
            ))
        })
        .optional()?;
    Ok(row.map(|(w, g)| (w, g as u64)))
}

/// Generates a new random volume id.
pub fn new_volume_id() -> Result<[u8; 16]> {
    let mut id = [0u8; 16];
    os_random(&mut id)?;
    Ok(id)
}
