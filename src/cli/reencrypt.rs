//! `cofferfs reencrypt`: new keys and rewritten content for the named files (or all of them).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::fsck::progress_bar;
use super::password::PasswordSource;
use super::volume_args::VolumeArgs;
use super::{CliError, exit};
use crate::keystore::SlotKind;
use crate::volume::reencrypt::{Outcome, reencrypt_file, resolve};
use crate::volume::walk::{EntryKind, walk};
use crate::volume::{self, Volume, VolumeError};

/// Arguments of `cofferfs reencrypt`.
#[derive(Debug, clap::Args)]
pub struct ReencryptArgs {
    /// The volume (not mounted).
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// Plaintext paths inside the volume (e.g. `/docs/report.txt`).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub paths: Vec<PathBuf>,
    /// Every regular file of the volume.
    #[arg(long)]
    pub all: bool,
    /// Try only this key slot.
    #[arg(long)]
    pub slot: Option<u32>,
    /// Where the password comes from.
    #[command(flatten)]
    pub password: PasswordSource,
}

/// The files to rewrite: (plaintext path for messages, ciphertext path).
fn targets(vol: &Volume, a: &ReencryptArgs) -> Result<Vec<(String, PathBuf)>, CliError> {
    if !a.all {
        return a
            .paths
            .iter()
            .map(|p| Ok((p.display().to_string(), resolve(vol, p)?)))
            .collect();
    }
    let w = walk(vol, Path::new(""), Some(String::new()))?;
    // Hard links share one inode: list it once (it is refused once, not once per name).
    let mut seen = std::collections::HashSet::new();
    Ok(w.entries
        .into_iter()
        .filter(|e| e.kind == EntryKind::File && seen.insert((e.meta.dev(), e.meta.ino())))
        .map(|e| (e.loc.to_string(), e.loc.cipher))
        .collect())
}

/// Runs `reencrypt`.
pub fn run(a: ReencryptArgs) -> Result<(), CliError> {
    let loc = a.volume.locate()?;
    volume::precheck(&loc)?;
    let pw = a.password.read("Password: ", false)?;
    let vol = Volume::open_at(&loc, SlotKind::Password, &pw, a.slot)?;
    drop(pw);
    vol.upgrade_format_version()?;
    let list = targets(&vol, &a)?;
    let total: u64 = list
        .iter()
        .filter_map(|(_, c)| std::fs::metadata(vol.root().join(c)).ok())
        .map(|m| vol.layout().cipher_size_to_plain_size_lenient(m.len()))
        .sum();
    let pb = progress_bar("re-encrypting");
    pb.set_length(total);
    let (mut done, mut left) = (0u64, 0u64);
    for (shown, cipher) in &list {
        match reencrypt_file(&vol, cipher, &mut |n| pb.inc(n)) {
            Ok(Outcome::Reencrypted { old, new }) => {
                done += 1;
                pb.suspend(|| println!("re-encrypted {shown} (file id {old} -> {new})"));
            }
            Ok(Outcome::Empty) => {
                pb.suspend(|| println!("{shown} is empty: nothing to re-encrypt"));
            }
            Ok(Outcome::Skipped(why)) => {
                left += 1;
                pb.suspend(|| eprintln!("cofferfs: skipped {shown}: {why}"));
            }
            Err(e) => {
                left += 1;
                pb.suspend(|| eprintln!("cofferfs: {shown}: {e}"));
            }
        }
    }
    pb.finish_and_clear();
    vol.keyring()
        .store()
        .checkpoint()
        .map_err(VolumeError::from)?;
    println!("{done} files re-encrypted, {left} left alone");
    if left > 0 {
        return Err(CliError::new(
            exit::REENCRYPT_INCOMPLETE,
            format!("{left} files were not re-encrypted"),
        ));
    }
    Ok(())
}
