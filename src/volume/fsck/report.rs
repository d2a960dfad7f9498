//! What `fsck` reports: each kind of problem with its fixed wording, the counts, and the
//! report as a whole.

use crate::format::FileId;
use crate::format::names::DIR_ID_FILE;

use super::super::walk::Loc;

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
