//! Extended attributes. On an encrypted-names volume only the `user.` namespace is stored:
//! as the backing attribute `user.cofferfs.<base64url(AES-SIV(name))>` whose value is
//! AES-SIV(value) bound to the name. Other namespaces are refused (`security.` and ACLs
//! would be enforced by the backing filesystem on ciphertext, which means nothing here).
//! Plaintext-names volumes pass attributes through unchanged.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use rustix::fs::XattrFlags;

use super::CofferFs;
use super::errno::os;
use super::inodes::Inode;
use crate::crypto::names::{XATTR_NAME_LABEL, XATTR_VALUE_LABEL};
use crate::format::names as fnames;
use crate::volume::{Result, VolumeError};

const BACKING_PREFIX: &str = "user.cofferfs.";

impl CofferFs {
    /// The `/proc/self/fd` path of the inode's fd, with the fd it names (keep it alive while
    /// the path is used).
    fn xattr_path(inode: &Inode) -> Result<(Arc<OwnedFd>, String)> {
        let fd = inode.fd()?;
        let path = format!("/proc/self/fd/{}", Self::proc_name(fd.as_fd()));
        Ok((fd, path))
    }

    /// The backing attribute name of `name`. A name outside `user.` is refused with
    /// `EOPNOTSUPP` on get and remove as well as on set: the namespace is not supported, and
    /// saying so (rather than `ENODATA`, "not set") lets programs stop asking. coreutils
    /// `ls -l` remembers it per device, so a long listing no longer costs two FUSE round trips
    /// per file (`security.selinux`, `system.posix_acl_access`). The kernel treats
    /// `EOPNOTSUPP` for `security.capability` as "no capabilities" at exec and write.
    fn backing_xattr_name(&self, name: &OsStr) -> Result<OsString> {
        let Some(c) = self.vol.names().cipher() else {
            return Ok(name.to_owned());
        };
        if !name.as_bytes().starts_with(b"user.") {
            return Err(os(libc::EOPNOTSUPP));
        }
        let enc = fnames::encode(&c.seal(&[XATTR_NAME_LABEL], name.as_bytes()));
        Ok(format!("{BACKING_PREFIX}{enc}").into())
    }

    fn map_xattr_err(e: rustix::io::Errno) -> VolumeError {
        VolumeError::Io(e.into())
    }

    pub(super) fn do_getxattr(&self, ino: u64, name: &OsStr) -> Result<Vec<u8>> {
        let inode = self.inode(ino)?;
        let backing = self.backing_xattr_name(name)?;
        let (_fd, path) = Self::xattr_path(&inode)?;
        let mut buf = vec![0u8; 65_536 + 64];
        let n = rustix::fs::getxattr(path.as_str(), backing.as_os_str(), &mut buf[..])
            .map_err(Self::map_xattr_err)?;
        buf.truncate(n);
        let Some(c) = self.vol.names().cipher() else {
            return Ok(buf);
        };
        c.open(&[XATTR_VALUE_LABEL, name.as_bytes()], &buf)
            .map_err(|_| VolumeError::CorruptName(format!("xattr value of inode {ino}")))
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
        let backing = self.backing_xattr_name(name)?;
        let stored = match self.vol.names().cipher() {
            Some(c) => c.seal(&[XATTR_VALUE_LABEL, name.as_bytes()], value),
            None => value.to_vec(),
        };
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
        let Some(c) = self.vol.names().cipher() else {
            return Ok(buf);
        };
        let mut out = Vec::new();
        for raw in buf.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let Some(enc) = raw.strip_prefix(BACKING_PREFIX.as_bytes()) else {
                continue;
            };
            let plain = std::str::from_utf8(enc)
                .ok()
                .and_then(|e| fnames::decode(e).ok())
                .and_then(|e| c.open(&[XATTR_NAME_LABEL], &e).ok());
            match plain {
                Some(p) => {
                    out.extend_from_slice(&p);
                    out.push(0);
                }
                None => log::warn!("inode {ino}: skipping an xattr whose name does not decrypt"),
            }
        }
        Ok(out)
    }

    pub(super) fn do_removexattr(&self, ino: u64, name: &OsStr) -> Result<()> {
        self.check_writable()?;
        let inode = self.inode(ino)?;
        let backing = self.backing_xattr_name(name)?;
        let (_fd, path) = Self::xattr_path(&inode)?;
        rustix::fs::removexattr(path.as_str(), backing.as_os_str()).map_err(Self::map_xattr_err)
    }
}
