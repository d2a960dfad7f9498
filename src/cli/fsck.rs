//! `cofferfs fsck`: check a volume, print every finding with its path and chunk, and with
//! `--repair` fix what can be fixed without losing data. Exit codes: 0 clean, 26 problems
//! remain, 27 every problem found was repaired.

use super::unlock::{UnlockArgs, open_for_management, open_read_only_for_management};
use super::volume_args::VolumeArgs;
use super::{CliError, exit};
use crate::volume;
use crate::volume::fsck::{Report, fsck_with};

/// Arguments of `cofferfs fsck`.
#[derive(Debug, clap::Args)]
pub struct FsckArgs {
    /// The volume (not mounted).
    #[command(flatten)]
    pub volume: VolumeArgs,
    /// Move key rows no file carries into the key quarantine (put back when their file
    /// returns), remove orphan long-name rows and leftover reencrypt temporary files, and move
    /// unreadable entries into cofferfs.quarantine/ (no key is destroyed).
    #[arg(long)]
    pub repair: bool,
    /// With --repair: destroy every key row in the key quarantine (irreversible: a file that
    /// comes back afterwards stays unreadable).
    #[arg(long, requires = "repair")]
    pub purge_quarantine: bool,
    /// Try only this key slot.
    #[arg(long)]
    pub slot: Option<u32>,
    /// The secret: a password, or a key file.
    #[command(flatten)]
    pub unlock: UnlockArgs,
}

fn holes_text(chunks: &[u64]) -> String {
    const SHOWN: usize = 10;
    let list: Vec<String> = chunks.iter().take(SHOWN).map(u64::to_string).collect();
    let more = if chunks.len() > SHOWN { ", …" } else { "" };
    format!(
        "{} hole chunk{} (all zero, read as zeros): {}{more}",
        chunks.len(),
        if chunks.len() == 1 { "" } else { "s" },
        list.join(", ")
    )
}

fn print_report(r: &Report) {
    let s = &r.stats;
    println!(
        "checked {} directories, {} files ({} names), {} symlinks, {} chunks, {} key rows",
        s.dirs, s.files, s.file_links, s.symlinks, s.chunks, s.key_rows
    );
    if !r.problems.is_empty() {
        println!("problems ({}):", r.problems.len());
        for p in &r.problems {
            let at = p
                .loc
                .as_ref()
                .map(|l| l.to_string())
                .unwrap_or_else(|| "header store".into());
            let fixed = if p.repaired { " [repaired]" } else { "" };
            println!("  {at}: {}{fixed}", p.kind);
        }
    }
    if !r.holes.is_empty() || s.quarantined_before > 0 || s.quarantined_keys > 0 {
        println!("info:");
        for h in &r.holes {
            println!("  {}: {}", h.loc, holes_text(&h.chunks));
        }
        if s.quarantined_before > 0 {
            println!(
                "  {} entries wait in {} from an earlier repair",
                s.quarantined_before,
                crate::format::names::QUARANTINE_DIR
            );
        }
        if s.quarantined_keys > 0 {
            println!(
                "  {} key rows wait in the key quarantine (put back when their file returns); \
                 `cofferfs fsck --repair --purge-quarantine` destroys them",
                s.quarantined_keys
            );
        }
    }
    if !r.skipped.is_empty() {
        println!("not checked:");
        for n in &r.skipped {
            println!("  {n}");
        }
    }
    if !r.actions.is_empty() {
        println!("repairs ({}):", r.actions.len());
        for a in &r.actions {
            println!("  {a}");
        }
    }
}

/// Runs `fsck`.
pub fn run(a: FsckArgs) -> Result<(), CliError> {
    let loc = a.volume.locate()?;
    // Without --repair nothing is written: the store is opened read-only, so a check
    // changes no byte of the volume and works on read-only media.
    let (vol, secret) = if a.repair {
        volume::check_writable_media(&loc)?;
        open_for_management(&loc, &a.unlock, a.slot)?
    } else {
        open_read_only_for_management(&loc, &a.unlock, a.slot)?
    };
    drop(secret);
    if a.repair {
        // A repair writes: a v1/v2 volume is migrated first, as by a read-write mount.
        vol.upgrade_format_version()?;
    }
    let pb = super::present::progress_bar("checking");
    let report = fsck_with(&vol, a.repair, a.purge_quarantine, &mut |p| {
        pb.set_length(p.total);
        pb.set_position(p.done);
    })?;
    pb.finish_and_clear();
    print_report(&report);
    let n = report.problems.len();
    if report.clean() {
        println!("clean");
        Ok(())
    } else if a.repair && report.all_repaired() {
        println!("{n} problems found, all repaired");
        Err(CliError::new(
            exit::FSCK_REPAIRED,
            format!("{n} problems found, all repaired"),
        ))
    } else {
        let left = report.problems.iter().filter(|p| !p.repaired).count();
        let hint = if a.repair { "" } else { " (run with --repair)" };
        println!("{n} problems found, {left} not repaired{hint}");
        Err(CliError::new(
            exit::FSCK_PROBLEMS,
            format!("{n} problems found, {left} not repaired{hint}"),
        ))
    }
}
