//! `cofferfs header backup` and `header restore`: a copy of the header store kept apart, as
//! `cryptsetup luksHeaderBackup` / `luksHeaderRestore` keep one of a LUKS header. Without its
//! store a cipherdir cannot be read at all.

use std::path::PathBuf;

use super::present::format_utc;
use super::volume_args::VolumeArgs;
use super::{CliError, exit};
use crate::hex::encode as hex;
use crate::keystore::backup::StoreSummary;
use crate::volume::{VolumeError, header};

/// Arguments of `cofferfs header`.
#[derive(Debug, clap::Args)]
pub struct HeaderArgs {
    #[command(subcommand)]
    command: HeaderCommand,
}

#[derive(Debug, clap::Subcommand)]
enum HeaderCommand {
    /// Write a consistent copy of the header store to FILE (new, mode 0600); works while
    /// mounted.
    Backup(BackupArgs),
    /// Replace the header store with a backup (unmounted volume); the current store is kept
    /// aside.
    Restore(RestoreArgs),
}

/// Arguments of `cofferfs header backup`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The volume (may be mounted).
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// The backup file to create (must not exist).
    pub file: PathBuf,
}

/// Arguments of `cofferfs header restore`.
#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// The volume (not mounted).
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// The backup file written by `cofferfs header backup`.
    pub file: PathBuf,
    /// Restore a backup whose volume id is not this volume's.
    #[arg(long)]
    pub force: bool,
}

/// Runs `header`.
pub fn run(a: HeaderArgs) -> Result<(), CliError> {
    match a.command {
        HeaderCommand::Backup(a) => run_backup(a),
        HeaderCommand::Restore(a) => run_restore(a),
    }
}

fn describe(s: &StoreSummary) -> String {
    format!(
        "volume {}, {} key slot{}, {} file keys, KEK generation {}",
        hex(&s.volume_id),
        s.slots,
        if s.slots == 1 { "" } else { "s" },
        s.file_keys,
        s.kek_generation
    )
}

/// An error about the backup FILE itself (exists, unreadable, not a store): exit 35.
fn file_error(file: &std::path::Path, e: VolumeError) -> CliError {
    CliError::new(
        exit::HEADER_BACKUP_FILE,
        format!("backup file {}: {e}", file.display()),
    )
}

fn run_backup(a: BackupArgs) -> Result<(), CliError> {
    let loc = a.volume.locate()?;
    if a.file.symlink_metadata().is_ok() {
        return Err(CliError::new(
            exit::HEADER_BACKUP_FILE,
            format!(
                "backup file {} exists already (a backup never overwrites)",
                a.file.display()
            ),
        ));
    }
    let summary = header::backup_header(&loc, &a.file).map_err(|e| match e {
        VolumeError::Keystore(crate::keystore::KeystoreError::Io(_)) => file_error(&a.file, e),
        e => e.into(),
    })?;
    println!(
        "Wrote a backup of the header store {} to {} (mode 0600; {}).",
        loc.store().display(),
        a.file.display(),
        describe(&summary)
    );
    println!(
        "It holds wrapped keys only, but it opens the volume with every password and key \
         file that was valid when it was taken: keep it as safe as those."
    );
    Ok(())
}

fn run_restore(a: RestoreArgs) -> Result<(), CliError> {
    if !a.file.is_file() {
        return Err(CliError::new(
            exit::HEADER_BACKUP_FILE,
            format!("backup file {}: not a file", a.file.display()),
        ));
    }
    let stamp: String = format_utc(crate::keystore::store::now_secs())
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let stamp = format!("{}T{}Z", &stamp[..8], &stamp[8..]);
    let report = header::restore_header(
        &a.volume.cipherdir,
        a.volume.header_store.as_deref(),
        &a.file,
        a.force,
        &stamp,
    )
    .map_err(|e| match e {
        VolumeError::Keystore(_) => file_error(&a.file, e),
        VolumeError::StoreMismatch { .. } => {
            let mut err = CliError::from(e);
            err.message
                .push_str(" (--force restores it anyway: only right for a copy of this volume)");
            err
        }
        e => e.into(),
    })?;
    println!(
        "Restored the header store {} from {} ({}).",
        report.store.display(),
        a.file.display(),
        describe(&report.restored)
    );
    match &report.aside {
        Some(p) => println!("The store it replaced is kept as {}.", p.display()),
        None => println!("There was no store to replace."),
    }
    if report.files_without_key > 0 {
        eprintln!(
            "cofferfs: warning: {} file(s) in the cipherdir have no key row in the restored \
             store (created or re-encrypted after the backup was taken): they cannot be read. \
             `cofferfs fsck` lists them.",
            report.files_without_key
        );
    }
    Ok(())
}
