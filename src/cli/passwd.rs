//! `cofferfs passwd`: re-wraps one password slot under a new password (fresh salt, optionally
//! new Argon2id parameters). O(1): the KEK, every FEK row, other slots and all content stay.

use super::unlock::{KdfArgs, NewPasswordArgs, UnlockArgs, open_for_management};
use super::volume_args::VolumeArgs;
use super::{CliError, exit};
use crate::keystore::{Keyring, KeystoreError, SlotKind, SlotRecord};
use crate::volume::VolumeError;

/// Arguments of `cofferfs passwd`.
#[derive(Debug, clap::Args)]
pub struct PasswdArgs {
    /// The volume.
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// The password slot to change (default: the slot the current secret opens).
    #[arg(long)]
    pub slot: Option<u32>,
    /// The current secret (any slot's).
    #[command(flatten)]
    pub unlock: UnlockArgs,
    /// Where the new password comes from (default: prompt, or the next line of stdin).
    #[command(flatten)]
    pub new_password: NewPasswordArgs,
    /// New Argon2id parameters (default: keep the slot's).
    #[command(flatten)]
    pub kdf: KdfArgs,
}

/// Slot `target`'s record, refused unless it is a password slot (offline and online alike).
pub fn password_slot(keyring: &Keyring, target: u32) -> Result<SlotRecord, CliError> {
    let slot = keyring
        .store()
        .slots()
        .map_err(VolumeError::from)?
        .into_iter()
        .find(|s| s.slot_id == target)
        .ok_or_else(|| VolumeError::from(KeystoreError::NoSuchSlot(target)))?;
    if slot.kind != SlotKind::Password {
        return Err(CliError::new(
            exit::KEY_SLOT,
            format!(
                "slot {target} is a {} slot, not a password slot (use `keys add` and \
                 `keys remove` to replace a key file)",
                slot.kind
            ),
        ));
    }
    Ok(slot)
}

/// Runs `passwd`.
pub fn run(a: PasswdArgs) -> Result<(), CliError> {
    let loc = a.volume.locate()?;
    if let Some(sock) = super::online::daemon_socket(&loc)? {
        return super::online::verbs::passwd(&sock, &loc, &a);
    }
    let (vol, _secret) = open_for_management(&loc, &a.unlock, None)?;
    let target = a.slot.unwrap_or(vol.slot_id());
    let keyring = vol.keyring();
    let slot = password_slot(keyring, target)?;
    let kdf = a.kdf.resolve(slot.kdf)?;
    let new_pw = a.new_password.read()?;
    let started = std::time::Instant::now();
    keyring
        .rewrap_slot(target, &new_pw, kdf)
        .map_err(VolumeError::from)?;
    keyring.store().checkpoint().map_err(VolumeError::from)?;
    println!(
        "Changed the password of key slot {target} (argon2id m={} KiB t={} p={}, {:.2} s).",
        kdf.m_kib,
        kdf.t,
        kdf.p,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
