//! `cofferfs init`: create a volume.

use std::path::PathBuf;

use super::password::PasswordSource;
use super::unlock::warn_if_weak;
use super::{CliError, exit};
use crate::crypto::kdf::{DEFAULT_M_KIB, DEFAULT_P, DEFAULT_T};
use crate::crypto::{CryptoError, KdfParams};
use crate::format::FormatError;
use crate::volume::{self, InitOptions, VolumeError};

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
    /// The only key slot is Vault/OpenBao Transit key KEY (VAULT_ADDR, VAULT_TOKEN, …):
    /// no password is asked for.
    #[arg(long, value_name = "KEY", conflicts_with_all = ["passfile", "extpass", "pkcs11_module"])]
    pub transit: Option<String>,
    /// The only key slot is a PKCS#11 token (--pkcs11-module, --pkcs11-token, --pkcs11-key):
    /// no password is asked for, only the token's PIN.
    #[command(flatten)]
    pub pkcs11: super::pkcs11::Pkcs11Args,
    /// The token's PIN for --pkcs11-module.
    #[command(flatten)]
    pub pin: super::pkcs11::PinArgs,
    /// AppRole login for --transit (else VAULT_TOKEN / ~/.vault-token).
    #[command(flatten)]
    pub vault: crate::transit::config::AppRoleArgs,
    /// Mount path of the Transit engine for --transit.
    #[arg(long, value_name = "PATH", default_value = super::transit::DEFAULT_MOUNT, requires = "transit")]
    pub transit_mount: String,
}

/// What [`volume::check_init`] refused, with the code of a bad command line where an
/// argument was the mistake (the chunk size, the Argon2id parameters), as clap's own.
fn refused(e: VolumeError) -> CliError {
    let bad_argument = matches!(
        &e,
        VolumeError::Format(FormatError::InvalidChunkSize(_))
            | VolumeError::Crypto(CryptoError::KdfParamsOutOfBounds { .. })
    );
    let mut err = CliError::from(e);
    if bad_argument {
        err.code = exit::USAGE;
    }
    err
}

/// Runs `init`.
pub fn run(a: InitArgs) -> Result<(), CliError> {
    let kdf = KdfParams {
        m_kib: a.argon2_memory,
        t: a.argon2_time,
        p: a.argon2_lanes,
    };
    let label = match (&a.transit, &a.pkcs11.pkcs11_token, a.label.as_str()) {
        (Some(key), _, "password") => format!("transit:{key}"),
        (_, Some(token), "password") => format!("pkcs11:{token}/{}", a.pkcs11.pkcs11_key),
        _ => a.label.clone(),
    };
    let opts = InitOptions {
        chunk_len: a.chunk_size,
        plaintext_names: a.plaintext_names,
        kdf,
        label,
        header_store: a.header_store.clone(),
    };
    // Every mistake in the arguments is refused before the password is asked for.
    volume::check_init(&a.cipherdir, &opts).map_err(refused)?;
    warn_if_weak(&kdf);
    if let Some(key) = &a.transit {
        super::transit::check_names(&a.transit_mount, key)?;
    }
    if let (Some(module), Some(token)) = (&a.pkcs11.pkcs11_module, &a.pkcs11.pkcs11_token) {
        super::pkcs11::check_args(module, token, &a.pkcs11.pkcs11_key)?;
        if a.password.passfile.is_some() || a.password.extpass.is_some() {
            return Err(CliError::new(
                super::exit::USAGE,
                "--pkcs11-module makes a volume whose only slot is the token: no password is read",
            ));
        }
    }
    let loc = match &a.transit {
        // The token first: when it refuses, nothing has been created.
        None if a.pkcs11.pkcs11_module.is_some() => {
            let volume_id =
                crate::keystore::store::new_volume_id().map_err(volume::VolumeError::from)?;
            let (slot_key, params) = super::pkcs11::new_slot_key(&a.pkcs11, &a.pin, &volume_id)?;
            let first = volume::FirstSlot::Pkcs11 {
                volume_id,
                slot_key: slot_key.expose(),
                params: &params,
            };
            volume::init_with(&a.cipherdir, first, &opts)?
        }
        Some(key) => {
            // Vault first: when it refuses, nothing has been created.
            let (slot_key, params) = super::transit::new_slot_key(&a.transit_mount, key, &a.vault)?;
            let first = volume::FirstSlot::Transit {
                slot_key: slot_key.expose(),
                params: &params,
            };
            volume::init_with(&a.cipherdir, first, &opts)?
        }
        None => {
            let pw = a.password.read("New password: ", true)?;
            volume::init(&a.cipherdir, &pw, &opts)?
        }
    };
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
    match &a.transit {
        None if a.pkcs11.pkcs11_module.is_some() => println!(
            "Key slot 0 is key {:?} on PKCS#11 token {:?}: without that token and its PIN (or \
             another key slot, `cofferfs keys add`) the data is gone.",
            a.pkcs11.pkcs11_key,
            a.pkcs11.pkcs11_token.as_deref().unwrap_or_default()
        ),
        Some(key) => println!(
            "Key slot 0 is Vault Transit key {}/{key}: without that key (or another key slot, \
             `cofferfs keys add`) the data is gone.",
            a.transit_mount
        ),
        None => {
            println!("Keep the password safe: without it (or another key slot) the data is gone.")
        }
    }
    Ok(())
}
