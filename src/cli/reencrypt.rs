//! `cofferfs reencrypt`: new keys and rewritten content for the named files (or all of them).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::present::progress_bar;
use super::unlock::{UnlockArgs, open_for_management};
use super::volume_args::VolumeArgs;
use super::{CliError, exit};
use crate::format::FileId;
use crate::volume::owners::header_id;
use crate::volume::reencrypt::{Outcome, reencrypt_files, resolve};
use crate::volume::walk::{EntryKind, walk};
use crate::volume::{Volume, VolumeError};

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
    /// The secret: a password, or a key file.
    #[command(flatten)]
    pub unlock: UnlockArgs,
}

/// A file to rewrite: the plaintext path for messages, and its ciphertext path, or why it is
/// left alone (a path given on the command line that could not be found, a file id carried by
/// more than one file); it then counts as left alone (exit 28) and the others are still done,
/// as `cp` or `rsync` go on past a missing source.
type Target = (String, Result<PathBuf, String>);

/// The files to rewrite.
fn targets(vol: &Volume, a: &ReencryptArgs) -> Result<Vec<Target>, CliError> {
    if !a.all {
        return Ok(a
            .paths
            .iter()
            .map(|p| {
                let shown = p.display().to_string();
                (shown, resolve(vol, p).map_err(|e| not_found_reason(&e)))
            })
            .collect());
    }
    let w = walk(vol, Path::new(""), Some(String::new()))?;
    // Hard links share one inode: list it once (it is refused once, not once per name).
    let mut seen = std::collections::HashSet::new();
    let files: Vec<_> = w
        .entries
        .into_iter()
        .filter(|e| e.kind == EntryKind::File && seen.insert((e.meta.dev(), e.meta.ino())))
        .map(|e| {
            let id = header_id(&vol.root().join(&e.loc.cipher));
            (e, id)
        })
        .collect();
    // Two inodes carrying one file id (a copy made in the cipherdir, a hard link split by
    // `rsync -a` without -H) share one key row: re-encrypting one would leave the other
    // without its key once the row goes, so both are left for the user and fsck to sort out.
    let mut carriers: HashMap<FileId, usize> = HashMap::new();
    for (_, id) in &files {
        if let Some(id) = id {
            *carriers.entry(*id).or_default() += 1;
        }
    }
    Ok(files
        .into_iter()
        .map(|(e, id)| {
            let shared = id.and_then(|id| carriers.get(&id).copied().filter(|&n| n > 1));
            let target = match shared {
                Some(n) => Err(format!(
                    "its file id is carried by {n} files (a copy or a split hard link share \
                     one key); `cofferfs fsck` lists them"
                )),
                None => Ok(e.loc.cipher.clone()),
            };
            (e.loc.to_string(), target)
        })
        .collect())
}

/// Why a path given could not be re-encrypted, for the user.
fn not_found_reason(e: &VolumeError) -> String {
    match e {
        VolumeError::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
            "no such file or directory in the volume".to_owned()
        }
        e => e.to_string(),
    }
}

/// Says which recorded shares a new key ended for `old` (their recipients cannot read the
/// new content); a store that cannot say is only warned about.
fn report_ended_shares(
    vol: &Volume,
    old: &crate::format::FileId,
    shown: &str,
    pb: &indicatif::ProgressBar,
) {
    match vol.keyring().store().shares_of(old) {
        Ok(shares) => {
            for s in shares {
                let to = s.recipients.join(", ");
                pb.suspend(|| println!("  ends share {} of {shown} (to {to})", s.id_hex()));
            }
        }
        Err(e) => pb.suspend(|| eprintln!("cofferfs: warning: shares of {shown}: {e}")),
    }
}

/// Runs `reencrypt`.
pub fn run(a: ReencryptArgs) -> Result<(), CliError> {
    let loc = a.volume.locate()?;
    if let Some(sock) = super::online::daemon_socket(&loc)? {
        return super::online::verbs::reencrypt(&sock, &loc, &a);
    }
    let (vol, secret) = open_for_management(&loc, &a.unlock, a.slot)?;
    drop(secret);
    vol.upgrade_format_version()?;
    let list = targets(&vol, &a)?;
    let total: u64 = list
        .iter()
        .filter_map(|(_, c)| std::fs::metadata(vol.root().join(c.as_ref().ok()?)).ok())
        .map(|m| vol.layout().cipher_size_to_plain_size_lenient(m.len()))
        .sum();
    let pb = progress_bar("re-encrypting");
    pb.set_length(total);
    let (mut done, mut left) = (0u64, 0u64);
    // Files left alone before any work are said first; the others as their batch ends.
    let (mut names, mut ciphers) = (Vec::new(), Vec::new());
    for (shown, cipher) in &list {
        match cipher {
            Ok(c) => {
                names.push(shown);
                ciphers.push(c);
            }
            Err(why) => {
                left += 1;
                pb.suspend(|| eprintln!("cofferfs: skipped {shown}: {why}"));
            }
        }
    }
    reencrypt_files(&vol, &ciphers, &mut |n| pb.inc(n), &mut |i, outcome| {
        let shown = names[i];
        match outcome {
            Ok(Outcome::Reencrypted {
                old,
                new,
                old_row_kept,
            }) => {
                done += 1;
                pb.suspend(|| println!("re-encrypted {shown} (file id {old} -> {new})"));
                if old_row_kept {
                    pb.suspend(|| {
                        println!(
                            "  kept the key row of file id {old}: {shown} did not own it (a copy \
                             of another file); `cofferfs fsck` reports it once no file carries it"
                        )
                    });
                }
                report_ended_shares(&vol, &old, shown, &pb);
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
    });
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
