//! Extended attributes as they are stored. On an encrypted-names volume only the `user.`
//! namespace is stored: as the backing attribute `user.cofferfs.<base64url(AES-SIV(name))>`
//! whose value is AES-SIV(value) bound to the name. Other namespaces are refused
//! (`EOPNOTSUPP`: `security.` and ACLs would be enforced by the backing filesystem on
//! ciphertext, which means nothing here). Plaintext-names volumes pass attributes through.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;

use super::names::NameMap;
use super::{Result, VolumeError};
use crate::crypto::names::{XATTR_NAME_LABEL, XATTR_VALUE_LABEL};
use crate::format::names as fnames;

/// The prefix of every backing attribute cofferfs stores on an encrypted-names volume.
pub const BACKING_XATTR_PREFIX: &str = "user.cofferfs.";

/// The plaintext names of a backing attribute list, and how many were skipped.
#[derive(Debug, Default)]
pub struct XattrList {
    /// NUL-terminated plaintext names, as `listxattr` returns them.
    pub names: Vec<u8>,
    /// cofferfs attributes whose name does not decrypt (left out).
    pub skipped: usize,
}

impl NameMap {
    /// The backing attribute name of `name`. A name outside `user.` is refused with
    /// `EOPNOTSUPP` on get and remove as well as on set: the namespace is not supported, and
    /// saying so (rather than `ENODATA`, "not set") lets programs stop asking. coreutils
    /// `ls -l` remembers it per device, so a long listing no longer costs two FUSE round trips
    /// per file (`security.selinux`, `system.posix_acl_access`). The kernel treats
    /// `EOPNOTSUPP` for `security.capability` as "no capabilities" at exec and write.
    pub fn backing_xattr_name(&self, name: &OsStr) -> Result<OsString> {
        let Some(c) = self.cipher() else {
            return Ok(name.to_owned());
        };
        if !name.as_bytes().starts_with(b"user.") {
            return Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP).into());
        }
        let enc = fnames::encode(&c.seal(&[XATTR_NAME_LABEL], name.as_bytes()));
        Ok(format!("{BACKING_XATTR_PREFIX}{enc}").into())
    }

    /// The stored form of the value of attribute `name`.
    pub fn seal_xattr_value(&self, name: &OsStr, value: &[u8]) -> Vec<u8> {
        match self.cipher() {
            Some(c) => c.seal(&[XATTR_VALUE_LABEL, name.as_bytes()], value),
            None => value.to_vec(),
        }
    }

    /// The plaintext value of attribute `name` from its stored form; `what` names it in the
    /// `CorruptName` error of a value that does not decrypt (swapped, altered or foreign).
    pub fn open_xattr_value(
        &self,
        name: &OsStr,
        stored: Vec<u8>,
        what: impl FnOnce() -> String,
    ) -> Result<Vec<u8>> {
        let Some(c) = self.cipher() else {
            return Ok(stored);
        };
        c.open(&[XATTR_VALUE_LABEL, name.as_bytes()], &stored)
            .map_err(|_| VolumeError::CorruptName(what()))
    }

    /// The plaintext names in the backing attribute list `backing` (NUL-separated): only
    /// cofferfs's own attributes, decrypted, on an encrypted-names volume.
    pub fn plain_xattr_list(&self, backing: Vec<u8>) -> XattrList {
        let Some(c) = self.cipher() else {
            return XattrList {
                names: backing,
                skipped: 0,
            };
        };
        let mut out = XattrList::default();
        for raw in backing.split(|&b| b == 0).filter(|n| !n.is_empty()) {
            let Some(enc) = raw.strip_prefix(BACKING_XATTR_PREFIX.as_bytes()) else {
                continue;
            };
            let plain = std::str::from_utf8(enc)
                .ok()
                .and_then(|e| fnames::decode(e).ok())
                .and_then(|e| c.open(&[XATTR_NAME_LABEL], &e).ok());
            match plain {
                Some(p) => {
                    out.names.extend_from_slice(&p);
                    out.names.push(0);
                }
                None => out.skipped += 1,
            }
        }
        out
    }
}
