//! Workers for file content: create, open, read, write, release, fsync, truncate,
//! fallocate, lseek. Every open handle of an inode shares one `ChunkedFile`.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsFd;
use std::sync::Arc;

use fuser::FileAttr;
use rustix::fs::{Mode, OFlags};

use super::CofferFs;
use super::errno::os;
use super::handles::FileHandle;
use super::inodes::{Inode, Kind};
use crate::volume::{ChunkedFile, Result};

impl CofferFs {
    /// The inode's shared content, opened on first use; counts one more open.
    fn acquire_content(&self, inode: &Arc<Inode>) -> Result<Arc<ChunkedFile>> {
        if inode.kind != Kind::File {
            return Err(os(if inode.kind == Kind::Dir {
                libc::EISDIR
            } else {
                libc::EINVAL
            }));
        }
        let mut content = inode.content.lock();
        if let Some(f) = &content.file {
            let f = f.clone();
            content.opens += 1;
            return Ok(f);
        }
        let fd = if self.opts.read_only {
            self.reopen(inode, OFlags::RDONLY)?
        } else {
            match self.reopen(inode, OFlags::RDWR) {
                Err(crate::volume::VolumeError::Io(e))
                    if e.raw_os_error() == Some(libc::EACCES) =>
                {
                    self.reopen(inode, OFlags::RDONLY)?
                }
                other => other?,
            }
        };
        let file = Arc::new(self.vol.open_file(File::from(fd))?);
        content.file = Some(file.clone());
        content.opens = 1;
        Ok(file)
    }

    /// Counts one open less; the last one closes the content and shreds the key of a file
    /// whose last name went while it was open.
    fn release_content(&self, inode: &Inode) -> Result<()> {
        let mut content = inode.content.lock();
        content.opens = content.opens.saturating_sub(1);
        if content.opens > 0 {
            return Ok(());
        }
        let file = content.file.take();
        let shred = std::mem::take(&mut content.shred_on_release);
        drop(content);
        if let (true, Some(f)) = (shred, file) {
            self.vol.keyring().shred(&f.file_id())?;
        }
        Ok(())
    }

    pub(super) fn do_open(&self, ino: u64, flags: i32) -> Result<u64> {
        let inode = self.inode(ino)?;
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if writes || flags & libc::O_TRUNC != 0 {
            self.check_writable()?;
        }
        let file = self.acquire_content(&inode)?;
        if flags & libc::O_TRUNC != 0
            && writes
            && let Err(e) = file.set_len(0)
        {
            self.release_content(&inode)?;
            return Err(e);
        }
        Ok(self.handles.add_file(FileHandle {
            inode,
            file,
            append: flags & libc::O_APPEND != 0,
        }))
    }

    pub(super) fn do_create(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        flags: i32,
        uid: u32,
        gid: u32,
    ) -> Result<(FileAttr, u64)> {
        let parent = self.writable_dir(parent)?;
        let dn = self.disk_name_for_create(&parent, name)?;
        let base = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let created = rustix::fs::openat(
            parent.fd(),
            &dn.name,
            base | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(mode & 0o7777),
        );
        let is_new = created.is_ok();
        let fd = match created {
            Ok(fd) => fd,
            // Created by someone else meanwhile: open it, unless the caller asked for O_EXCL.
            Err(rustix::io::Errno::EXIST) if flags & libc::O_EXCL == 0 => {
                rustix::fs::openat(parent.fd(), &dn.name, base, Mode::empty())?
            }
            Err(e) => return Err(e.into()),
        };
        let made = self.finish_create(&parent, &dn.name, fd, is_new, flags, (uid, gid));
        if made.is_err() && is_new {
            // A create that failed (ENOSPC from the header store, say) leaves no name behind.
            let _ = rustix::fs::unlinkat(parent.fd(), &dn.name, rustix::fs::AtFlags::empty());
            self.forget_long_name(&dn);
        }
        made
    }

    /// `create` once the backing file is open: ownership, inode, key row and header (for a
    /// new file), `O_TRUNC`, and a handle.
    fn finish_create(
        &self,
        parent: &Inode,
        disk: &OsStr,
        fd: rustix::fd::OwnedFd,
        is_new: bool,
        flags: i32,
        (uid, gid): (u32, u32),
    ) -> Result<(FileAttr, u64)> {
        let path_fd = Self::open_path(parent, disk)?;
        if is_new {
            self.set_owner(parent, path_fd.as_fd(), uid, gid)?;
        }
        let st = rustix::fs::fstat(&path_fd)?;
        let ino = self.inodes.node_id(st.st_ino);
        let inode = self.inodes.remember(ino, path_fd, Kind::File);
        let opened = self.open_created(&inode, fd, !is_new && flags & libc::O_TRUNC != 0);
        let (file, attr) = match opened {
            Ok(x) => x,
            Err(e) => {
                // The kernel never hears of this node: drop the reference just taken.
                self.inodes.forget(ino, 1);
                return Err(e);
            }
        };
        let fh = self.handles.add_file(FileHandle {
            inode,
            file,
            append: flags & libc::O_APPEND != 0,
        });
        Ok((attr, fh))
    }

    /// The content of a node just created or found by `create`: shared with other opens, or
    /// opened from `fd` (a 0-byte file gets its key row and header here: see FORMAT.md, a
    /// 0-byte file without a row is a valid empty file).
    fn open_created(
        &self,
        inode: &Arc<Inode>,
        fd: rustix::fd::OwnedFd,
        truncate: bool,
    ) -> Result<(Arc<ChunkedFile>, FileAttr)> {
        let file = {
            let mut content = inode.content.lock();
            match content.file.clone() {
                Some(f) => {
                    content.opens += 1;
                    f
                }
                None => {
                    let f = Arc::new(self.vol.open_file(File::from(fd))?);
                    content.file = Some(f.clone());
                    content.opens = 1;
                    f
                }
            }
        };
        let attr = if truncate {
            file.set_len(0).and_then(|()| self.stat_inode(inode))
        } else {
            self.stat_inode(inode)
        };
        match attr {
            Ok(attr) => Ok((file, attr)),
            Err(e) => {
                self.release_content(inode)?;
                Err(e)
            }
        }
    }

    fn handle(&self, fh: u64) -> Result<Arc<FileHandle>> {
        self.handles.file(fh).ok_or_else(|| os(libc::EBADF))
    }

    pub(super) fn do_read(&self, fh: u64, off: u64, size: u32) -> Result<Vec<u8>> {
        let h = self.handle(fh)?;
        let mut buf = vec![0u8; size as usize];
        let n = h.file.read_at(&mut buf, off)?;
        buf.truncate(n);
        Ok(buf)
    }

    pub(super) fn do_write(&self, fh: u64, off: u64, data: &[u8]) -> Result<u32> {
        self.check_writable()?;
        let h = self.handle(fh)?;
        if h.append {
            h.file.append(data)?;
        } else {
            h.file.write_at(data, off)?;
        }
        Ok(data.len() as u32)
    }

    pub(super) fn do_release(&self, fh: u64) -> Result<()> {
        match self.handles.remove_file(fh) {
            Some(h) => self.release_content(&h.inode),
            None => Err(os(libc::EBADF)),
        }
    }

    pub(super) fn do_fsync(&self, fh: u64, datasync: bool) -> Result<()> {
        let h = self.handle(fh)?;
        h.file.sync(self.vol.keyring(), datasync)
    }

    /// `truncate`/`ftruncate`: through the handle if there is one, else through a temporary
    /// open of the inode's content.
    pub(super) fn do_truncate(&self, inode: &Arc<Inode>, fh: Option<u64>, size: u64) -> Result<()> {
        self.check_writable()?;
        if let Some(h) = fh.and_then(|fh| self.handles.file(fh)) {
            return h.file.set_len(size);
        }
        let file = self.acquire_content(inode)?;
        let r = file.set_len(size);
        self.release_content(inode)?;
        r
    }

    pub(super) fn do_fallocate(&self, fh: u64, off: u64, len: u64, mode: i32) -> Result<()> {
        self.check_writable()?;
        let h = self.handle(fh)?;
        let keep_size = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        match mode & !libc::FALLOC_FL_KEEP_SIZE {
            0 => {
                let end = off.checked_add(len).ok_or_else(|| os(libc::EFBIG))?;
                if !keep_size && end > h.file.plain_size()? {
                    h.file.set_len(end)?;
                }
                Ok(())
            }
            libc::FALLOC_FL_PUNCH_HOLE if keep_size => h.file.punch_hole(off, len),
            _ => Err(os(libc::EOPNOTSUPP)),
        }
    }

    pub(super) fn do_lseek(&self, fh: u64, off: i64, whence: i32) -> Result<i64> {
        let h = self.handle(fh)?;
        let size = h.file.plain_size()? as i64;
        match whence {
            // The whole file counts as data (holes are an on-disk detail).
            libc::SEEK_DATA if off < size => Ok(off),
            libc::SEEK_HOLE if off < size => Ok(size),
            libc::SEEK_DATA | libc::SEEK_HOLE => Err(os(libc::ENXIO)),
            _ => Err(os(libc::EINVAL)),
        }
    }
}
