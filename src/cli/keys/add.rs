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
    #[arg(long, value_name = "FILE", conflicts_with_all = ["new_passfile", "new_extpass", "pkcs11_module"])]
    pub keyfile: Option<PathBuf>,
    /// The new slot is opened by Vault/OpenBao Transit key KEY (VAULT_ADDR, VAULT_TOKEN, …).
    #[arg(long, value_name = "KEY", conflicts_with_all = ["keyfile", "new_passfile", "new_extpass", "pkcs11_module"])]
    pub transit: Option<String>,
    /// The new slot is opened by a PKCS#11 token (its PIN: --pin-file, --pin-extpass or a
    /// prompt).
    #[command(flatten)]
    pub pkcs11: crate::cli::pkcs11::Pkcs11Args,
    /// The token's PIN: of the new PKCS#11 slot with --pkcs11-module, else of an existing
    /// PKCS#11 slot that proves the current secret.
    #[command(flatten)]
    pub pin: crate::cli::pkcs11::PinArgs,
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
    /// With --pkcs11-module: read the PIN of an existing PKCS#11 slot's token (the current
    /// secret) from the first line of FILE.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "unlock_pin_extpass",
        requires = "pkcs11_module"
    )]
    pub unlock_pin_file: Option<PathBuf>,
    /// With --pkcs11-module: run CMD for the PIN of an existing PKCS#11 slot's token.
    #[arg(long, value_name = "CMD", requires = "pkcs11_module")]
    pub unlock_pin_extpass: Option<String>,
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
    let new_pkcs11 = a.pkcs11.pkcs11_module.is_some();
    let unlock = UnlockArgs {
        password: a.password.clone(),
        keyfile: a.unlock_keyfile.clone(),
        vault: a.vault.clone(),
        // With --pkcs11-module the PIN is the new token's; --unlock-pin-* is the current one.
        pin: if new_pkcs11 {
            crate::cli::pkcs11::PinArgs::from_sources(
                a.unlock_pin_file.clone(),
                a.unlock_pin_extpass.clone(),
            )
        } else {
            a.pin.clone()
        },
    };
    if let Some(key) = &a.transit {
        crate::cli::transit::check_names(&a.transit_mount, key)?;
    }
    if let (Some(module), Some(token)) = (&a.pkcs11.pkcs11_module, &a.pkcs11.pkcs11_token) {
        crate::cli::pkcs11::check_args(module, token, &a.pkcs11.pkcs11_key)?;
        if a.new_password.new_passfile.is_some() || a.new_password.new_extpass.is_some() {
            return Err(CliError::new(
                crate::cli::exit::USAGE,
                "--pkcs11-module makes a token slot: no new password is read",
            ));
        }
    }
    let loc = a.volume.locate()?;
    if let Some(sock) = crate::cli::online::daemon_socket(&loc)? {
        return crate::cli::online::verbs::keys_add(&sock, &loc, &a, &unlock);
    }
    let (vol, _secret) = open_for_management(&loc, &unlock, None)?;
    if new_pkcs11 {
        let keyring = vol.keyring();
        let (slot_key, params) =
            crate::cli::pkcs11::new_slot_key(&a.pkcs11, &a.pin, &keyring.volume_id())?;
        let label = a
            .label
            .unwrap_or_else(|| format!("pkcs11:{}/{}", params.token, params.key));
        let id = keyring
            .add_pkcs11_slot(&label, slot_key.expose(), &params)
            .map_err(VolumeError::from)?;
        keyring.store().checkpoint().map_err(VolumeError::from)?;
        println!(
            "Added key slot {id} (pkcs11 token {:?} serial {}, key {:?}, label {label:?}).",
            params.token, params.serial, params.key
        );
        return Ok(());
    }
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
