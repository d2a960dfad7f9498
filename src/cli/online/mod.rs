//! Management commands against a mounted volume: when the volume lock is held, the command
//! looks for the holder's control socket (named by the volume id, see `control::paths`) and
//! sends its request there instead of failing with exit 15. The secret is read exactly as
//! offline (prompt, `--passfile`, `--extpass`, key file, Vault for a Transit slot) and
//! travels over the socket only; the daemon checks it against the slots as an unlock does.
//! `daemon` is the other end: what the mount daemon does with each request.

pub mod daemon;
pub mod reencrypt;
pub mod rotation;
pub mod verbs;

use std::path::{Path, PathBuf};

use super::unlock::SlotSecret;
use super::{CliError, exit};
use crate::control::client;
use crate::control::protocol::{Proof, ProofKind, Reply, Request, SecretBytes};
use crate::keystore::SlotKind;
use crate::volume::{self, Location, VolumeError};

/// The volume id of `loc`: the marker's, or the store's for volumes made before markers.
pub fn volume_id(loc: &Location) -> Result<[u8; 16], CliError> {
    if let Some(id) = loc.marker_volume_id() {
        return Ok(id);
    }
    let store = volume::open_store_read_only_at(loc)?;
    Ok(store.params().map_err(VolumeError::from)?.volume_id)
}

/// Where the command goes: `None` when the volume is not in use (the command runs offline,
/// as before), the daemon's socket when a mount daemon holds it; exit 15 when the holder
/// answers on no socket (another management command, or a daemon of an older cofferfs).
pub fn daemon_socket(loc: &Location) -> Result<Option<PathBuf>, CliError> {
    match volume::check_not_locked(loc) {
        Ok(()) => Ok(None),
        Err(VolumeError::Locked(p)) => match client::find(&volume_id(loc)?) {
            Some(sock) => serves(&sock, loc, &p).map(Some),
            None => Err(CliError::new(
                exit::LOCKED,
                format!(
                    "{} is in use by another cofferfs process (a management command, or a \
                     daemon without a control socket): try again when it has finished",
                    p.display()
                ),
            )),
        },
        Err(e) => Err(e.into()),
    }
}

/// `sock` if its daemon serves this very cipherdir and header store: a copy of the cipherdir
/// or of the store carries the same volume id, and a request meant for the copy must not
/// change the mounted original (exit 15, as before, naming what is mounted).
fn serves(sock: &Path, loc: &Location, busy: &Path) -> Result<PathBuf, CliError> {
    let reply = send(sock, &Request::Status)?;
    let same = |key: &str, want: &Path| {
        let got = reply.data[key].as_str().map(PathBuf::from);
        match (got.and_then(|g| g.canonicalize().ok()), want.canonicalize()) {
            (Some(g), Ok(w)) => g == w,
            _ => false,
        }
    };
    if same("cipherdir", loc.cipherdir()) && same("header_store", loc.store()) {
        return Ok(sock.to_owned());
    }
    Err(CliError::new(
        exit::LOCKED,
        format!(
            "{} is in use by another cofferfs process: {} is mounted on {} with the same \
             volume id (a copy?)",
            busy.display(),
            reply.data["cipherdir"].as_str().unwrap_or("?"),
            reply.data["mountpoint"].as_str().unwrap_or("?")
        ),
    ))
}

/// The proof a request carries: the secret read for the volume.
pub fn proof(secret: &SlotSecret, slot: Option<u32>) -> Proof {
    Proof {
        kind: match secret.kind {
            SlotKind::Password => ProofKind::Password,
            SlotKind::Keyfile => ProofKind::Keyfile,
            SlotKind::Transit => ProofKind::Transit,
            SlotKind::Pkcs11 => ProofKind::Pkcs11,
        },
        secret: SecretBytes::from_slice(&secret.bytes),
        slot: secret.slot.or(slot),
    }
}

/// Sends `request` to the daemon at `sock` and returns its reply, `ok` or not.
pub fn send_raw(sock: &Path, request: &Request) -> Result<Reply, CliError> {
    client::request_at(sock, request).map_err(|e| {
        CliError::new(
            exit::CONTROL,
            format!("mount daemon at {}: {e}", sock.display()),
        )
    })
}

/// Sends `request` to the daemon at `sock`; a reply that is not `ok` becomes the command's
/// error with the daemon's exit code.
pub fn send(sock: &Path, request: &Request) -> Result<Reply, CliError> {
    let reply = send_raw(sock, request)?;
    if reply.ok {
        Ok(reply)
    } else {
        Err(CliError::new(reply.code, reply.message))
    }
}

/// Sends `request` and prints the daemon's message: the whole of most online commands.
pub fn send_and_print(sock: &Path, request: &Request) -> Result<(), CliError> {
    let reply = send(sock, request)?;
    println!("{}", reply.message);
    Ok(())
}
