//! Sharing single files (issue 14): a share is an age file, encrypted to the recipients'
//! public keys, whose payload holds for each shared file its id, format version, chunk size
//! and FEK (and, unless `--no-names`, its path, size and mtime), and never the KEK, the name
//! key or any other file's key. With the share, their identity and the ciphertext file, a
//! recipient decrypts that one file without the volume, the header store or a mount.
//!
//! `payload` is the byte format (pure), `age_file` the age envelope (pure, the `age` crate),
//! `reader` the read-only chunk reader over a plain `File`. What a share takes from a volume
//! is in `volume::share`; the commands are in `cli::share`.
//!
//! Imports `crypto`, `format` and `volume::ciphertext` (the header reader and the chunk rule,
//! a leaf that needs no volume); never the header store (`keystore`, `rusqlite`) or `fuser`.

pub mod age_file;
pub mod payload;
pub mod reader;
