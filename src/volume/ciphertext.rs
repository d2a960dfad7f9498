//! A ciphertext file as every reader takes it: `pread` until full, the header (an empty file
//! has none: it is a valid empty file without a key yet), and the chunk rule that says what
//! one on-disk chunk is ([`classify_chunk`]). The mount (`ChunkedFile`, the file id of an entry
//! being removed or renamed), `fsck`, `reencrypt`, `header restore`, the owner walk and the
//! share reader all read headers and judge chunks here, so a change of the header or of the
//! hole / final-flag rule touches one function, and `fsck` judges exactly what a read would.
//!
//! A leaf of `volume`: it imports only `crypto`, `format` and std and knows nothing of a
//! cipherdir, a store or FUSE, so the share reader (which has no volume) uses it too.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::crypto::ChunkCipher;
use crate::format::{FileHeader, FileId, FormatError, HEADER_LEN};

/// `pread` until `buf` is full or EOF; returns the bytes read.
pub fn read_full_at(file: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The header of the ciphertext `file`: `None` when the file is empty (never written, or a
/// create interrupted before its header), else the header or why its bytes do not decode (a
/// file shorter than a header is `FormatError::Truncated`).
pub fn read_header(file: &File) -> std::io::Result<Option<Result<FileHeader, FormatError>>> {
    let mut h = [0u8; HEADER_LEN];
    let n = read_full_at(file, &mut h, 0)?;
    Ok((n > 0).then(|| FileHeader::decode(&h[..n])))
}

/// [`read_header`] for a reader that has already found the file non-empty (or needs a header
/// whatever its size): an empty file is a truncated header here.
pub fn read_header_required(file: &File) -> std::io::Result<Result<FileHeader, FormatError>> {
    Ok(read_header(file)?.unwrap_or_else(|| FileHeader::decode(&[])))
}

/// The file id in `file`'s header, if it has a valid one.
pub fn read_file_id(file: &File) -> Option<FileId> {
    read_header(file).ok()??.ok().map(|h| h.file_id)
}

/// The file id in the header of the ciphertext file at `path`, if it has a valid one.
pub fn file_id_at(path: &Path) -> Option<FileId> {
    read_file_id(&File::open(path).ok()?)
}

/// The file id in the header of the regular file `name` in directory `dir`, read without
/// moving the file's atime where the caller may (`O_NOATIME` needs the file's owner or
/// `CAP_FOWNER`; without it the file is read plainly) and without following a symlink.
pub fn file_id_in(dir: BorrowedFd<'_>, name: &OsStr) -> Option<FileId> {
    read_file_id(&open_for_header(dir, name)?)
}

/// The regular file `name` in directory `dir`, opened to read its header later with
/// [`read_file_id`] (as [`file_id_in`] does at once): opening costs no data I/O, so a caller
/// about to unlink the entry can leave the header read, a disk read when the file is not
/// cached, to a thread off its request's path; the open file keeps the inode readable after
/// the unlink.
pub fn open_for_header(dir: BorrowedFd<'_>, name: &OsStr) -> Option<File> {
    let base = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, base | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => rustix::fs::openat(dir, name, base, Mode::empty()),
        other => other,
    }
    .ok()?;
    Some(File::from(fd))
}

/// What one on-disk chunk is, by the chunk rule (`docs/FORMAT.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkVerdict {
    /// Authentic: its plaintext is now `chunk[NONCE_LEN..len - TAG_LEN]` (opened in place).
    Sealed,
    /// All zeros where a hole may be: reads as zeros.
    Hole,
    /// All zeros as the last chunk of a file with the final flag (v2), which is never a hole:
    /// the file was extended behind cofferfs's back.
    HoleAtEnd,
    /// Fails authentication (altered, moved, swapped, foreign, or sealed with the other final
    /// flag); the buffer holds garbage. [`why_failed`] tells a cut or extended file apart.
    Failed,
}

/// Judges chunk `index` of a file, whose on-disk bytes are `chunk` (the whole chunk, as long
/// as its position in the file makes it), `is_final` when it is the file's last chunk: an
/// all-zero chunk is a hole unless it is the last one of a file with the final flag, anything
/// else must open under the file's id, its index and (v2) its final flag.
pub fn classify_chunk(
    cipher: &ChunkCipher,
    index: u64,
    is_final: bool,
    chunk: &mut [u8],
) -> ChunkVerdict {
    if chunk.iter().all(|&b| b == 0) {
        return if is_final && cipher.has_final_flag() {
            ChunkVerdict::HoleAtEnd
        } else {
            ChunkVerdict::Hole
        };
    }
    match cipher.open_in_place(index, is_final, chunk) {
        Ok(()) => ChunkVerdict::Sealed,
        Err(_) => ChunkVerdict::Failed,
    }
}

/// Why a chunk [`classify_chunk`] found [`Failed`](ChunkVerdict::Failed) fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkFailure {
    /// Damaged or foreign: it opens under neither final flag (or the file has none, v1).
    Damaged,
    /// The file's last chunk opens as a middle chunk: the content after it was cut away.
    Truncated,
    /// A middle chunk opens as the last one: chunks were appended after it.
    Appended,
}

/// Tells why chunk `index` failed, from its on-disk bytes read again into `chunk` (the first
/// attempt left garbage there): in v2 it is tried with the other final flag.
pub fn why_failed(
    cipher: &ChunkCipher,
    index: u64,
    is_final: bool,
    chunk: &mut [u8],
) -> ChunkFailure {
    if !cipher.has_final_flag() || cipher.open_in_place(index, !is_final, chunk).is_err() {
        return ChunkFailure::Damaged;
    }
    if is_final {
        ChunkFailure::Truncated
    } else {
        ChunkFailure::Appended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Fek, random_nonce};
    use crate::format::layout::{NONCE_LEN, TAG_LEN};

    fn cipher(version: u16) -> ChunkCipher {
        let header = FileHeader {
            version,
            file_id: FileId([9; 16]),
        };
        ChunkCipher::new(&Fek::generate().unwrap(), header)
    }

    fn sealed(c: &ChunkCipher, index: u64, is_final: bool) -> Vec<u8> {
        let mut chunk = vec![7u8; 100 + NONCE_LEN + TAG_LEN];
        c.seal_in_place(index, is_final, &random_nonce(), &mut chunk);
        chunk
    }

    #[test]
    fn the_chunk_rule_judges_holes_by_version_and_position() {
        let (v1, v2) = (cipher(1), cipher(2));
        let zeros = || vec![0u8; 100 + NONCE_LEN + TAG_LEN];
        assert_eq!(
            classify_chunk(&v2, 0, false, &mut zeros()),
            ChunkVerdict::Hole
        );
        assert_eq!(
            classify_chunk(&v2, 3, true, &mut zeros()),
            ChunkVerdict::HoleAtEnd
        );
        assert_eq!(
            classify_chunk(&v1, 3, true, &mut zeros()),
            ChunkVerdict::Hole
        );
    }

    #[test]
    fn the_chunk_rule_opens_sealed_chunks_and_tells_cut_from_extended() {
        let c = cipher(2);
        let mut last = sealed(&c, 2, true);
        assert_eq!(classify_chunk(&c, 2, true, &mut last), ChunkVerdict::Sealed);
        assert_eq!(&last[NONCE_LEN..NONCE_LEN + 100], &[7u8; 100][..]);

        // A middle chunk that is now the last one: the file was cut after it.
        let middle = sealed(&c, 2, false);
        assert_eq!(
            classify_chunk(&c, 2, true, &mut middle.clone()),
            ChunkVerdict::Failed
        );
        assert_eq!(
            why_failed(&c, 2, true, &mut middle.clone()),
            ChunkFailure::Truncated
        );
        // The last chunk with chunks after it: they were appended.
        let last = sealed(&c, 2, true);
        assert_eq!(
            why_failed(&c, 2, false, &mut last.clone()),
            ChunkFailure::Appended
        );
        // Altered, or at another index: damaged under either flag.
        let mut altered = sealed(&c, 2, true);
        altered[NONCE_LEN] ^= 1;
        assert_eq!(
            classify_chunk(&c, 2, true, &mut altered.clone()),
            ChunkVerdict::Failed
        );
        assert_eq!(why_failed(&c, 2, true, &mut altered), ChunkFailure::Damaged);
        assert_eq!(
            why_failed(&c, 5, true, &mut last.clone()),
            ChunkFailure::Damaged
        );
        // v1 has no final flag to try.
        let v1 = cipher(1);
        let mut moved = sealed(&v1, 1, false);
        assert_eq!(
            classify_chunk(&v1, 2, false, &mut moved.clone()),
            ChunkVerdict::Failed
        );
        assert_eq!(why_failed(&v1, 2, false, &mut moved), ChunkFailure::Damaged);
    }
}
