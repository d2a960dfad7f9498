//! `cofferfs info`: what a volume is, without a password and without showing any secret.

use super::CliError;
use super::present::format_utc;
use super::volume_args::VolumeArgs;
use crate::volume;

/// Arguments of `cofferfs info`.
#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    /// The volume.
    #[command(flatten)]
    pub volume: VolumeArgs,
}

/// Runs `info`.
pub fn run(a: InfoArgs) -> Result<(), CliError> {
    let loc = a.volume.locate()?;
    let store = volume::open_store_read_only_at(&loc)?;
    let p = store.params().map_err(volume::VolumeError::from)?;
    let slots = store.slots().map_err(volume::VolumeError::from)?;
    let files = store.file_count().map_err(volume::VolumeError::from)?;
    let id = crate::hex::encode(&p.volume_id);
    println!("cipherdir:       {}", loc.cipherdir().display());
    println!("header store:    {}", loc.store().display());
    println!("format version:  {}", p.format_version);
    println!("volume id:       {id}");
    println!("chunk size:      {}", p.chunk_len);
    println!(
        "names:           {}",
        if p.plaintext_names {
            "plaintext"
        } else {
            "encrypted (AES-SIV)"
        }
    );
    println!("kek generation:  {}", p.kek_generation);
    if let Some(r) = store.rotation_counts().map_err(volume::VolumeError::from)? {
        println!(
            "rotation:        in progress, generation {} -> {}: {} of {} key rows re-wrapped \
             (`cofferfs rotate` finishes it)",
            r.from,
            r.to,
            r.done,
            r.done + r.left
        );
    }
    println!("files:           {files}");
    println!("created:         {}", format_utc(p.created));
    println!("key slots:       {}", slots.len());
    for s in slots {
        println!(
            "  slot {}: {} {:?}, {}, created {}",
            s.slot_id,
            s.kind,
            s.label,
            super::present::describe_kdf(&s),
            format_utc(s.created)
        );
    }
    Ok(())
}
