//! `reencrypt`: a new FEK (and file id) and freshly sealed content for a file, the answer to a
//! leaked FEK or a leaked old header store. Crash-safe by writing aside and renaming, done in
//! batches (up to 256 files or 64 MiB of plaintext, `BATCH_FILES` and `BATCH_BYTES`) so that
//! the syncs are paid once per batch rather than once per file (three syncs a file made a
//! million files take an hour):
//!
//! 1. for each file, a new key row (new random file id and FEK) is committed, then the
//!    temporary file `.cofferfs.tmp.<random>` is created next to the original and filled with
//!    the content re-sealed under the new FEK at the current format version (so a v1 file
//!    becomes v2; all-zero chunks stay holes, except a v2 file's last chunk), with the
//!    original's mode, owner, extended attributes and times; nothing is synced yet;
//! 2. once for the batch, every temporary file is made durable (one `syncfs` per filesystem
//!    they are on) and the header store's WAL synced (every new row is durable);
//! 3. each temporary file is renamed over its original, then each directory of the batch is
//!    fsynced once;
//! 4. the old key rows of the batch are deleted (`secure_delete`) in one transaction, each only
//!    if its entry owns it (see `keystore::owners`): a copy of another file's ciphertext
//!    carries the other file's id, whose row the other file still needs.
//!
//! A crash before 3 leaves the originals and their rows intact plus temporary files and their
//! rows (fsck removes both); during or after 3, each file is the original with its row, or the
//! new file with its durable row plus the old row, now an orphan (fsck removes it). Either way
//! every file reads, old version or new.
//!
//! A failure fails only the files it concerns, and the rest of the batch goes on: before 3 a
//! failed file's temporary file and new row are removed and the original stays (a failed sync
//! in step 2 fails every file it covers); after its rename, a file whose directory does not
//! sync keeps both rows (a crash may leave either version under its name).
//!
//! A file with more than one hard link is refused: renaming over one name would split it from
//! its other names, and rewriting in place cannot be made crash-safe (a crash would leave chunks
//! under two different keys in one file).

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Timespec, Timestamps};

use super::names::{DirId, read_dir_id};
use super::{ChunkedFile, Result, Volume, VolumeError};
use crate::crypto::os_random;
use crate::format::FileId;
use crate::format::names::TEMP_PREFIX;
use crate::keystore::Owner;

/// Plaintext bytes copied per step.
const COPY_LEN: usize = 1 << 20;

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Rewritten under a new key.
    Reencrypted {
        /// The old file id (its key row is gone unless `old_row_kept`).
        old: FileId,
        /// The new file id.
        new: FileId,
        /// The old key row stayed: another entry owns it (this file was a copy of it, or the
        /// owner is unknown), so it is left for that entry, or for fsck once no file carries it.
        old_row_kept: bool,
    },
    /// Empty and without a key yet: nothing is encrypted, nothing to do.
    Empty,
    /// Left alone, and why.
    Skipped(String),
}

/// The ciphertext path (relative to the cipherdir) of the plaintext path `plain` (relative to
/// the volume root; a leading `/` is allowed), encrypting names component by component.
pub fn resolve(vol: &Volume, plain: &Path) -> Result<PathBuf> {
    let mut rel = PathBuf::new();
    for comp in plain.components() {
        let name = match comp {
            Component::RootDir | Component::CurDir => continue,
            Component::Normal(n) => n,
            Component::ParentDir | Component::Prefix(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{}: '..' is not allowed in a volume path", plain.display()),
                )
                .into());
            }
        };
        let dir_id: DirId = if vol.names().encrypted() {
            let d = File::open(vol.root().join(&rel))?;
            read_dir_id(d.as_fd())?
        } else {
            DirId::default()
        };
        let in_root = rel.as_os_str().is_empty();
        let dn = vol.names().disk_name(&dir_id, name, in_root)?;
        rel.push(dn.name);
    }
    std::fs::symlink_metadata(vol.root().join(&rel))
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", plain.display())))?;
    Ok(rel)
}

fn temp_name() -> Result<String> {
    let mut r = [0u8; 8];
    os_random(&mut r)?;
    Ok(format!(
        "{TEMP_PREFIX}{}",
        r.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Re-encrypts the files at `ciphers` (relative to the cipherdir) in batches made durable
/// together (see the module comment). `progress` gets plaintext bytes as they are copied;
/// `done` gets each file's index in `ciphers` and its outcome, in order, as its batch ends.
pub fn reencrypt_files<P: AsRef<Path>>(
    vol: &Volume,
    ciphers: &[P],
    progress: &mut dyn FnMut(u64),
    done: &mut dyn FnMut(usize, Result<Outcome>),
) {
    let mut next = 0;
    let mut settle = |batch: Batch| {
        for outcome in batch.finish(vol) {
            done(next, outcome);
            next += 1;
        }
    };
    let mut batch = Batch::default();
    for cipher in ciphers {
        let path = vol.root().join(cipher);
        // The same file twice in one batch would be renamed over by its second copy, whose
        // row would then be the only one in use: it waits for the next batch instead.
        if batch.is_full() || batch.holds(&path) {
            settle(std::mem::take(&mut batch));
        }
        batch.add(vol, path, progress);
    }
    settle(batch);
}

/// A batch is closed once it holds this many files or plaintext bytes, whichever comes first:
/// enough that the syncs cost little per file, few enough that the temporary files a crash
/// leaves and the work a failed sync undoes stay small.
const BATCH_FILES: usize = 256;
const BATCH_BYTES: u64 = 64 << 20;

/// The files of one batch, in order, each after step 1.
#[derive(Default)]
struct Batch {
    files: Vec<Result<Prepared>>,
    /// The originals of the files written aside, for [`holds`](Self::holds).
    written: HashSet<PathBuf>,
    plain_bytes: u64,
    /// A directory per filesystem the temporary files are on, opened before any was written:
    /// `syncfs` through an fd reports the writeback errors of its filesystem since the open.
    filesystems: HashMap<u64, File>,
}

/// A file after step 1.
enum Prepared {
    /// Nothing more to do: empty, or left alone.
    Final(Outcome),
    /// Re-sealed into its temporary file; its batch does the rest.
    Written(Written),
}

/// A file whose content is re-sealed into a temporary file next to it, under a new key row.
struct Written {
    /// The original, which the temporary file replaces.
    path: PathBuf,
    tmp_path: PathBuf,
    /// The filesystem both are on.
    dev: u64,
    old: FileId,
    new: FileId,
    /// The entry at `path`: owner of the new row, and of the old one unless it is a copy's.
    owner: Owner,
}

impl Written {
    /// Undoes step 1 (before step 3): the temporary file and its new row go. Best effort:
    /// fsck removes what a failure here leaves.
    fn abandon(&self, vol: &Volume) {
        let _ = std::fs::remove_file(&self.tmp_path);
        let _ = vol.keyring().shred(&self.new);
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(&self.path)
    }
}

impl Batch {
    fn is_full(&self) -> bool {
        self.files.len() >= BATCH_FILES || self.plain_bytes >= BATCH_BYTES
    }

    /// Whether the file at `path` is already written aside in this batch.
    fn holds(&self, path: &Path) -> bool {
        self.written.contains(path)
    }

    /// Step 1 for the file at `path`.
    fn add(&mut self, vol: &Volume, path: PathBuf, progress: &mut dyn FnMut(u64)) {
        let mut copied = 0;
        let prepared = write_aside(vol, path, &mut self.filesystems, &mut |n| {
            copied += n;
            progress(n);
        });
        self.plain_bytes += copied;
        if let Ok(Prepared::Written(w)) = &prepared {
            self.written.insert(w.path.clone());
        }
        self.files.push(prepared);
    }

    /// Steps 2 to 4 for the whole batch.
    fn finish(mut self, vol: &Volume) -> Vec<Result<Outcome>> {
        self.make_durable(vol);
        self.rename_into_place(vol);
        self.shred_old_rows(vol)
    }

    /// Step 2: one `syncfs` per filesystem and one sync of the header store's WAL (which may
    /// be on another filesystem, `--header-store`) for every temporary file and new row. A
    /// failure fails the files it covers.
    fn make_durable(&mut self, vol: &Volume) {
        let failed: HashMap<u64, String> = self
            .filesystems
            .iter()
            .filter_map(|(dev, fd)| Some((*dev, rustix::fs::syncfs(fd).err()?.to_string())))
            .collect();
        let store = vol.keyring().store().make_durable();
        self.each_written(|w| {
            let why = match (&store, failed.get(&w.dev)) {
                (_, Some(e)) => format!("syncing the re-encrypted files failed: {e}"),
                (Err(e), None) => format!("syncing the header store failed: {e}"),
                (Ok(()), None) => return Ok(()),
            };
            w.abandon(vol);
            Err(std::io::Error::other(why).into())
        });
    }

    /// Step 3: each temporary file renamed over its original, then each directory of the
    /// batch synced once. A file whose directory does not sync keeps both rows: after a crash
    /// either version may be the one under its name (fsck removes the row left unused).
    fn rename_into_place(&mut self, vol: &Volume) {
        self.each_written(|w| {
            std::fs::rename(&w.tmp_path, &w.path).map_err(|e| {
                w.abandon(vol);
                e.into()
            })
        });
        let mut dirs = HashMap::new();
        for f in &self.files {
            if let Ok(Prepared::Written(w)) = f {
                dirs.entry(w.dir().to_owned())
                    .or_insert_with_key(|d| File::open(d).and_then(|d| d.sync_all()).err());
            }
        }
        self.each_written(|w| match &dirs[w.dir()] {
            None => Ok(()),
            Some(e) => Err(std::io::Error::new(
                e.kind(),
                format!(
                    "renamed into place, but syncing its directory failed ({e}): the old key \
                     row stays"
                ),
            )
            .into()),
        });
    }

    /// Step 4: the old rows of every file renamed into place, in one transaction, each only
    /// if this entry owns it.
    fn shred_old_rows(self, vol: &Volume) -> Vec<Result<Outcome>> {
        let rows: Vec<(FileId, Owner)> = self
            .files
            .iter()
            .filter_map(|f| match f {
                Ok(Prepared::Written(w)) => Some((w.old, w.owner)),
                _ => None,
            })
            .collect();
        let shredded = vol.keyring().shred_many(&rows);
        self.files
            .into_iter()
            .map(|f| match f? {
                Prepared::Final(outcome) => Ok(outcome),
                Prepared::Written(w) => match &shredded {
                    Ok(s) => Ok(Outcome::Reencrypted {
                        old: w.old,
                        new: w.new,
                        old_row_kept: s.kept.contains(&w.old),
                    }),
                    Err(e) => Err(std::io::Error::other(format!(
                        "re-encrypted, but deleting the old key row failed: {e}"
                    ))
                    .into()),
                },
            })
            .collect()
    }

    /// Runs `step` on each file still written aside; one it fails for ends with that error.
    fn each_written(&mut self, mut step: impl FnMut(&Written) -> Result<()>) {
        for f in &mut self.files {
            if let Ok(Prepared::Written(w)) = f
                && let Err(e) = step(w)
            {
                *f = Err(e);
            }
        }
    }
}

/// Step 1 for the file at `path`: a new key row, and the content re-sealed under it into a
/// temporary file with the original's metadata, nothing synced. `filesystems` gets the
/// file's directory if its filesystem is not there yet.
fn write_aside(
    vol: &Volume,
    path: PathBuf,
    filesystems: &mut HashMap<u64, File>,
    progress: &mut dyn FnMut(u64),
) -> Result<Prepared> {
    let meta = std::fs::symlink_metadata(&path)?;
    if !meta.is_file() {
        return Ok(Prepared::Final(Outcome::Skipped(
            "not a regular file".into(),
        )));
    }
    if meta.nlink() > 1 {
        return Ok(Prepared::Final(Outcome::Skipped(format!(
            "has {} hard links, which a rewrite would split apart; copy it to a new file \
             (cp), remove the links and rename the copy instead",
            meta.nlink()
        ))));
    }
    if meta.len() == 0 {
        return Ok(Prepared::Final(Outcome::Empty));
    }
    let dir = path.parent().unwrap_or(vol.root()).to_owned();
    if let Entry::Vacant(v) = filesystems.entry(meta.dev()) {
        v.insert(File::open(&dir)?);
    }
    let old = vol.open_file(File::open(&path)?)?;
    let tmp_path = dir.join(temp_name()?);
    let tmp = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp_path)?;
    // The new row belongs to the entry the temporary file will replace.
    let owner = reencrypt_owner(vol, &dir, &path)?;
    let new = match vol.create_file_owned(tmp, owner) {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp_path);
            return Err(e);
        }
    };
    // A non-empty file has a header and `create_file` made the new key: both have ids.
    let (Some(old_id), Some(new_id)) = (old.file_id(), new.file_id()) else {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(VolumeError::CorruptFile {
            file_id: old.file_id(),
            reason: "a non-empty file without a key".into(),
        });
    };
    let written = Written {
        path,
        tmp_path,
        dev: meta.dev(),
        old: old_id,
        new: new_id,
        owner,
    };
    match rewrite(vol, &old, &new, &meta, progress) {
        Ok(()) => Ok(Prepared::Written(written)),
        Err(e) => {
            written.abandon(vol);
            Err(e)
        }
    }
}

/// The content and metadata of step 1.
fn rewrite(
    vol: &Volume,
    old: &ChunkedFile,
    new: &ChunkedFile,
    meta: &std::fs::Metadata,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let size = old.plain_size()?;
    let step = COPY_LEN.max(vol.layout().chunk_len());
    let mut buf = vec![0u8; step];
    let mut off = 0u64;
    while off < size {
        let n = old.read_at(&mut buf, off)?;
        if n == 0 {
            return Err(VolumeError::CorruptFile {
                file_id: old.file_id(),
                reason: "file shrank while being re-encrypted".into(),
            });
        }
        // Whole chunks of zeros stay holes (set_len below restores the size); each run of
        // other chunks is one write, so the new file's last chunk is re-sealed once per run.
        let mut k = 0;
        for (nonzero, run) in runs(&buf[..n], vol.layout().chunk_len()) {
            if nonzero {
                new.write_at(run, off + k as u64)?;
            }
            k += run.len();
        }
        off += n as u64;
        progress(n as u64);
    }
    new.set_len(size)?;
    copy_metadata(old.backing(), new.backing(), meta)
}

/// Splits `data` into maximal runs of whole `chunk_len` pieces (the last may be short) that are
/// all zero (`false`) or all not (`true`).
fn runs(data: &[u8], chunk_len: usize) -> impl Iterator<Item = (bool, &[u8])> {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let nonzero = |p: &[u8]| p.iter().any(|&b| b != 0);
        let kind = nonzero(&rest[..chunk_len.min(rest.len())]);
        let len = rest
            .chunks(chunk_len)
            .take_while(|p| nonzero(p) == kind)
            .map(<[u8]>::len)
            .sum();
        let (run, tail) = rest.split_at(len);
        rest = tail;
        Some((kind, run))
    })
}

/// Mode, owner (when allowed), extended attributes (their encryption does not depend on the
/// FEK, so the backing values copy as they are) and times. Also what an online `reencrypt`
/// copies through the mount, where the values are plaintext and re-encrypted on the way in.
pub fn copy_metadata(from: &File, to: &File, meta: &std::fs::Metadata) -> Result<()> {
    let mut names = vec![0u8; 64 * 1024];
    let n = match rustix::fs::flistxattr(from, &mut names[..]) {
        Ok(n) => n,
        Err(rustix::io::Errno::NOTSUP) => 0,
        Err(e) => return Err(e.into()),
    };
    for name in names[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let name = std::ffi::OsStr::from_bytes(name);
        let mut value = vec![0u8; 64 * 1024];
        let len = rustix::fs::fgetxattr(from, name, &mut value[..])?;
        rustix::fs::fsetxattr(to, name, &value[..len], rustix::fs::XattrFlags::empty())?;
    }
    rustix::fs::fchmod(to, rustix::fs::Mode::from_raw_mode(meta.mode() & 0o7777))?;
    match rustix::fs::fchown(
        to,
        Some(rustix::fs::Uid::from_raw(meta.uid())),
        Some(rustix::fs::Gid::from_raw(meta.gid())),
    ) {
        Ok(()) | Err(rustix::io::Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    // fchown may clear set-id bits: set the mode again.
    rustix::fs::fchmod(to, rustix::fs::Mode::from_raw_mode(meta.mode() & 0o7777))?;
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        last_modification: Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    };
    rustix::fs::futimens(to, &times)?;
    Ok(())
}

/// The owner digest of the entry at `path` in directory `dir`: what the new key row of a
/// file re-encrypted in place records (see `volume::owners`).
fn reencrypt_owner(vol: &Volume, dir: &Path, path: &Path) -> Result<Owner> {
    let dir_id = if vol.names().encrypted() {
        super::names::read_dir_id(std::os::fd::AsFd::as_fd(&File::open(dir)?))?
    } else {
        super::names::DirId::default()
    };
    let name = path.file_name().unwrap_or_default();
    Ok(vol.entry_owner(&dir_id, name))
}

#[cfg(test)]
mod tests {
    use super::runs;

    #[test]
    fn runs_group_zero_and_nonzero_chunks() {
        let mut data = vec![0u8; 10];
        data[0] = 1; // chunk 0
        data[4] = 1; // chunk 2 (chunk 1 is zeros)
        data[7] = 1; // chunk 3
        let got: Vec<(bool, usize)> = runs(&data, 2).map(|(k, r)| (k, r.len())).collect();
        assert_eq!(got, vec![(true, 2), (false, 2), (true, 4), (false, 2)]);
        let got: Vec<(bool, usize)> = runs(&data[..9], 4).map(|(k, r)| (k, r.len())).collect();
        assert_eq!(got, vec![(true, 8), (false, 1)]);
        assert_eq!(runs(&[], 4).count(), 0);
    }
}
