//! Transit key slots on the command line: unlocking through Vault/OpenBao (`decrypt`, one
//! request per slot tried), making a slot (`encrypt` of a fresh random slot key), and the
//! checks that refuse a bad key or mount name before anything is asked of Vault.

use std::io::IsTerminal;
use std::time::Instant;

use super::password::PasswordSource;
use super::unlock::SlotSecret;
use super::{CliError, exit};
use crate::crypto::SlotKey;
use crate::keystore::transit_params::{TRANSIT_PARAMS_VERSION, check_path_part};
use crate::keystore::{SlotKind, SlotRecord, TransitParams};
use crate::transit::config::AppRoleArgs;
use crate::transit::{Client, Config, TransitError};

/// Default mount path of the Transit engine (`bao secrets enable transit`).
pub const DEFAULT_MOUNT: &str = "transit";

/// A client configured from the environment (and AppRole options, when given).
pub fn client(approle: &AppRoleArgs) -> Result<Client, CliError> {
    Ok(Client::new(Config::from_env(approle)?)?)
}

/// Refuses a mount path or key name that would not name a Transit key (exit 2).
pub fn check_names(mount: &str, key: &str) -> Result<(), CliError> {
    check_path_part("--transit-mount", mount, true)
        .and_then(|()| check_path_part("--transit", key, false))
        .map_err(|e| CliError::new(exit::USAGE, e))
}

/// A new slot key encrypted by `mount`/`key`: the key must exist (a token that may create
/// keys would otherwise make one on `encrypt`), and the token must be allowed to encrypt.
/// Returns the slot key and the parameters to store.
pub fn new_slot_key(
    mount: &str,
    key: &str,
    approle: &AppRoleArgs,
) -> Result<(SlotKey, TransitParams), CliError> {
    check_names(mount, key)?;
    let mut client = client(approle)?;
    if client.key_info(mount, key)?.is_none() {
        log::info!("Transit: the token may not read key {mount}/{key}; encrypting directly");
    }
    let slot_key = SlotKey::generate().map_err(|e| CliError::new(exit::OTHER, e.to_string()))?;
    let ciphertext = client
        .encrypt(mount, key, slot_key.expose())
        .map_err(|e| match e {
            TransitError::Denied(why) => TransitError::Denied(format!(
                "{why} (a Transit slot is made with `encrypt`: the token needs \
                 update on {mount}/encrypt/{key})"
            )),
            e => e,
        })?;
    let params = TransitParams {
        v: TRANSIT_PARAMS_VERSION,
        addr: client.addr().to_owned(),
        mount: mount.to_owned(),
        key: key.to_owned(),
        ciphertext,
    };
    check_storable(&params)?;
    Ok((slot_key, params))
}

/// What we store must be what we read back: Vault's answer (a ciphertext) is checked by the
/// same parser that reads the slot at unlock, before it is written.
pub fn check_storable(params: &TransitParams) -> Result<(), CliError> {
    TransitParams::decode(&params.encode())
        .map(drop)
        .map_err(|e| CliError::new(exit::OTHER, format!("Vault's answer: {e}")))
}

/// Asks Vault for the slot key of the first Transit slot among `slots` that it decrypts
/// (in slot order); the last failure when none does.
pub fn unlock(slots: &[&SlotRecord], approle: &AppRoleArgs) -> Result<SlotSecret, CliError> {
    let mut client = client(approle)?;
    let mut last = None;
    for slot in slots {
        let params = slot
            .transit()
            .map_err(crate::volume::VolumeError::from)?
            .expect("a Transit slot");
        let started = Instant::now();
        match client.decrypt(&params.mount, &params.key, &params.ciphertext) {
            Ok(bytes) => {
                log::info!(
                    "Transit: slot {} decrypted by {}/{} in {:.1} ms ({} request(s))",
                    slot.slot_id,
                    params.mount,
                    params.key,
                    started.elapsed().as_secs_f64() * 1e3,
                    client.calls()
                );
                return Ok(SlotSecret {
                    kind: SlotKind::Transit,
                    bytes,
                    slot: Some(slot.slot_id),
                });
            }
            Err(e) => last = Some(CliError::from(e)),
        }
    }
    Err(last.unwrap_or_else(|| CliError::new(exit::KEY_SLOT, "no Transit slot")))
}

/// The secret for an unlock when the volume has Transit slots (all of them, or `only`) and
/// no key file was given: Vault first; when it fails and the volume has a password slot, the
/// password from `read_password` (`--passfile`, `--extpass`, the terminal, or a piped stdin)
/// with a warning naming the failure. A piped stdin with nothing on it gives the Transit
/// failure, not a password error. `Ok(None)`: no Transit slot applies.
pub fn try_unlock(
    slots: &[SlotRecord],
    only: Option<u32>,
    password: &PasswordSource,
    approle: &AppRoleArgs,
    read_password: impl FnOnce() -> Result<SlotSecret, CliError>,
) -> Result<Option<SlotSecret>, CliError> {
    let chosen: Vec<&SlotRecord> = slots
        .iter()
        .filter(|s| s.kind == SlotKind::Transit && only.is_none_or(|id| id == s.slot_id))
        .collect();
    if chosen.is_empty() {
        return Ok(None);
    }
    let e = match unlock(&chosen, approle) {
        Ok(secret) => return Ok(Some(secret)),
        Err(e) => e,
    };
    let password_slot = slots
        .iter()
        .any(|s| s.kind == SlotKind::Password && only.is_none_or(|id| id == s.slot_id));
    if !password_slot {
        return Err(e);
    }
    let warn = || eprintln!("cofferfs: {}; trying a password slot instead", e.message);
    if password.passfile.is_some() || password.extpass.is_some() || std::io::stdin().is_terminal() {
        warn();
        return read_password().map(Some);
    }
    match read_password() {
        Ok(secret) => {
            warn();
            Ok(Some(secret))
        }
        Err(_) => Err(e),
    }
}

/// The version of the slot's key that encrypted it, and where it points, for `keys list`
/// and `info`: `transit key=K mount=M v=N addr=A`.
pub fn describe(p: &TransitParams) -> String {
    format!(
        "transit key={} mount={} v={} addr={}",
        p.key,
        p.mount,
        p.key_version().map_or("?".into(), |v| v.to_string()),
        p.addr
    )
}
