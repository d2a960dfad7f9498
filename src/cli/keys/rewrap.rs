//! `cofferfs keys rewrap`: after the Transit key was rotated in Vault, re-encrypt a Transit
//! slot's ciphertext under the key's newest version with `transit/rewrap`. The slot key never
//! leaves Vault for this, no secret is asked for, and only the slot's `params` change, so
//! `min_decryption_version` can be raised afterwards and the volume still opens.

use crate::cli::transit::client;
use crate::cli::volume_args::VolumeArgs;
use crate::cli::{CliError, exit};
use crate::keystore::SlotKind;
use crate::volume::{self, VolumeError};

/// Arguments of `cofferfs keys rewrap`.
#[derive(Debug, clap::Args)]
pub struct RewrapArgs {
    /// The volume.
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// The Transit slot to re-wrap.
    pub slot: u32,
    /// AppRole login (else VAULT_TOKEN / ~/.vault-token).
    #[command(flatten)]
    pub vault: crate::transit::config::AppRoleArgs,
}

/// Runs `keys rewrap`.
pub fn run(a: RewrapArgs) -> Result<(), CliError> {
    let loc = a.volume.locate()?;
    let store = volume::open_store_locked_at(&loc)?;
    let slot = store
        .slots()
        .map_err(VolumeError::from)?
        .into_iter()
        .find(|s| s.slot_id == a.slot)
        .ok_or_else(|| {
            CliError::new(
                exit::KEY_SLOT,
                format!("key slot {} does not exist", a.slot),
            )
        })?;
    if slot.kind != SlotKind::Transit {
        return Err(CliError::new(
            exit::KEY_SLOT,
            format!(
                "key slot {} is a {} slot: only Transit slots are re-wrapped (`cofferfs passwd` \
                 changes a password)",
                a.slot, slot.kind
            ),
        ));
    }
    let mut params = slot
        .transit()
        .map_err(VolumeError::from)?
        .expect("a Transit slot");
    let before = params.key_version();
    let mut client = client(&a.vault)?;
    params.ciphertext = client.rewrap(&params.mount, &params.key, &params.ciphertext)?;
    let after = params.key_version();
    crate::cli::transit::check_storable(&params)?;
    store
        .replace_slot_params(a.slot, &params.encode())
        .map_err(VolumeError::from)?;
    store.checkpoint().map_err(VolumeError::from)?;
    let v = |n: Option<u32>| n.map_or("?".into(), |n| n.to_string());
    println!(
        "Re-wrapped key slot {} with {}/{}: key version {} -> {}.",
        a.slot,
        params.mount,
        params.key,
        v(before),
        v(after)
    );
    Ok(())
}
