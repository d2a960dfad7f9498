//! `reencrypt` of a mounted volume, done by the daemon **through its own mount**: each file
//! is copied to a temporary name beside it (a create through the mount, so a new file id and
//! FEK, content sealed afresh), its mode, owner, extended attributes and times copied, the copy
//! fsynced and renamed over the original; the mount's own rename then shreds the old key row
//! as for any file replaced by a rename. Going through the mount keeps every cache the mount
//! holds (inodes, open content, the kernel's pages) true, which a rewrite of the cipherdir
//! behind its back would not.
//!
//! **An open file waits for its last close.** Before the copy, and again right before the
//! rename, every process's open files (`/proc/PID/fd`) and mappings (`/proc/PID/map_files`)
//! are checked for the file; while any holds it the daemon waits (up to [`OPEN_WAIT`], then the
//! file is left alone, exit 28). A file changed during the copy (size, mtime or ctime moved) is
//! copied again. What remains is the instant between the last check and the rename: a process
//! that opens the file in that instant keeps the old content (as with any program that
//! replaces a file by rename, `sed -i` or an editor's save).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use crate::format::FileId;
use crate::volume::Volume;
use crate::volume::owners::header_id;
use crate::volume::reencrypt::{copy_metadata, resolve};

/// How long a file may stay open before it is left alone.
pub const OPEN_WAIT: Duration = Duration::from_secs(600);

/// How often an open file is looked at again.
const POLL: Duration = Duration::from_millis(100);

/// What happened to one path, as a line for the user, and whether it was done.
pub struct Line {
    /// The text.
    pub text: String,
    /// Re-encrypted (or empty: nothing to do), as opposed to left alone.
    pub done: bool,
}

/// `(dev, ino)` of what `p` names, following a symlink (as `/proc/PID/fd/N` needs).
fn id_of(p: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

/// Whether any process other than this one has `target` (a file of the mount at `mnt`) open
/// or mapped. Only entries whose link names a path under `mnt` are looked at (a `stat` of a
/// file on another, perhaps hung, filesystem could block).
fn held_open(mnt: &Path, target: (u64, u64)) -> bool {
    let me = std::process::id().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    for p in procs.flatten() {
        let name = p.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if pid == me {
            continue;
        }
        for sub in ["fd", "map_files"] {
            let Ok(entries) = std::fs::read_dir(p.path().join(sub)) else {
                continue;
            };
            let ours = |e: &std::fs::DirEntry| {
                std::fs::read_link(e.path()).is_ok_and(|l| l.starts_with(mnt))
            };
            if entries
                .flatten()
                .any(|e| ours(&e) && id_of(&e.path()) == Some(target))
            {
                return true;
            }
        }
    }
    false
}

/// What must not move while the copy is made.
fn stamp(m: &std::fs::Metadata) -> (u64, u64, i64, i64, i64, i64) {
    (
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

/// A plaintext path inside the volume, relative: no `..`.
fn relative(plain: &str) -> Result<PathBuf, String> {
    let mut rel = PathBuf::new();
    for c in Path::new(plain).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => rel.push(n),
            _ => return Err("'..' is not allowed in a volume path".into()),
        }
    }
    if rel.as_os_str().is_empty() {
        return Err("not a file".into());
    }
    Ok(rel)
}

/// The file id in the ciphertext header of plaintext path `rel`.
fn file_id(vol: &Volume, rel: &Path) -> Option<FileId> {
    let cipher = resolve(vol, rel).ok()?;
    header_id(&vol.root().join(cipher))
}

/// Waits (up to [`SHRED_WAIT`]) for the mount to shred the old key row of a file replaced by
/// the rename: its deletions are batched (`fs/shred_queue.rs`), and the command should return
/// with the old key gone, as offline. False when the row is still there (a copy of another
/// file's ciphertext does not own its row, which then stays, as offline).
fn old_row_gone(vol: &Volume, id: &FileId) -> bool {
    let started = Instant::now();
    loop {
        match vol.keyring().store().file_key(id) {
            Ok(None) => return true,
            Ok(Some(_)) if started.elapsed() < SHRED_WAIT => std::thread::sleep(POLL / 4),
            _ => return false,
        }
    }
}

/// How long the old key row may take to go.
const SHRED_WAIT: Duration = Duration::from_secs(5);

/// Copies `src` to a new temporary file beside it; returns its path.
fn copy_aside(src: &Path, meta: &std::fs::Metadata) -> std::io::Result<PathBuf> {
    let dir = src.parent().unwrap_or(Path::new("/"));
    let mut r = [0u8; 8];
    crate::crypto::os_random(&mut r).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!(
        ".cofferfs-reencrypt.{}",
        crate::volume::location::hex(&r)
    ));
    let result = (|| {
        let mut from = File::open(src)?;
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = from.read(&mut buf)?;
            if n == 0 {
                break;
            }
            to.write_all(&buf[..n])?;
        }
        to.sync_all()?;
        copy_metadata(&from, &to, meta).map_err(std::io::Error::other)?;
        to.sync_all()
    })();
    match result {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Re-encrypts plaintext path `plain` of the volume mounted at `mnt`.
pub fn reencrypt_one(vol: &Volume, mnt: &Path, plain: &str) -> Line {
    let left = |why: String| Line {
        text: format!("skipped {plain}: {why}"),
        done: false,
    };
    let rel = match relative(plain) {
        Ok(r) => r,
        Err(why) => return left(why),
    };
    let path = mnt.join(&rel);
    let started = Instant::now();
    for _attempt in 0..5 {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return left("no such file or directory in the volume".into());
            }
            Err(e) => return left(e.to_string()),
        };
        if !meta.is_file() {
            return left("not a regular file".into());
        }
        if meta.nlink() > 1 {
            return left(format!(
                "has {} hard links, which a rewrite would split apart",
                meta.nlink()
            ));
        }
        if meta.len() == 0 {
            return Line {
                text: format!("{plain} is empty: nothing to re-encrypt"),
                done: true,
            };
        }
        let id = (meta.dev(), meta.ino());
        while held_open(mnt, id) {
            if started.elapsed() > OPEN_WAIT {
                return left(format!("still open after {} s", OPEN_WAIT.as_secs()));
            }
            std::thread::sleep(POLL);
        }
        let old = file_id(vol, &rel);
        let tmp = match copy_aside(&path, &meta) {
            Ok(t) => t,
            Err(e) => return left(e.to_string()),
        };
        let unchanged = std::fs::symlink_metadata(&path).is_ok_and(|m| stamp(&m) == stamp(&meta));
        if !unchanged || held_open(mnt, id) {
            // Written or opened meanwhile: wait for it again and copy anew.
            let _ = std::fs::remove_file(&tmp);
            continue;
        }
        if let Err(e) = std::fs::rename(&tmp, &path) {
            let _ = std::fs::remove_file(&tmp);
            return left(e.to_string());
        }
        if let Some(dir) = path.parent()
            && let Ok(d) = File::open(dir)
        {
            let _ = d.sync_all();
        }
        let new = file_id(vol, &rel);
        let kept = old.is_some_and(|id| !old_row_gone(vol, &id));
        let show = |id: Option<FileId>| id.map_or_else(|| "?".to_owned(), |i| i.to_string());
        let note = if kept {
            "; its old key row stays (another entry owns it, or it is still being shredded): \
             `cofferfs fsck` reports it once no file carries it"
        } else {
            ""
        };
        return Line {
            text: format!(
                "re-encrypted {plain} (file id {} -> {}){note}",
                show(old),
                show(new)
            ),
            done: true,
        };
    }
    left("it kept changing while it was copied".into())
}
