//! Workers for directory listing: a snapshot of decrypted names taken at `opendir`, served
//! by offset, so a listing stays consistent while the directory changes.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use fuser::FileType;
use rustix::fs::{AtFlags, Mode, OFlags};

use super::CofferFs;
use super::handles::{DirEntry, DirHandle};
use crate::volume::Result;

fn file_type(t: rustix::fs::FileType) -> Option<FileType> {
    use rustix::fs::FileType as T;
    Some(match t {
        T::Directory => FileType::Directory,
        T::RegularFile => FileType::RegularFile,
        T::Symlink => FileType::Symlink,
        T::Fifo => FileType::NamedPipe,
        T::Socket => FileType::Socket,
        T::CharacterDevice => FileType::CharDevice,
        T::BlockDevice => FileType::BlockDevice,
        T::Unknown => return None,
    })
}

impl CofferFs {
    pub(super) fn do_opendir(&self, ino: u64) -> Result<u64> {
        let inode = self.inode(ino)?;
        Self::require_dir(&inode)?;
        let dir_id = self.dir_id(&inode)?;
        let in_root = ino == fuser::INodeNo::ROOT.0;
        let fd = rustix::fs::openat(
            inode.fd(),
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut entries = vec![
            DirEntry {
                ino,
                kind: FileType::Directory,
                name: ".".into(),
            },
            DirEntry {
                ino,
                kind: FileType::Directory,
                name: "..".into(),
            },
        ];
        let store = self.vol.keyring().store();
        for entry in rustix::fs::Dir::read_from(&fd)? {
            let entry = entry?;
            let disk = OsStr::from_bytes(entry.file_name().to_bytes());
            if disk == "." || disk == ".." {
                continue;
            }
            let name = match self.vol.names().plain_name(&dir_id, disk, in_root, store) {
                Ok(Some(n)) => n,
                Ok(None) => continue,
                Err(e) => {
                    // A tampered or foreign name is skipped, never fatal for the listing.
                    log::warn!("directory inode {ino}: skipping entry: {e}");
                    continue;
                }
            };
            let kind = match file_type(entry.file_type()) {
                Some(k) => k,
                None => match rustix::fs::statat(&fd, disk, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => file_type(rustix::fs::FileType::from_raw_mode(st.st_mode))
                        .unwrap_or(FileType::RegularFile),
                    Err(_) => continue,
                },
            };
            entries.push(DirEntry {
                ino: self.inodes.node_id(entry.ino()),
                kind,
                name,
            });
        }
        Ok(self.handles.add_dir(DirHandle { inode, entries }))
    }

    pub(super) fn do_fsyncdir(&self, ino: u64) -> Result<()> {
        let inode = self.inode(ino)?;
        let fd = self.reopen(&inode, OFlags::RDONLY | OFlags::DIRECTORY)?;
        rustix::fs::fsync(&fd)?;
        Ok(())
    }
}
