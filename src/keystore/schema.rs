//! The header store schema, version 2 (`PRAGMA user_version`), and the migration from
//! version 1. Every table that is looked up by a key is `WITHOUT ROWID`: the key is the row,
//! so a rotation rewrites one b-tree.

/// Schema version this build writes (2, format v3). Version 1 stores (formats v1 and v2) are
/// still read, and migrated by the first read-write mount (see [`MIGRATE_1_TO_2`]).
pub const SCHEMA_VERSION: u32 = 2;

/// The schema of formats v1 and v2, read as it is until the volume is migrated.
pub const LEGACY_SCHEMA_VERSION: u32 = 1;

/// Pragmas applied on every connection. WAL with `synchronous=NORMAL`: a commit costs no fsync,
/// and `HeaderStore::make_durable` forces one when a file is fsynced. `secure_delete` overwrites
/// deleted rows, so a shredded file's wrapped FEK is really gone. A 2 MiB page cache: a mount
/// reads one key row per open, the b-tree's inner pages stay cached and leaves come from the
/// OS page cache; a bigger cache only grows the daemon (16 MiB held 10 MiB of a
/// 100,000-file store). The one-transaction rotation of a schema 1 store raises it for its pass.
pub const CONNECTION_PRAGMAS: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    PRAGMA secure_delete = ON;
    PRAGMA foreign_keys = ON;
    PRAGMA cache_size = -2048;
";

/// The tables schema 2 adds, as one literal for both [`CREATE_TABLES`] and
/// [`MIGRATE_1_TO_2`].
macro_rules! v3_tables {
    () => {
        "
CREATE TABLE quarantined_keys (
    file_id        BLOB    PRIMARY KEY CHECK (length(file_id) = 16),
    wrapped_fek    BLOB    NOT NULL,
    kek_generation INTEGER NOT NULL,
    owner          BLOB    CHECK (owner IS NULL OR length(owner) = 32),
    reason         TEXT    NOT NULL,
    quarantined_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE long_targets (
    digest BLOB PRIMARY KEY CHECK (length(digest) = 32),
    target TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE shares (
    share_id  BLOB    PRIMARY KEY CHECK (length(share_id) = 16),
    recipient TEXT    NOT NULL,
    file_ids  BLOB    NOT NULL,
    created   INTEGER NOT NULL
) WITHOUT ROWID;
"
    };
}

/// The tables of a new store (schema 1 plus [`MIGRATE_1_TO_2`], written out).
pub const CREATE_TABLES: &str = concat!(
    "
CREATE TABLE volume (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    format_version   INTEGER NOT NULL,
    volume_id        BLOB    NOT NULL CHECK (length(volume_id) = 16),
    chunk_len        INTEGER NOT NULL,
    plaintext_names  INTEGER NOT NULL CHECK (plaintext_names IN (0, 1)),
    kek_generation   INTEGER NOT NULL,
    wrapped_name_key BLOB    NOT NULL,
    created          INTEGER NOT NULL,
    previous_kek     BLOB
);
CREATE TABLE slots (
    slot_id     INTEGER PRIMARY KEY,
    kind        TEXT    NOT NULL,
    label       TEXT    NOT NULL,
    salt        BLOB    NOT NULL,
    argon2_m    INTEGER NOT NULL,
    argon2_t    INTEGER NOT NULL,
    argon2_p    INTEGER NOT NULL,
    wrapped_kek BLOB    NOT NULL,
    created     INTEGER NOT NULL,
    params      TEXT
);
CREATE TABLE file_keys (
    file_id        BLOB    PRIMARY KEY CHECK (length(file_id) = 16),
    wrapped_fek    BLOB    NOT NULL,
    kek_generation INTEGER NOT NULL,
    owner          BLOB    CHECK (owner IS NULL OR length(owner) = 32)
) WITHOUT ROWID;
CREATE TABLE long_names (
    digest BLOB PRIMARY KEY CHECK (length(digest) = 32),
    name   TEXT NOT NULL
) WITHOUT ROWID;
",
    v3_tables!()
);

/// Schema 1 → 2 (format v2 → v3), run inside the migration's transaction: the owner of each
/// key row, the quarantine of key rows, long symlink targets, and what later features need
/// reserved now so that they add no format version (NULL or empty until then):
/// `volume.previous_kek`, `slots.params`, table `shares`.
pub const MIGRATE_1_TO_2: &str = concat!(
    "
ALTER TABLE volume ADD COLUMN previous_kek BLOB;
ALTER TABLE slots ADD COLUMN params TEXT;
ALTER TABLE file_keys ADD COLUMN owner BLOB CHECK (owner IS NULL OR length(owner) = 32);
",
    v3_tables!()
);
