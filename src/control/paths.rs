//! Where the control socket of a mounted volume is. The name comes from the volume id (in the
//! marker and the store), so a management command that finds the volume locked knows where
//! its daemon listens without any file inside the cipherdir (rsync would copy one along).
//!
//! Root's daemons listen in `/run/cofferfs/`, other users' in `$XDG_RUNTIME_DIR/cofferfs/`
//! (per-user, mode 0700; `/tmp/cofferfs-UID/` when the variable is unset). With `mount
//! --ctlsock PATH` the socket is at PATH and the default name is a symlink to it.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::volume::location::hex;

/// The directory root's daemons put their sockets in.
pub const ROOT_DIR: &str = "/run/cofferfs";

/// The socket directory of the current user (see the module comment).
pub fn user_dir() -> PathBuf {
    let uid = rustix::process::geteuid();
    if uid.is_root() {
        return PathBuf::from(ROOT_DIR);
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => Path::new(&d).join("cofferfs"),
        None => PathBuf::from(format!("/tmp/cofferfs-{}", uid.as_raw())),
    }
}

/// The default socket name of volume `volume_id` in `dir`.
pub fn socket_in(dir: &Path, volume_id: &[u8; 16]) -> PathBuf {
    dir.join(format!("{}.sock", hex(volume_id)))
}

/// Where a client looks for the daemon of `volume_id`: its own directory first, then root's
/// (a user's command reaching a daemon root started is refused by the daemon unless the user
/// is root, but it gets a clear answer).
pub fn candidates(volume_id: &[u8; 16]) -> Vec<PathBuf> {
    let mut out = vec![socket_in(&user_dir(), volume_id)];
    let root = socket_in(Path::new(ROOT_DIR), volume_id);
    if !out.contains(&root) {
        out.push(root);
    }
    out
}

/// Creates `dir` (mode 0700) if missing and refuses one that another user owns or that others
/// may enter: the socket's own mode is checked by the kernel at connect, the directory keeps
/// anyone else from even replacing it.
pub fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != me {
        return Err(std::io::Error::other(format!(
            "{} is not a directory of user {me}",
            dir.display()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_names_follow_the_volume_id() {
        let id = [0xabu8; 16];
        let p = socket_in(Path::new("/run/cofferfs"), &id);
        assert_eq!(
            p,
            Path::new("/run/cofferfs/abababababababababababababababab.sock")
        );
        assert!(candidates(&id).iter().any(|c| c.starts_with(ROOT_DIR)));
    }

    #[test]
    fn private_dirs_get_mode_0700() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("s");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
    }
}
