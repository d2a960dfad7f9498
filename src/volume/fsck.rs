//! `fsck`: checks a whole volume through the `volume` layer (not through a mount), so every
//! finding names the exact entry and chunk. Checks directory ids (present and unique), names,
//! long-name rows (present, and matching their digest), symlink targets, file headers, sizes,
//! key rows and every chunk's tag; finds orphan key rows, orphan long-name rows and leftover
//! `reencrypt` temporary files. `repair` removes the orphans and temporary files, files
//! misplaced long-name rows under their own digest and moves unreadable entries into the
//! quarantine directory: it never deletes a user's data. Knows nothing of the terminal:
//! progress goes through a callback.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::chunked::file_cipher;
use super::ciphertext::{
    ChunkFailure, ChunkVerdict, classify_chunk, read_full_at, read_header_required, why_failed,
};
use super::names::{DirId, create_dir_id, long_row_matches};
use super::owners::header_id;
use super::walk::{Entry, EntryKind, Loc, Walk, long_name_digest, walk};
use super::{Result, Volume, VolumeError};
use crate::crypto::ChunkCipher;
use crate::format::layout::CHUNK_OVERHEAD_LEN;
use crate::format::names::{self as fnames, DIR_ID_FILE, QUARANTINE_DIR};
use crate::format::{FileId, HEADER_LEN};
use crate::keystore::KeystoreError;

/// Chunks read per `pread` while checking a file.
const CHUNKS_PER_READ: u64 = 64;

/// What is wrong. Each kind has a fixed wording, so scripts can grep the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    /// A directory's id file is missing or damaged.
    DirId(String),
    /// A directory's id is also the id of the directory named (found earlier in the walk): an
    /// id file was copied, so entries can move between the two and still decrypt.
    SharedDirId(String),
    /// A long-name row filed under the digest `at` holds the long name whose digest is `of`
    /// (rows swapped or copied in the header store). Reported by `repair`, which moves it.
    MisfiledLongName {
        /// The long on-disk name the row was filed under.
        at: String,
        /// The long on-disk name the row's content belongs to.
        of: String,
    },
    /// An entry's name does not decrypt (or its long-name row is gone).
    Name(String),
    /// A symlink's target does not decrypt.
    SymlinkTarget,
    /// A file header is truncated or invalid.
    Header(String),
    /// No key row for the file's id.
    NoKeyRow(FileId),
    /// The key row does not unwrap under the KEK.
    TamperedKeyRow(FileId),
    /// The ciphertext size maps to no plaintext size; `chunk` is the cut one.
    Size {
        /// Ciphertext size.
        cipher_size: u64,
        /// Index of the chunk cut short.
        chunk_index: u64,
    },
    /// A chunk fails authentication.
    Chunk(u64),
    /// Format v2: the file's last chunk was sealed as a middle chunk, so the file was cut
    /// after it (at a chunk boundary, or inside the next chunk).
    Truncated(u64),
    /// Format v2: a chunk sealed as the file's last one has chunks after it: they were
    /// appended behind cofferfs's back.
    Appended(u64),
    /// Format v2: the file's last chunk is all zeros (a hole), which cofferfs never writes at
    /// the end: zero chunks were appended or the file was extended behind cofferfs's back.
    HoleAtEnd(u64),
    /// Another file (a distinct inode) carries the same file id: a copy of ciphertext.
    SharedFileId(FileId, String),
    /// A key row no file carries.
    OrphanKeyRow(FileId),
    /// A file carries an id whose key row an earlier repair moved into the quarantine: it is
    /// back, and `repair` moves its row back too.
    QuarantinedKeyBack(FileId),
    /// A long-name row no entry uses.
    OrphanLongName(String),
    /// A leftover temporary file of an interrupted `reencrypt` (the original is intact).
    TempFile,
    /// The entry could not be read at all.
    Io(String),
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProblemKind::DirId(r) => write!(f, "directory id: {r}"),
            ProblemKind::SharedDirId(other) => write!(
                f,
                "directory id: the same id as {other} (a copied {DIR_ID_FILE}: entries can \
                 move between the two unnoticed)"
            ),
            ProblemKind::MisfiledLongName { at, of } => write!(
                f,
                "the long-name row of {of} was filed under {at} (swapped or copied rows)"
            ),
            ProblemKind::Name(r) => f.write_str(r),
            ProblemKind::SymlinkTarget => f.write_str("symlink target does not decrypt"),
            ProblemKind::Header(r) => write!(f, "bad file header: {r}"),
            ProblemKind::NoKeyRow(id) => write!(f, "no key row (file id {id})"),
            ProblemKind::TamperedKeyRow(id) => {
                write!(f, "key row fails authentication (file id {id})")
            }
            ProblemKind::Size {
                cipher_size,
                chunk_index,
            } => write!(
                f,
                "invalid size {cipher_size} (truncated?): chunk {chunk_index} is cut short"
            ),
            ProblemKind::Chunk(i) => write!(f, "chunk {i} fails authentication"),
            ProblemKind::Truncated(i) => write!(
                f,
                "truncated: chunk {i} is the last chunk but was sealed as a middle chunk \
                 (the content after it is gone)"
            ),
            ProblemKind::Appended(i) => write!(
                f,
                "extended: chunk {i} was sealed as the last chunk but chunks follow it \
                 (appended)"
            ),
            ProblemKind::HoleAtEnd(i) => write!(
                f,
                "extended: the last chunk {i} is all zeros, which cofferfs never writes at \
                 the end (appended or extended)"
            ),
            ProblemKind::SharedFileId(id, other) => {
                write!(
                    f,
                    "file id {id} is also carried by {other} (copied ciphertext)"
                )
            }
            ProblemKind::OrphanKeyRow(id) => write!(f, "orphan key row {id}: no file carries it"),
            ProblemKind::QuarantinedKeyBack(id) => write!(
                f,
                "the key row of file {id} is in the key quarantine: the file is back"
            ),
            ProblemKind::OrphanLongName(d) => write!(f, "orphan long-name row {d}"),
            ProblemKind::TempFile => {
                f.write_str("leftover temporary file of an interrupted reencrypt")
            }
            ProblemKind::Io(e) => write!(f, "unreadable: {e}"),
        }
    }
}

/// One finding.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Where (for orphan rows: the header store).
    pub loc: Option<Loc>,
    /// What.
    pub kind: ProblemKind,
    /// True once `repair` has dealt with it.
    pub repaired: bool,
}

/// Holes found in one file: all-zero chunks, which read as zeros.
#[derive(Debug, Clone)]
pub struct Holes {
    /// The file.
    pub loc: Loc,
    /// Indices of the hole chunks.
    pub chunks: Vec<u64>,
}

/// Counts of what was checked.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Directories, the root included.
    pub dirs: u64,
    /// Regular files (inodes).
    pub files: u64,
    /// Names of regular files (more than `files` when there are hard links).
    pub file_links: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Chunks authenticated.
    pub chunks: u64,
    /// Key rows in the header store.
    pub key_rows: u64,
    /// Entries already in the quarantine directory.
    pub quarantined_before: u64,
    /// Key rows in the key quarantine (`quarantined_keys`) after the run.
    pub quarantined_keys: u64,
}

/// What `fsck` found and did.
#[derive(Debug, Default)]
pub struct Report {
    /// Problems, in walk order, then orphan rows.
    pub problems: Vec<Problem>,
    /// Files with holes (information, not a problem).
    pub holes: Vec<Holes>,
    /// What `repair` did, one line each.
    pub actions: Vec<String>,
    /// Checks that were not made, and why (information, not a problem): with a file or
    /// directory the walk could not read, no row is called an orphan (its file may be the
    /// one that could not be read) and nothing is purged.
    pub skipped: Vec<String>,
    /// Counts.
    pub stats: Stats,
}

impl Report {
    /// True when there is no problem (holes are fine).
    pub fn clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// True when every problem was repaired.
    pub fn all_repaired(&self) -> bool {
        self.problems.iter().all(|p| p.repaired)
    }
}

/// Progress of a check, in ciphertext bytes of regular files.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Bytes checked so far.
    pub done: u64,
    /// Bytes to check in all.
    pub total: u64,
}

/// The result of checking one regular file (one inode).
#[derive(Debug, Default)]
pub struct FileCheck {
    /// The file's id, when its header could be read.
    pub file_id: Option<FileId>,
    /// What is wrong, in chunk order.
    pub problems: Vec<ProblemKind>,
    /// Indices of hole chunks (information, not a problem).
    pub holes: Vec<u64>,
    /// Chunks looked at.
    pub chunks: u64,
}

/// Checks one ciphertext file exactly as `fsck` does (header, key row, size, every chunk and,
/// in v2, the final flag) without walking the volume: for callers that validate a single file,
/// such as the volume tests after every operation.
pub fn check_file_at(vol: &Volume, path: &Path) -> FileCheck {
    check_file(vol, path, &mut |_| {})
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

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
    let mut report = Report::default();
    let mut w = walk(vol, Path::new(""), Some(String::new()))?;
    if repair && refile_long_names(vol, &w, &mut report)? {
        w = walk(vol, Path::new(""), Some(String::new()))?;
    }
    let q = quarantine_contents(vol)?;
    report.stats.quarantined_before = q.entries;
    let total: u64 = w
        .entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .map(|e| e.meta.len())
        .sum();
    let mut done = 0u64;
    progress(Progress { done, total });

    // Entries to move into quarantine on repair, with the problem indices they settle.
    let mut to_quarantine: BTreeMap<PathBuf, (Loc, Vec<usize>)> = BTreeMap::new();
    let mut push = |report: &mut Report, loc: &Loc, kind: ProblemKind, quarantine: bool| {
        report.problems.push(Problem {
            loc: Some(loc.clone()),
            kind,
            repaired: false,
        });
        if quarantine {
            let idx = report.problems.len() - 1;
            to_quarantine
                .entry(loc.cipher.clone())
                .or_insert_with(|| (loc.clone(), Vec::new()))
                .1
                .push(idx);
        }
    };

    report.stats.dirs = 1;
    let mut dir_id_fix = Vec::new();
    for d in &w.dir_id_problems {
        push(
            &mut report,
            &d.loc,
            ProblemKind::DirId(d.reason.clone()),
            false,
        );
        dir_id_fix.push((d.loc.clone(), d.missing, report.problems.len() - 1));
    }

    for (loc, first) in shared_dir_ids(&w) {
        push(&mut report, &loc, ProblemKind::SharedDirId(first), false);
    }

    for (loc, e) in &w.unreadable {
        push(&mut report, loc, ProblemKind::Io(e.clone()), false);
    }

    // Regular files are checked once per inode; every link is reported.
    let mut inodes: HashMap<(u64, u64), Vec<&Entry>> = HashMap::new();
    let mut order = Vec::new();
    let mut temps = Vec::new();
    for e in &w.entries {
        if let Some(why) = &e.name_problem {
            push(&mut report, &e.loc, ProblemKind::Name(why.clone()), true);
        }
        match e.kind {
            EntryKind::Dir => report.stats.dirs += 1,
            EntryKind::Symlink => {
                report.stats.symlinks += 1;
                if !symlink_ok(vol, e) {
                    push(&mut report, &e.loc, ProblemKind::SymlinkTarget, true);
                }
            }
            EntryKind::File => {
                report.stats.file_links += 1;
                let key = (e.meta.dev(), e.meta.ino());
                let links = inodes.entry(key).or_default();
                if links.is_empty() {
                    order.push(key);
                }
                links.push(e);
            }
            EntryKind::Temp => temps.push(e),
            EntryKind::Other => {}
        }
    }

    let mut checks = Vec::with_capacity(order.len());
    for key in order {
        let links = inodes[&key].as_slice();
        report.stats.files += 1;
        let check = check_file(vol, &vol.root().join(&links[0].loc.cipher), &mut |n| {
            done += n;
            progress(Progress { done, total });
        });
        report.stats.chunks += check.chunks;
        if !check.holes.is_empty() {
            report.holes.push(Holes {
                loc: links[0].loc.clone(),
                chunks: check.holes.clone(),
            });
        }
        checks.push((links, check));
    }

    // A file that could not be opened (its id unknown) or a directory that could not be
    // listed may carry any row's id: with one, "no file carries this row" cannot be known,
    // so no key or long-name row is called an orphan and nothing is moved or purged.
    let unreadable = w.unreadable.len()
        + checks
            .iter()
            .filter(|(_, c)| {
                c.file_id.is_none() && c.problems.iter().any(|p| matches!(p, ProblemKind::Io(_)))
            })
            .count();
    if unreadable > 0 {
        report.skipped.push(format!(
            "orphan key and long-name rows not looked for, and the key quarantine not purged: \
             {unreadable} files or directories could not be read (their rows may be among \
             them); run fsck as a user who can read the whole cipherdir"
        ));
    }

    let used = id_keepers(&checks);
    for (i, (links, check)) in checks.iter().enumerate() {
        let first = links[0];
        let mut problems = check.problems.clone();
        if let Some(id) = check.file_id
            && let Some(&keeper) = used.get(&id)
            && keeper != i
        {
            let at = checks[keeper].0[0].loc.to_string();
            problems.push(ProblemKind::SharedFileId(id, at));
        }
        // A copy that repair moves away anyway (for its name or its content) takes its
        // shared-id finding with it; one that stays is not touched: moving either carrier
        // of a real copy would be a guess.
        let moved = leaves_in_repair(links, check);
        for kind in problems {
            let quarantine = moved || !matches!(kind, ProblemKind::SharedFileId(..));
            for (n, link) in links.iter().enumerate() {
                let k = if n == 0 {
                    kind.clone()
                } else {
                    ProblemKind::Name(format!("hard link of {}: {kind}", first.loc))
                };
                push(&mut report, &link.loc, k, quarantine);
            }
        }
    }

    let mut temp_ids = HashSet::new();
    for t in &temps {
        if let Some(id) = header_id(&vol.root().join(&t.loc.cipher)) {
            temp_ids.insert(id);
        }
        push(&mut report, &t.loc, ProblemKind::TempFile, false);
    }

    // Rows: a key row is in use when a file in the tree or in quarantine carries its id.
    let store = vol.keyring().store();
    let rows = store.file_ids()?;
    report.stats.key_rows = rows.len() as u64;
    let live: HashSet<FileId> = rows.iter().copied().collect();
    let mut back = Vec::new();
    for qk in store.quarantined_keys()? {
        let id = qk.file_id;
        if live.contains(&id) {
            continue;
        }
        let loc = used.get(&id).map(|&k| checks[k].0[0].loc.clone());
        if loc.is_some() || q.file_ids.contains(&id) || temp_ids.contains(&id) {
            report.problems.push(Problem {
                loc,
                kind: ProblemKind::QuarantinedKeyBack(id),
                repaired: false,
            });
            back.push((id, report.problems.len() - 1));
        }
    }
    let mut orphan_rows = Vec::new();
    for id in rows {
        if unreadable == 0
            && !used.contains_key(&id)
            && !q.file_ids.contains(&id)
            && !temp_ids.contains(&id)
        {
            report.problems.push(Problem {
                loc: None,
                kind: ProblemKind::OrphanKeyRow(id),
                repaired: false,
            });
            orphan_rows.push((id, report.problems.len() - 1));
        }
    }
    let mut orphan_longs = Vec::new();
    for d in store.long_name_digests()? {
        if unreadable == 0 && !w.long_digests.contains(&d) && !q.long_digests.contains(&d) {
            report.problems.push(Problem {
                loc: None,
                kind: ProblemKind::OrphanLongName(hex(&d)),
                repaired: false,
            });
            orphan_longs.push((d, report.problems.len() - 1));
        }
    }

    // Only rows that were already quarantined before this run may be purged (never a row this
    // run moves there), and of those not one whose file is back (restored below).
    let restored: HashSet<FileId> = back.iter().map(|(id, _)| *id).collect();
    let purgeable: Vec<FileId> = store
        .quarantined_keys()?
        .into_iter()
        .map(|k| k.file_id)
        .filter(|id| !restored.contains(id))
        .collect();
    if repair {
        let mut r = Repairer {
            vol,
            report: &mut report,
        };
        r.remove_temps(&temps, &temp_ids, &used, &q.file_ids)?;
        r.quarantine(to_quarantine)?;
        r.fix_dir_ids(&dir_id_fix)?;
        r.restore_keys(&back)?;
        r.remove_orphans(&orphan_rows, &orphan_longs)?;
        if purge_quarantine && unreadable == 0 {
            let n = store.purge_quarantined_file_keys(&purgeable)?;
            report.actions.push(format!(
                "destroyed {n} key rows of the key quarantine (purged)"
            ));
            let kept = store.quarantined_keys()?.len();
            if kept > 0 {
                report.skipped.push(format!(
                    "{kept} key rows this run moved into the key quarantine were not purged: \
                     a later `fsck --repair --purge-quarantine` destroys them"
                ));
            }
        }
        store.checkpoint()?;
    }
    report.stats.quarantined_keys = store.quarantined_keys()?.len() as u64;
    Ok(report)
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

/// Repair of long-name rows filed under another entry's digest (rows swapped or copied in the
/// header store): each row's content is written under its own digest when an entry in the
/// tree has that digest and its row does not already match. Safe, because the digest is a
/// plain hash of the content and the name AEAD still checks the name against its directory;
/// each write is one statement, so a crash leaves a state the next repair continues from.
/// Returns true when it moved any row (the walk must then be redone).
fn refile_long_names(vol: &Volume, w: &Walk, report: &mut Report) -> Result<bool> {
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
fn leaves_in_repair(links: &[&Entry], check: &FileCheck) -> bool {
    !check.problems.is_empty() || links.iter().all(|l| l.name_problem.is_some())
}

/// For each file id, the carrier (index into `checks`) that keeps it: the first in walk order
/// that stays after `repair`, else the first. Every other carrier is reported as the copy, so
/// a conflict copy with a bad name is blamed rather than the real file, whichever the walk
/// meets first.
fn id_keepers(checks: &[(&[&Entry], FileCheck)]) -> HashMap<FileId, usize> {
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
struct QuarantineContents {
    entries: u64,
    file_ids: HashSet<FileId>,
    long_digests: HashSet<[u8; 32]>,
}

fn quarantine_contents(vol: &Volume) -> Result<QuarantineContents> {
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

/// Checks one ciphertext file: header, key row, size, every chunk. `progress` gets the bytes
/// read as they are read.
fn check_file(vol: &Volume, path: &Path, progress: &mut dyn FnMut(u64)) -> FileCheck {
    let mut c = FileCheck::default();
    let file = match File::open(path).and_then(|f| f.metadata().map(|m| (f, m.len()))) {
        Ok(f) => f,
        Err(e) => {
            c.problems.push(ProblemKind::Io(e.to_string()));
            return c;
        }
    };
    let (file, cipher_size) = file;
    if cipher_size == 0 {
        // A create interrupted before its header: reads as empty, gets a key on next open.
        return c;
    }
    let header = read_header_required(&file)
        .map_err(|e| e.to_string())
        .and_then(|h| h.map_err(|e| e.to_string()));
    let header = match header {
        Ok(h) => h,
        Err(e) => {
            c.problems.push(ProblemKind::Header(e));
            progress(cipher_size);
            return c;
        }
    };
    let id = header.file_id;
    c.file_id = Some(id);
    let layout = vol.layout();
    let size_ok = layout.cipher_size_to_plain_size(cipher_size).is_ok();
    if !size_ok {
        let body = cipher_size.saturating_sub(HEADER_LEN as u64);
        c.problems.push(ProblemKind::Size {
            cipher_size,
            chunk_index: body / layout.chunk_cipher_len(),
        });
    }
    let cipher = match file_cipher(vol.keyring(), header) {
        Ok(c) => c,
        Err(KeystoreError::MissingKey(_)) => {
            c.problems.push(ProblemKind::NoKeyRow(id));
            progress(cipher_size);
            return c;
        }
        Err(KeystoreError::TamperedKey(_)) => {
            c.problems.push(ProblemKind::TamperedKeyRow(id));
            progress(cipher_size);
            return c;
        }
        Err(e) => {
            c.problems.push(ProblemKind::Io(e.to_string()));
            progress(cipher_size);
            return c;
        }
    };
    let plain_size = layout.cipher_size_to_plain_size_lenient(cipher_size);
    // With an invalid size the whole chunks checked are all followed by the cut one.
    let final_index = layout.last_chunk_index(plain_size).filter(|_| size_ok);
    let scan = ChunkScan {
        file: &file,
        cipher: &cipher,
        layout,
        plain_size,
        final_index,
    };
    if let Err(e) = scan.run(&mut c, progress) {
        c.problems.push(ProblemKind::Io(e.to_string()));
    }
    progress(HEADER_LEN as u64);
    c
}

/// One file's chunks to authenticate.
struct ChunkScan<'a> {
    file: &'a File,
    cipher: &'a ChunkCipher,
    layout: crate::format::Layout,
    /// Plaintext size whose chunks are checked (the whole chunks of an invalid size).
    plain_size: u64,
    /// The chunk that must carry the final flag (v2), `None` when none must.
    final_index: Option<u64>,
}

impl ChunkScan<'_> {
    fn run(&self, c: &mut FileCheck, progress: &mut dyn FnMut(u64)) -> std::io::Result<()> {
        let layout = self.layout;
        let count = layout.chunk_count(self.plain_size);
        let cc = layout.chunk_cipher_len() as usize;
        let mut buf = vec![0u8; cc * CHUNKS_PER_READ as usize];
        let mut first = 0;
        while first < count {
            let n = CHUNKS_PER_READ.min(count - first);
            let last_plain = layout.chunk_plain_len(first + n - 1, self.plain_size);
            let len = (n as usize - 1) * cc + last_plain + CHUNK_OVERHEAD_LEN as usize;
            let got = read_full_at(
                self.file,
                &mut buf[..len],
                layout.chunk_index_to_cipher_off(first),
            )?;
            for (k, chunk) in buf[..len].chunks_mut(cc).enumerate() {
                let index = first + k as u64;
                c.chunks += 1;
                let is_final = Some(index) == self.final_index;
                if k * cc + chunk.len() > got {
                    c.problems.push(ProblemKind::Chunk(index));
                    continue;
                }
                match classify_chunk(self.cipher, index, is_final, chunk) {
                    ChunkVerdict::Sealed => {}
                    ChunkVerdict::Hole => c.holes.push(index),
                    ChunkVerdict::HoleAtEnd => c.problems.push(ProblemKind::HoleAtEnd(index)),
                    ChunkVerdict::Failed => {
                        c.problems.push(self.why_failed(index, is_final, chunk)?)
                    }
                }
            }
            progress(len as u64);
            first += n;
        }
        Ok(())
    }

    /// What is wrong with chunk `index`, which failed authentication: read again into
    /// `chunk` (the failed attempt left garbage there) and told apart by the chunk rule's
    /// [`why_failed`] (in v2, a cut or extended file from a damaged chunk).
    fn why_failed(
        &self,
        index: u64,
        is_final: bool,
        chunk: &mut [u8],
    ) -> std::io::Result<ProblemKind> {
        let at = self.layout.chunk_index_to_cipher_off(index);
        if self.cipher.has_final_flag() && read_full_at(self.file, chunk, at)? != chunk.len() {
            return Ok(ProblemKind::Chunk(index));
        }
        Ok(match why_failed(self.cipher, index, is_final, chunk) {
            ChunkFailure::Damaged => ProblemKind::Chunk(index),
            ChunkFailure::Truncated => ProblemKind::Truncated(index),
            ChunkFailure::Appended => ProblemKind::Appended(index),
        })
    }
}

/// The repair steps, each printing (into the report) what it did.
struct Repairer<'a> {
    vol: &'a Volume,
    report: &'a mut Report,
}

impl Repairer<'_> {
    fn mark(&mut self, indices: &[usize]) {
        for &i in indices {
            self.report.problems[i].repaired = true;
        }
    }

    /// A leftover temporary file is a partial copy of a file that is still intact: removing
    /// it loses nothing. Its key row goes too unless something else carries the id.
    fn remove_temps(
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

    fn quarantine(&mut self, list: BTreeMap<PathBuf, (Loc, Vec<usize>)>) -> Result<()> {
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
    fn fix_dir_ids(&mut self, list: &[(Loc, bool, usize)]) -> Result<()> {
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
    fn restore_keys(&mut self, back: &[(FileId, usize)]) -> Result<()> {
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

    fn remove_orphans(
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

fn sync_parent(path: &Path) -> Result<()> {
    if let Some(p) = path.parent() {
        File::open(p)?.sync_all()?;
    }
    Ok(())
}
