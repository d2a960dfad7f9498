//! `cofferfs keys list`: the slot table, without a secret and without the volume lock (it only
//! reads, like `info`, so it also works on a mounted volume).

use crate::cli::CliError;
use crate::cli::info::format_utc;
use crate::cli::volume_args::VolumeArgs;
use crate::keystore::{SlotKind, SlotRecord};
use crate::volume::{self, VolumeError};

/// Arguments of `cofferfs keys list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The volume.
    #[command(flatten)]
    pub volume: VolumeArgs,
}

/// How a slot derives its key, for humans: `argon2id m=65536 KiB t=3 p=4` or `hkdf-sha256`.
pub fn describe_kdf(s: &SlotRecord) -> String {
    match s.kind {
        SlotKind::Password => format!("argon2id m={} KiB t={} p={}", s.kdf.m_kib, s.kdf.t, s.kdf.p),
        SlotKind::Keyfile => "hkdf-sha256".to_owned(),
        SlotKind::Transit => match s.transit() {
            Ok(Some(p)) => crate::cli::transit::describe(&p),
            _ => "transit (damaged params)".to_owned(),
        },
        SlotKind::Pkcs11 => match s.pkcs11() {
            Ok(Some(p)) => crate::cli::pkcs11::describe(&p),
            _ => "pkcs11 (damaged params)".to_owned(),
        },
    }
}

/// Runs `keys list`.
pub fn run(a: ListArgs) -> Result<(), CliError> {
    let store = volume::open_store_read_only_at(&a.volume.locate()?)?;
    let slots = store.slots().map_err(VolumeError::from)?;
    println!(
        "{:<5} {:<9} {:<30} {:<24} LABEL",
        "SLOT", "KIND", "KDF", "CREATED"
    );
    for s in &slots {
        println!(
            "{:<5} {:<9} {:<30} {:<24} {}",
            s.slot_id,
            s.kind.to_string(),
            describe_kdf(s),
            format_utc(s.created),
            s.label
        );
    }
    Ok(())
}
