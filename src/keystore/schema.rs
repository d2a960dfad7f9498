//! The header store schema, version 1 (`PRAGMA user_version`). Every table that is looked up
//! by a key is `WITHOUT ROWID`: the key is the row, so a rotation rewrites one b-tree.

/// Schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Pragmas applied on every connection. WAL with `synchronous=NORMAL`: a commit costs no fsync,
/// and `HeaderStore::make_durable` forces one when a file is fsynced. `secure_delete` overwrites
/// deleted rows, so a shredded file's wrapped FEK is really gone. A 2 MiB page cache: a mount
/// reads one key row per open, the b-tree's inner pages stay cached and leaves come from the
/// OS page cache; a bigger cache only grows the daemon (16 MiB held 10 MiB of a
/// 100,000-file store). `rotate` raises it for its single pass.
pub const CONNECTION_PRAGMAS: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = NORMAL;
    PRAGMA secure_delete = ON;
    PRAGMA foreign_keys = ON;
    PRAGMA cache_size = -2048;
";

/// The tables of a new store.
pub const CREATE_TABLES: &str = "
CREATE TABLE volume (
    id               INTEGER PRIMARY KEY CHECK (id = 1),
    format_version   INTEGER NOT NULL,
    volume_id        BLOB    NOT NULL CHECK (length(volume_id) = 16),
    chunk_len        INTEGER NOT NULL,
    plaintext_names  INTEGER NOT NULL CHECK (plaintext_names IN (0, 1)),
    kek_generation   INTEGER NOT NULL,
    wrapped_name_key BLOB    NOT NULL,
    created          INTEGER NOT NULL
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
    created     INTEGER NOT NULL
);
CREATE TABLE file_keys (
    file_id        BLOB    PRIMARY KEY CHECK (length(file_id) = 16),
    wrapped_fek    BLOB    NOT NULL,
    kek_generation INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE long_names (
    digest BLOB PRIMARY KEY CHECK (length(digest) = 32),
    name   TEXT NOT NULL
) WITHOUT ROWID;
";
