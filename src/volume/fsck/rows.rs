//! The header store's rows against the tree: which file keeps each file id, what the
//! quarantine directory still uses, orphan key and long-name rows, quarantined keys whose file
//! is back, and long-name rows filed under another entry's digest.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::super::location::hex;
use super::super::names::long_row_matches;
use super::super::owners::header_id;
use super::super::walk::{Entry, Walk, long_name_digest};
use super::super::{Result, Volume};
use super::file::{Checked, FileCheck};
use super::{Findings, Problem, ProblemKind, Report};
use crate::format::FileId;
use crate::format::names::{self as fnames, QUARANTINE_DIR};

/// Rows found to need `repair`, with the problem indices each settles.
#[derive(Debug, Default)]
pub(super) struct RowFindings {
    /// Quarantined key rows whose file is back.
    pub back: Vec<(FileId, usize)>,
    /// Key rows no file carries.
    pub orphan_rows: Vec<(FileId, usize)>,
    /// Long-name rows no entry uses.
    pub orphan_longs: Vec<([u8; 32], usize)>,
    /// Rows of the key quarantine `--purge-quarantine` may destroy: those there before this
    /// run, but not one whose file is back.
    pub purgeable: Vec<FileId>,
}

impl Findings {
    /// Checks the key rows and long-name rows against the files (`checks`, with `used` the
    /// keeper of each id), the quarantine's contents `q` and the temporary files' ids. With
    /// `unreadable` files or directories nothing is called an orphan.
    pub(super) fn check_rows(
        &mut self,
        vol: &Volume,
        w: &Walk,
        q: &QuarantineContents,
        carriers: (&[Checked<'_>], &HashMap<FileId, usize>, &HashSet<FileId>),
        unreadable: usize,
    ) -> Result<RowFindings> {
        let (checks, used, temp_ids) = carriers;
        let mut found = RowFindings::default();
        // Rows: a key row is in use when a file in the tree or in quarantine carries its id.
        let store = vol.keyring().store();
        let rows = store.file_ids()?;
        self.report.stats.key_rows = rows.len() as u64;
        let live: HashSet<FileId> = rows.iter().copied().collect();
        for qk in store.quarantined_keys()? {
            let id = qk.file_id;
            if live.contains(&id) {
                continue;
            }
            let loc = used.get(&id).map(|&k| checks[k].0[0].loc.clone());
            if loc.is_some() || q.file_ids.contains(&id) || temp_ids.contains(&id) {
                let idx = self.push_row(loc, ProblemKind::QuarantinedKeyBack(id));
                found.back.push((id, idx));
            }
        }
        for id in rows {
            if unreadable == 0
                && !used.contains_key(&id)
                && !q.file_ids.contains(&id)
                && !temp_ids.contains(&id)
            {
                let idx = self.push_row(None, ProblemKind::OrphanKeyRow(id));
                found.orphan_rows.push((id, idx));
            }
        }
        for d in store.long_name_digests()? {
            if unreadable == 0 && !w.long_digests.contains(&d) && !q.long_digests.contains(&d) {
                let idx = self.push_row(None, ProblemKind::OrphanLongName(hex(&d)));
                found.orphan_longs.push((d, idx));
            }
        }
        // Only rows that were already quarantined before this run may be purged (never a row
        // this run moves there), and of those not one whose file is back (restored by repair).
        let restored: HashSet<FileId> = found.back.iter().map(|(id, _)| *id).collect();
        found.purgeable = store
            .quarantined_keys()?
            .into_iter()
            .map(|k| k.file_id)
            .filter(|id| !restored.contains(id))
            .collect();
        Ok(found)
    }
}

/// Repair of long-name rows filed under another entry's digest (rows swapped or copied in the
/// header store): each row's content is written under its own digest when an entry in the
/// tree has that digest and its row does not already match. Safe, because the digest is a
/// plain hash of the content and the name AEAD still checks the name against its directory;
/// each write is one statement, so a crash leaves a state the next repair continues from.
/// Returns true when it moved any row (the walk must then be redone).
pub(super) fn refile_long_names(vol: &Volume, w: &Walk, report: &mut Report) -> Result<bool> {
    let store = vol.keyring().store();
    let mut moves: BTreeMap<[u8; 32], ([u8; 32], String)> = BTreeMap::new();
    for at in store.long_name_digests()? {
        let Some(row) = store.long_name(&at)? else {
            continue;
        };
        let own = crate::crypto::names::sha256(row.as_bytes());
        if own == at || !w.long_digests.contains(&own) {
            continue;
        }
        if store
            .long_name(&own)?
            .is_some_and(|r| long_row_matches(&own, &r))
        {
            continue;
        }
        moves.entry(own).or_insert((at, row));
    }
    for (own, (at, row)) in &moves {
        store.put_long_name(own, row)?;
        let (at, of) = (fnames::long_name(at), fnames::long_name(own));
        report.actions.push(format!(
            "moved the long-name row of {of} from {at} to its own digest"
        ));
        report.problems.push(Problem {
            loc: None,
            kind: ProblemKind::MisfiledLongName { at, of },
            repaired: true,
        });
    }
    if !moves.is_empty() {
        store.make_durable()?;
    }
    Ok(!moves.is_empty())
}

/// True when `repair` moves every name of this inode into quarantine: its content is
/// unreadable, or none of its names decrypts.
pub(super) fn leaves_in_repair(links: &[&Entry], check: &FileCheck) -> bool {
    !check.problems.is_empty() || links.iter().all(|l| l.name_problem.is_some())
}

/// For each file id, the carrier (index into `checks`) that keeps it: the first in walk order
/// that stays after `repair`, else the first. Every other carrier is reported as the copy, so
/// a conflict copy with a bad name is blamed rather than the real file, whichever the walk
/// meets first.
pub(super) fn id_keepers(checks: &[Checked<'_>]) -> HashMap<FileId, usize> {
    let mut keepers: HashMap<FileId, usize> = HashMap::new();
    for (i, (links, check)) in checks.iter().enumerate() {
        let Some(id) = check.file_id else { continue };
        let replace = match keepers.get(&id) {
            None => true,
            Some(&k) => {
                let (kl, kc) = &checks[k];
                leaves_in_repair(kl, kc) && !leaves_in_repair(links, check)
            }
        };
        if replace {
            keepers.insert(id, i);
        }
    }
    keepers
}

/// File ids and long names inside the quarantine directory: their rows are still in use.
#[derive(Debug, Default)]
pub(super) struct QuarantineContents {
    /// Entries directly in the quarantine directory.
    pub entries: u64,
    /// File ids carried by files in it.
    pub file_ids: HashSet<FileId>,
    /// Digests of long names in it (under their quarantined or their old name).
    pub long_digests: HashSet<[u8; 32]>,
}

pub(super) fn quarantine_contents(vol: &Volume) -> Result<QuarantineContents> {
    let mut q = QuarantineContents::default();
    let dir = vol.root().join(QUARANTINE_DIR);
    if !dir.is_dir() {
        return Ok(q);
    }
    q.entries = std::fs::read_dir(&dir)?.count() as u64;
    let mut stack = vec![dir];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let name = e.file_name();
            if let Some(dg) = long_name_digest(&name) {
                q.long_digests.insert(dg);
            }
            // A quarantined entry keeps its long-name row under its old name.
            if let Some(orig) = name.to_str().and_then(|n| n.split_once('.')).map(|x| x.1)
                && let Some(dg) = long_name_digest(std::ffi::OsStr::new(orig))
            {
                q.long_digests.insert(dg);
            }
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file()
                && let Some(id) = header_id(&e.path())
            {
                q.file_ids.insert(id);
            }
        }
    }
    Ok(q)
}
