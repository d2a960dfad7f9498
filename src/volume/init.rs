//! `init`: every check it makes (in one place, creating nothing, so the command line can
//! refuse a mistake before it asks for a secret), then the new volume: the cipherdir, the
//! root's directory id, the marker and, last, the header store with its first slot.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use super::{Location, Result, VolumeError, names};
use crate::crypto::{KdfParams, Kek, NameKey};
use crate::format::{FORMAT_VERSION, Layout};
use crate::keystore::store::{new_volume_id, now_secs};
use crate::keystore::{HeaderStore, SlotRecord, VolumeParams};

/// Choices made once, at `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Plaintext bytes per chunk.
    pub chunk_len: u32,
    /// Keep names in clear (debugging only).
    pub plaintext_names: bool,
    /// Argon2id parameters of the first password slot.
    pub kdf: KdfParams,
    /// Label of the first slot.
    pub label: String,
    /// Where to create the header store instead of `cofferfs.db` in the cipherdir (a new
    /// file outside the cipherdir), for volumes whose keys live apart from their blobs.
    pub header_store: Option<PathBuf>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunk_len: crate::format::layout::DEFAULT_CHUNK_LEN,
            plaintext_names: false,
            kdf: KdfParams::default(),
            label: "password".into(),
            header_store: None,
        }
    }
}

/// What `init`'s checks found: everything it needs to go on.
struct InitPlan {
    layout: Layout,
    /// The cipherdir exists (and is empty).
    exists: bool,
    loc: Location,
}

/// Every check `init` makes, in one place, creating nothing.
fn plan_init(cipherdir: &Path, opts: &InitOptions) -> Result<InitPlan> {
    let layout = Layout::new(u64::from(opts.chunk_len))?;
    opts.kdf.check(true)?;
    let exists = match std::fs::read_dir(cipherdir) {
        Ok(mut entries) => match entries.next() {
            Some(_) => return Err(VolumeError::NotEmpty(cipherdir.to_owned())),
            None => true,
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e.into()),
    };
    let loc = Location::for_init(cipherdir, opts.header_store.as_deref())?;
    Ok(InitPlan {
        layout,
        exists,
        loc,
    })
}

/// Runs every check [`init`] makes (chunk size, Argon2id bounds, an empty or new cipherdir,
/// a usable `--header-store` path) without creating anything, so that the command line can
/// refuse a mistake before it asks for a password, as gocryptfs does. `init` checks again.
pub fn check_init(cipherdir: &Path, opts: &InitOptions) -> Result<()> {
    plan_init(cipherdir, opts).map(drop)
}

/// Creates a new volume in `cipherdir` (created if missing; must be empty otherwise) with one
/// password slot, its marker, and its header store (in the cipherdir or at
/// `opts.header_store`). Every check runs before anything is created. Returns where the
/// volume's parts are.
pub fn init(cipherdir: &Path, password: &[u8], opts: &InitOptions) -> Result<Location> {
    init_with(cipherdir, FirstSlot::Password(password), opts)
}

/// What opens the first slot of a new volume.
pub enum FirstSlot<'a> {
    /// A password (Argon2id with `InitOptions::kdf`).
    Password(&'a [u8]),
    /// A slot key that Vault/OpenBao Transit encrypted into `params` (`init --transit`): the
    /// volume then has no password at all.
    Transit {
        /// The random slot key.
        slot_key: &'a [u8],
        /// Where it is encrypted, and its ciphertext.
        params: &'a crate::keystore::TransitParams,
    },
    /// A slot key that a PKCS#11 token's key sealed into `params` (`init --pkcs11-module`),
    /// bound to `volume_id`, which the new volume then takes: the volume has no password.
    Pkcs11 {
        /// The id the blob is bound to; the new volume's id.
        volume_id: [u8; 16],
        /// The random slot key.
        slot_key: &'a [u8],
        /// The token, its key, and the blob.
        params: &'a crate::keystore::Pkcs11Params,
    },
}

/// [`init`] with any kind of first slot.
pub fn init_with(cipherdir: &Path, first: FirstSlot<'_>, opts: &InitOptions) -> Result<Location> {
    let InitPlan {
        layout,
        exists,
        mut loc,
    } = plan_init(cipherdir, opts)?;
    let volume_id = match &first {
        FirstSlot::Pkcs11 { volume_id, .. } => *volume_id,
        FirstSlot::Password(_) | FirstSlot::Transit { .. } => new_volume_id()?,
    };
    let kek = Kek::generate()?;
    let name_key = NameKey::generate()?;
    let mut params = VolumeParams {
        format_version: FORMAT_VERSION,
        volume_id,
        chunk_len: layout.chunk_len() as u32,
        plaintext_names: opts.plaintext_names,
        kek_generation: 1,
        wrapped_name_key: Vec::new(),
        created: now_secs(),
    };
    // Bound to every parameter above: a store whose parameters change no longer opens.
    params.wrapped_name_key = params.wrap_name_key(&kek, &name_key)?;
    let slot = match first {
        FirstSlot::Password(password) => {
            SlotRecord::new_password(0, &opts.label, password, opts.kdf, &kek, &volume_id)?
        }
        FirstSlot::Transit { slot_key, params } => {
            SlotRecord::new_transit(0, &opts.label, slot_key, params, &kek, &volume_id)?
        }
        FirstSlot::Pkcs11 {
            slot_key, params, ..
        } => SlotRecord::new_pkcs11(0, &opts.label, slot_key, params, &kek, &volume_id)?,
    };
    if !exists {
        // Private whatever the umask (as `ssh-keygen` makes ~/.ssh): file names, sizes and
        // the header store are nobody else's business. An existing directory keeps its mode.
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(cipherdir)?;
        std::fs::set_permissions(
            cipherdir,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )?;
    }
    let root = File::open(cipherdir)?;
    if !opts.plaintext_names {
        names::create_dir_id(root.as_fd())?;
    }
    loc.write_marker(volume_id)?;
    // Last: a complete store marks a complete init.
    let store = HeaderStore::create(loc.store(), &params, &slot)?;
    drop(store);
    root.sync_all()?;
    loc.sync_store_dir()?;
    Ok(loc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::CryptoError;

    /// A cryptographic failure of the volume's own (here Argon2id bounds checked by `init`,
    /// as a getrandom failure in `mkdir` would be) is a crypto error, not a header store's:
    /// the mount logged such errors as "header store: …".
    #[test]
    fn crypto_failures_are_not_filed_under_the_header_store() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("v");
        let opts = InitOptions {
            kdf: KdfParams {
                m_kib: u32::MAX,
                ..KdfParams::insecure_for_tests()
            },
            ..InitOptions::default()
        };
        let err = init(&dir, b"pw", &opts).unwrap_err();
        assert!(
            matches!(
                err,
                VolumeError::Crypto(CryptoError::KdfParamsOutOfBounds { .. })
            ),
            "{err:?}"
        );
        assert!(!dir.exists(), "nothing created");
        assert!(matches!(
            VolumeError::from(CryptoError::Random),
            VolumeError::Crypto(CryptoError::Random)
        ));
    }
}
