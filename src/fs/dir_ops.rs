//! Workers for directory listing: a snapshot of decrypted names taken at `opendir`, served
//! by offset, so a listing stays consistent while the directory changes.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use std::time::Duration;

use fuser::{FileType, Generation, INodeNo, ReplyDirectoryPlus};
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
            inode.fd()?,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let mut entries = vec![
            DirEntry {
                ino,
                kind: FileType::Directory,
                name: ".".into(),
                disk: OsString::new(),
            },
            DirEntry {
                ino,
                kind: FileType::Directory,
                name: "..".into(),
                disk: OsString::new(),
            },
        ];
        for entry in rustix::fs::Dir::read_from(&fd)? {
            let entry = entry?;
            let disk = OsStr::from_bytes(entry.file_name().to_bytes());
            if disk == "." || disk == ".." {
                continue;
            }
            let name = match self.vol.plain_name(&dir_id, disk, in_root) {
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
                disk: disk.to_owned(),
            });
        }
        Ok(self.handles.add_dir(DirHandle { inode, entries }))
    }

    /// Serves a readdirplus request from the listing snapshot: each entry is looked up (one
    /// kernel reference each, as readdirplus entries count as lookups), so `ls -l` needs no
    /// separate LOOKUP and GETATTR per file.
    pub(super) fn do_readdirplus(&self, fh: u64, offset: u64, mut reply: ReplyDirectoryPlus) {
        let Some(dir) = self.handles.dir(fh) else {
            return reply.error(fuser::Errno::EBADF);
        };
        for (i, e) in dir.entries.iter().enumerate().skip(offset as usize) {
            let next = (i + 1) as u64;
            if e.disk.is_empty() {
                // "." and "..": no lookup reference, and no attributes the kernel would cache.
                let Ok(mut attr) = self.stat_inode(&dir.inode) else {
                    continue;
                };
                attr.ino = INodeNo(e.ino);
                if reply.add(
                    INodeNo(e.ino),
                    next,
                    &e.name,
                    &Duration::ZERO,
                    &attr,
                    Generation(0),
                ) {
                    break;
                }
                continue;
            }
            // Gone since opendir: leave it out.
            let Ok(attr) = self.lookup_disk(&dir.inode, &e.disk) else {
                continue;
            };
            if reply.add(
                attr.ino,
                next,
                &e.name,
                &self.opts.ttl,
                &attr,
                Generation(0),
            ) {
                // Not sent: give back the reference the lookup took.
                self.inodes.forget(attr.ino.0, 1);
                break;
            }
        }
        reply.ok();
    }

    pub(super) fn do_fsyncdir(&self, ino: u64) -> Result<()> {
        let inode = self.inode(ino)?;
        let fd = self.reopen(&inode, OFlags::RDONLY | OFlags::DIRECTORY)?;
        rustix::fs::fsync(&fd)?;
        Ok(())
    }
}
