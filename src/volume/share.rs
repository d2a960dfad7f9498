//! What a share takes from a volume for one plaintext path: the file's id, format version,
//! chunk size and FEK (unwrapped with the KEK, for that file alone) and, if asked, its path,
//! size and mtime; and where its ciphertext lies inside the cipherdir. Nothing else of the
//! volume goes into a share (see `share`).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use super::ciphertext::read_header_required;
use super::reencrypt::resolve;
use super::{Result, Volume, VolumeError};
use crate::crypto::Fek;
use crate::format::FileHeader;
use crate::share::payload::{SharedFile, SharedName};

/// One file to share: its share entry and its ciphertext path relative to the cipherdir.
#[derive(Debug)]
pub struct ShareSource {
    /// What goes into the share.
    pub entry: SharedFile,
    /// The ciphertext's path inside the cipherdir (what the recipient needs besides the share).
    pub cipher: PathBuf,
}

/// The plaintext path as a share records it: relative, `/`-separated, without `.` or `/`.
pub fn share_path(plain: &Path) -> PathBuf {
    plain
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// The share entry of the regular file at plaintext path `plain` (resolved as `reencrypt`
/// resolves it, `..` refused). An empty file without a key yet is shared as such (no key to
/// share); anything but a regular file is refused.
pub fn share_source(vol: &Volume, plain: &Path, names: bool) -> Result<ShareSource> {
    let cipher = resolve(vol, plain)?;
    let path = vol.root().join(&cipher);
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(VolumeError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "{}: not a regular file (only regular files can be shared; -r DIR shares a directory's)",
                plain.display()
            ),
        )));
    }
    let name = names.then(|| SharedName {
        path: share_path(plain),
        size: vol.layout().cipher_size_to_plain_size_lenient(meta.len()),
        mtime_secs: meta.mtime(),
        mtime_nsecs: meta.mtime_nsec() as u32,
    });
    if let Some(n) = &name
        && n.path.as_os_str().is_empty()
    {
        return Err(VolumeError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the volume's root is not a file",
        )));
    }
    let chunk_len = vol.layout().chunk_len() as u32;
    if meta.len() == 0 {
        return Ok(ShareSource {
            entry: SharedFile {
                file_id: None,
                file_version: 0,
                chunk_len,
                fek: None,
                name,
            },
            cipher,
        });
    }
    let header = read_header(&file, plain)?;
    let fek = vol.keyring().fek(&header.file_id)?;
    Ok(ShareSource {
        entry: SharedFile {
            file_id: Some(header.file_id),
            file_version: header.version,
            chunk_len,
            // The keyring's copy stays cached there; the share gets its own, wiped on drop.
            fek: Fek::from_slice(fek.expose()),
            name,
        },
        cipher,
    })
}

fn read_header(file: &File, plain: &Path) -> Result<FileHeader> {
    read_header_required(file)?.map_err(|e| VolumeError::CorruptFile {
        file_id: None,
        reason: format!("{}: {e}", plain.display()),
    })
}
