//! The unlocked key hierarchy of one volume: the header store, the KEK and an LRU of
//! unwrapped FEKs. FEKs are handed out as `Arc<Fek>`; a key evicted from the cache is zeroized
//! as soon as the last open file using it lets go.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use super::{HeaderStore, KeystoreError, Result};
use crate::crypto::names::NameCipher;
use crate::crypto::{CryptoError, Fek, Kek, NameKey, os_random, wrap};
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

    /// The name cipher of the volume (unwraps the name key).
    pub fn name_cipher(&self) -> Result<NameCipher> {
        let wrapped = self.store.params()?.wrapped_name_key;
        let nk: NameKey = wrap::unwrap_name_key(&self.kek, &wrapped, &self.volume_id)
            .map_err(|_| KeystoreError::Corrupt("name key fails authentication".into()))?;
        Ok(NameCipher::new(nk))
    }

    /// Creates the key of a new file: random file id and FEK, row committed before returning.
    pub fn new_file_key(&self) -> Result<(FileId, Arc<Fek>)> {
        let mut id = [0u8; FILE_ID_LEN];
        os_random(&mut id)?;
        let file_id = FileId(id);
        let fek = Fek::generate()?;
        let wrapped = wrap::wrap_fek(&self.kek, &fek, &file_id)?;
        self.store
            .insert_file_key(&file_id, &wrapped, self.generation)?;
        let fek = Arc::new(fek);
        self.feks.lock().put(file_id, fek.clone());
        Ok((file_id, fek))
    }

    /// The FEK of `file_id`, from the cache or unwrapped from its row.
    pub fn fek(&self, file_id: &FileId) -> Result<Arc<Fek>> {
        if let Some(k) = self.feks.lock().get(file_id) {
            return Ok(k.clone());
        }
        let (wrapped, _generation) = self
            .store
            .file_key(file_id)?
            .ok_or(KeystoreError::MissingKey(*file_id))?;
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

    /// Drops every cached FEK (their memory is zeroized once no open file holds them).
    pub fn clear_cache(&self) {
        self.feks.lock().clear();
    }
}
