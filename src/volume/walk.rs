//! A walk over a whole ciphertext tree, for `fsck` and `reencrypt --all`: every entry with its
//! ciphertext path, its plaintext path when every name on the way decrypts, and why its own
//! name does not when it does not. Directories whose id file is missing or damaged are
//! reported. Runs on a locked volume (nothing else changes the tree), so plain paths suffice.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::names::{DirId, long_row_matches, read_dir_id};
use super::{Result, Volume, VolumeError};
use crate::format::names::{self as fnames, DIR_ID_FILE, LONG_NAME_PREFIX};

/// Where an entry is: its path in the cipherdir, and in the plaintext view when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    /// Path relative to the cipherdir root (empty for the root).
    pub cipher: PathBuf,
    /// Plaintext path from the mount's root (`/a/b`), if every name on the way decrypts.
    pub plain: Option<String>,
}

impl std::fmt::Display for Loc {
    /// The plaintext path when known, else `cipher:` and the path inside the cipherdir.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.plain {
            Some(p) if p.is_empty() => f.write_str("/"),
            Some(p) => f.write_str(p),
            None => write!(f, "cipher:{}", self.cipher.display()),
        }
    }
}

/// What kind of node an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A directory.
    Dir,
    /// A regular file (ciphertext).
    File,
    /// A symbolic link (encrypted target).
    Symlink,
    /// A fifo, socket or device node.
    Other,
    /// A leftover `reencrypt` temporary file.
    Temp,
}

/// One entry of the tree.
#[derive(Debug)]
pub struct Entry {
    /// Where it is.
    pub loc: Loc,
    /// What it is.
    pub kind: EntryKind,
    /// Why its own name does not decrypt, if it does not.
    pub name_problem: Option<String>,
    /// `lstat` of the entry.
    pub meta: Metadata,
}

/// A directory whose id file is missing or damaged: none of its children's names decrypt.
#[derive(Debug)]
pub struct DirIdProblem {
    /// The directory.
    pub loc: Loc,
    /// True when the id file is absent (as opposed to unreadable or of the wrong length).
    pub missing: bool,
    /// What is wrong.
    pub reason: String,
}

/// Everything a walk found.
#[derive(Debug, Default)]
pub struct Walk {
    /// Every entry, parents before children, in name order within a directory.
    pub entries: Vec<Entry>,
    /// Directories with a bad id file.
    pub dir_id_problems: Vec<DirIdProblem>,
    /// Every directory whose id file reads, with that id, in walk order (encrypted names
    /// only): ids must be unique, or entries can move between directories unnoticed.
    pub dir_ids: Vec<(Loc, DirId)>,
    /// Digests of every long on-disk name seen.
    pub long_digests: HashSet<[u8; 32]>,
    /// Directories that could not be listed (permissions, I/O errors), with the error.
    pub unreadable: Vec<(Loc, String)>,
}

/// The digest in a long on-disk name, if `name` is one and parses.
pub fn long_name_digest(name: &OsStr) -> Option<[u8; 32]> {
    let text = name.to_str()?.strip_prefix(LONG_NAME_PREFIX)?;
    fnames::decode(text).ok()?.try_into().ok()
}

/// Walks the tree under `start` (relative to the cipherdir; empty for the whole volume).
/// `plain` is the plaintext path of `start` if known (`Some("")` for the root). The root's
/// reserved entries (header store, quarantine) are skipped.
pub fn walk(vol: &Volume, start: &Path, plain: Option<String>) -> Result<Walk> {
    let mut w = Walk::default();
    let loc = Loc {
        cipher: start.to_owned(),
        plain,
    };
    walk_dir(vol, &loc, &mut w)?;
    Ok(w)
}

fn dir_id_of(vol: &Volume, dir: &Loc, w: &mut Walk) -> Result<Option<DirId>> {
    if !vol.names().encrypted() {
        return Ok(Some(DirId::default()));
    }
    let f = std::fs::File::open(vol.root().join(&dir.cipher))?;
    let bad = |missing, reason: String| DirIdProblem {
        loc: dir.clone(),
        missing,
        reason,
    };
    match read_dir_id(std::os::fd::AsFd::as_fd(&f)) {
        Ok(id) => {
            w.dir_ids.push((dir.clone(), id));
            Ok(Some(id))
        }
        Err(VolumeError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            w.dir_id_problems.push(bad(
                true,
                format!("directory id file {DIR_ID_FILE} is missing"),
            ));
            Ok(None)
        }
        Err(e) => {
            w.dir_id_problems.push(bad(false, e.to_string()));
            Ok(None)
        }
    }
}

fn walk_dir(vol: &Volume, dir: &Loc, w: &mut Walk) -> Result<()> {
    let in_root = dir.cipher.as_os_str().is_empty();
    let dir_id = dir_id_of(vol, dir, w)?;
    let mut names: Vec<_> = std::fs::read_dir(vol.root().join(&dir.cipher))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    let store = vol.keyring().store();
    for name in names {
        let bytes = name.as_bytes();
        if bytes == DIR_ID_FILE.as_bytes() {
            continue;
        }
        let cipher = dir.cipher.join(&name);
        let meta = std::fs::symlink_metadata(vol.root().join(&cipher))?;
        if fnames::is_temp_name(bytes) && meta.is_file() {
            w.entries.push(Entry {
                loc: Loc {
                    cipher,
                    plain: None,
                },
                kind: EntryKind::Temp,
                name_problem: None,
                meta,
            });
            continue;
        }
        if in_root && fnames::is_reserved(bytes, true) {
            continue;
        }
        let digest = long_name_digest(&name);
        if let Some(d) = digest {
            w.long_digests.insert(d);
        }
        let (plain_name, name_problem) = match &dir_id {
            None => (None, Some("the parent directory's id is lost".to_owned())),
            Some(id) => match vol.plain_name(id, &name, in_root) {
                Ok(Some(n)) => (Some(n), None),
                Ok(None) => continue,
                Err(VolumeError::CorruptName(_)) => {
                    const UNDECRYPTABLE: &str = "name does not decrypt in its directory";
                    let why = match digest {
                        Some(d) => match store.long_name(&d)? {
                            None => "long name has no row in the header store",
                            Some(row) if !long_row_matches(&d, &row) => {
                                "long name's row in the header store does not match its \
                                 digest (a swapped or altered long-name row)"
                            }
                            Some(_) => UNDECRYPTABLE,
                        },
                        None => UNDECRYPTABLE,
                    };
                    (None, Some(why.to_owned()))
                }
                Err(e) => return Err(e),
            },
        };
        let plain = match (&dir.plain, &plain_name) {
            (Some(p), Some(n)) => Some(format!("{p}/{}", n.to_string_lossy())),
            _ => None,
        };
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            EntryKind::Dir
        } else if ft.is_file() {
            EntryKind::File
        } else if ft.is_symlink() {
            EntryKind::Symlink
        } else {
            EntryKind::Other
        };
        let loc = Loc { cipher, plain };
        w.entries.push(Entry {
            loc: loc.clone(),
            kind,
            name_problem,
            meta,
        });
        if kind == EntryKind::Dir
            && let Err(e) = walk_dir(vol, &loc, w)
        {
            match e {
                VolumeError::Io(e) => w.unreadable.push((loc, e.to_string())),
                other => return Err(other),
            }
        }
    }
    Ok(())
}
