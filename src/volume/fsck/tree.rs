//! What the walk of the tree shows by itself: directory ids (present, and not shared), names
//! that do not decrypt, symlink targets, unreadable entries; and the regular files, grouped by
//! inode, and temporary files for the later steps.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;

use super::super::Volume;
use super::super::names::DirId;
use super::super::walk::{Entry, EntryKind, Loc, Walk};
use super::{Findings, ProblemKind};

/// The tree's entries the later steps go on with.
pub(super) struct Tree<'w> {
    /// The links of each regular file (one inode), in walk order.
    pub files: Vec<Vec<&'w Entry>>,
    /// Leftover `reencrypt` temporary files.
    pub temps: Vec<&'w Entry>,
    /// Directories whose id is missing or damaged: where, whether it is missing, and the
    /// index of the problem a new id settles.
    pub dir_id_fix: Vec<(Loc, bool, usize)>,
}

impl Findings {
    /// Reports what the walk `w` shows by itself, and groups its regular files by inode.
    pub(super) fn check_tree<'w>(&mut self, vol: &Volume, w: &'w Walk) -> Tree<'w> {
        let mut tree = Tree {
            files: Vec::new(),
            temps: Vec::new(),
            dir_id_fix: Vec::new(),
        };
        self.report.stats.dirs = 1;
        for d in &w.dir_id_problems {
            let idx = self.push(&d.loc, ProblemKind::DirId(d.reason.clone()), false);
            tree.dir_id_fix.push((d.loc.clone(), d.missing, idx));
        }
        for (loc, first) in shared_dir_ids(w) {
            self.push(&loc, ProblemKind::SharedDirId(first), false);
        }
        for (loc, e) in &w.unreadable {
            self.push(loc, ProblemKind::Io(e.clone()), false);
        }
        // Regular files are checked once per inode; every link is reported.
        let mut inodes: HashMap<(u64, u64), usize> = HashMap::new();
        for e in &w.entries {
            if let Some(why) = &e.name_problem {
                self.push(&e.loc, ProblemKind::Name(why.clone()), true);
            }
            match e.kind {
                EntryKind::Dir => self.report.stats.dirs += 1,
                EntryKind::Symlink => {
                    self.report.stats.symlinks += 1;
                    if !symlink_ok(vol, e) {
                        self.push(&e.loc, ProblemKind::SymlinkTarget, true);
                    }
                }
                EntryKind::File => {
                    self.report.stats.file_links += 1;
                    let key = (e.meta.dev(), e.meta.ino());
                    let at = *inodes.entry(key).or_insert_with(|| {
                        tree.files.push(Vec::new());
                        tree.files.len() - 1
                    });
                    tree.files[at].push(e);
                }
                EntryKind::Temp => tree.temps.push(e),
                EntryKind::Other => {}
            }
        }
        tree
    }
}

/// Every directory whose id an earlier directory in the walk already has, with the path of
/// that first one. Not repaired: which of the two the entries belong to is not written
/// anywhere, and re-encrypting the names of one of them is a series of renames that a crash
/// can leave half done (the README's fsck section says how to settle it through a mount).
fn shared_dir_ids(w: &Walk) -> Vec<(Loc, String)> {
    let mut first: HashMap<DirId, &Loc> = HashMap::new();
    let mut found = Vec::new();
    for (loc, id) in &w.dir_ids {
        match first.get(id) {
            Some(f) => found.push((loc.clone(), f.to_string())),
            None => {
                first.insert(*id, loc);
            }
        }
    }
    found
}

/// True when the symlink's target decrypts (a long target: its row exists and matches its
/// digest, see `volume::symlinks`).
fn symlink_ok(vol: &Volume, e: &Entry) -> bool {
    if !vol.names().encrypted() {
        return true;
    }
    let Ok(target) = std::fs::read_link(vol.root().join(&e.loc.cipher)) else {
        return false;
    };
    vol.symlink_target(target.as_os_str().as_encoded_bytes())
        .is_ok()
}
