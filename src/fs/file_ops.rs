//! Workers for file content: create, open, read, write, release, fsync, truncate,
//! fallocate. Every open handle of an inode shares one `ChunkedFile`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::AsFd;
use std::sync::Arc;

use fuser::FileAttr;
use rustix::fs::{Mode, OFlags, Timespec, Timestamps, UTIME_OMIT};

use super::CofferFs;
use super::errno::os;
use super::handles::FileHandle;
use super::inodes::{CacheStamp, Inode, Kind};
use crate::volume::chunked::with_plaintext_buffer;
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
        let file = Arc::new(self.open_existing(inode, fd)?);
        if file.file_id().is_none() {
            // A keyless file gets its row at its first change: for the entry it is now.
            file.set_pending_owner(self.origin_owner(inode));
        }
        content.file = Some(file.clone());
        content.opens = 1;
        Ok(file)
    }

    /// The content of an existing file from `fd`, its backing file just opened for I/O. Its
    /// read-only twin for the daemon's own reads (`O_NOATIME`, so that reading a header or a
    /// chunk no user asked for leaves the atime alone) is reopened from the inode's `O_PATH`
    /// fd through the kept `/proc/self/fd` directory, cheaper than `ChunkedFile::open`'s path
    /// walk; where `O_NOATIME` is refused (the daemon neither owns the file nor has
    /// `CAP_FOWNER`) it is a duplicate of `fd`, as there.
    fn open_existing(&self, inode: &Inode, fd: rustix::fd::OwnedFd) -> Result<ChunkedFile> {
        let quiet = match self.reopen(inode, OFlags::RDONLY | OFlags::NOATIME) {
            Ok(q) => File::from(q),
            Err(_) => File::from(fd.try_clone()?),
        };
        self.vol.open_file_with_quiet(File::from(fd), quiet)
    }

    /// Counts one open less; the last one closes the content and shreds the key of a file
    /// whose last name went while it was open.
    fn release_content(&self, inode: &Inode) -> Result<()> {
        let mut content = inode.content.lock();
        content.opens = content.opens.saturating_sub(1);
        if content.opens > 0 {
            return Ok(());
        }
        content.cache_stamp = content
            .file
            .as_ref()
            .and_then(|f| rustix::fs::fstat(f.backing()).ok())
            .map(|st| CacheStamp::of(&st));
        let id = content.file.take().and_then(|f| f.file_id());
        let shred = std::mem::take(&mut content.shred_on_release);
        drop(content);
        match (shred, id) {
            (Some(owner), Some(id)) => self.shreds.push(id, owner),
            (Some(_), None) => {}
            (None, id) => inode.remember_file_id(id),
        }
        Ok(())
    }

    /// Whether writes through a handle opened with `flags` go to the end of the file. Under
    /// the writeback cache the kernel positions `O_APPEND` writes itself (it owns the size),
    /// as libfuse's passthrough_ll relies on: the daemon must then write where it is told.
    fn append_mode(&self, flags: i32) -> bool {
        flags & libc::O_APPEND != 0 && !self.writeback
    }

    /// Whether the kernel may keep the page cache of `inode` at this open (`FOPEN_KEEP_CACHE`):
    /// the backing file is as the last release left it (nothing changed it behind the
    /// kernel's back), and a read would not move the atime under `relatime` (atime newer than
    /// mtime and ctime, and less than a day old), since reads served from the page cache never
    /// reach the daemon, whose reads are what move the backing atime.
    fn keep_cache(&self, inode: &Inode) -> bool {
        let Some(stamp) = inode.content.lock().cache_stamp else {
            return false;
        };
        let Ok(st) = inode.fd().and_then(|fd| Ok(rustix::fs::fstat(&fd)?)) else {
            return false;
        };
        let atime = (st.st_atime, st.st_atime_nsec as i64);
        let now = super::attr::timespec(std::time::SystemTime::now()).0;
        CacheStamp::of(&st) == stamp
            && atime > (st.st_mtime, st.st_mtime_nsec as i64)
            && atime > (st.st_ctime, st.st_ctime_nsec as i64)
            && now - st.st_atime < 24 * 3600
    }

    /// Opens `ino`; returns the handle and whether the kernel may keep its page cache.
    pub(super) fn do_open(&self, ino: u64, flags: i32) -> Result<(u64, bool)> {
        let inode = self.inode(ino)?;
        let writes = flags & libc::O_ACCMODE != libc::O_RDONLY;
        if writes || flags & libc::O_TRUNC != 0 {
            self.check_writable()?;
        }
        let keep_cache = self.keep_cache(&inode);
        let file = self.acquire_content(&inode)?;
        if flags & libc::O_TRUNC != 0
            && writes
            && let Err(e) = file.set_len(0)
        {
            self.release_content(&inode)?;
            return Err(e);
        }
        let fh = self.new_handle(inode, file, flags);
        Ok((fh, keep_cache))
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
        let parent_fd = parent.fd()?;
        let created = rustix::fs::openat(
            &parent_fd,
            &dn.name,
            base | OFlags::CREATE | OFlags::EXCL,
            Mode::from_raw_mode(mode & 0o7777),
        );
        let is_new = created.is_ok();
        let fd = match created {
            Ok(fd) => fd,
            // Created by someone else meanwhile: open it, unless the caller asked for O_EXCL.
            Err(rustix::io::Errno::EXIST) if flags & libc::O_EXCL == 0 => {
                rustix::fs::openat(&parent_fd, &dn.name, base, Mode::empty())?
            }
            Err(e) => return Err(e.into()),
        };
        let made = self.finish_create(&parent, &dn.name, fd, is_new, flags, (uid, gid));
        if made.is_err() && is_new {
            // A create that failed (ENOSPC from the header store, say) leaves no name behind.
            let _ = self.vol.unlink_entry(parent_fd.as_fd(), &dn);
        }
        made
    }

    /// `create` once the backing file is open: ownership, inode, key row and header (for a
    /// new file), `O_TRUNC`, and a handle.
    fn finish_create(
        &self,
        parent: &Arc<Inode>,
        disk: &OsString,
        fd: rustix::fd::OwnedFd,
        is_new: bool,
        flags: i32,
        (uid, gid): (u32, u32),
    ) -> Result<(FileAttr, u64)> {
        let owner = self.entry_owner(parent, disk).ok();
        let path_fd = Self::open_path(parent, disk)?;
        let st = if is_new {
            self.own_new_node(parent, path_fd.as_fd(), uid, gid)?
        } else {
            rustix::fs::fstat(&path_fd)?
        };
        let ino = self.inodes.node_id(st.st_ino);
        let inode = self.inodes.remember(&st, path_fd, parent, disk);
        let truncate = !is_new && flags & libc::O_TRUNC != 0;
        let opened = self.open_created(&inode, fd, is_new, truncate, owner);
        let (file, attr) = match opened {
            Ok(x) => x,
            Err(e) => {
                // The kernel never hears of this node: drop the reference just taken.
                self.inodes.forget(ino, 1);
                return Err(e);
            }
        };
        let fh = self.new_handle(inode, file, flags);
        Ok((attr, fh))
    }

    /// The content of a node just created or found by `create`: shared with other opens, or
    /// opened from `fd`. A new file gets its key row and header directly; an existing 0-byte
    /// file gets them in `open_file` (see FORMAT.md: a 0-byte file without a row is a valid
    /// empty file).
    fn open_created(
        &self,
        inode: &Arc<Inode>,
        fd: rustix::fd::OwnedFd,
        is_new: bool,
        truncate: bool,
        owner: Option<crate::volume::Owner>,
    ) -> Result<(Arc<ChunkedFile>, FileAttr)> {
        let file = {
            let mut content = inode.content.lock();
            match content.file.clone() {
                Some(f) => {
                    content.opens += 1;
                    f
                }
                None => {
                    let f = if is_new {
                        self.vol.create_file_keyless(File::from(fd), owner)
                    } else {
                        let f = self.open_existing(inode, fd)?;
                        if f.file_id().is_none() {
                            f.set_pending_owner(owner);
                        }
                        f
                    };
                    let f = Arc::new(f);
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

    /// Registers an open file handle; `flags` are the open flags (they decide how writes are
    /// positioned and whether the kernel may read through a write-only handle).
    fn new_handle(&self, inode: Arc<Inode>, file: Arc<ChunkedFile>, flags: i32) -> u64 {
        self.handles.add_file(FileHandle {
            inode,
            file,
            append: self.append_mode(flags),
            write_only: flags & libc::O_ACCMODE == libc::O_WRONLY,
        })
    }

    pub(super) fn handle(&self, fh: u64) -> Result<Arc<FileHandle>> {
        self.handles.file(fh).ok_or_else(|| os(libc::EBADF))
    }

    /// Reads up to `size` bytes at `off` and hands them (or the error) to `reply`, from a
    /// per-thread buffer: no allocation per request.
    pub(super) fn with_read<T>(
        &self,
        fh: u64,
        off: u64,
        size: u32,
        reply: impl FnOnce(Result<&[u8]>) -> T,
    ) -> T {
        let h = match self.handle(fh) {
            Ok(h) => h,
            Err(e) => return reply(Err(e)),
        };
        with_plaintext_buffer(size as usize, |buf| {
            let n = if h.write_only {
                h.file.read_at_quietly(buf, off)
            } else {
                h.file.read_at(buf, off)
            };
            reply(n.map(|n| &buf[..n]))
        })
    }

    /// Runs `change`, a change of `inode`'s content through `file`, keeping the backing mtime
    /// under the writeback cache. The kernel then owns a cached file's mtime: it stamps it at
    /// `write()` (or truncate, fallocate) time and sends it with SETATTR when it changed. The
    /// daemon's `pwrite` comes later, at writeback, and would move the backing mtime past the
    /// kernel's, or alone when the kernel saw no change (a write in the clock tick of the last
    /// mtime): the mtime would jump at the next remount. So under the writeback cache only
    /// SETATTR moves a regular file's backing mtime.
    fn keeping_mtime<T>(
        &self,
        inode: &Inode,
        file: &ChunkedFile,
        change: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        if !self.writeback {
            return change();
        }
        let _g = inode.mtime_lock.lock();
        let st = rustix::fs::fstat(file.backing())?;
        let result = change();
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: UTIME_OMIT,
            },
            last_modification: Timespec {
                tv_sec: st.st_mtime,
                tv_nsec: st.st_mtime_nsec as _,
            },
        };
        let kept = rustix::fs::futimens(file.backing(), &times);
        let value = result?;
        kept?;
        Ok(value)
    }

    pub(super) fn do_write(&self, fh: u64, off: u64, data: &[u8]) -> Result<u32> {
        self.check_writable()?;
        let h = self.handle(fh)?;
        self.keeping_mtime(&h.inode, &h.file, || {
            if h.append {
                h.file.append(data).map(drop)
            } else {
                h.file.write_at(data, off)
            }
        })?;
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
        h.file.sync(datasync)
    }

    /// `truncate`/`ftruncate`: through the handle if there is one, else through a temporary
    /// open of the inode's content.
    pub(super) fn do_truncate(&self, inode: &Arc<Inode>, fh: Option<u64>, size: u64) -> Result<()> {
        self.check_writable()?;
        if let Some(h) = fh.and_then(|fh| self.handles.file(fh)) {
            return self.keeping_mtime(inode, &h.file, || h.file.set_len(size));
        }
        let file = self.acquire_content(inode)?;
        let r = self.keeping_mtime(inode, &file, || file.set_len(size));
        self.release_content(inode)?;
        r
    }

    pub(super) fn do_fallocate(&self, fh: u64, off: u64, len: u64, mode: i32) -> Result<()> {
        self.check_writable()?;
        let h = self.handle(fh)?;
        let keep_size = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
        self.keeping_mtime(&h.inode, &h.file, || {
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
        })
    }
}
