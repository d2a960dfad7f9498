//! Reading the kernel's mount table (`/proc/self/mountinfo`): what is mounted where, so that
//! `mount` refuses a busy mountpoint and says where a locked volume is mounted, `umount`
//! finds the volume of a mountpoint, and the daemon knows whether its mount is still there.

use std::path::{Path, PathBuf};

/// One line of /proc/self/mountinfo: what is mounted where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MountEntry {
    /// Where it is mounted.
    pub(super) target: String,
    /// `fuse.cofferfs` for ours.
    pub(super) fstype: String,
    /// What is mounted: for cofferfs, the cipherdir path as given at mount time.
    pub(super) source: String,
}

/// Parses /proc/self/mountinfo (`id parent dev root TARGET opts [tags…] - FSTYPE SOURCE
/// superopts`), the octal escapes of its paths undone.
fn parse_mountinfo(table: &str) -> Vec<MountEntry> {
    table
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let target = unescape(left.split(' ').nth(4)?);
            let mut r = right.split(' ');
            let (fstype, source) = (r.next()?.to_owned(), unescape(r.next()?));
            Some(MountEntry {
                target,
                fstype,
                source,
            })
        })
        .collect()
}

/// The mounts of this process's namespace (empty if /proc is not there).
fn mount_table() -> Vec<MountEntry> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| parse_mountinfo(&t))
        .unwrap_or_default()
}

/// `p` absolute with its directory's symlinks resolved; the last component is not touched, so
/// that a dead FUSE mount (whose `stat` fails with ENOTCONN) still resolves.
fn absolute(p: &Path) -> Option<PathBuf> {
    let name = p.file_name()?;
    let dir = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Some(std::fs::canonicalize(dir).ok()?.join(name))
}

/// The newest mount on `mnt`, if `mnt` is a mount point.
pub(super) fn mount_on(mnt: &Path) -> Option<MountEntry> {
    let mnt = absolute(mnt)?;
    let mnt = mnt.to_string_lossy();
    mount_table().into_iter().rev().find(|m| m.target == mnt)
}

/// Where the cofferfs volume of `cipherdir` is mounted, if it is (its source is the
/// cipherdir path, as given at mount time: compared resolved).
pub(super) fn mounted_at(cipherdir: &Path) -> Option<String> {
    let want = std::fs::canonicalize(cipherdir).ok()?;
    mount_table()
        .into_iter()
        .find(|m| {
            m.fstype == "fuse.cofferfs"
                && std::fs::canonicalize(&m.source).is_ok_and(|src| src == want)
        })
        .map(|m| m.target)
}

/// The source (cipherdir) of the FUSE mount at `mnt`, from /proc/self/mountinfo.
pub(super) fn mounted_source(mnt: &Path) -> Option<String> {
    mount_on(mnt)
        .filter(|m| m.fstype.starts_with("fuse"))
        .map(|m| m.source)
}

/// Undoes /proc/self/mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_parse() {
        let table = "36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - ext3 /dev/root rw\n\
                     40 36 0:52 / /tmp/plain rw,nosuid,nodev - fuse.cofferfs /tmp/c rw,user_id=0\n";
        let m = parse_mountinfo(table);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].target, "/mnt/a b");
        assert_eq!(m[0].fstype, "ext3");
        assert_eq!(
            m[1],
            MountEntry {
                target: "/tmp/plain".into(),
                fstype: "fuse.cofferfs".into(),
                source: "/tmp/c".into(),
            }
        );
    }

    #[test]
    fn proc_mounts_escapes_are_undone() {
        assert_eq!(unescape(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
