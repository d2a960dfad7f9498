//! `cofferfs rotate`: a new random KEK. Every wrapped FEK and the name key are re-wrapped in
//! one SQLite transaction, the slot whose secret was given re-wraps the new KEK, and the WAL is
//! checkpointed so a backup sees only `cofferfs.db` change. No ciphertext file is opened.

use std::time::Instant;

use super::unlock::{UnlockArgs, open_for_management};
use super::volume_args::VolumeArgs;
use super::{CliError, exit};
use crate::keystore::SlotKind;
use crate::volume::{self, Location, VolumeError};

/// Arguments of `cofferfs rotate`.
#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// The volume.
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// Remove every slot other than the one whose secret is given (they still wrap the old
    /// KEK, so the rotation refuses to run while they exist).
    #[arg(long)]
    pub drop_other_slots: bool,
    /// Try only this key slot (it is the one kept).
    #[arg(long)]
    pub slot: Option<u32>,
    /// The secret of the slot to keep.
    #[command(flatten)]
    pub unlock: UnlockArgs,
}

/// Refuses, before asking for a secret, when other slots would survive the rotation.
fn check_slots(a: &RotateArgs, loc: &Location) -> Result<(), CliError> {
    if a.drop_other_slots {
        return Ok(());
    }
    let store = volume::open_store_read_only_at(loc)?;
    let slots = store.slots().map_err(VolumeError::from)?;
    if slots.len() > 1 {
        let list: Vec<String> = slots
            .iter()
            .map(|s| format!("{} ({} {:?})", s.slot_id, s.kind, s.label))
            .collect();
        return Err(CliError::new(
            exit::KEY_SLOT,
            format!(
                "the volume has {} key slots: {}. Each wraps the old KEK, so it would stay \
                 usable through them. Rerun with --drop-other-slots to keep only the slot \
                 whose secret you give, then add the others again with `cofferfs keys add`.",
                slots.len(),
                list.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Runs `rotate`.
pub fn run(a: RotateArgs) -> Result<(), CliError> {
    let loc = a.volume.locate()?;
    volume::check_not_locked(&loc)?;
    check_slots(&a, &loc)?;
    let (mut vol, secret) = open_for_management(&loc, &a.unlock, a.slot)?;
    let keep = vol.slot_id();
    let old_generation = vol.keyring().generation();
    let bar = super::present::count_bar("re-wrapping file keys");
    let started = Instant::now();
    let mut progress = |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let report = if secret.kind == SlotKind::Transit {
        // A fresh slot key through Vault (`encrypt`), before anything changes on disk.
        let slot = vol
            .keyring()
            .store()
            .slots()
            .map_err(VolumeError::from)?
            .into_iter()
            .find(|s| s.slot_id == keep)
            .ok_or_else(|| CliError::new(exit::KEY_SLOT, format!("no key slot {keep}")))?;
        let old = slot
            .transit()
            .map_err(VolumeError::from)?
            .expect("a Transit slot");
        let (slot_key, params) =
            super::transit::new_slot_key(&old.mount, &old.key, &a.unlock.vault)?;
        vol.keyring_mut().rotate_transit(
            keep,
            slot_key.expose(),
            &params,
            a.drop_other_slots,
            &mut progress,
        )
    } else {
        vol.keyring_mut()
            .rotate(keep, &secret.bytes, a.drop_other_slots, &mut progress)
    }
    .map_err(VolumeError::from)?;
    bar.finish_and_clear();
    println!(
        "Rotated the KEK: generation {old_generation} -> {}, {} file keys and the name key \
         re-wrapped in {:.3} s; slot {keep} holds the new KEK.",
        report.generation,
        report.file_keys,
        started.elapsed().as_secs_f64()
    );
    if !report.dropped_slots.is_empty() {
        let ids: Vec<String> = report.dropped_slots.iter().map(u32::to_string).collect();
        println!("Removed key slot(s) {}.", ids.join(", "));
    }
    Ok(())
}
