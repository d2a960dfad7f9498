//! `fsck`: checks a whole volume through the `volume` layer (not through a mount), so every
//! finding names the exact entry and chunk. Checks directory ids (present and unique), names,
//! long-name rows (present, and matching their digest), symlink targets, file headers, sizes,
//! key rows and every chunk's tag; finds orphan key rows, orphan long-name rows and leftover
//! `reencrypt` temporary files. `repair` removes the orphans and temporary files, files
//! misplaced long-name rows under their own digest and moves unreadable entries into the
//! quarantine directory: it never deletes a user's data. Knows nothing of the terminal:
//! progress goes through a callback.
//!
//! One file per kind of check: `tree.rs` (what the walk shows by itself), `file.rs` (each
//! regular file, by the mount's chunk rule), `rows.rs` (the header store's rows against the
//! tree), `repair.rs` (what `repair` does); `report.rs` holds what is reported.

mod file;
mod repair;
mod report;
mod rows;
mod tree;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

pub use file::{FileCheck, check_file_at};
pub use report::{Holes, Problem, ProblemKind, Progress, Report, Stats};

use super::owners::header_id;
use super::walk::{Loc, walk};
use super::{Result, Volume};

/// Checks a whole volume; with `repair`, fixes what can be fixed without losing data.
pub fn fsck(vol: &Volume, repair: bool, progress: &mut dyn FnMut(Progress)) -> Result<Report> {
    fsck_with(vol, repair, false, progress)
}

/// [`fsck`]; with `repair` and `purge_quarantine`, also destroys every key row in the key
/// quarantine once the repair is done (the only way a repair destroys a key).
pub fn fsck_with(
    vol: &Volume,
    repair: bool,
    purge_quarantine: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<Report> {
    let mut f = Findings::default();
    let mut w = walk(vol, Path::new(""), Some(String::new()))?;
    if repair && rows::refile_long_names(vol, &w, &mut f.report)? {
        w = walk(vol, Path::new(""), Some(String::new()))?;
    }
    let q = rows::quarantine_contents(vol)?;
    f.report.stats.quarantined_before = q.entries;
    let total: u64 = w
        .entries
        .iter()
        .filter(|e| e.kind == super::walk::EntryKind::File)
        .map(|e| e.meta.len())
        .sum();
    progress(Progress { done: 0, total });

    let tree = f.check_tree(vol, &w);
    let checks = f.check_files(vol, &tree.files, total, progress);

    // A file that could not be opened (its id unknown) or a directory that could not be
    // listed may carry any row's id: with one, "no file carries this row" cannot be known,
    // so no key or long-name row is called an orphan and nothing is moved or purged.
    let unreadable = w.unreadable.len() + file::unopened(&checks);
    if unreadable > 0 {
        f.report.skipped.push(format!(
            "orphan key and long-name rows not looked for, and the key quarantine not purged: \
             {unreadable} files or directories could not be read (their rows may be among \
             them); run fsck as a user who can read the whole cipherdir"
        ));
    }

    let used = rows::id_keepers(&checks);
    f.report_files(&checks, &used);

    let mut temp_ids = HashSet::new();
    for t in &tree.temps {
        if let Some(id) = header_id(&vol.root().join(&t.loc.cipher)) {
            temp_ids.insert(id);
        }
        f.push(&t.loc, ProblemKind::TempFile, false);
    }

    let found = f.check_rows(vol, &w, &q, (&checks, &used, &temp_ids), unreadable)?;
    let Findings {
        mut report,
        to_quarantine,
    } = f;
    let store = vol.keyring().store();
    if repair {
        let mut r = repair::Repairer {
            vol,
            report: &mut report,
        };
        r.remove_temps(&tree.temps, &temp_ids, &used, &q.file_ids)?;
        r.quarantine(to_quarantine)?;
        r.fix_dir_ids(&tree.dir_id_fix)?;
        r.restore_keys(&found.back)?;
        r.remove_orphans(&found.orphan_rows, &found.orphan_longs)?;
        if purge_quarantine && unreadable == 0 {
            r.purge_quarantine(&found.purgeable)?;
        }
        store.checkpoint()?;
    }
    report.stats.quarantined_keys = store.quarantined_keys()?.len() as u64;
    Ok(report)
}

/// The findings of one run so far, and the entries `repair` is to move into quarantine, each
/// with the indices of the problems its move settles.
#[derive(Debug, Default)]
struct Findings {
    report: Report,
    to_quarantine: BTreeMap<PathBuf, (Loc, Vec<usize>)>,
}

impl Findings {
    /// Records a problem of the entry at `loc` (to be moved into quarantine by `repair` when
    /// `quarantine`); returns its index.
    fn push(&mut self, loc: &Loc, kind: ProblemKind, quarantine: bool) -> usize {
        let idx = self.push_row(Some(loc.clone()), kind);
        if quarantine {
            self.to_quarantine
                .entry(loc.cipher.clone())
                .or_insert_with(|| (loc.clone(), Vec::new()))
                .1
                .push(idx);
        }
        idx
    }

    /// Records a problem (of a row of the header store: `loc` is its file, if known); returns
    /// its index.
    fn push_row(&mut self, loc: Option<Loc>, kind: ProblemKind) -> usize {
        self.report.problems.push(Problem {
            loc,
            kind,
            repaired: false,
        });
        self.report.problems.len() - 1
    }
}
