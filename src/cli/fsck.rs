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

/// What `fsck` prints about `r` before its verdict (the same offline and online).
pub fn report_text(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let s = &r.stats;
    let _ = writeln!(
        out,
        "checked {} directories, {} files ({} names), {} symlinks, {} chunks, {} key rows",
        s.dirs, s.files, s.file_links, s.symlinks, s.chunks, s.key_rows
    );
    if !r.problems.is_empty() {
        let _ = writeln!(out, "problems ({}):", r.problems.len());
        for p in &r.problems {
            let at = p
                .loc
                .as_ref()
                .map(|l| l.to_string())
                .unwrap_or_else(|| "header store".into());
            let fixed = if p.repaired { " [repaired]" } else { "" };
            let _ = writeln!(out, "  {at}: {}{fixed}", p.kind);
        }
    }
    if !r.holes.is_empty() || s.quarantined_before > 0 || s.quarantined_keys > 0 {
        let _ = writeln!(out, "info:");
        for h in &r.holes {
            let _ = writeln!(out, "  {}: {}", h.loc, holes_text(&h.chunks));
        }
        if s.quarantined_before > 0 {
            let _ = writeln!(
                out,
                "  {} entries wait in {} from an earlier repair",
                s.quarantined_before,
                crate::format::names::QUARANTINE_DIR
            );
        }
        if s.quarantined_keys > 0 {
            let _ = writeln!(
                out,
                "  {} key rows wait in the key quarantine (put back when their file returns); \
                 `cofferfs fsck --repair --purge-quarantine` destroys them",
                s.quarantined_keys
            );
        }
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(out, "not checked:");
        for n in &r.skipped {
            let _ = writeln!(out, "  {n}");
        }
    }
    if !r.actions.is_empty() {
        let _ = writeln!(out, "repairs ({}):", r.actions.len());
        for a in &r.actions {
            let _ = writeln!(out, "  {a}");
        }
    }
    out
}

/// Runs `fsck`.
pub fn run(a: FsckArgs) -> Result<(), CliError> {
    let loc = a.volume.locate()?;
    if let Some(sock) = super::online::daemon_socket(&loc)? {
        return super::online::verbs::fsck(&sock, &loc, &a);
    }
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
    print!("{}", report_text(&report));
    match verdict(&report, a.repair) {
        Ok(line) => {
            println!("{line}");
            Ok(())
        }
        Err(e) => {
            println!("{}", e.message);
            Err(e)
        }
    }
}

/// The last line of `fsck` and its exit code: "clean" (0), every problem repaired (27), or
/// problems left (26).
pub fn verdict(report: &Report, repair: bool) -> Result<String, CliError> {
    let n = report.problems.len();
    if report.clean() {
        Ok("clean".into())
    } else if repair && report.all_repaired() {
        Err(CliError::new(
            exit::FSCK_REPAIRED,
            format!("{n} problems found, all repaired"),
        ))
    } else {
        let left = report.problems.iter().filter(|p| !p.repaired).count();
        let hint = if repair { "" } else { " (run with --repair)" };
        Err(CliError::new(
            exit::FSCK_PROBLEMS,
            format!("{n} problems found, {left} not repaired{hint}"),
        ))
    }
}
