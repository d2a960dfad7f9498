//! cofferfs: an encrypted overlay filesystem for Linux. Layers, each importing only those
//! above it: `format` (bytes), `crypto` (keys and ciphers), `keystore` (the SQLite header
//! store), `volume` (a cipherdir opened with its KEK), `fs` (FUSE) and `cli`. Beside them,
//! leaves any layer may use: `hex`, `sys` (small system calls).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod control;
pub mod crypto;
pub mod format;
pub mod fs;
pub mod hex;
pub mod keystore;
pub mod pkcs11;
pub mod share;
pub mod sys;
pub mod transit;
pub mod volume;
