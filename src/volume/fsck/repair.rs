//! What `repair` does, each step recording (into the report) what it did: it removes leftover
//! temporary files and orphan rows (key rows into the key quarantine), moves unreadable
//! entries into the quarantine directory, gives directories that lost their id a new one and
//! restores quarantined keys whose file is back. It never deletes a user's data.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::super::location::hex;
use super::super::names::create_dir_id;
use super::super::owners::header_id;
use super::super::walk::{Entry, Loc};
use super::super::{Result, Volume, VolumeError};
use super::{ProblemKind, Report};
use crate::format::FileId;
use crate::format::names::{DIR_ID_FILE, QUARANTINE_DIR};

/// The repair steps, each printing (into the report) what it did.
pub(super) struct Repairer<'a> {
    pub vol: &'a Volume,
    pub report: &'a mut Report,
}

impl Repairer<'_> {
    fn mark(&mut self, indices: &[usize]) {
        for &i in indices {
            self.report.problems[i].repaired = true;
        }
    }

    /// A leftover temporary file is a partial copy of a file that is still intact: removing
    /// it loses nothing. Its key row goes too unless something else carries the id.
    pub(super) fn remove_temps(
        &mut self,
        temps: &[&Entry],
        temp_ids: &HashSet<FileId>,
        used: &HashMap<FileId, usize>,
        quarantined: &HashSet<FileId>,
    ) -> Result<()> {
        let store = self.vol.keyring().store();
        for t in temps {
            let path = self.vol.root().join(&t.loc.cipher);
            let id = header_id(&path);
            std::fs::remove_file(&path)?;
            sync_parent(&path)?;
            self.report.actions.push(format!(
                "removed leftover reencrypt temporary file {}",
                t.loc
            ));
            if let Some(id) = id
                && temp_ids.contains(&id)
                && !used.contains_key(&id)
                && !quarantined.contains(&id)
                && store.delete_file_key(&id)?
            {
                self.report
                    .actions
                    .push(format!("removed the key row {id} of that temporary file"));
            }
            let idx: Vec<usize> = self
                .report
                .problems
                .iter()
                .enumerate()
                .filter(|(_, p)| p.kind == ProblemKind::TempFile && p.loc.as_ref() == Some(&t.loc))
                .map(|(i, _)| i)
                .collect();
            self.mark(&idx);
        }
        Ok(())
    }

    pub(super) fn quarantine(&mut self, list: BTreeMap<PathBuf, (Loc, Vec<usize>)>) -> Result<()> {
        if list.is_empty() {
            return Ok(());
        }
        let qdir = self.vol.root().join(QUARANTINE_DIR);
        if !qdir.is_dir() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&qdir)
                .map_err(VolumeError::Io)?;
            File::open(self.vol.root())?.sync_all()?;
        }
        let mut moved: Vec<PathBuf> = Vec::new();
        for (cipher, (loc, idx)) in list {
            // A directory moved already carries its children with it.
            if moved.iter().any(|m| cipher.starts_with(m)) {
                self.mark(&idx);
                continue;
            }
            let to = self.move_to_quarantine(&cipher)?;
            self.report.actions.push(format!(
                "quarantined {loc} (cipher path {}) as {QUARANTINE_DIR}/{}",
                cipher.display(),
                to.to_string_lossy()
            ));
            moved.push(cipher);
            self.mark(&idx);
        }
        File::open(&qdir)?.sync_all()?;
        Ok(())
    }

    /// Renames `cipher` into the quarantine directory under a fresh `NNNNNN.<old name>` name
    /// (never replacing anything there); returns the new name.
    fn move_to_quarantine(&mut self, cipher: &Path) -> Result<std::ffi::OsString> {
        let qdir = self.vol.root().join(QUARANTINE_DIR);
        let from = self.vol.root().join(cipher);
        let base: String = cipher
            .file_name()
            .map(|n| n.to_string_lossy().chars().take(200).collect())
            .unwrap_or_default();
        let qfd = File::open(&qdir)?;
        let parent = File::open(from.parent().unwrap_or(self.vol.root()))?;
        let name = from.file_name().unwrap_or_default();
        let mut n = std::fs::read_dir(&qdir)?.count() + 1;
        loop {
            let to = format!("{n:06}.{base}");
            match rustix::fs::renameat_with(
                &parent,
                name,
                &qfd,
                to.as_str(),
                rustix::fs::RenameFlags::NOREPLACE,
            ) {
                Ok(()) => {
                    parent.sync_all()?;
                    return Ok(to.into());
                }
                Err(rustix::io::Errno::EXIST) => n += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A directory whose id is gone: its children were quarantined (their names are bound to
    /// the lost id), so it gets a fresh id and is usable again. A damaged id file is moved to
    /// quarantine first rather than deleted.
    pub(super) fn fix_dir_ids(&mut self, list: &[(Loc, bool, usize)]) -> Result<()> {
        for (loc, missing, idx) in list {
            let dir = self.vol.root().join(&loc.cipher);
            if !dir.is_dir() {
                // The directory itself went to quarantine with its parent.
                self.mark(&[*idx]);
                continue;
            }
            if !missing && dir.join(DIR_ID_FILE).exists() {
                let to = self.move_to_quarantine(&loc.cipher.join(DIR_ID_FILE))?;
                self.report.actions.push(format!(
                    "quarantined the damaged directory id of {loc} as {QUARANTINE_DIR}/{}",
                    to.to_string_lossy()
                ));
            }
            let f = File::open(&dir)?;
            create_dir_id(std::os::fd::AsFd::as_fd(&f))?;
            f.sync_all()?;
            self.report
                .actions
                .push(format!("wrote a new directory id for {loc}"));
            self.mark(&[*idx]);
        }
        Ok(())
    }

    /// Moves the quarantined key rows of files that are back into `file_keys`.
    pub(super) fn restore_keys(&mut self, back: &[(FileId, usize)]) -> Result<()> {
        let store = self.vol.keyring().store();
        for (id, idx) in back {
            if store.restore_quarantined_key(id)? {
                self.report
                    .actions
                    .push(format!("restored key row {id} from the key quarantine"));
                self.mark(&[*idx]);
            }
        }
        Ok(())
    }

    pub(super) fn remove_orphans(
        &mut self,
        rows: &[(FileId, usize)],
        longs: &[([u8; 32], usize)],
    ) -> Result<()> {
        let store = self.vol.keyring().store();
        // Reversible: the rows go into the key quarantine, not away.
        for (id, idx) in rows {
            store.quarantine_file_keys(&[*id], "orphan: no file carried it at fsck --repair")?;
            self.report.actions.push(format!(
                "moved orphan key row {id} into the key quarantine (put back by fsck --repair \
                 when its file returns)"
            ));
            self.mark(&[*idx]);
        }
        for (d, idx) in longs {
            store.delete_long_name(d)?;
            self.report
                .actions
                .push(format!("removed orphan long-name row {}", hex(d)));
            self.mark(&[*idx]);
        }
        if !rows.is_empty() || !longs.is_empty() {
            store.make_durable()?;
        }
        Ok(())
    }
}

impl Repairer<'_> {
    /// Destroys the rows of the key quarantine in `purgeable` (`--purge-quarantine`): the
    /// only step of a repair that destroys a key.
    pub(super) fn purge_quarantine(&mut self, purgeable: &[FileId]) -> Result<()> {
        let store = self.vol.keyring().store();
        let n = store.purge_quarantined_file_keys(purgeable)?;
        self.report.actions.push(format!(
            "destroyed {n} key rows of the key quarantine (purged)"
        ));
        let kept = store.quarantined_keys()?.len();
        if kept > 0 {
            self.report.skipped.push(format!(
                "{kept} key rows this run moved into the key quarantine were not purged: \
                 a later `fsck --repair --purge-quarantine` destroys them"
            ));
        }
        Ok(())
    }
}

fn sync_parent(path: &Path) -> Result<()> {
    if let Some(p) = path.parent() {
        File::open(p)?.sync_all()?;
    }
    Ok(())
}
