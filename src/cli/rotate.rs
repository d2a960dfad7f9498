//! `cofferfs rotate`: a new random KEK. The slot whose secret was given re-wraps it (a Transit
//! or PKCS#11 slot through a fresh slot key that Vault encrypts or the token seals), so do the
//! volume's other Transit slots when a Vault token is at hand and its other PKCS#11 slots when
//! a PIN source is given; the name key and every key row follow, the rows in short batches
//! (`keystore::rotate`), and the WAL is checkpointed so a backup sees only `cofferfs.db`
//! change. No ciphertext file is opened. A rotation left pending by a crash is finished first.

use std::time::Instant;

use super::unlock::{SlotSecret, UnlockArgs, open_for_management};
use super::volume_args::VolumeArgs;
use super::{CliError, exit};
use crate::crypto::Kek;
use crate::keystore::keyring::DEFAULT_BATCH_ROWS;
use crate::keystore::{Keyring, SlotKind, SlotRecord};
use crate::transit::config::{Auth, Config};
use crate::volume::{self, Location, VolumeError};

/// Arguments of `cofferfs rotate`.
#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    /// The volume.
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// Remove every slot that cannot be kept: those other than the one whose secret is given,
    /// except Transit slots when a Vault token is at hand and PKCS#11 slots when a PIN source
    /// is given (they still wrap the old KEK, so the rotation refuses to run while they exist).
    #[arg(long)]
    pub drop_other_slots: bool,
    /// Try only this key slot (it is the one kept).
    #[arg(long)]
    pub slot: Option<u32>,
    /// Key rows re-wrapped per transaction (tests make it small to interrupt a rotation
    /// anywhere; the default keeps each transaction a few milliseconds long).
    #[arg(long, hide = true, default_value_t = DEFAULT_BATCH_ROWS)]
    pub batch_rows: usize,
    /// Mounted volume: wait until the daemon's background rotation has re-wrapped every key
    /// row (a progress bar on a terminal) instead of returning once it has begun.
    #[arg(long)]
    pub wait: bool,
    /// The secret of the slot to keep.
    #[command(flatten)]
    pub unlock: UnlockArgs,
}

/// True when a Vault token (or AppRole login) is configured: the volume's other Transit slots
/// can then be kept, each with a fresh slot key Vault encrypts.
fn vault_token_at_hand(unlock: &UnlockArgs) -> bool {
    Config::from_env(&unlock.vault).is_ok_and(|c| !matches!(c.auth, Auth::None))
}

/// What can re-wrap a slot without its own secret: a Vault token for Transit slots, a PIN
/// source (`--pin-file`, `--pin-extpass`) for PKCS#11 slots, whose tokens are then each
/// asked with that PIN.
#[derive(Clone, Copy)]
struct AtHand {
    vault: bool,
    pin: bool,
}

/// True when slot `s` can follow the new KEK without its secret.
fn keepable_without_secret(s: &SlotRecord, at_hand: AtHand) -> bool {
    match s.kind {
        SlotKind::Transit => at_hand.vault,
        SlotKind::Pkcs11 => at_hand.pin,
        SlotKind::Password | SlotKind::Keyfile => false,
    }
}

/// Refuses, before asking for a secret, when slots would survive the rotation that nothing
/// can re-wrap: more than one slot that needs its own secret.
fn check_slots(a: &RotateArgs, loc: &Location, at_hand: AtHand) -> Result<(), CliError> {
    if a.drop_other_slots {
        return Ok(());
    }
    let store = volume::open_store_read_only_at(loc)?;
    let slots = store.slots().map_err(VolumeError::from)?;
    let needing_secret = slots
        .iter()
        .filter(|s| !keepable_without_secret(s, at_hand))
        .count();
    if needing_secret > 1 {
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

/// The slots the rotation keeps, rebuilt around `new_kek`: the one `secret` opened, the
/// other Transit slots when a Vault token is at hand (each a fresh slot key from Vault), and
/// the other PKCS#11 slots when a PIN is (each a fresh slot key sealed by its token). Refuses
/// (before any request) when another slot would stay and `--drop-other-slots` is not given.
fn kept_slots(
    a: &RotateArgs,
    keyring: &Keyring,
    keep: u32,
    secret: &SlotSecret,
    at_hand: AtHand,
    new_kek: &Kek,
) -> Result<Vec<SlotRecord>, CliError> {
    let slots = keyring.store().slots().map_err(VolumeError::from)?;
    let others: Vec<&SlotRecord> = slots.iter().filter(|s| s.slot_id != keep).collect();
    let doomed: Vec<u32> = others
        .iter()
        .filter(|s| !keepable_without_secret(s, at_hand))
        .map(|s| s.slot_id)
        .collect();
    if !doomed.is_empty() && !a.drop_other_slots {
        return Err(VolumeError::from(crate::keystore::KeystoreError::OtherSlots(doomed)).into());
    }
    let mut kept = Vec::new();
    let own = keyring.slot(keep).map_err(VolumeError::from)?;
    kept.push(match own.kind {
        // A fresh slot key, so a slot key learnt before the rotation opens nothing after it.
        SlotKind::Transit | SlotKind::Pkcs11 => fresh_service_slot(a, keyring, &own, new_kek)?,
        SlotKind::Password | SlotKind::Keyfile => keyring
            .rebuilt_slot(keep, &secret.bytes, new_kek)
            .map_err(VolumeError::from)?,
    });
    for s in others
        .into_iter()
        .filter(|s| keepable_without_secret(s, at_hand))
    {
        kept.push(fresh_service_slot(a, keyring, s, new_kek)?);
    }
    Ok(kept)
}

/// Transit or PKCS#11 slot `old` around `new_kek`: a fresh slot key that Vault encrypts
/// (`encrypt` on the slot's key) or the slot's token seals (its key, found by label on the
/// token of the slot's label and serial), same id, label and creation time.
fn fresh_service_slot(
    a: &RotateArgs,
    keyring: &Keyring,
    old: &SlotRecord,
    new_kek: &Kek,
) -> Result<SlotRecord, CliError> {
    let volume_id = keyring.volume_id();
    let made = if old.kind == SlotKind::Pkcs11 {
        let (slot_key, params) = super::pkcs11::renew_slot_key(old, &a.unlock.pin, &volume_id)?;
        SlotRecord::new_pkcs11(
            old.slot_id,
            &old.label,
            slot_key.expose(),
            &params,
            new_kek,
            &volume_id,
        )
    } else {
        let p = old
            .transit()
            .map_err(VolumeError::from)?
            .expect("a Transit slot");
        let (slot_key, params) = super::transit::new_slot_key(&p.mount, &p.key, &a.unlock.vault)?;
        SlotRecord::new_transit(
            old.slot_id,
            &old.label,
            slot_key.expose(),
            &params,
            new_kek,
            &volume_id,
        )
    };
    let mut s = made.map_err(VolumeError::from)?;
    s.created = old.created;
    Ok(s)
}

/// Runs `rotate`.
pub fn run(a: RotateArgs) -> Result<(), CliError> {
    let loc = a.volume.locate()?;
    if let Some(sock) = super::online::daemon_socket(&loc)? {
        return super::online::verbs::rotate(&sock, &loc, &a);
    }
    let at_hand = AtHand {
        vault: vault_token_at_hand(&a.unlock),
        pin: a.unlock.pin.given(),
    };
    check_slots(&a, &loc, at_hand)?;
    let (vol, secret) = open_for_management(&loc, &a.unlock, a.slot)?;
    let keyring = vol.keyring();
    let keep = vol.slot_id();
    let bar = super::present::count_bar("re-wrapping file keys");
    let mut progress = |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    };
    if let Some(p) = keyring.rotation_pending() {
        // An interrupted rotation: its rows are finished before a new one begins.
        let started = Instant::now();
        let n = keyring
            .run_rotation(a.batch_rows, &mut progress)
            .map_err(VolumeError::from)?;
        println!(
            "Finished the interrupted rotation to generation {}: {n} file keys re-wrapped in \
             {:.3} s; the KEK of generation {} is destroyed.",
            p.to,
            started.elapsed().as_secs_f64(),
            p.from
        );
    }
    let old_generation = keyring.generation();
    let new_kek = Kek::generate().map_err(|e| CliError::new(exit::OTHER, e.to_string()))?;
    let kept = kept_slots(&a, keyring, keep, &secret, at_hand, &new_kek)?;
    let rewrapped_others: Vec<String> = kept
        .iter()
        .filter(|s| s.slot_id != keep)
        .map(|s| s.slot_id.to_string())
        .collect();
    let started = Instant::now();
    let report = keyring
        .rotate(
            new_kek,
            kept,
            a.drop_other_slots,
            a.batch_rows,
            &mut progress,
        )
        .map_err(VolumeError::from)?;
    bar.finish_and_clear();
    println!(
        "Rotated the KEK: generation {old_generation} -> {}, {} file keys and the name key \
         re-wrapped in {:.3} s; slot {keep} holds the new KEK.",
        report.generation,
        report.file_keys,
        started.elapsed().as_secs_f64()
    );
    if !rewrapped_others.is_empty() {
        println!(
            "Slot(s) {} hold the new KEK too (fresh slot keys encrypted by Vault or sealed by \
             their PKCS#11 tokens).",
            rewrapped_others.join(", ")
        );
    }
    if !report.dropped_slots.is_empty() {
        let ids: Vec<String> = report.dropped_slots.iter().map(u32::to_string).collect();
        println!("Removed key slot(s) {}.", ids.join(", "));
    }
    Ok(())
}
