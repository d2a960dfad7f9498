//! `impl fuser::Filesystem`: one thin shim per operation. Each calls its worker and either
//! replies with the result or with the errno chosen by `errno.rs`.

use std::ffi::OsStr;
use std::path::Path;
use std::time::SystemTime;

use fuser::{
    AccessFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::CofferFs;
use super::attr_ops::AttrChange;
use super::errno::errno;
use super::killpriv::{Caller, Occasion};

fn reply_xattr(reply: ReplyXattr, data: &[u8], size: u32) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl CofferFs {
    /// After a successful change to the root directory itself, remember its times as the
    /// ones to restore at unmount (see `RootTimes`).
    fn root_changed(&self, dirs: &[INodeNo], ok: bool) {
        if ok && dirs.contains(&INodeNo::ROOT) {
            self.vol.root_times().record_now();
        }
    }
}

impl Filesystem for CofferFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        for cap in [
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO,
            // The daemon clears set-user-ID and set-group-ID bits itself (killpriv.rs).
            InitFlags::FUSE_HANDLE_KILLPRIV_V2,
        ] {
            if config.add_capabilities(cap).is_err() {
                log::debug!("kernel lacks {cap:?}");
            }
        }
        if self.opts.writeback_cache && !self.opts.read_only {
            self.writeback = config
                .add_capabilities(InitFlags::FUSE_WRITEBACK_CACHE)
                .is_ok();
            if !self.writeback {
                log::info!("kernel lacks the writeback cache");
            }
        }
        let _ = config.set_max_write(1 << 20);
        Ok(())
    }

    fn destroy(&mut self) {
        self.pruner.stop();
        if let Err(e) = self.shreds.finish() {
            log::error!("key rows of deleted files left in the header store: {e}");
        }
        if let Err(e) = self.vol.close_store() {
            log::error!("final header store checkpoint failed: {e}");
        }
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.touch();
        match self.do_lookup(parent.0, name) {
            Ok(attr) => reply.entry(&self.opts.ttl, &attr, Generation(0)),
            Err(e) => match errno(&e) {
                Errno::ENOENT => reply.entry(&self.opts.ttl, &super::attr::absent(), Generation(0)),
                e => reply.error(e),
            },
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.inodes.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.touch();
        match self.do_getattr(ino.0) {
            Ok(attr) => reply.attr(&self.opts.ttl, &attr),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.touch();
        let change = AttrChange {
            mode,
            uid,
            gid,
            atime,
            mtime,
        };
        let result = self.do_setattr(&Caller::of(req), ino.0, size, fh.map(|f| f.0), &change);
        match result {
            Ok(attr) => reply.attr(&self.opts.ttl, &attr),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.touch();
        match self.do_readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.touch();
        let r = self.do_mknod(parent.0, name, mode, rdev, req.uid(), req.gid());
        self.root_changed(&[parent], r.is_ok());
        match r {
            Ok(attr) => reply.entry(&self.opts.ttl, &attr, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn mkdir(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        self.touch();
        let r = self.do_mkdir(parent.0, name, mode, req.uid(), req.gid());
        self.root_changed(&[parent], r.is_ok());
        match r {
            Ok(attr) => reply.entry(&self.opts.ttl, &attr, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.touch();
        let r = self.do_unlink(parent.0, name);
        self.root_changed(&[parent], r.is_ok());
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.touch();
        let r = self.do_rmdir(parent.0, name);
        self.root_changed(&[parent], r.is_ok());
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn symlink(
        &self,
        req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        self.touch();
        match self.do_symlink(
            parent.0,
            link_name,
            target.as_os_str(),
            req.uid(),
            req.gid(),
        ) {
            Ok(attr) => reply.entry(&self.opts.ttl, &attr, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.touch();
        let r = self.do_rename(parent.0, name, newparent.0, newname, flags.bits());
        self.root_changed(&[parent, newparent], r.is_ok());
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        self.touch();
        let r = self.do_link(ino.0, newparent.0, newname);
        self.root_changed(&[newparent], r.is_ok());
        match r {
            Ok(attr) => reply.entry(&self.opts.ttl, &attr, Generation(0)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.touch();
        match self.do_open(ino.0, flags.0) {
            Ok((fh, keep_cache)) => {
                let mut out = if keep_cache {
                    FopenFlags::FOPEN_KEEP_CACHE
                } else {
                    FopenFlags::empty()
                };
                // Without the writeback cache a handle that cannot write has nothing for a
                // FLUSH to push, and the daemon keeps no locks: its close(2) then costs no
                // round trip. (Under the writeback cache the kernel ignores the flag: a close
                // must write back pages other handles dirtied.)
                if !self.writeback && flags.0 & libc::O_ACCMODE == libc::O_RDONLY {
                    out |= FopenFlags::FOPEN_NOFLUSH;
                }
                reply.opened(FileHandle(fh), out);
            }
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.touch();
        self.with_read(fh.0, offset, size, |r| match r {
            Ok(data) => reply.data(data),
            Err(e) => reply.error(errno(&e)),
        });
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.touch();
        let result = (|| {
            if write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID) {
                // A caller without CAP_FSETID writes (see killpriv.rs).
                let h = self.handle(fh.0)?;
                self.drop_suid_sgid(&h.inode, &Caller::of(req), Occasion::FlaggedWrite)?;
            }
            self.do_write(fh.0, offset, data)
        })();
        match result {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Writes reach the backing file before they are acknowledged, so there is nothing to
        // do here, but the request must be answered, not refused: under the writeback cache
        // the kernel writes a file's dirty pages back at close(2) only while FLUSH is
        // implemented. With ENOSYS (tried: it saves a round trip per close) a file closed just
        // before the daemon died came back empty (tests/crash.rs).
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.touch();
        match self.do_release(fh.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.touch();
        match self.do_fsync(fh.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.touch();
        match self.do_opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        self.touch();
        let Some(dir) = self.handles.dir(fh.0) else {
            return reply.error(Errno::EBADF);
        };
        for (i, e) in dir.entries.iter().enumerate().skip(offset as usize) {
            if reply.add(INodeNo(e.ino), (i + 1) as u64, e.kind, &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        reply: fuser::ReplyDirectoryPlus,
    ) {
        self.touch();
        self.do_readdirplus(fh.0, offset, reply);
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.handles.remove_dir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        self.touch();
        match self.do_fsyncdir(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.do_statfs() {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                255,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.touch();
        if !self.opts.xattrs {
            return reply.error(Errno::ENOSYS);
        }
        match self.do_setxattr(ino.0, name, value, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.touch();
        if !self.opts.xattrs {
            return reply.error(Errno::ENOSYS);
        }
        match self.do_getxattr(ino.0, name) {
            Ok(v) => reply_xattr(reply, &v, size),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.touch();
        if !self.opts.xattrs {
            return reply.error(Errno::ENOSYS);
        }
        match self.do_listxattr(ino.0) {
            Ok(v) => reply_xattr(reply, &v, size),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.touch();
        if !self.opts.xattrs {
            return reply.error(Errno::ENOSYS);
        }
        match self.do_removexattr(ino.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // The kernel checks permissions itself (default_permissions); this only confirms
        // that the node exists.
        match self.do_getattr(ino.0) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.touch();
        let r = self.do_create(parent.0, name, mode, flags, req.uid(), req.gid());
        self.root_changed(&[parent], r.is_ok());
        match r {
            Ok((attr, fh)) => reply.created(
                &self.opts.ttl,
                &attr,
                Generation(0),
                FileHandle(fh),
                FopenFlags::empty(),
            ),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.touch();
        let result = (|| {
            let h = self.handle(fh.0)?;
            self.drop_suid_sgid(&h.inode, &Caller::of(req), Occasion::Change)?;
            self.do_fallocate(fh.0, offset, length, mode)
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(&e)),
        }
    }

    /// Not implemented on purpose: with ENOSYS the kernel answers `SEEK_DATA`/`SEEK_HOLE`
    /// itself from its own size (the whole file is data, the hole is at the end), which is
    /// what cofferfs would say, except that under the writeback cache only the kernel knows
    /// the size of a file with unflushed writes.
    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _offset: i64,
        _whence: i32,
        reply: ReplyLseek,
    ) {
        reply.error(Errno::ENOSYS);
    }
}
