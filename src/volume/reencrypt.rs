//! `reencrypt`: a new FEK (and file id) and freshly sealed content for a file, the answer to a
//! leaked FEK or a leaked old header store. Crash-safe by writing aside and renaming:
//!
//! 1. a new key row (new random file id and FEK) is committed, then the temporary file
//!    `.cofferfs.tmp.<random>` is created next to the original and filled with the content
//!    re-sealed under the new FEK at the current format version (so a v1 file becomes v2;
//!    all-zero chunks stay holes, except a v2 file's last chunk), with the original's mode,
//!    owner, extended attributes and times;
//! 2. the temporary file is fsynced and the header store's WAL synced (the new row is durable);
//! 3. the temporary file is renamed over the original and the directory fsynced;
//! 4. the old key row is deleted (`secure_delete`) if this entry owns it (see
//!    `keystore::owners`): a copy of another file's ciphertext carries the other file's id,
//!    whose row the other file still needs.
//!
//! A crash before 3 leaves the original and its row intact plus a temporary file and its row
//! (fsck removes both); after 3, the new file with its durable row plus the old row, now an
//! orphan (fsck removes it). Either way every file reads, old version or new.
//!
//! A file with more than one hard link is refused: renaming over one name would split it from
//! its other names, and rewriting in place cannot be made crash-safe (a crash would leave chunks
//! under two different keys in one file).

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

/// Re-encrypts the file at `cipher` (relative to the cipherdir). `progress` gets plaintext
/// bytes as they are copied.
pub fn reencrypt_file(
    vol: &Volume,
    cipher: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<Outcome> {
    let path = vol.root().join(cipher);
    let meta = std::fs::symlink_metadata(&path)?;
    if !meta.is_file() {
        return Ok(Outcome::Skipped("not a regular file".into()));
    }
    if meta.nlink() > 1 {
        return Ok(Outcome::Skipped(format!(
            "has {} hard links, which a rewrite would split apart; copy it to a new file \
             (cp), remove the links and rename the copy instead",
            meta.nlink()
        )));
    }
    if meta.len() == 0 {
        return Ok(Outcome::Empty);
    }
    let dir = path.parent().unwrap_or(vol.root()).to_owned();
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
    let done = rewrite(vol, &old, &new, &meta, progress).and_then(|()| {
        std::fs::rename(&tmp_path, &path)?;
        File::open(&dir)?.sync_all()?;
        Ok(())
    });
    if let Err(e) = done {
        let _ = std::fs::remove_file(&tmp_path);
        let _ = vol.keyring().shred(&new_id);
        return Err(e);
    }
    // Only a row this entry owns: a copy of another file's ciphertext (or one half of a split
    // hard link) carries an id whose row belongs to the other entry, which still needs it.
    let shredded = vol.keyring().shred_many(&[(old_id, owner)])?;
    Ok(Outcome::Reencrypted {
        old: old_id,
        new: new_id,
        old_row_kept: !shredded.kept.is_empty(),
    })
}

/// Steps 1 and 2: content, metadata, then fsync of the file and of the new key row.
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
    copy_metadata(old.backing(), new.backing(), meta)?;
    new.sync(false)
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
fn reencrypt_owner(vol: &Volume, dir: &Path, path: &Path) -> Result<crate::keystore::Owner> {
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
