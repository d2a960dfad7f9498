//! The check of one regular file (one inode): header, key row, size, and every chunk by the
//! chunk rule the mount reads with (`volume::ciphertext`); and how the results of all files
//! become problems, each reported for every link of its inode.

use std::fs::File;
use std::path::Path;

use super::super::Volume;
use super::super::chunked::file_cipher;
use super::super::ciphertext::{
    ChunkFailure, ChunkVerdict, classify_chunk, read_full_at, read_header_required, why_failed,
};
use super::super::walk::Entry;
use super::rows::leaves_in_repair;
use super::{Findings, ProblemKind, Progress};
use crate::crypto::ChunkCipher;
use crate::format::layout::CHUNK_OVERHEAD_LEN;
use crate::format::{FileId, HEADER_LEN};
use crate::keystore::KeystoreError;

/// Chunks read per `pread` while checking a file.
const CHUNKS_PER_READ: u64 = 64;

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

/// The links of one inode with the result of checking it.
pub(super) type Checked<'a> = (&'a [&'a Entry], FileCheck);

impl Findings {
    /// Checks every regular file once (by inode), counting chunks and holes; `progress` gets
    /// the ciphertext bytes read of `total`.
    pub(super) fn check_files<'a>(
        &mut self,
        vol: &Volume,
        files: &'a [Vec<&'a Entry>],
        total: u64,
        progress: &mut dyn FnMut(Progress),
    ) -> Vec<Checked<'a>> {
        let mut done = 0u64;
        let mut checks = Vec::with_capacity(files.len());
        for links in files {
            let links = links.as_slice();
            self.report.stats.files += 1;
            let check = check_file(vol, &vol.root().join(&links[0].loc.cipher), &mut |n| {
                done += n;
                progress(Progress { done, total });
            });
            self.report.stats.chunks += check.chunks;
            if !check.holes.is_empty() {
                self.report.holes.push(super::Holes {
                    loc: links[0].loc.clone(),
                    chunks: check.holes.clone(),
                });
            }
            checks.push((links, check));
        }
        checks
    }

    /// Reports each file's problems for every link of it, and each carrier of a file id
    /// that another file (`used`: the keeper of each id) keeps as a copy.
    pub(super) fn report_files(
        &mut self,
        checks: &[Checked<'_>],
        used: &std::collections::HashMap<FileId, usize>,
    ) {
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
                    self.push(&link.loc, k, quarantine);
                }
            }
        }
    }
}

/// How many files could not be opened at all (their id unknown): with one, no row can be
/// called an orphan.
pub(super) fn unopened(checks: &[Checked<'_>]) -> usize {
    checks
        .iter()
        .filter(|(_, c)| {
            c.file_id.is_none() && c.problems.iter().any(|p| matches!(p, ProblemKind::Io(_)))
        })
        .count()
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
        // Sized for this file: a buffer for 64 chunks zeroed for every 4 KiB file was a fifth
        // of fsck's CPU on a tree of small files (a memset of 264 KiB each).
        let mut buf = vec![0u8; cc * CHUNKS_PER_READ.min(count) as usize];
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
