//! Extended attributes: the backing attribute of each, reached through the inode's
//! `/proc/self/fd` path. How names and values are stored (and which namespaces are refused)
//! is the volume's rule (`volume::xattrs`).

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::XattrFlags;

use super::CofferFs;
use super::inodes::Inode;
use crate::volume::{Result, VolumeError};

impl CofferFs {
    /// The `/proc/self/fd` path of the inode's fd, with the fd it names (keep it alive while
    /// the path is used).
    fn xattr_path(inode: &Inode) -> Result<(Arc<OwnedFd>, String)> {
        let fd = inode.fd()?;
        let path = format!("/proc/self/fd/{}", Self::proc_name(fd.as_fd()));
        Ok((fd, path))
    }

    fn map_xattr_err(e: rustix::io::Errno) -> VolumeError {
        VolumeError::Io(e.into())
    }

    pub(super) fn do_getxattr(&self, ino: u64, name: &OsStr) -> Result<Vec<u8>> {
        let inode = self.inode(ino)?;
        let backing = self.vol.names().backing_xattr_name(name)?;
        let (_fd, path) = Self::xattr_path(&inode)?;
        let mut buf = vec![0u8; 65_536 + 64];
        let n = rustix::fs::getxattr(path.as_str(), backing.as_os_str(), &mut buf[..])
            .map_err(Self::map_xattr_err)?;
        buf.truncate(n);
        self.vol
            .names()
            .open_xattr_value(name, buf, || format!("xattr value of inode {ino}"))
    }

    pub(super) fn do_setxattr(
        &self,
        ino: u64,
        name: &OsStr,
        value: &[u8],
        flags: i32,
    ) -> Result<()> {
        self.check_writable()?;
        let inode = self.inode(ino)?;
        let backing = self.vol.names().backing_xattr_name(name)?;
        let stored = self.vol.names().seal_xattr_value(name, value);
        let (_fd, path) = Self::xattr_path(&inode)?;
        rustix::fs::setxattr(
            path.as_str(),
            backing.as_os_str(),
            &stored,
            XattrFlags::from_bits_retain(flags as u32),
        )
        .map_err(Self::map_xattr_err)
    }

    pub(super) fn do_listxattr(&self, ino: u64) -> Result<Vec<u8>> {
        let inode = self.inode(ino)?;
        let (_fd, path) = Self::xattr_path(&inode)?;
        let mut buf = vec![0u8; 65_536];
        let n = rustix::fs::listxattr(path.as_str(), &mut buf[..]).map_err(Self::map_xattr_err)?;
        buf.truncate(n);
        let list = self.vol.names().plain_xattr_list(buf);
        for _ in 0..list.skipped {
            log::warn!("inode {ino}: skipping an xattr whose name does not decrypt");
        }
        Ok(list.names)
    }

    pub(super) fn do_removexattr(&self, ino: u64, name: &OsStr) -> Result<()> {
        self.check_writable()?;
        let inode = self.inode(ino)?;
        let backing = self.vol.names().backing_xattr_name(name)?;
        let (_fd, path) = Self::xattr_path(&inode)?;
        rustix::fs::removexattr(path.as_str(), backing.as_os_str()).map_err(Self::map_xattr_err)
    }
}
