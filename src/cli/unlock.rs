//! How a command gets its secrets, shared by every verb that opens a volume: the current
//! secret (a password, or `--keyfile FILE` for a key-file slot), a new password, and Argon2id
//! parameters for a new password slot.

use std::path::{Path, PathBuf};

use super::password::{PasswordSource, Secret};
use super::{CliError, exit};
use crate::crypto::KdfParams;
use crate::crypto::kdf::KEYFILE_MIN_LEN;
use crate::keystore::SlotKind;
use crate::transit::config::AppRoleArgs;
use crate::volume::{self, Location, Volume};

/// Largest key file read (as cryptsetup's default `--keyfile-size` limit).
pub const KEYFILE_MAX_LEN: u64 = 8 * 1024 * 1024;

/// The secret that opens an existing slot.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct UnlockArgs {
    /// Where the password comes from.
    #[command(flatten)]
    pub password: PasswordSource,
    /// Unlock with a key file (a key-file slot) instead of a password.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["passfile", "extpass"])]
    pub keyfile: Option<PathBuf>,
    /// AppRole login for the volume's Transit slots (else VAULT_TOKEN / ~/.vault-token).
    #[command(flatten)]
    pub vault: AppRoleArgs,
    /// The PIN of a PKCS#11 slot's token.
    #[command(flatten)]
    pub pin: super::pkcs11::PinArgs,
}

/// A secret read for one slot kind; wiped on drop.
pub struct SlotSecret {
    /// Which kind of slot it can open.
    pub kind: SlotKind,
    /// The password, the key file's bytes, or the slot key Vault or a token decrypted.
    pub bytes: Secret,
    /// The one slot this secret is for (a Transit or PKCS#11 slot's key opens that slot only).
    pub slot: Option<u32>,
}

impl UnlockArgs {
    /// Reads the key file or the password (prompting with `prompt` at a terminal).
    pub fn read(&self, prompt: &str) -> Result<SlotSecret, CliError> {
        match &self.keyfile {
            Some(path) => Ok(SlotSecret {
                kind: SlotKind::Keyfile,
                bytes: read_keyfile(path)?,
                slot: None,
            }),
            None => Ok(SlotSecret {
                kind: SlotKind::Password,
                bytes: self.password.read(prompt, false)?,
                slot: None,
            }),
        }
    }

    /// The secret for the volume at `loc` (only slot `slot` if given): without `--keyfile`,
    /// a volume with a Transit slot is unlocked through Vault, no prompt; when that fails and
    /// a password slot exists, the password is read as [`read`](Self::read) does.
    pub fn read_for(
        &self,
        loc: &Location,
        slot: Option<u32>,
        prompt: &str,
    ) -> Result<SlotSecret, CliError> {
        self.read_for_keeping(loc, slot, None, prompt)
    }

    /// [`read_for`](Self::read_for), never through Transit or PKCS#11 slot `doomed` (`keys
    /// remove`: the secret must open a slot that stays). PKCS#11 slots are tried first, when
    /// `slot` names one or a PIN source is given.
    pub fn read_for_keeping(
        &self,
        loc: &Location,
        slot: Option<u32>,
        doomed: Option<u32>,
        prompt: &str,
    ) -> Result<SlotSecret, CliError> {
        if self.keyfile.is_none() {
            let store = volume::open_store_read_only_at(loc)?;
            let slots: Vec<_> = store
                .slots()
                .map_err(volume::VolumeError::from)?
                .into_iter()
                .filter(|s| {
                    Some(s.slot_id) != doomed
                        || !matches!(s.kind, SlotKind::Transit | SlotKind::Pkcs11)
                })
                .collect();
            let volume_id = store.params().map_err(volume::VolumeError::from)?.volume_id;
            drop(store);
            if let Some(secret) = super::pkcs11::try_unlock(
                &slots,
                slot,
                &self.pin,
                &self.password,
                &volume_id,
                || self.read(prompt),
            )? {
                return Ok(secret);
            }
            let read_password = || self.read(prompt);
            if let Some(secret) = super::transit::try_unlock(
                &slots,
                slot,
                &self.password,
                &self.vault,
                read_password,
            )? {
                return Ok(secret);
            }
        }
        self.read(prompt)
    }
}

impl SlotSecret {
    /// Opens (and locks) the volume with this secret.
    pub fn open(&self, loc: &Location, slot: Option<u32>) -> volume::Result<Volume> {
        Volume::open_at(loc, self.kind, &self.bytes, self.slot.or(slot))
    }

    /// Opens the volume with this secret for reading only (`mount --ro`, `fsck`).
    pub fn open_read_only(&self, loc: &Location, slot: Option<u32>) -> volume::Result<Volume> {
        Volume::open_read_only_at(loc, self.kind, &self.bytes, self.slot.or(slot))
    }
}

/// Reads a whole key file; it must hold at least 32 bytes. Read into one wiped buffer sized
/// up front (the file's size, or the 8 MiB limit for a pipe), never a growing `Vec` that
/// leaves copies of the key behind; a key file others may read is used with a warning.
pub fn read_keyfile(path: &Path) -> Result<Secret, CliError> {
    let fail = |why: String| {
        CliError::new(
            exit::PASSWORD_INPUT,
            format!("key file {}: {why}", path.display()),
        )
    };
    let mut f = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    super::harden::warn_if_exposed(path, "key file");
    let bytes =
        crate::sys::read_secret(&mut f, KEYFILE_MAX_LEN).map_err(|e| fail(e.to_string()))?;
    if bytes.len() < KEYFILE_MIN_LEN {
        return Err(fail(format!(
            "{} bytes; a key file needs at least {KEYFILE_MIN_LEN} (make one with `cofferfs keys new-keyfile`)",
            bytes.len()
        )));
    }
    if bytes.len() as u64 > KEYFILE_MAX_LEN {
        return Err(fail("larger than 8 MiB".into()));
    }
    Ok(bytes)
}

/// Opens the volume for a management command: refuses a mounted volume, or a store of
/// another volume, before asking for anything, then reads the secret and unlocks.
pub fn open_for_management(
    loc: &Location,
    unlock: &UnlockArgs,
    slot: Option<u32>,
) -> Result<(Volume, SlotSecret), CliError> {
    open_for_management_keeping(loc, unlock, slot, None)
}

/// [`open_for_management`] for a command that only reads (`fsck` without `--repair`): the
/// store is opened read-only, so no byte of the volume changes and read-only media work.
pub fn open_read_only_for_management(
    loc: &Location,
    unlock: &UnlockArgs,
    slot: Option<u32>,
) -> Result<(Volume, SlotSecret), CliError> {
    open_checked(loc, unlock, slot, None, Access::ReadOnly)
}

/// [`open_for_management`] that never unlocks through Transit slot `doomed`.
pub fn open_for_management_keeping(
    loc: &Location,
    unlock: &UnlockArgs,
    slot: Option<u32>,
    doomed: Option<u32>,
) -> Result<(Volume, SlotSecret), CliError> {
    open_checked(loc, unlock, slot, doomed, Access::ReadWrite)
}

/// Whether a management command writes to the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    ReadWrite,
    ReadOnly,
}

/// The one way a management command opens the volume: the prechecks, then the secret (for
/// any slot but Transit slot `doomed`), then the unlock.
fn open_checked(
    loc: &Location,
    unlock: &UnlockArgs,
    slot: Option<u32>,
    doomed: Option<u32>,
    access: Access,
) -> Result<(Volume, SlotSecret), CliError> {
    volume::precheck(loc)?;
    let secret = unlock.read_for_keeping(loc, slot, doomed, "Password: ")?;
    let vol = match access {
        Access::ReadWrite => secret.open(loc, slot)?,
        Access::ReadOnly => secret.open_read_only(loc, slot)?,
    };
    Ok((vol, secret))
}

/// Where a new password comes from (`keys add`, `passwd`). A piped stdin gives its next line,
/// after the current password's line.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NewPasswordArgs {
    /// Read the new password from the first line of FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "new_extpass")]
    pub new_passfile: Option<PathBuf>,
    /// Run CMD (with /bin/sh -c) and use the first line of its output as the new password.
    #[arg(long, value_name = "CMD")]
    pub new_extpass: Option<String>,
}

impl NewPasswordArgs {
    /// Reads the new password (asked twice at a terminal).
    pub fn read(&self) -> Result<Secret, CliError> {
        let src = PasswordSource {
            passfile: self.new_passfile.clone(),
            extpass: self.new_extpass.clone(),
        };
        Ok(src.read("New password: ", true)?)
    }
}

/// Argon2id parameters for a new password slot; unset ones keep `base`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KdfArgs {
    /// Argon2id memory in KiB for the new password [default: 65536, or the slot's own].
    #[arg(long, value_name = "KIB")]
    pub argon2_memory: Option<u32>,
    /// Argon2id passes [default: 3, or the slot's own].
    #[arg(long, value_name = "N")]
    pub argon2_time: Option<u32>,
    /// Argon2id lanes [default: 4, or the slot's own].
    #[arg(long, value_name = "N")]
    pub argon2_lanes: Option<u32>,
}

impl KdfArgs {
    /// The parameters to use, bounded; warns when they are weak.
    pub fn resolve(&self, base: KdfParams) -> Result<KdfParams, CliError> {
        let kdf = KdfParams {
            m_kib: self.argon2_memory.unwrap_or(base.m_kib),
            t: self.argon2_time.unwrap_or(base.t),
            p: self.argon2_lanes.unwrap_or(base.p),
        };
        kdf.check(true)
            .map_err(|e| CliError::new(exit::USAGE, e.to_string()))?;
        warn_if_weak(&kdf);
        Ok(kdf)
    }
}

/// Warns (it is allowed: tests and throw-away volumes) when `kdf` is below the memory a
/// password slot should have.
pub fn warn_if_weak(kdf: &KdfParams) {
    if kdf.check(false).is_err() {
        eprintln!("cofferfs: warning: Argon2id memory below 8 MiB makes password guessing cheap");
    }
}
