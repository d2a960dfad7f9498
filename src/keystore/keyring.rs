//! The unlocked key hierarchy of one volume: the header store, the KEK and an LRU of
//! unwrapped FEKs. FEKs are handed out as `Arc<Fek>`; a key evicted from the cache is zeroized
//! as soon as the last open file using it lets go.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use super::migrate::MigrationReport;
use super::owners::Owner;
use super::owners::ShredOutcome;
use super::rotate::{Progress, RotateReport};
use super::slots::SlotKind;
use super::transit_params::TransitParams;
use super::{HeaderStore, KeystoreError, Result, SlotRecord};
use crate::crypto::names::NameCipher;
use crate::crypto::{CryptoError, Fek, KdfParams, Kek, os_random, wrap};
use crate::format::{FILE_ID_LEN, FileId};

/// How many unwrapped FEKs stay cached. 4096 keys × 32 bytes is small; the point of the bound
/// is that keys of files nobody uses do not linger in memory.
pub const FEK_CACHE_LEN: usize = 4096;

/// The KEK plus everything it unlocks.
pub struct Keyring {
    store: HeaderStore,
    kek: Kek,
    generation: u64,
    volume_id: [u8; 16],
    /// Guards the cache of unwrapped FEKs.
    feks: Mutex<LruCache<FileId, Arc<Fek>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keyring({:?}, generation {})",
            self.store, self.generation
        )
    }
}

impl Keyring {
    /// Wraps an unlocked store.
    pub fn new(store: HeaderStore, kek: Kek) -> Result<Self> {
        let params = store.params()?;
        Ok(Keyring {
            store,
            kek,
            generation: params.kek_generation,
            volume_id: params.volume_id,
            feks: Mutex::new(LruCache::new(
                NonZeroUsize::new(FEK_CACHE_LEN).expect("non-zero"),
            )),
        })
    }

    /// The header store underneath.
    pub fn store(&self) -> &HeaderStore {
        &self.store
    }

    /// The name cipher of the volume. Unwrapping the name key verifies the volume parameters
    /// of a v3 volume: a changed one fails with [`KeystoreError::ParamsDoNotVerify`].
    pub fn name_cipher(&self) -> Result<NameCipher> {
        Ok(NameCipher::new(
            self.store.params()?.unwrap_name_key(&self.kek)?,
        ))
    }

    /// Migrates the store to format `to_version` (see [`HeaderStore::migrate_to_v3`]).
    pub fn migrate_to_v3(
        &self,
        to_version: u16,
        owners: &[(FileId, Owner)],
    ) -> Result<Option<MigrationReport>> {
        self.store.migrate_to_v3(&self.kek, to_version, owners)
    }

    /// Creates the key of a new file: random file id and FEK, row committed before returning,
    /// recording `owner` as the entry it is created for (`None`: unknown).
    pub fn new_file_key(&self, owner: Option<&Owner>) -> Result<(FileId, Arc<Fek>)> {
        let mut id = [0u8; FILE_ID_LEN];
        os_random(&mut id)?;
        let file_id = FileId(id);
        let fek = Fek::generate()?;
        let wrapped = wrap::wrap_fek(&self.kek, &fek, &file_id)?;
        self.store
            .insert_file_key(&file_id, &wrapped, self.generation, owner)?;
        let fek = Arc::new(fek);
        self.feks.lock().put(file_id, fek.clone());
        Ok((file_id, fek))
    }

    /// The FEK of `file_id`, from the cache or unwrapped from its row.
    pub fn fek(&self, file_id: &FileId) -> Result<Arc<Fek>> {
        if let Some(k) = self.feks.lock().get(file_id) {
            return Ok(k.clone());
        }
        // A row `fsck --repair` moved aside while its file was away still opens the file.
        let (wrapped, _generation) = match self.store.file_key(file_id)? {
            Some(row) => row,
            None => self
                .store
                .quarantined_file_key(file_id)?
                .ok_or(KeystoreError::MissingKey(*file_id))?,
        };
        let fek = wrap::unwrap_fek(&self.kek, &wrapped, file_id).map_err(|e| match e {
            CryptoError::AuthFailed | CryptoError::Malformed(_) => {
                KeystoreError::TamperedKey(*file_id)
            }
            other => other.into(),
        })?;
        let fek = Arc::new(fek);
        self.feks.lock().put(*file_id, fek.clone());
        Ok(fek)
    }

    /// Destroys a file's key: drops it from the cache and deletes its row.
    pub fn shred(&self, file_id: &FileId) -> Result<()> {
        self.feks.lock().pop(file_id);
        self.store.delete_file_key(file_id)?;
        Ok(())
    }

    /// Drops a file's FEK from the cache (its row is about to be deleted, see `shred_many`).
    pub fn forget_fek(&self, file_id: &FileId) {
        self.feks.lock().pop(file_id);
    }

    /// Destroys the keys of many removed entries at once, one transaction for all (the
    /// daemon's deferred shredding after `unlink`): each row only if the entry removed is its
    /// owner (see `keystore::owners`); the others are left in place and reported back.
    pub fn shred_many(&self, rows: &[(FileId, Owner)]) -> Result<ShredOutcome> {
        {
            let mut feks = self.feks.lock();
            for (id, _) in rows {
                feks.pop(id);
            }
        }
        self.store.delete_owned_file_keys(rows)
    }

    /// Drops every cached FEK (their memory is zeroized once no open file holds them).
    pub fn clear_cache(&self) {
        self.feks.lock().clear();
    }

    /// The KEK generation this keyring holds.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The KEK itself, for tests that check what an old KEK can still unwrap. Never call this
    /// outside tests: the KEK must not leave the keyring.
    #[doc(hidden)]
    pub fn kek_for_tests(&self) -> &Kek {
        &self.kek
    }

    /// Builds a slot of `kind` wrapping this KEK under `secret` (Argon2id `kdf` for passwords).
    pub fn new_slot(
        &self,
        slot_id: u32,
        kind: SlotKind,
        label: &str,
        secret: &[u8],
        kdf: KdfParams,
    ) -> Result<SlotRecord> {
        match kind {
            SlotKind::Password => {
                SlotRecord::new_password(slot_id, label, secret, kdf, &self.kek, &self.volume_id)
            }
            SlotKind::Keyfile => {
                SlotRecord::new_keyfile(slot_id, label, secret, &self.kek, &self.volume_id)
            }
            // A secret alone does not make one: see `add_transit_slot`.
            SlotKind::Transit => Err(KeystoreError::Crypto(
                crate::crypto::CryptoError::Malformed("a Transit slot needs its Vault parameters"),
            )),
        }
    }

    /// Adds a Transit slot in the lowest free slot id: `slot_key` is the random key Vault
    /// encrypted into `params.ciphertext`; it wraps this KEK. Refused on a schema-1 store,
    /// which has no `slots.params` column (its first read-write mount migrates it).
    pub fn add_transit_slot(
        &self,
        label: &str,
        slot_key: &[u8],
        params: &TransitParams,
    ) -> Result<u32> {
        if !self.store.has_v3_schema() {
            return Err(super::store::corrupt(
                "Transit slots need a format v3 store: mount the volume read-write once to \
                 upgrade it",
            ));
        }
        let id = self.store.free_slot_id()?;
        let slot =
            SlotRecord::new_transit(id, label, slot_key, params, &self.kek, &self.volume_id)?;
        self.store.add_slot(&slot)?;
        Ok(id)
    }

    /// Adds a slot opened by `secret` in the lowest free slot id; returns the id.
    pub fn add_slot(
        &self,
        kind: SlotKind,
        label: &str,
        secret: &[u8],
        kdf: KdfParams,
    ) -> Result<u32> {
        let id = self.store.free_slot_id()?;
        let slot = self.new_slot(id, kind, label, secret, kdf)?;
        self.store.add_slot(&slot)?;
        Ok(id)
    }

    /// Re-wraps slot `slot_id` under a new secret (fresh salt): O(1), nothing else changes.
    pub fn rewrap_slot(&self, slot_id: u32, secret: &[u8], kdf: KdfParams) -> Result<()> {
        let old = self
            .store
            .slots()?
            .into_iter()
            .find(|s| s.slot_id == slot_id)
            .ok_or(KeystoreError::NoSuchSlot(slot_id))?;
        let new = old.rebuilt(secret, kdf, &self.kek, &self.volume_id)?;
        self.store.replace_slot_secret(&new)
    }

    /// Rotates the KEK: a new random KEK re-wraps every FEK and the name key in one
    /// transaction; slot `keep_slot` is re-wrapped under `secret` (its own, fresh salt) and
    /// every other slot is removed when `drop_others`, the rotation refused otherwise.
    pub fn rotate(
        &mut self,
        keep_slot: u32,
        secret: &[u8],
        drop_others: bool,
        progress: Progress<'_>,
    ) -> Result<RotateReport> {
        let old = self.slot(keep_slot)?;
        self.rotate_keeping(old, secret, None, drop_others, progress)
    }

    /// [`rotate`](Self::rotate) keeping Transit slot `keep_slot` with a fresh slot key that
    /// Vault encrypted into `params`, so a slot key learnt before the rotation opens nothing
    /// after it (as a password slot gets a fresh salt).
    pub fn rotate_transit(
        &mut self,
        keep_slot: u32,
        slot_key: &[u8],
        params: &TransitParams,
        drop_others: bool,
        progress: Progress<'_>,
    ) -> Result<RotateReport> {
        let old = self.slot(keep_slot)?;
        if old.kind != SlotKind::Transit {
            return Err(KeystoreError::NoSuchSlot(keep_slot));
        }
        self.rotate_keeping(old, slot_key, Some(params), drop_others, progress)
    }

    /// Slot `id`'s record.
    fn slot(&self, id: u32) -> Result<SlotRecord> {
        self.store
            .slots()?
            .into_iter()
            .find(|s| s.slot_id == id)
            .ok_or(KeystoreError::NoSuchSlot(id))
    }

    fn rotate_keeping(
        &mut self,
        old: SlotRecord,
        secret: &[u8],
        transit: Option<&TransitParams>,
        drop_others: bool,
        progress: Progress<'_>,
    ) -> Result<RotateReport> {
        let new_kek = Kek::generate()?;
        let mut keep = old.rebuilt(secret, old.kdf, &new_kek, &self.volume_id)?;
        if let Some(params) = transit {
            keep.params = Some(params.encode());
        }
        let report = self
            .store
            .rotate(&self.kek, &new_kek, &keep, drop_others, progress)?;
        self.kek = new_kek;
        self.generation = report.generation;
        self.clear_cache();
        Ok(report)
    }
}
