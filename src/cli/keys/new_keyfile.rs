//! `cofferfs keys new-keyfile`: 64 random bytes in a new file of mode 0600. Never overwrites:
//! replacing a key file in use would lock its slot out.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use zeroize::Zeroizing;

use crate::cli::{CliError, exit};
use crate::crypto::os_random;

/// Bytes in a key file made by `new-keyfile`: 512 bits, twice the minimum.
pub const NEW_KEYFILE_LEN: usize = 64;

/// Arguments of `cofferfs keys new-keyfile`.
#[derive(Debug, clap::Args)]
pub struct NewKeyfileArgs {
    /// The file to create (must not exist).
    pub file: PathBuf,
}

/// Runs `keys new-keyfile`.
pub fn run(a: NewKeyfileArgs) -> Result<(), CliError> {
    let fail = |e: std::io::Error| {
        CliError::new(
            exit::OTHER,
            format!("cannot create key file {}: {e}", a.file.display()),
        )
    };
    let mut bytes = Zeroizing::new([0u8; NEW_KEYFILE_LEN]);
    os_random(&mut bytes[..]).map_err(|e| CliError::new(exit::OTHER, e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&a.file)
        .map_err(fail)?;
    f.write_all(&bytes[..]).map_err(fail)?;
    f.sync_all().map_err(fail)?;
    println!(
        "Wrote a {NEW_KEYFILE_LEN}-byte key file to {} (mode 0600). Add it with `cofferfs keys add --keyfile`.",
        a.file.display()
    );
    Ok(())
}
