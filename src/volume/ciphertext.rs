//! The first bytes of a ciphertext file as every reader takes them: `pread` until full, and
//! the header (an empty file has none: it is a valid empty file without a key yet). The mount
//! (`ChunkedFile`, the file id of an entry being removed or renamed), `fsck`, `reencrypt`,
//! `header restore`, the owner walk and the share reader all read headers here, so a change
//! of the header's place or size touches one function.
//!
//! A leaf of `volume`: it imports only `format` and std and knows nothing of a cipherdir, a
//! store or FUSE, so the share reader (which has no volume) uses it too.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

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
    let base = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = match rustix::fs::openat(dir, name, base | OFlags::NOATIME, Mode::empty()) {
        Err(rustix::io::Errno::PERM) => rustix::fs::openat(dir, name, base, Mode::empty()),
        other => other,
    }
    .ok()?;
    read_file_id(&File::from(fd))
}
