//! `cofferfs init`: create a volume.

use std::path::PathBuf;

use super::CliError;
use super::password::PasswordSource;
use crate::crypto::KdfParams;
use crate::crypto::kdf::{DEFAULT_M_KIB, DEFAULT_P, DEFAULT_T};
use crate::volume::{self, InitOptions};

/// Arguments of `cofferfs init`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The ciphertext directory to create the volume in.
    pub cipherdir: PathBuf,
    /// Plaintext bytes per chunk: a power of two from 4096 to 1048576.
    #[arg(long, default_value_t = crate::format::layout::DEFAULT_CHUNK_LEN)]
    pub chunk_size: u32,
    /// Store file names in clear (for debugging; leaks names to whoever sees the cipherdir).
    #[arg(long)]
    pub plaintext_names: bool,
    /// Label of the first key slot.
    #[arg(long, default_value = "password")]
    pub label: String,
    /// Argon2id memory in KiB for the password slot.
    #[arg(long, default_value_t = DEFAULT_M_KIB)]
    pub argon2_memory: u32,
    /// Argon2id passes.
    #[arg(long, default_value_t = DEFAULT_T)]
    pub argon2_time: u32,
    /// Argon2id lanes.
    #[arg(long, default_value_t = DEFAULT_P)]
    pub argon2_lanes: u32,
    /// Create the header store at PATH (a new file outside the cipherdir) instead of
    /// cofferfs.db in the cipherdir; every later command then needs --header-store PATH.
    #[arg(long, value_name = "PATH")]
    pub header_store: Option<PathBuf>,
    /// Where the password comes from.
    #[command(flatten)]
    pub password: PasswordSource,
}

/// Runs `init`.
pub fn run(a: InitArgs) -> Result<(), CliError> {
    crate::format::Layout::new(u64::from(a.chunk_size))
        .map_err(|e| CliError::new(super::exit::USAGE, e.to_string()))?;
    let kdf = KdfParams {
        m_kib: a.argon2_memory,
        t: a.argon2_time,
        p: a.argon2_lanes,
    };
    kdf.check(true)
        .map_err(|e| CliError::new(super::exit::USAGE, e.to_string()))?;
    if kdf.check(false).is_err() {
        eprintln!("cofferfs: warning: Argon2id memory below 8 MiB makes password guessing cheap");
    }
    let opts = InitOptions {
        chunk_len: a.chunk_size,
        plaintext_names: a.plaintext_names,
        kdf,
        label: a.label,
        header_store: a.header_store,
    };
    // Every mistake in the arguments is refused before the password is asked for.
    volume::check_init(&a.cipherdir, &opts)?;
    let pw = a.password.read("New password: ", true)?;
    let loc = volume::init(&a.cipherdir, &pw, &opts)?;
    println!(
        "Created cofferfs volume in {} (chunk size {}, {} names).",
        a.cipherdir.display(),
        a.chunk_size,
        if a.plaintext_names {
            "plaintext"
        } else {
            "encrypted"
        }
    );
    if loc.is_external() {
        println!(
            "Header store: {} (keep it: the cipherdir cannot be opened without it; give it \
             with --header-store to every command).",
            loc.store().display()
        );
    }
    println!("Keep the password safe: without it (or another key slot) the data is gone.");
    Ok(())
}
