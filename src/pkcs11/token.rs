//! One token of one PKCS#11 module: found by label (and serial), logged in with a PIN, and the
//! AES-GCM seal/open of a short secret under a key that stays on the token.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::RawAuthPin;
use zeroize::Zeroizing;

use super::{Pkcs11Error, Result};

/// Bytes of the random GCM nonce at the front of a blob (the size GCM is defined for).
pub const IV_LEN: usize = 12;
/// Bytes of the GCM tag at the end of a blob.
pub const TAG_LEN: usize = 16;
/// Bytes of the AES key made on the token (AES-256).
pub const KEY_LEN: usize = 32;

/// A module loaded and initialised, and the slot of the token asked for.
pub struct Token {
    /// The module; `None` once finalised, and also when another part of this process had
    /// initialised it first (that part finalises it).
    ctx: Option<Pkcs11>,
    /// The module is used through another part's initialisation: never finalised here.
    borrowed: Option<Pkcs11>,
    slot: Slot,
    module: PathBuf,
    label: String,
    serial: String,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Token({:?} serial {} in {})",
            self.label,
            self.serial,
            self.module.display()
        )
    }
}

/// Refuses a module path that is not absolute, not a regular file, or writable by anyone but
/// its owner (root or the user running cofferfs): loading it runs its code in this process,
/// and the path may come from a header store that others could have changed.
pub fn check_module(module: &Path) -> Result<PathBuf> {
    let fail = |why: String| Pkcs11Error::Module {
        module: module.display().to_string(),
        why,
    };
    if !module.is_absolute() {
        return Err(fail("the path must be absolute".into()));
    }
    let real = module.canonicalize().map_err(|e| fail(e.to_string()))?;
    let meta = std::fs::metadata(&real).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    let me = rustix::process::geteuid().as_raw();
    if meta.mode() & 0o022 != 0 || (meta.uid() != 0 && meta.uid() != me) {
        return Err(fail(format!(
            "{} may be changed by another user (mode {:o}, owner {}): refused",
            real.display(),
            meta.mode() & 0o7777,
            meta.uid()
        )));
    }
    Ok(real)
}

/// The slot whose token is labelled `label` (and has serial `serial`), with the token's serial.
fn find_slot(
    ctx: &Pkcs11,
    label: &str,
    serial: Option<&str>,
) -> std::result::Result<Option<(Slot, String)>, CkError> {
    for slot in ctx.get_slots_with_token()? {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        if info.label().trim_end() == label
            && serial.is_none_or(|s| info.serial_number().trim_end() == s)
        {
            return Ok(Some((slot, info.serial_number().trim_end().to_owned())));
        }
    }
    Ok(None)
}

/// The rendering of a module's error code, for messages.
fn rv(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, f) => format!("{f}: {rv:?}"),
        e => e.to_string(),
    }
}

impl Token {
    /// Loads `module` and finds the token labelled `label` (and, if given, with serial
    /// `serial`) among its slots.
    pub fn open(module: &Path, label: &str, serial: Option<&str>) -> Result<Token> {
        let real = check_module(module)?;
        let module_err = |why: String| Pkcs11Error::Module {
            module: module.display().to_string(),
            why,
        };
        let ctx = Pkcs11::new(&real).map_err(|e| module_err(rv(&e)))?;
        let ours = match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) => true,
            Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => false,
            Err(e) => return Err(module_err(rv(&e))),
        };
        let finalize = |ctx: Pkcs11| {
            if ours {
                let _ = ctx.finalize();
            }
        };
        let found = find_slot(&ctx, label, serial).map_err(|e| other(&e));
        match found {
            Ok(Some((slot, serial))) => Ok(Token {
                borrowed: (!ours).then(|| ctx.clone()),
                ctx: ours.then_some(ctx),
                slot,
                module: module.to_owned(),
                label: label.to_owned(),
                serial,
            }),
            Ok(None) => {
                finalize(ctx);
                Err(Pkcs11Error::TokenAbsent {
                    module: module.display().to_string(),
                    label: label.to_owned(),
                    serial: serial.map(str::to_owned),
                })
            }
            Err(e) => {
                finalize(ctx);
                Err(e)
            }
        }
    }

    fn ctx(&self) -> &Pkcs11 {
        self.ctx
            .as_ref()
            .or(self.borrowed.as_ref())
            .expect("initialised until drop")
    }

    /// The token's label.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The token's serial number (as the module reports it, trailing blanks removed).
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// Logs in as the user with `pin` (taken, and wiped when the login is done), in a
    /// read-write session when `rw` (a key may then be created). A token whose user PIN is
    /// already locked is not asked at all.
    pub fn login(&self, pin: Zeroizing<Vec<u8>>, rw: bool) -> Result<LoggedIn<'_>> {
        let mut pin = pin;
        let pin = RawAuthPin::new(Box::new(std::mem::take(&mut *pin)));
        let locked = || Pkcs11Error::PinLocked(self.label.clone());
        let info = self
            .ctx()
            .get_token_info(self.slot)
            .map_err(|e| other(&e))?;
        if info.user_pin_locked() {
            return Err(locked());
        }
        let session = if rw {
            self.ctx().open_rw_session(self.slot)
        } else {
            self.ctx().open_ro_session(self.slot)
        }
        .map_err(|e| self.classify(e))?;
        match session.login_with_raw(UserType::User, &pin) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => return Err(locked()),
            Err(
                e @ CkError::Pkcs11(
                    RvError::PinIncorrect | RvError::PinInvalid | RvError::PinLenRange,
                    _,
                ),
            ) => {
                // Some tokens lock on this very try and still answer "incorrect".
                let now_locked = self
                    .ctx()
                    .get_token_info(self.slot)
                    .is_ok_and(|i| i.user_pin_locked());
                log::debug!("PKCS#11 login: {}", rv(&e));
                return Err(if now_locked {
                    locked()
                } else {
                    Pkcs11Error::WrongPin(self.label.clone())
                });
            }
            Err(e) => return Err(self.classify(e)),
        }
        Ok(LoggedIn {
            token: self,
            session,
        })
    }

    fn classify(&self, e: CkError) -> Pkcs11Error {
        match e {
            CkError::Pkcs11(
                RvError::TokenNotPresent | RvError::DeviceRemoved | RvError::SlotIdInvalid,
                _,
            ) => Pkcs11Error::TokenAbsent {
                module: self.module.display().to_string(),
                label: self.label.clone(),
                serial: Some(self.serial.clone()),
            },
            CkError::Pkcs11(RvError::PinLocked, _) => Pkcs11Error::PinLocked(self.label.clone()),
            CkError::Pkcs11(
                rv @ (RvError::MechanismInvalid
                | RvError::MechanismParamInvalid
                | RvError::KeyTypeInconsistent
                | RvError::TemplateIncomplete
                | RvError::TemplateInconsistent),
                f,
            ) => Pkcs11Error::Other(format!(
                "token {:?} cannot make or use an AES-256 key with CKM_AES_GCM ({f}: {rv:?}); \
                 `pkcs11-tool --module SO -M` must list AES-KEY-GEN and AES-GCM",
                self.label
            )),
            e => other(&e),
        }
    }
}

impl Drop for Token {
    fn drop(&mut self) {
        // Sessions are closed by then (a LoggedIn borrows its Token); the module lets go of
        // the token, and a later Token of the same module initialises it afresh.
        if let Some(ctx) = self.ctx.take() {
            let _ = ctx.finalize();
        }
    }
}

fn other(e: &CkError) -> Pkcs11Error {
    Pkcs11Error::Other(rv(e))
}

/// A user session on a token.
pub struct LoggedIn<'t> {
    token: &'t Token,
    session: Session,
}

impl LoggedIn<'_> {
    /// The AES secret keys labelled `key`, in the token's order.
    fn keys(&self, key: &str) -> Result<Vec<ObjectHandle>> {
        self.session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Label(key.as_bytes().to_vec()),
            ])
            .map_err(|e| self.token.classify(e))
    }

    /// The key labelled `key`; [`Pkcs11Error::KeyMissing`] when there is none.
    pub fn find_key(&self, key: &str) -> Result<Vec<ObjectHandle>> {
        let found = self.keys(key)?;
        if found.is_empty() {
            return Err(Pkcs11Error::KeyMissing {
                token: self.token.label.clone(),
                key: key.to_owned(),
            });
        }
        Ok(found)
    }

    /// The one key labelled `key`, made when there is none: AES-256, generated on the token,
    /// kept on it (`CKA_TOKEN`), private, sensitive and never extractable, usable only to
    /// encrypt and decrypt. An existing key is used only if it is one key, sensitive and not
    /// extractable. Returns the key and whether it was made now.
    pub fn find_or_create_key(&self, key: &str) -> Result<(ObjectHandle, bool)> {
        let found = self.keys(key)?;
        match found.as_slice() {
            [] => {}
            [one] => {
                self.check_unexportable(*one, key)?;
                return Ok((*one, false));
            }
            more => {
                return Err(Pkcs11Error::Other(format!(
                    "token {:?} has {} AES keys labelled {key:?}: give another --pkcs11-key",
                    self.token.label,
                    more.len()
                )));
            }
        }
        let handle = self
            .session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Extractable(false),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::Wrap(false),
                    Attribute::Unwrap(false),
                    Attribute::Derive(false),
                    Attribute::ValueLen((KEY_LEN as u64).into()),
                    Attribute::Label(key.as_bytes().to_vec()),
                ],
            )
            .map_err(|e| self.token.classify(e))?;
        Ok((handle, true))
    }

    /// Refuses a key that could leave the token (extractable, or not sensitive): it would not
    /// be the key-that-never-leaves this slot kind promises.
    fn check_unexportable(&self, handle: ObjectHandle, key: &str) -> Result<()> {
        let attrs = self
            .session
            .get_attributes(
                handle,
                &[AttributeType::Sensitive, AttributeType::Extractable],
            )
            .map_err(|e| self.token.classify(e))?;
        let mut safe = (false, false);
        for a in attrs {
            match a {
                Attribute::Sensitive(s) => safe.0 = s,
                Attribute::Extractable(x) => safe.1 = !x,
                _ => {}
            }
        }
        if safe != (true, true) {
            return Err(Pkcs11Error::Other(format!(
                "key {key:?} on token {:?} is extractable or not sensitive: it could leave the \
                 token. Give a --pkcs11-key label that does not exist yet (cofferfs makes it)",
                self.token.label
            )));
        }
        Ok(())
    }

    /// Encrypts `secret` under `key` with AES-GCM, a fresh random nonce and `aad`; the blob
    /// is nonce ‖ ciphertext ‖ tag.
    pub fn seal(&self, key: ObjectHandle, secret: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let mut iv = [0u8; IV_LEN];
        crate::crypto::os_random(&mut iv).map_err(|e| Pkcs11Error::Other(e.to_string()))?;
        let mut iv_param = iv;
        let params = GcmParams::new(&mut iv_param, aad, ((TAG_LEN * 8) as u64).into())
            .map_err(|e| Pkcs11Error::Other(e.to_string()))?;
        let ct = self
            .session
            .encrypt(&Mechanism::AesGcm(params), key, secret)
            .map_err(|e| self.token.classify(e))?;
        let mut blob = iv.to_vec();
        blob.extend_from_slice(&ct);
        Ok(blob)
    }

    /// Decrypts a blob made by [`seal`](Self::seal) with any of `keys` (the first that
    /// authenticates it); the secret lands in a wiped buffer.
    pub fn open(
        &self,
        keys: &[ObjectHandle],
        blob: &[u8],
        aad: &[u8],
        key_label: &str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let undecryptable = || Pkcs11Error::Undecryptable {
            token: self.token.label.clone(),
            key: key_label.to_owned(),
        };
        if blob.len() < IV_LEN + TAG_LEN {
            return Err(undecryptable());
        }
        let (iv, ct) = blob.split_at(IV_LEN);
        for &key in keys {
            let mut iv = <[u8; IV_LEN]>::try_from(iv).expect("split at IV_LEN");
            let params = GcmParams::new(&mut iv, aad, ((TAG_LEN * 8) as u64).into())
                .map_err(|e| Pkcs11Error::Other(e.to_string()))?;
            match self.session.decrypt(&Mechanism::AesGcm(params), key, ct) {
                // decrypt sizes its buffer once and truncates: no copy is left behind.
                Ok(plain) => return Ok(Zeroizing::new(plain)),
                // SoftHSM2 reports a GCM tag that does not verify as CKR_GENERAL_ERROR.
                Err(CkError::Pkcs11(
                    RvError::GeneralError
                    | RvError::EncryptedDataInvalid
                    | RvError::EncryptedDataLenRange
                    | RvError::DataInvalid
                    | RvError::DataLenRange,
                    _,
                )) => continue,
                Err(e) => return Err(self.token.classify(e)),
            }
        }
        Err(undecryptable())
    }
}
