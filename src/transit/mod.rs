//! A Vault/OpenBao Transit client for Transit key slots: encrypt a new slot key, decrypt it
//! to unlock, rewrap it to the newest key version. Synchronous and small: one unlock is one
//! HTTPS request, so an async runtime would only add weight. Connection and authentication
//! follow the `vault`/`bao` command line (see [`config`]); the token lives in a wiped buffer
//! for the few requests of one command and is never written, logged or passed on.
//!
//! This layer knows nothing of the header store: it turns bytes into a `vault:vN:…` string
//! and back. What the bytes are (a random slot key wrapping the KEK) is the keystore's
//! business, and what Vault answers is only trusted once the KEK it opens authenticates.
//! Imports only `sys` (the wiped reader of secret files) of the crate: never `keystore`,
//! `volume`, `fs`, `fuser` or `rusqlite`.

pub mod client;
pub mod config;

pub use client::Client;
pub use config::Config;

/// Why a Transit request failed; each case has its own exit code (README "Exit codes").
#[derive(Debug, thiserror::Error)]
pub enum TransitError {
    /// No answer in time, connection refused, name not resolved, TLS handshake failed.
    #[error("Vault at {addr} is unreachable: {why}")]
    Unreachable {
        /// The address tried.
        addr: String,
        /// What the connection said.
        why: String,
    },
    /// The server answered 503 sealed.
    #[error("Vault at {0} is sealed: unseal it (`bao operator unseal`) and try again")]
    Sealed(String),
    /// 401/403, or no token at all.
    #[error("Vault refused the token: {0}")]
    Denied(String),
    /// The Transit key (or the mount) does not exist.
    #[error("Vault Transit key {0} does not exist")]
    KeyMissing(String),
    /// The ciphertext's key version is below the key's `min_decryption_version`.
    #[error(
        "Vault refuses the slot's ciphertext (key version {0}): it is older than the key's \
         min_decryption_version. Lower it, or after a key rotation run `cofferfs keys rewrap` \
         before raising it"
    )]
    TooOld(String),
    /// The configuration is unusable (bad address, plain http to a remote host, unreadable
    /// CA file or token file).
    #[error("Vault configuration: {0}")]
    Config(String),
    /// Any other answer (an unexpected status or body).
    #[error("Vault: {0}")]
    Other(String),
}

/// Result of Transit operations.
pub type Result<T> = std::result::Result<T, TransitError>;
