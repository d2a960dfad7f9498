//! The daemon's control socket (see `control` and docs/CONTROL.md): bound before the mount
//! (under a private umask, before the daemon clears its own), served from the moment the
//! mount is up, removed when the daemon ends.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::MountArgs;
use crate::cli::online::daemon::{ControlHandle, DaemonControl};
use crate::cli::online::rotation::Rotation;
use crate::cli::{CliError, exit};
use crate::control::paths;
use crate::control::server::{Codes, Server};
use crate::fs::Activity;
use crate::volume::{Volume, VolumeError};

/// Binds the control socket of `vol`: `--ctlsock PATH` (the default name then links to it),
/// or the default name in the user's socket directory.
pub(super) fn bind(a: &MountArgs, vol: &Volume) -> Result<Server, CliError> {
    let id = vol
        .keyring()
        .store()
        .params()
        .map_err(VolumeError::from)?
        .volume_id;
    let dir = paths::user_dir();
    let refuse = |what: &Path, e: std::io::Error| {
        CliError::new(
            exit::MOUNT,
            format!("control socket {}: {e}", what.display()),
        )
    };
    paths::ensure_private_dir(&dir).map_err(|e| refuse(&dir, e))?;
    let default = paths::socket_in(&dir, &id);
    match &a.ctlsock {
        Some(p) => Server::bind(p, Some(&default)).map_err(|e| refuse(p, e)),
        None => Server::bind(&default, None).map_err(|e| refuse(&default, e)),
    }
}

/// Starts answering on `server` for the volume mounted at `mountpoint`, and, read-write,
/// resumes a rotation left pending (a crash mid-rotation). Returns the rotation thread, to be
/// stopped at unmount, and the handle to close then.
pub(super) fn serve(
    server: &Server,
    a: &MountArgs,
    vol: &Arc<Volume>,
    mountpoint: PathBuf,
    activity: Arc<Activity>,
) -> Result<(Arc<Rotation>, Arc<ControlHandle>), CliError> {
    let mut handler = DaemonControl::new(
        vol.clone(),
        a.volume.cipherdir.clone(),
        mountpoint,
        server.path().to_owned(),
        a.ro,
        Box::new(move || activity.open_count()),
    );
    handler.xattrs = !a.no_xattr;
    let rotation = handler.rotation.clone();
    if !a.ro {
        rotation.start(vol, 0);
    }
    let handle = Arc::new(ControlHandle::new(handler));
    server
        .spawn(
            handle.clone(),
            Codes {
                protocol: exit::CONTROL,
                refused: exit::CONTROL,
            },
        )
        .map_err(|e| CliError::new(exit::MOUNT, format!("control socket: {e}")))?;
    Ok((rotation, handle))
}
