//! `cofferfs keys add`: a new slot wrapping the KEK under a new password or a key file. O(1):
//! nothing but one slot row changes.

use std::path::PathBuf;

use crate::cli::CliError;
use crate::cli::password::PasswordSource;
use crate::cli::unlock::{KdfArgs, NewPasswordArgs, UnlockArgs, open_for_management, read_keyfile};
use crate::cli::volume_args::VolumeArgs;
use crate::crypto::KdfParams;
use crate::keystore::SlotKind;
use crate::volume::VolumeError;

/// Arguments of `cofferfs keys add`.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The volume.
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// Label of the new slot.
    #[arg(long)]
    pub label: Option<String>,
    /// The new slot is opened by this key file (at least 32 bytes) instead of a password.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["new_passfile", "new_extpass"])]
    pub keyfile: Option<PathBuf>,
    /// The new slot is opened by Vault/OpenBao Transit key KEY (VAULT_ADDR, VAULT_TOKEN, …).
    #[arg(long, value_name = "KEY", conflicts_with_all = ["keyfile", "new_passfile", "new_extpass"])]
    pub transit: Option<String>,
    /// Mount path of the Transit engine for --transit.
    #[arg(long, value_name = "PATH", default_value = crate::cli::transit::DEFAULT_MOUNT, requires = "transit")]
    pub transit_mount: String,
    /// Where the new password comes from (default: prompt, or the next line of stdin).
    #[command(flatten)]
    pub new_password: NewPasswordArgs,
    /// Argon2id parameters of a new password slot.
    #[command(flatten)]
    pub kdf: KdfArgs,
    /// Where the current password comes from.
    #[command(flatten)]
    pub password: PasswordSource,
    /// Unlock with an existing key-file slot instead of a current password.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["passfile", "extpass"])]
    pub unlock_keyfile: Option<PathBuf>,
    /// AppRole login for Transit (else VAULT_TOKEN / ~/.vault-token).
    #[command(flatten)]
    pub vault: crate::transit::config::AppRoleArgs,
}

/// Runs `keys add`.
pub fn run(a: AddArgs) -> Result<(), CliError> {
    let kdf = match a.keyfile {
        Some(_) => KdfParams::default(),
        None => a.kdf.resolve(KdfParams::default())?,
    };
    let unlock = UnlockArgs {
        password: a.password.clone(),
        keyfile: a.unlock_keyfile.clone(),
        vault: a.vault.clone(),
    };
    if let Some(key) = &a.transit {
        crate::cli::transit::check_names(&a.transit_mount, key)?;
    }
    let loc = a.volume.locate()?;
    if let Some(sock) = crate::cli::online::daemon_socket(&loc)? {
        return crate::cli::online::verbs::keys_add(&sock, &loc, &a, &unlock);
    }
    let (vol, _secret) = open_for_management(&loc, &unlock, None)?;
    if let Some(key) = &a.transit {
        let (slot_key, params) =
            crate::cli::transit::new_slot_key(&a.transit_mount, key, &a.vault)?;
        let label = a.label.unwrap_or_else(|| format!("transit:{key}"));
        let keyring = vol.keyring();
        let id = keyring
            .add_transit_slot(&label, slot_key.expose(), &params)
            .map_err(VolumeError::from)?;
        keyring.store().checkpoint().map_err(VolumeError::from)?;
        println!(
            "Added key slot {id} (transit {}/{key} version {}, label {label:?}).",
            params.mount,
            params.key_version().unwrap_or(0)
        );
        return Ok(());
    }
    let (kind, new_secret) = match &a.keyfile {
        Some(path) => (SlotKind::Keyfile, read_keyfile(path)?),
        None => (SlotKind::Password, a.new_password.read()?),
    };
    let label = a.label.unwrap_or_else(|| kind.to_string());
    let keyring = vol.keyring();
    let id = keyring
        .add_slot(kind, &label, &new_secret, kdf)
        .map_err(VolumeError::from)?;
    keyring.store().checkpoint().map_err(VolumeError::from)?;
    println!("Added key slot {id} ({kind}, label {label:?}).");
    if kind == SlotKind::Keyfile {
        println!("Keep the key file safe: whoever holds it can open the volume.");
    }
    Ok(())
}
