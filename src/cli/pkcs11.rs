//! PKCS#11 key slots on the command line: the PIN (`--pin-file`, `--pin-extpass`, or a
//! prompt at a terminal; read once per command, kept in a wiped buffer, never logged),
//! unlocking through a token (one decrypt on the token), and making a slot (a fresh random
//! slot key encrypted by the token's AES key, which `keys add`/`init` make when the token has
//! none of that label).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::password::{PasswordSource, Secret};
use super::unlock::SlotSecret;
use super::{CliError, exit};
use crate::crypto::SlotKey;
use crate::keystore::slots::pkcs11::{
    MECHANISM, PKCS11_PARAMS_VERSION, aad, check_label, check_module_path,
};
use crate::keystore::{Pkcs11Params, SlotKind, SlotRecord};
use crate::pkcs11::{Pkcs11Error, Token};

/// Default label of the AES key on the token.
pub const DEFAULT_KEY_LABEL: &str = "cofferfs";

/// Where a new PKCS#11 slot's key lives (`keys add`, `init`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Pkcs11Args {
    /// The new slot is opened by a PKCS#11 token through this module (an absolute path, e.g.
    /// /usr/lib/softhsm/libsofthsm2.so); needs --pkcs11-token.
    #[arg(long, value_name = "SO", requires = "pkcs11_token")]
    pub pkcs11_module: Option<PathBuf>,
    /// Label of the token (as `softhsm2-util --show-slots` or `pkcs11-tool -L` show it).
    #[arg(long, value_name = "LABEL", requires = "pkcs11_module")]
    pub pkcs11_token: Option<String>,
    /// Label of the AES-256 key on the token; made there (sensitive, never extractable) when
    /// the token has none.
    #[arg(long, value_name = "LABEL", default_value = DEFAULT_KEY_LABEL, requires = "pkcs11_module")]
    pub pkcs11_key: String,
}

/// A PIN read once per command and kept (wiped on drop) for every token operation of it.
#[derive(Clone, Default)]
pub struct PinCache(Arc<OnceLock<Secret>>);

impl std::fmt::Debug for PinCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinCache(..)")
    }
}

/// Where a token's PIN comes from. Without either option, a terminal is asked; without a
/// terminal there is no PIN.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PinArgs {
    /// Read the PKCS#11 token's PIN from the first line of FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "pin_extpass")]
    pub pin_file: Option<PathBuf>,
    /// Run CMD (with /bin/sh -c) and use the first line of its output as the token's PIN.
    #[arg(long, value_name = "CMD")]
    pub pin_extpass: Option<String>,
    #[arg(skip)]
    cache: PinCache,
}

impl PinArgs {
    /// A PIN from `file` or `extpass` (`keys add --unlock-pin-file`: the PIN of an existing
    /// slot's token, when `--pin-file` is the new token's).
    pub fn from_sources(file: Option<PathBuf>, extpass: Option<String>) -> Self {
        PinArgs {
            pin_file: file,
            pin_extpass: extpass,
            cache: PinCache::default(),
        }
    }

    /// A PIN source was named on the command line.
    pub fn given(&self) -> bool {
        self.pin_file.is_some() || self.pin_extpass.is_some()
    }

    /// The PIN for `token`: the one read before in this command, else from the file, the
    /// command or the terminal.
    pub fn read(&self, token: &str) -> Result<Secret, CliError> {
        if let Some(pin) = self.cache.0.get() {
            return Ok(pin.clone());
        }
        if !self.given() && !std::io::stdin().is_terminal() {
            return Err(CliError::new(
                exit::PASSWORD_INPUT,
                format!(
                    "PKCS#11 token {token:?} needs its PIN: --pin-file FILE, --pin-extpass CMD, \
                     or a terminal"
                ),
            ));
        }
        let src = PasswordSource {
            passfile: self.pin_file.clone(),
            extpass: self.pin_extpass.clone(),
        };
        let pin = src
            .read(&format!("PIN for token {token:?}: "), false)
            .map_err(|e| {
                CliError::new(
                    exit::PASSWORD_INPUT,
                    e.to_string().replace("password", "PIN"),
                )
            })?;
        let _ = self.cache.0.set(pin.clone());
        Ok(pin)
    }
}

/// Refuses a module path or a label that could not name a token or a key (exit 2), before
/// anything is loaded or asked.
pub fn check_args(module: &std::path::Path, token: &str, key: &str) -> Result<(), CliError> {
    let module = module
        .to_str()
        .ok_or_else(|| CliError::new(exit::USAGE, "--pkcs11-module: not UTF-8"))?;
    check_module_path(module)
        .and_then(|()| check_label("--pkcs11-token", token, 32))
        .and_then(|()| check_label("--pkcs11-key", key, 256))
        .map_err(|e| CliError::new(exit::USAGE, e))
}

/// A new slot key encrypted by the token's key `args.pkcs11_key` (made when missing), bound
/// to `volume_id`. Returns the slot key and the parameters to store; nothing is written to
/// the volume.
pub fn new_slot_key(
    args: &Pkcs11Args,
    pin: &PinArgs,
    volume_id: &[u8; 16],
) -> Result<(SlotKey, Pkcs11Params), CliError> {
    let (Some(module), Some(label)) = (&args.pkcs11_module, &args.pkcs11_token) else {
        return Err(CliError::new(
            exit::USAGE,
            "--pkcs11-module and --pkcs11-token go together",
        ));
    };
    check_args(module, label, &args.pkcs11_key)?;
    let module = module.to_str().expect("checked UTF-8");
    seal_new_slot_key(module, label, None, &args.pkcs11_key, pin, volume_id)
}

/// A fresh slot key for PKCS#11 slot `slot` through its own token (label and serial) and
/// key, which must exist (`rotate`: a slot key learnt before the rotation must open nothing
/// after it).
pub fn renew_slot_key(
    slot: &SlotRecord,
    pin: &PinArgs,
    volume_id: &[u8; 16],
) -> Result<(SlotKey, Pkcs11Params), CliError> {
    let old = slot
        .pkcs11()
        .map_err(crate::volume::VolumeError::from)?
        .expect("a PKCS#11 slot");
    seal_new_slot_key(
        &old.module,
        &old.token,
        Some(&old.serial),
        &old.key,
        pin,
        volume_id,
    )
}

/// Draws a slot key and has the token's key `key` seal it. Without `serial` (a new slot)
/// the key is made when the token has none; with it (an existing slot) it must be there.
/// The blob is opened again before it is returned, so a key that may encrypt but not
/// decrypt is refused here, not at the next mount.
fn seal_new_slot_key(
    module: &str,
    label: &str,
    serial: Option<&str>,
    key: &str,
    pin: &PinArgs,
    volume_id: &[u8; 16],
) -> Result<(SlotKey, Pkcs11Params), CliError> {
    let token = Token::open(std::path::Path::new(module), label, serial)?;
    let session = token.login(pin.read(label)?, true)?;
    let handle = match serial {
        Some(_) => *session.find_key(key)?.first().expect("found"),
        None => {
            let (handle, made) = session.find_or_create_key(key)?;
            if made {
                eprintln!(
                    "cofferfs: made AES-256 key {key:?} on token {label:?} (sensitive, never \
                     extractable)"
                );
            }
            handle
        }
    };
    let slot_key = SlotKey::generate().map_err(|e| CliError::new(exit::OTHER, e.to_string()))?;
    let aad = aad(volume_id);
    let blob = session.seal(handle, slot_key.expose(), &aad)?;
    let back = session.open(&[handle], &blob, &aad, key)?;
    if back[..] != slot_key.expose()[..] {
        return Err(Pkcs11Error::Other("the token decrypts to other bytes".into()).into());
    }
    let params = Pkcs11Params {
        v: PKCS11_PARAMS_VERSION,
        module: module.to_owned(),
        token: label.to_owned(),
        serial: token.serial().to_owned(),
        key: key.to_owned(),
        mechanism: MECHANISM.to_owned(),
        blob: Pkcs11Params::encode_blob(&blob),
    };
    Pkcs11Params::decode(&params.encode())
        .map_err(|e| CliError::new(exit::OTHER, format!("the token's answer: {e}")))?;
    Ok((slot_key, params))
}

/// The slot key of the first of `slots` whose token decrypts it. A slot whose token or
/// module is not there is passed over (another slot may be on another token); a refused PIN
/// stops at once, so that no other token spends a try on a PIN meant for one.
pub fn unlock(
    slots: &[&SlotRecord],
    pin: &PinArgs,
    volume_id: &[u8; 16],
) -> Result<SlotSecret, CliError> {
    let mut last = None;
    for slot in slots {
        let p = slot
            .pkcs11()
            .map_err(crate::volume::VolumeError::from)?
            .expect("a PKCS#11 slot");
        let blob = p.blob_bytes().expect("checked at decode");
        let started = Instant::now();
        let token = match Token::open(std::path::Path::new(&p.module), &p.token, Some(&p.serial)) {
            Ok(t) => t,
            Err(e @ (Pkcs11Error::TokenAbsent { .. } | Pkcs11Error::Module { .. })) => {
                last = Some(e);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let session = token.login(pin.read(&p.token)?, false).map_err(|e| {
            let mut e = CliError::from(e);
            if slots.len() > 1 {
                e.message.push_str(&format!(
                    " (slot {}; `--slot N` picks another)",
                    slot.slot_id
                ));
            }
            e
        })?;
        let opened = session
            .find_key(&p.key)
            .and_then(|keys| session.open(&keys, &blob, &aad(volume_id), &p.key));
        match opened {
            Ok(bytes) => {
                log::info!(
                    "PKCS#11: slot {} decrypted by key {:?} on token {:?} in {:.1} ms",
                    slot.slot_id,
                    p.key,
                    p.token,
                    started.elapsed().as_secs_f64() * 1e3
                );
                return Ok(SlotSecret {
                    kind: SlotKind::Pkcs11,
                    bytes,
                    slot: Some(slot.slot_id),
                });
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.map_or_else(
        || CliError::new(exit::KEY_SLOT, "no PKCS#11 slot"),
        CliError::from,
    ))
}

/// The secret for an unlock through the volume's PKCS#11 slots (all of them, or `only`):
/// tried when `--slot` names one, when a PIN source is given, or when no password or
/// Transit slot could open the volume instead (the PIN is then asked at a terminal). When the tokens fail and a
/// password slot exists and a password source is given, the password from `read_password`,
/// with a warning naming the failure. `Ok(None)`: no PKCS#11 slot applies.
pub fn try_unlock(
    slots: &[SlotRecord],
    only: Option<u32>,
    pin: &PinArgs,
    password: &PasswordSource,
    volume_id: &[u8; 16],
    read_password: impl FnOnce() -> Result<SlotSecret, CliError>,
) -> Result<Option<SlotSecret>, CliError> {
    let chosen: Vec<&SlotRecord> = slots
        .iter()
        .filter(|s| s.kind == SlotKind::Pkcs11 && only.is_none_or(|id| id == s.slot_id))
        .collect();
    let other_way_in = slots
        .iter()
        .any(|s| matches!(s.kind, SlotKind::Password | SlotKind::Transit));
    if chosen.is_empty() || (only.is_none() && !pin.given() && other_way_in) {
        return Ok(None);
    }
    let e = match unlock(&chosen, pin, volume_id) {
        Ok(secret) => return Ok(Some(secret)),
        Err(e) => e,
    };
    let password_slot = slots
        .iter()
        .any(|s| s.kind == SlotKind::Password && only.is_none_or(|id| id == s.slot_id));
    if password_slot && (password.passfile.is_some() || password.extpass.is_some()) {
        eprintln!("cofferfs: {}; trying a password slot instead", e.message);
        return read_password().map(Some);
    }
    Err(e)
}

/// Where a PKCS#11 slot points, for `keys list` and `info` (no secret):
/// `pkcs11 token=T serial=S key=K module=M`.
pub fn describe(p: &Pkcs11Params) -> String {
    format!(
        "pkcs11 token={} serial={} key={} module={}",
        p.token, p.serial, p.key, p.module
    )
}
