//! PKCS#11 tokens for `pkcs11` key slots: an AES-256 key that never leaves a token (an HSM, a
//! smart card, SoftHSM2) encrypts a random slot key with `CKM_AES_GCM`, and decrypts it again
//! to unlock. Through the `cryptoki` crate (the Parsec project's PKCS#11 binding): loading the
//! module, finding the token by label (and serial), logging in with a PIN held in a wiped
//! buffer, finding or creating the key, and sorting the token's refusals into the few cases a
//! user can act on ([`Pkcs11Error`]).
//!
//! This layer knows nothing of the header store or of what the bytes are: it seals bytes into
//! a blob and opens a blob back into bytes. The keystore keeps the blob; what the token
//! answers is only trusted once the KEK it opens authenticates. It must not import the
//! keystore, the volume or FUSE.

pub mod token;

pub use token::{LoggedIn, Token};

/// The only mechanism slots use today; stored in each slot so another can be added later.
pub const MECHANISM_AES_GCM: &str = "CKM_AES_GCM";

/// Why a token operation failed; each case has its own exit code (README "Exit codes").
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    /// The token refused the PIN (`CKR_PIN_INCORRECT`, `CKR_PIN_LEN_RANGE`, …).
    #[error("PKCS#11 token {0:?} refused the PIN")]
    WrongPin(String),
    /// The token refuses any PIN until it is unblocked (`CKR_PIN_LOCKED`).
    #[error(
        "PKCS#11 token {0:?}: the user PIN is locked after too many wrong tries; unblock it \
         with the SO PIN (the token vendor's tool, or `pkcs11-tool --init-pin --login \
         --login-type so`)"
    )]
    PinLocked(String),
    /// No slot of the module holds a token of that label (and serial).
    #[error("PKCS#11 token {label:?}{} is not present in module {module}", serial_note(.serial))]
    TokenAbsent {
        /// The module asked.
        module: String,
        /// The token label looked for.
        label: String,
        /// The serial looked for, when known.
        serial: Option<String>,
    },
    /// No AES secret key of that label on the token.
    #[error("PKCS#11 token {token:?} has no AES key labelled {key:?}")]
    KeyMissing {
        /// The token's label.
        token: String,
        /// The key label.
        key: String,
    },
    /// The module cannot be loaded or does not initialise (missing file, not a PKCS#11
    /// library, refused by the safety checks on its path).
    #[error("PKCS#11 module {module} cannot be loaded: {why}")]
    Module {
        /// The module path.
        module: String,
        /// What went wrong.
        why: String,
    },
    /// The key does not decrypt the blob: another key of the same label, or a damaged blob.
    #[error("PKCS#11 token {token:?}: key {key:?} does not decrypt this slot's blob")]
    Undecryptable {
        /// The token's label.
        token: String,
        /// The key label.
        key: String,
    },
    /// Anything else the module answered (an unsupported mechanism, a read-only token, …).
    #[error("PKCS#11: {0}")]
    Other(String),
}

fn serial_note(serial: &Option<String>) -> String {
    serial
        .as_ref()
        .map_or(String::new(), |s| format!(" (serial {s})"))
}

/// Result of token operations.
pub type Result<T> = std::result::Result<T, Pkcs11Error>;
