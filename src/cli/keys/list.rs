//! `cofferfs keys list`: the slot table, without a secret and without the volume lock (it only
//! reads, like `info`, so it also works on a mounted volume).

use crate::cli::CliError;
use crate::cli::present::{describe_kdf, format_utc};
use crate::cli::volume_args::VolumeArgs;
use crate::volume::{self, VolumeError};

/// Arguments of `cofferfs keys list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The volume.
    #[command(flatten)]
    pub volume: VolumeArgs,
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
