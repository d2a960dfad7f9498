//! Workers for operations on names and nodes: lookup, attributes, mkdir, mknod, symlink,
//! link, unlink, rmdir, rename, statfs. Each returns `Result`; the shims reply.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;

use fuser::FileAttr;
use rustix::fs::{AtFlags, Mode};

use super::CofferFs;
use super::errno::os;
use super::inodes::{Inode, Kind};
use crate::volume::ciphertext::{file_id_in, open_for_header};
use crate::volume::names::EmptiedDir;
use crate::volume::owners;
use crate::volume::{FileId, Owner, Result, Volume, VolumeError};

/// The last link of a regular file is going: its key, if it has one yet (a file never written
/// has none), and the owner digest of the name going (the row is shredded only if it is the
/// row's owner).
struct LastLink(KeyOf, Owner);

/// How the key of a file whose last link goes is found.
enum KeyOf {
    /// Known already (or known to be none): from its open content or its last release.
    Known(Option<FileId>),
    /// In its header, not read yet: the file opened for reading, so that the shredder can
    /// read the header off the unlink's path (`shred_queue.rs`).
    Header(std::fs::File),
}

impl KeyOf {
    /// The id, reading the header now if it was left for later.
    fn read_now(self) -> Option<FileId> {
        match self {
            KeyOf::Known(id) => id,
            KeyOf::Header(file) => crate::volume::ciphertext::read_file_id(&file),
        }
    }
}

/// What removing a name of a regular file means for its key row.
enum Removal {
    /// Not a regular file, or the source of a rename onto one of its own links.
    Nothing,
    /// The last link: shred the row if this name owns it.
    Last(LastLink),
    /// One of several links: if this name (first owner) owns the row, the owner moves to the
    /// second (another live link the mount knows), or becomes unknown without one.
    OneOfSeveral(Option<FileId>, Owner, Option<Owner>),
}

impl CofferFs {
    pub(super) fn do_lookup(&self, parent: u64, name: &OsStr) -> Result<FileAttr> {
        let parent = self.inode(parent)?;
        Self::require_dir(&parent)?;
        let dn = match self.disk_name(&parent, name) {
            // A reserved name (plaintext-names volumes) simply does not exist.
            Err(VolumeError::Io(e)) if e.raw_os_error() == Some(libc::EPERM) => {
                return Err(os(libc::ENOENT));
            }
            other => other?,
        };
        self.vol.check_long_name(&dn)?;
        self.lookup_disk(&parent, &dn.name)
    }

    pub(super) fn do_getattr(&self, ino: u64) -> Result<FileAttr> {
        let inode = self.inode(ino)?;
        self.stat_inode(&inode)
    }

    pub(super) fn do_mkdir(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> Result<FileAttr> {
        let parent = self.writable_dir(parent)?;
        let dn = self.disk_name_for_create(&parent, name)?;
        let parent_fd = parent.fd()?;
        // Made private with its id, then given the exact bits asked for: the metadata file
        // must not leak into the permission bits (gocryptfs forces u+rwx).
        let dir = self.vol.make_dir(parent_fd.as_fd(), &dn.name)?;
        let made = (|| -> Result<FileAttr> {
            let pst = rustix::fs::fstat(&parent_fd)?;
            let sgid = if pst.st_mode & libc::S_ISGID != 0 {
                libc::S_ISGID
            } else {
                0
            };
            self.chmod_backing(dir.fd.as_fd(), (mode & 0o7777) | sgid)?;
            let st = self.own_new_node(&parent, dir.fd.as_fd(), uid, gid)?;
            let inode = self.inodes.remember(&st, dir.fd, &parent, &dn.name);
            if let Some(id) = dir.id {
                let _ = inode.dir_id.set(id);
            }
            Ok(self.attr_of(inode.ino, &st))
        })();
        if made.is_err() {
            Volume::unmake_dir(parent_fd.as_fd(), &dn.name);
        }
        made
    }

    pub(super) fn do_mknod(
        &self,
        parent: u64,
        name: &OsStr,
        mode: u32,
        rdev: u32,
        uid: u32,
        gid: u32,
    ) -> Result<FileAttr> {
        let parent_inode = self.writable_dir(parent)?;
        let file_type = rustix::fs::FileType::from_raw_mode(mode);
        if file_type == rustix::fs::FileType::RegularFile {
            let (attr, fh) = self.do_create(parent, name, mode, libc::O_WRONLY, uid, gid)?;
            self.do_release(fh)?;
            return Ok(attr);
        }
        let dn = self.disk_name_for_create(&parent_inode, name)?;
        rustix::fs::mknodat(
            parent_inode.fd()?,
            &dn.name,
            file_type,
            Mode::from_raw_mode(mode & 0o7777),
            u64::from(rdev),
        )?;
        self.finish_new_node(&parent_inode, &dn.name, uid, gid)
    }

    /// Takes ownership of a node just created under the on-disk name `disk` and reports it.
    fn finish_new_node(
        &self,
        parent: &Arc<Inode>,
        disk: &OsStr,
        uid: u32,
        gid: u32,
    ) -> Result<FileAttr> {
        let fd = Self::open_path(parent, disk)?;
        let st = self.own_new_node(parent, fd.as_fd(), uid, gid)?;
        let inode = self.inodes.remember(&st, fd, parent, &disk.to_owned());
        Ok(self.attr_of(inode.ino, &st))
    }

    pub(super) fn do_symlink(
        &self,
        parent: u64,
        name: &OsStr,
        target: &OsStr,
        uid: u32,
        gid: u32,
    ) -> Result<FileAttr> {
        let parent = self.writable_dir(parent)?;
        let id = self.dir_id(&parent)?;
        let in_root = parent.ino == fuser::INodeNo::ROOT.0;
        let dn = self
            .vol
            .create_symlink(parent.fd()?.as_fd(), &id, in_root, name, target)?;
        self.finish_new_node(&parent, &dn.name, uid, gid)
    }

    pub(super) fn do_readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let inode = self.inode(ino)?;
        if inode.kind != Kind::Symlink {
            return Err(os(libc::EINVAL));
        }
        let stored = rustix::fs::readlinkat(inode.fd()?, "", Vec::new())?.into_bytes();
        self.vol.symlink_target(&stored)
    }

    pub(super) fn do_link(&self, ino: u64, newparent: u64, newname: &OsStr) -> Result<FileAttr> {
        self.check_writable()?;
        let inode = self.inode(ino)?;
        let parent = self.inode(newparent)?;
        Self::require_dir(&parent)?;
        if inode.kind == Kind::Dir {
            return Err(os(libc::EPERM));
        }
        let dn = self.disk_name_for_create(&parent, newname)?;
        let fd = inode.fd()?;
        rustix::fs::linkat(
            &self.proc_fd,
            Self::proc_name(fd.as_fd()),
            parent.fd()?,
            &dn.name,
            AtFlags::SYMLINK_FOLLOW,
        )?;
        self.lookup_disk(&parent, &dn.name)
    }

    /// The file id of the regular file `disk` in `parent`, if it has one: from its open
    /// content if the file is open, else as its last release left it (`known_file_id`), else
    /// from its header (read without moving the atime).
    fn file_id_of(&self, parent: &Inode, disk: &OsStr, ino: u64) -> Option<FileId> {
        match self.remembered_file_id(ino) {
            Some(known) => known,
            None => file_id_in(parent.fd().ok()?.as_fd(), disk),
        }
    }

    /// What the mount knows of node `ino`'s file id without reading its header: `Some(id)`
    /// from its open content (`Some(None)`: open and without a key yet), else as its last
    /// release left it; `None` when only the header can tell.
    fn remembered_file_id(&self, ino: u64) -> Option<Option<FileId>> {
        let inode = self.inodes.get(ino)?;
        if let Some(f) = &inode.content.lock().file {
            return Some(f.file_id());
        }
        inode.known_file_id().map(Some)
    }

    /// How to find the key of the regular file `disk` in `parent` (node `ino`) whose last
    /// link is about to go: what the mount remembers, else the file opened for a header read
    /// later (an open costs no data I/O; the read may be a disk read).
    fn key_of_last_link(&self, parent: &Inode, disk: &OsStr, ino: u64) -> KeyOf {
        if let Some(known) = self.remembered_file_id(ino) {
            return KeyOf::Known(known);
        }
        let Ok(dir) = parent.fd() else {
            return KeyOf::Known(None);
        };
        match open_for_header(dir.as_fd(), disk) {
            Some(file) => KeyOf::Header(file),
            None => {
                // Out of fds, perhaps: the files queued for their headers give theirs back.
                self.shreds.read_unread_now();
                KeyOf::Known(file_id_in(dir.as_fd(), disk))
            }
        }
    }

    /// The node id of the entry `disk` in `parent` (if there is one) and what removing it
    /// means for its key row: for the last link of a regular file, its key to shred once the
    /// entry is gone (if the entry owns the row); for one of several links, the owner to drop.
    /// `except_ino` is a node that must not be shredded (the source of a rename onto one of
    /// its own links). The kernel holds `parent` locked for the unlink or rename that asks,
    /// so the name cannot change between these steps.
    fn entry_to_remove(
        &self,
        parent: &Inode,
        disk: &OsStr,
        except_ino: Option<u64>,
    ) -> Option<(u64, Removal)> {
        let st = rustix::fs::statat(parent.fd().ok()?, disk, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        let ino = self.inodes.node_id(st.st_ino);
        if super::attr::kind_of(&st) != Kind::File || except_ino == Some(ino) {
            return Some((ino, Removal::Nothing));
        }
        let Ok(owner) = self.entry_owner(parent, disk) else {
            return Some((ino, Removal::Nothing));
        };
        // Another directory has this one's id: the owner digest may be an entry there.
        if self.dir_id_shared(parent) {
            return Some((ino, Removal::Nothing));
        }
        if st.st_nlink != 1 {
            let id = self.file_id_of(parent, disk, ino);
            let heir = self.other_link_owner(parent, disk, ino, st.st_ino);
            return Some((ino, Removal::OneOfSeveral(id, owner, heir)));
        }
        Some((
            ino,
            Removal::Last(LastLink(self.key_of_last_link(parent, disk, ino), owner)),
        ))
    }

    /// The name of an entry whose removal was described by `removal` (under node `ino`) is
    /// gone: shred or disown its key row as the rules in `keystore::owners` say.
    fn after_removal(&self, ino: u64, removal: Removal) -> Result<()> {
        self.name_removed(ino);
        match removal {
            Removal::Nothing => Ok(()),
            Removal::Last(last) => self.shred_after_unlink(ino, last),
            Removal::OneOfSeveral(Some(id), owner, heir) => {
                Ok(self.vol.link_removed(&id, &owner, heir.as_ref())?)
            }
            Removal::OneOfSeveral(None, ..) => Ok(()),
        }
    }

    /// The owner digest of another live name of node `ino` (backing inode `backing_ino`) than
    /// `disk` in `parent`: the name the mount last saw it under, checked to still be a link
    /// of the same backing inode. `None` when no such name is known.
    fn other_link_owner(
        &self,
        parent: &Inode,
        disk: &OsStr,
        ino: u64,
        backing_ino: u64,
    ) -> Option<Owner> {
        let (dir, name) = self.inodes.get(ino)?.origin()?;
        if dir.ino == parent.ino && name == disk {
            return None;
        }
        let st = rustix::fs::statat(dir.fd().ok()?, &name, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        if st.st_ino != backing_ino {
            return None;
        }
        self.entry_owner(&dir, &name).ok()
    }

    /// The key of the regular file `disk` (node `ino`) in `dir`, which a rename is about to
    /// give the name whose owner digest is `new_owner`: `None` while it has no key. A keyless
    /// file open right now takes `new_owner` for the row its first write will create.
    fn moving_file_id(
        &self,
        dir: &Inode,
        disk: &OsStr,
        ino: u64,
        new_owner: Owner,
    ) -> Option<FileId> {
        if let Some(inode) = self.inodes.get(ino)
            && let Some(f) = &inode.content.lock().file
        {
            return f.set_pending_owner(Some(new_owner));
        }
        self.file_id_of(dir, disk, ino)
    }

    /// After the name `ino` was found under went away: if it had other links, the name its
    /// inode recorded may be the one that went, so it must keep its fd.
    fn name_removed(&self, ino: u64) {
        if let Some(inode) = self.inodes.get(ino) {
            inode.clear_origin();
        }
    }

    /// Destroys the key of a file whose last name is gone: queued now (the row goes within
    /// `shred_queue::GATHER`), or at the last release if the file is still open (an unlinked
    /// open file stays readable, as POSIX requires). An open file is shredded at release even
    /// when it has no key yet: a write through a handle still open may give it one.
    fn shred_after_unlink(&self, ino: u64, last: LastLink) -> Result<()> {
        if let Some(inode) = self.inodes.get(ino) {
            let mut content = inode.content.lock();
            if content.opens > 0 {
                let gone = owners::unlinked_open_owner(&last.1);
                // A keyless file gets its row, at its first write, for no name.
                let id = match &content.file {
                    Some(f) => f.set_pending_owner(Some(gone)),
                    None => last.0.read_now(),
                };
                self.vol.last_name_gone_while_open(id.as_ref(), &last.1)?;
                content.shred_on_release = Some(gone);
                return Ok(());
            }
        }
        match last {
            LastLink(KeyOf::Known(Some(id)), owner) => self.shreds.push(id, owner),
            LastLink(KeyOf::Header(file), owner) => self.shreds.push_unread(file, owner),
            LastLink(KeyOf::Known(None), _) => {}
        }
        Ok(())
    }

    pub(super) fn do_unlink(&self, parent: u64, name: &OsStr) -> Result<()> {
        let parent = self.writable_dir(parent)?;
        let dn = self.disk_name(&parent, name)?;
        let victim = self.entry_to_remove(&parent, &dn.name, None);
        self.vol.unlink_entry(parent.fd()?.as_fd(), &dn)?;
        if let Some((ino, removal)) = victim {
            self.after_removal(ino, removal)?;
        }
        Ok(())
    }

    pub(super) fn do_rmdir(&self, parent: u64, name: &OsStr) -> Result<()> {
        let parent = self.writable_dir(parent)?;
        let dn = self.disk_name(&parent, name)?;
        self.vol.remove_dir(parent.fd()?.as_fd(), &dn)
    }

    pub(super) fn do_rename(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> Result<()> {
        self.check_writable()?;
        let from_dir = self.inode(parent)?;
        let to_dir = self.inode(newparent)?;
        Self::require_dir(&from_dir)?;
        Self::require_dir(&to_dir)?;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let src = self.disk_name(&from_dir, name)?;
        let dst = self.disk_name_for_create(&to_dir, newname)?;
        let (from_fd, to_fd) = (from_dir.fd()?, to_dir.fd()?);
        let src_st = rustix::fs::statat(&from_fd, &src.name, AtFlags::SYMLINK_NOFOLLOW)?;
        let src_ino = self.inodes.node_id(src_st.st_ino);
        let victim = self.entry_to_remove(&to_dir, &dst.name, Some(src_ino));
        // The owners before and after, for the key rows of regular files that move.
        let src_is_file = super::attr::kind_of(&src_st) == Kind::File;
        let owners = if src_is_file || exchange {
            Some((
                self.entry_owner(&from_dir, &src.name)?,
                self.entry_owner(&to_dir, &dst.name)?,
            ))
        } else {
            None
        };
        // A directory replacing a directory: the target must look empty to the user, and its
        // id file goes first, or the backing rename would find it not empty.
        let replaced = match victim {
            Some((ino, _))
                if !exchange && ino != src_ino && flags & libc::RENAME_NOREPLACE == 0 =>
            {
                if Self::is_dir_entry(from_fd.as_fd(), &src.name)
                    && Self::is_dir_entry(to_fd.as_fd(), &dst.name)
                {
                    Some(EmptiedDir::prepare(to_fd.as_fd(), &dst.name)?)
                } else {
                    None
                }
            }
            _ => None,
        };
        if exchange {
            // The entry that comes back under the old name needs that name's long form too.
            self.vol.record_long_name(&src)?;
        }
        if let Err(e) = rustix::fs::renameat_with(
            &from_fd,
            &src.name,
            &to_fd,
            &dst.name,
            rustix::fs::RenameFlags::from_bits_retain(flags),
        ) {
            if let Some(emptied) = replaced {
                emptied.restore()?;
            }
            return Err(e.into());
        }
        if !exchange && src.name != dst.name {
            self.vol.forget_long_name(&src);
        }
        // After the rename (a failed one must not touch an owner): the source is under the
        // new name now, and for an exchange the destination under the old one.
        let src_id = match (src_is_file, owners) {
            (true, Some((_, to))) => self.moving_file_id(&to_dir, &dst.name, src_ino, to),
            _ => None,
        };
        let dst_id = match (&victim, exchange, owners) {
            (Some((ino, _)), true, Some((from, _))) if *ino != src_ino => {
                self.moving_file_id(&from_dir, &src.name, *ino, from)
            }
            _ => None,
        };
        if let Some(inode) = self.inodes.get(src_ino) {
            inode.set_origin(&to_dir, &dst.name);
        }
        match victim {
            Some((ino, _)) if ino == src_ino => {}
            Some((ino, _)) if exchange => {
                if let Some(inode) = self.inodes.get(ino) {
                    inode.set_origin(&from_dir, &src.name);
                }
            }
            Some((ino, removal)) => self.after_removal(ino, removal)?,
            None => {}
        }
        // After the victim's shred is queued: the cancel also covers a victim that carried
        // the same id as the file moving onto its name. Cancel first, then the owner update,
        // both under the queue's lock, so a batch the shredder already took cannot delete the
        // row between them (`shred_queue::Shared::delete_pending`).
        if let Some((from, to)) = owners {
            let ids: Vec<_> = [src_id, dst_id].into_iter().flatten().collect();
            self.shreds
                .cancel_then(&ids, || match (src_id, dst_id, exchange) {
                    (Some(a), Some(b), true) => self.vol.entries_exchanged((a, from), (b, to)),
                    (Some(a), None, _) => self.vol.entry_renamed(&a, &from, &to),
                    (None, Some(b), true) => self.vol.entry_renamed(&b, &to, &from),
                    _ => Ok(()),
                })?;
        }
        Ok(())
    }

    /// True when the entry `disk` of the directory `dir` is a directory (not following a
    /// symlink).
    fn is_dir_entry(dir: BorrowedFd<'_>, disk: &OsStr) -> bool {
        rustix::fs::statat(dir, disk, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| super::attr::kind_of(&st) == Kind::Dir)
    }

    pub(super) fn do_statfs(&self) -> Result<rustix::fs::StatVfs> {
        let root = self.inode(fuser::INodeNo::ROOT.0)?;
        Ok(rustix::fs::fstatvfs(root.fd()?)?)
    }
}
