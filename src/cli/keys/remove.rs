//! `cofferfs keys remove`: deletes one slot, as `cryptsetup luksKillSlot` does: the secret
//! given must open a slot that stays, so whoever removes a slot is left with a working one,
//! and a forgotten password's slot can be removed with another secret. The last slot is never
//! removed.

use crate::cli::unlock::{UnlockArgs, open_for_management_keeping};
use crate::cli::volume_args::VolumeArgs;
use crate::cli::{CliError, exit};
use crate::keystore::KeystoreError;
use crate::volume::VolumeError;

/// Arguments of `cofferfs keys remove`.
#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// The volume.
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// The slot to remove (see `cofferfs keys list`).
    pub slot: u32,
    /// The secret of a slot that stays.
    #[command(flatten)]
    pub unlock: UnlockArgs,
}

/// Runs `keys remove`.
pub fn run(a: RemoveArgs) -> Result<(), CliError> {
    let loc = a.volume.locate()?;
    if let Some(sock) = crate::cli::online::daemon_socket(&loc)? {
        return crate::cli::online::verbs::keys_remove(&sock, &loc, &a);
    }
    let (vol, secret) = open_for_management_keeping(&loc, &a.unlock, None, Some(a.slot))?;
    let store = vol.keyring().store();
    let slots = store.slots().map_err(VolumeError::from)?;
    if !slots.iter().any(|s| s.slot_id == a.slot) {
        return Err(VolumeError::from(KeystoreError::NoSuchSlot(a.slot)).into());
    }
    if slots.len() == 1 {
        return Err(VolumeError::from(KeystoreError::LastSlot(a.slot)).into());
    }
    if vol.slot_id() == a.slot {
        // The secret opened the doomed slot first; it may open another slot too.
        let opens_another = slots
            .iter()
            .filter(|s| s.slot_id != a.slot && s.kind == secret.kind)
            .any(|s| {
                store
                    .unlock_with(secret.kind, &secret.bytes, Some(s.slot_id))
                    .is_ok()
            });
        if !opens_another {
            // The secret is right; the operation is what is refused (README: 16).
            return Err(CliError::new(
                exit::KEY_SLOT,
                format!(
                    "the secret given opens only slot {} itself: give the secret of a slot \
                     that stays (removing a slot must leave you a way in)",
                    a.slot
                ),
            ));
        }
    }
    store.remove_slot(a.slot).map_err(VolumeError::from)?;
    store.checkpoint().map_err(VolumeError::from)?;
    println!("Removed key slot {}.", a.slot);
    Ok(())
}
