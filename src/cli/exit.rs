//! Exit codes: the one table, documented in README.md ("Exit codes") and never renumbered.

use crate::format::FormatError;
use crate::keystore::KeystoreError;
use crate::volume::VolumeError;

/// Success.
pub const OK: i32 = 0;
/// Any error without a code of its own.
pub const OTHER: i32 = 1;
/// Bad command line (clap's own code).
pub const USAGE: i32 = 2;
/// The cipherdir is missing, not a cipherdir, or not empty at `init`; or one of its control
/// files (`cofferfs.volume`, `cofferfs.db`) is not a regular file.
pub const CIPHERDIR: i32 = 6;
/// The header store is missing, corrupt, or from a newer cofferfs; or its write-ahead log
/// cannot be read on read-only media.
pub const HEADER_STORE: i32 = 9;
/// The password could not be read (empty, longer than 4096 bytes, the two entries differ,
/// passfile unreadable, extpass failed).
pub const PASSWORD_INPUT: i32 = 10;
/// No key slot opens with the given password or key.
pub const WRONG_PASSWORD: i32 = 12;
/// The volume is in use by another cofferfs process (mounted, or a management command).
pub const LOCKED: i32 = 15;
/// A key slot operation was refused: no such slot, the last slot, the wrong kind, removing a
/// slot with only its own secret, a slot beyond the 32 a volume may have, or `rotate` with
/// other slots and no `--drop-other-slots`.
pub const KEY_SLOT: i32 = 16;
/// The mount itself failed (mountpoint missing, not empty or already a mount point, FUSE
/// refused).
pub const MOUNT: i32 = 20;
/// The cipherdir keeps its header store elsewhere and no `--header-store` was given.
pub const STORE_ELSEWHERE: i32 = 21;
/// The header store and the cipherdir do not belong together: their volume ids differ, or
/// `--header-store` was given for a cipherdir that keeps its store inside it.
pub const STORE_MISMATCH: i32 = 22;
/// The `--header-store` path is refused: it exists already at `init`, its directory does
/// not exist, or it lies inside the cipherdir (other than the default `cofferfs.db`).
pub const STORE_PATH: i32 = 23;
/// `fsck` found problems and some remain (without `--repair`: any problem at all).
pub const FSCK_PROBLEMS: i32 = 26;
/// `fsck --repair` found problems and repaired every one of them.
pub const FSCK_REPAIRED: i32 = 27;
/// `reencrypt` left some of the files it was asked for alone (hard links, not a regular
/// file, unreadable, with `--all` a file id another file carries too); the others were
/// re-encrypted.
pub const REENCRYPT_INCOMPLETE: i32 = 28;
/// The volume parameters in the header store (name mode, chunk size, format version, volume
/// id) are not the ones the KEK authenticated: the store was tampered with.
pub const PARAMS_UNVERIFIED: i32 = 30;
/// `header backup`/`header restore`: the backup FILE is refused (it exists already at
/// `backup`, which never overwrites; at `restore` it is missing or not a cofferfs header store).
pub const HEADER_BACKUP_FILE: i32 = 35;
/// `open-share`: the ciphertext does not authenticate under the share's key: a chunk is
/// tampered with, missing or cut short, or it is another file's ciphertext (or the file was
/// re-encrypted since the share). No plaintext is left under OUT's name.
pub const CIPHERTEXT_UNAUTHENTIC: i32 = 45;
/// `open-share`: the share cannot be opened: no identity given opens it, the identity file is
/// unusable, or it is not a cofferfs share (or was tampered with).
pub const SHARE_UNREADABLE: i32 = 46;
/// Transit slot: Vault/OpenBao did not answer in time (`VAULT_CLIENT_TIMEOUT`, default
/// 10 s), refused the connection, or the TLS handshake failed.
pub const VAULT_UNREACHABLE: i32 = 50;
/// Transit slot: Vault/OpenBao is sealed.
pub const VAULT_SEALED: i32 = 51;
/// Transit slot: the token (or AppRole login) is missing or refused (401/403), e.g. a
/// token that may decrypt but not encrypt at `keys add`.
pub const VAULT_DENIED: i32 = 52;
/// Transit slot: the Transit key or mount does not exist.
pub const VAULT_KEY_MISSING: i32 = 53;
/// Transit slot: the slot's ciphertext is older than the key's `min_decryption_version`
/// (`cofferfs keys rewrap` before raising it).
pub const VAULT_CIPHERTEXT_TOO_OLD: i32 = 54;
/// PKCS#11 slot: the token refused the PIN.
pub const PKCS11_WRONG_PIN: i32 = 55;
/// PKCS#11 slot: the token's user PIN is locked (too many wrong tries).
pub const PKCS11_PIN_LOCKED: i32 = 56;
/// PKCS#11 slot: no token of the slot's label (and serial) in the module's slots.
pub const PKCS11_TOKEN_ABSENT: i32 = 57;
/// PKCS#11 slot: the token has no AES key of the slot's key label.
pub const PKCS11_KEY_MISSING: i32 = 58;
/// PKCS#11 slot: the module cannot be loaded (missing, not a PKCS#11 library, writable by
/// others, or its initialisation failed).
pub const PKCS11_MODULE: i32 = 59;
/// `status`: the volume is not mounted (no daemon holds it).
pub const NOT_MOUNTED: i32 = 60;
/// The mount daemon's control socket failed: it refused the request as malformed, oversized,
/// truncated, unknown or of another protocol version, was busy with other clients, serves
/// another user, or the connection broke before the reply.
pub const CONTROL: i32 = 61;
/// `rotate` of a mounted volume while a rotation is still running (`status` follows it).
pub const ROTATION_RUNNING: i32 = 62;

/// Every code above with its name: what the README's "Exit codes" table must list, checked by
/// tests/readme_tables.rs (which also checks that no `pub const` of this file is missing
/// here). A new code is added above, here, and to the README table.
pub const ALL: &[(i32, &str)] = &[
    (OK, "OK"),
    (OTHER, "OTHER"),
    (USAGE, "USAGE"),
    (CIPHERDIR, "CIPHERDIR"),
    (HEADER_STORE, "HEADER_STORE"),
    (PASSWORD_INPUT, "PASSWORD_INPUT"),
    (WRONG_PASSWORD, "WRONG_PASSWORD"),
    (LOCKED, "LOCKED"),
    (KEY_SLOT, "KEY_SLOT"),
    (MOUNT, "MOUNT"),
    (STORE_ELSEWHERE, "STORE_ELSEWHERE"),
    (STORE_MISMATCH, "STORE_MISMATCH"),
    (STORE_PATH, "STORE_PATH"),
    (FSCK_PROBLEMS, "FSCK_PROBLEMS"),
    (FSCK_REPAIRED, "FSCK_REPAIRED"),
    (REENCRYPT_INCOMPLETE, "REENCRYPT_INCOMPLETE"),
    (PARAMS_UNVERIFIED, "PARAMS_UNVERIFIED"),
    (HEADER_BACKUP_FILE, "HEADER_BACKUP_FILE"),
    (CIPHERTEXT_UNAUTHENTIC, "CIPHERTEXT_UNAUTHENTIC"),
    (SHARE_UNREADABLE, "SHARE_UNREADABLE"),
    (VAULT_UNREACHABLE, "VAULT_UNREACHABLE"),
    (VAULT_SEALED, "VAULT_SEALED"),
    (VAULT_DENIED, "VAULT_DENIED"),
    (VAULT_KEY_MISSING, "VAULT_KEY_MISSING"),
    (VAULT_CIPHERTEXT_TOO_OLD, "VAULT_CIPHERTEXT_TOO_OLD"),
    (PKCS11_WRONG_PIN, "PKCS11_WRONG_PIN"),
    (PKCS11_PIN_LOCKED, "PKCS11_PIN_LOCKED"),
    (PKCS11_TOKEN_ABSENT, "PKCS11_TOKEN_ABSENT"),
    (PKCS11_KEY_MISSING, "PKCS11_KEY_MISSING"),
    (PKCS11_MODULE, "PKCS11_MODULE"),
    (NOT_MOUNTED, "NOT_MOUNTED"),
    (CONTROL, "CONTROL"),
    (ROTATION_RUNNING, "ROTATION_RUNNING"),
];

/// The exit code for a Transit failure.
pub fn code_for_transit(e: &crate::transit::TransitError) -> i32 {
    use crate::transit::TransitError as T;
    match e {
        T::Unreachable { .. } => VAULT_UNREACHABLE,
        T::Sealed(_) => VAULT_SEALED,
        T::Denied(_) => VAULT_DENIED,
        T::KeyMissing(_) => VAULT_KEY_MISSING,
        T::TooOld(_) => VAULT_CIPHERTEXT_TOO_OLD,
        T::Config(_) => USAGE,
        T::Other(_) => OTHER,
    }
}

/// The exit code for a PKCS#11 failure. A key that does not decrypt the slot's blob is a
/// secret that opens no slot, as a wrong password is.
pub fn code_for_pkcs11(e: &crate::pkcs11::Pkcs11Error) -> i32 {
    use crate::pkcs11::Pkcs11Error as P;
    match e {
        P::WrongPin(_) => PKCS11_WRONG_PIN,
        P::PinLocked(_) => PKCS11_PIN_LOCKED,
        P::TokenAbsent { .. } => PKCS11_TOKEN_ABSENT,
        P::KeyMissing { .. } => PKCS11_KEY_MISSING,
        P::Module { .. } => PKCS11_MODULE,
        P::Undecryptable { .. } => WRONG_PASSWORD,
        P::Other(_) => OTHER,
    }
}

/// The exit code for a volume error. Every variant is named (no catch-all arm), here and in
/// the functions below: a new error variant does not compile until it is given its code.
pub fn code_for(e: &VolumeError) -> i32 {
    match e {
        VolumeError::NotACipherdir(_)
        | VolumeError::NotEmpty(_)
        | VolumeError::BadMarker { .. }
        | VolumeError::ControlFile { .. } => CIPHERDIR,
        VolumeError::StoreElsewhere(_) => STORE_ELSEWHERE,
        VolumeError::StoreMismatch { .. } | VolumeError::StoreInside(_) => STORE_MISMATCH,
        VolumeError::StorePath { .. } => STORE_PATH,
        VolumeError::StoreMissing(_) => HEADER_STORE,
        VolumeError::Locked(_) => LOCKED,
        VolumeError::Keystore(k) => code_for_keystore(k),
        VolumeError::Format(f) => code_for_format(f),
        // The OS random source or an Argon2id bound: the machine, not the volume.
        VolumeError::Crypto(_) => OTHER,
        // Damage found while reading one file: reported with its path, no code of its own.
        VolumeError::CorruptChunk { .. }
        | VolumeError::CorruptFile { .. }
        | VolumeError::CorruptName(_)
        | VolumeError::Io(_) => OTHER,
    }
}

/// The exit code for a header-store error.
pub fn code_for_keystore(e: &KeystoreError) -> i32 {
    match e {
        KeystoreError::WrongPassword => WRONG_PASSWORD,
        KeystoreError::ParamsDoNotVerify(_) => PARAMS_UNVERIFIED,
        KeystoreError::Missing(_)
        | KeystoreError::Corrupt(_)
        | KeystoreError::NewerVersion { .. }
        | KeystoreError::WalUnreadable(_)
        | KeystoreError::KeyRowGeneration { .. } => HEADER_STORE,
        KeystoreError::NoSuchSlot(_)
        | KeystoreError::LastSlot(_)
        | KeystoreError::OtherSlots(_)
        | KeystoreError::TooManySlots(_)
        | KeystoreError::NoSlotKept => KEY_SLOT,
        // One file's key row (reported with the file), or the machine itself (randomness,
        // SQLite, the disk).
        KeystoreError::MissingKey(_)
        | KeystoreError::TamperedKey(_)
        | KeystoreError::RotationPending { .. }
        | KeystoreError::RotationNeedsV3
        | KeystoreError::Crypto(_)
        | KeystoreError::Sqlite(_)
        | KeystoreError::Io(_) => OTHER,
    }
}

/// The exit code for an on-disk format error met while opening a volume.
pub fn code_for_format(e: &FormatError) -> i32 {
    match e {
        // The volume was made by a newer cofferfs: as a newer header store.
        FormatError::UnsupportedVersion(_) => HEADER_STORE,
        FormatError::Truncated { .. }
        | FormatError::BadMagic
        | FormatError::InvalidChunkSize(_)
        | FormatError::InvalidCipherSize(_)
        | FormatError::InvalidName
        | FormatError::BadMarker(_) => OTHER,
    }
}
