//! The unlocked key hierarchy of one volume: the header store, the KEK (two of them while a
//! rotation is pending) and an LRU of unwrapped FEKs. FEKs are handed out as `Arc<Fek>`; a key
//! evicted from the cache is zeroized as soon as the last open file using it lets go.
//!
//! # Rotation API (for `cofferfs rotate` and the daemon's rotation thread)
//!
//! Every method takes `&self`: the mount shares one `Keyring` between its threads, and a
//! background thread may rotate while they call [`Keyring::fek`] and
//! [`Keyring::new_file_key`].
//!
//! 1. Build the slots to keep around a new KEK: [`Kek::generate`], then for each slot whose
//!    secret was proven [`Keyring::rebuilt_slot`] (password or key file; a fresh salt) or
//!    [`SlotRecord::new_transit`] with a fresh slot key Vault encrypted.
//! 2. [`Keyring::begin_rotation`] (one short transaction) switches the volume to the new
//!    generation; every slot left opens the new KEK, and through it the old one.
//! 3. Call [`Keyring::rotation_step`] until it reports [`RotationProgress::finished`]: each call
//!    is one transaction over at most `max_rows` key rows ([`DEFAULT_BATCH_ROWS`]). The
//!    last one destroys the old KEK (store and memory) and checkpoints the WAL.
//!    [`Keyring::run_rotation`] does the loop for an offline command.
//!
//! After a crash, [`Keyring::new`] finds the pending rotation (`volume.previous_kek`) and
//! [`Keyring::rotation_pending`] says so: step on to finish it. [`Keyring::begin_rotation`]
//! refuses while one is pending. Lock order, for whoever adds to this: the rotation pass, then
//! the KEKs, then the store's connection; the FEK cache is never held while taking another.

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use parking_lot::{Mutex, RwLock};

use super::migrate::MigrationReport;
use super::owners::Owner;
use super::owners::ShredOutcome;
use super::quarantine::key_row_moves;
use super::rotate::{KEY_ROW_TABLES, Progress, RotateReport, RotationCounts};
use super::slots::Pkcs11Params;
use super::slots::SlotKind;
use super::transit_params::TransitParams;
use super::{HeaderStore, KeystoreError, Result, SlotRecord};
use crate::crypto::names::NameCipher;
use crate::crypto::{CryptoError, Fek, KdfParams, Kek, os_random, wrap};
use crate::format::{FILE_ID_LEN, FileId};

pub use super::rotate::DEFAULT_BATCH_ROWS;

/// How many unwrapped FEKs stay cached. 4096 keys × 32 bytes is small; the point of the bound
/// is that keys of files nobody uses do not linger in memory.
pub const FEK_CACHE_LEN: usize = 4096;

/// The KEKs a keyring holds.
struct Keks {
    /// The KEK of `generation`: every slot wraps it, every new row uses it.
    current: Kek,
    generation: u64,
    /// The KEK of `generation - 1` while a rotation is pending (rows not re-wrapped yet).
    /// Zeroized when dropped, which the rotation's last step does.
    previous: Option<Kek>,
}

/// Where the running pass of a pending rotation is: which table, after which file id. A pass
/// that visits both tables with no key row moving between them meanwhile proves that no row
/// of the old generation is left (rows are only created at the new one).
#[derive(Debug, Default)]
struct RotationPass {
    started: bool,
    /// Index into [`KEY_ROW_TABLES`].
    table: usize,
    after: Vec<u8>,
    /// `quarantine::key_row_moves()` when the pass started.
    moves_at_start: u64,
    /// Rows this keyring re-wrapped for the pending rotation.
    rewrapped: u64,
}

/// A rotation begun but not finished: rows are re-wrapped from `from` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingRotation {
    /// The old generation (its KEK is `volume.previous_kek`).
    pub from: u64,
    /// The volume's generation.
    pub to: u64,
}

/// What [`Keyring::begin_rotation`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationBegun {
    /// The generation rows are re-wrapped from and the new one.
    pub rotation: PendingRotation,
    /// Slots deleted (not kept; `drop_others` was given).
    pub dropped_slots: Vec<u32>,
}

/// What one [`Keyring::rotation_step`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationProgress {
    /// The rotation stepped (`None`: none was pending, the step did nothing).
    pub rotation: Option<PendingRotation>,
    /// Rows this step re-wrapped.
    pub rewrapped: u64,
    /// Rows this keyring re-wrapped for the rotation so far (this process, since it began or
    /// since the keyring opened it pending).
    pub rewrapped_total: u64,
    /// The rotation is over: the old KEK is destroyed, in the store and in memory.
    pub finished: bool,
}

/// The KEK plus everything it unlocks.
pub struct Keyring {
    store: HeaderStore,
    /// Taken for reading by every wrap and unwrap, for writing by a rotation's begin and end.
    keks: RwLock<Keks>,
    /// Serializes rotation steps (one pass at a time).
    rotation: Mutex<RotationPass>,
    /// Held from picking the lowest free slot id to inserting the slot: two `keys add` served
    /// at once by the mount daemon would otherwise pick the same id.
    slot_ids: Mutex<()>,
    volume_id: [u8; 16],
    /// Guards the cache of unwrapped FEKs.
    feks: Mutex<LruCache<FileId, Arc<Fek>>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Keyring({:?}, generation {})",
            self.store,
            self.generation()
        )
    }
}

impl Keyring {
    /// Wraps an unlocked store. With a rotation pending, the old KEK is unwrapped from
    /// `volume.previous_kek` under `kek`; one that does not unwrap is a damaged store.
    pub fn new(store: HeaderStore, kek: Kek) -> Result<Self> {
        let params = store.params()?;
        let generation = params.kek_generation;
        let previous = match store.previous_kek()? {
            None => None,
            Some(w) => {
                let from = generation.checked_sub(1).ok_or_else(|| {
                    super::store::corrupt("a rotation pending into KEK generation 0")
                })?;
                let old = wrap::unwrap_previous_kek(&kek, &w, &params.volume_id, from, generation)
                    .map_err(|_| {
                        super::store::corrupt(format!(
                            "volume.previous_kek (the KEK of generation {from}, needed until \
                                 the pending rotation finishes) does not unwrap"
                        ))
                    })?;
                Some(old)
            }
        };
        Ok(Keyring {
            store,
            keks: RwLock::new(Keks {
                current: kek,
                generation,
                previous,
            }),
            rotation: Mutex::new(RotationPass::default()),
            slot_ids: Mutex::new(()),
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

    /// The volume id (slots are bound to it).
    pub fn volume_id(&self) -> [u8; 16] {
        self.volume_id
    }

    /// The name cipher of the volume. Unwrapping the name key verifies the volume parameters
    /// of a v3 volume: a changed one fails with [`KeystoreError::ParamsDoNotVerify`].
    pub fn name_cipher(&self) -> Result<NameCipher> {
        let keks = self.keks.read();
        Ok(NameCipher::new(
            self.store.params()?.unwrap_name_key(&keks.current)?,
        ))
    }

    /// Migrates the store to format `to_version` (see [`HeaderStore::migrate_to_v3`]).
    pub fn migrate_to_v3(
        &self,
        to_version: u16,
        owners: &[(FileId, Owner)],
    ) -> Result<Option<MigrationReport>> {
        let keks = self.keks.read();
        self.store.migrate_to_v3(&keks.current, to_version, owners)
    }

    /// Creates the key of a new file: random file id and FEK, row committed before returning,
    /// recording `owner` as the entry it is created for (`None`: unknown). Wrapped under the
    /// current KEK, at its generation, also while a rotation is pending.
    pub fn new_file_key(&self, owner: Option<&Owner>) -> Result<(FileId, Arc<Fek>)> {
        let mut id = [0u8; FILE_ID_LEN];
        os_random(&mut id)?;
        let file_id = FileId(id);
        let fek = Fek::generate()?;
        {
            // Held until the row is in: a rotation cannot begin between the wrap and the
            // insert, so the row's generation is always the KEK's that wrapped it.
            let keks = self.keks.read();
            let wrapped = wrap::wrap_fek(&keks.current, &fek, &file_id)?;
            self.store
                .insert_file_key(&file_id, &wrapped, keks.generation, owner)?;
        }
        let fek = Arc::new(fek);
        self.feks.lock().put(file_id, fek.clone());
        Ok((file_id, fek))
    }

    /// The FEK of `file_id`, from the cache or unwrapped from its row under the KEK of the
    /// row's generation: the current one, or the previous one while a rotation is pending. A
    /// row of any other generation is refused ([`KeystoreError::KeyRowGeneration`]).
    pub fn fek(&self, file_id: &FileId) -> Result<Arc<Fek>> {
        if let Some(k) = self.feks.lock().get(file_id) {
            return Ok(k.clone());
        }
        let fek = {
            // Held from the row read to the unwrap: a rotation cannot finish (and drop the
            // old KEK) between the two.
            let keks = self.keks.read();
            // A row `fsck --repair` moved aside while its file was away still opens the file.
            let (wrapped, generation) = match self.store.file_key(file_id)? {
                Some(row) => row,
                None => self
                    .store
                    .quarantined_file_key(file_id)?
                    .ok_or(KeystoreError::MissingKey(*file_id))?,
            };
            let kek =
                keks.for_generation(generation)
                    .ok_or_else(|| KeystoreError::KeyRowGeneration {
                        file_id: *file_id,
                        row: generation,
                        volume: keks.generation,
                        pending: keks.previous.is_some(),
                    })?;
            wrap::unwrap_fek(kek, &wrapped, file_id).map_err(|e| match e {
                CryptoError::AuthFailed | CryptoError::Malformed(_) => {
                    KeystoreError::TamperedKey(*file_id)
                }
                other => other.into(),
            })?
        };
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

    /// The KEK generation this keyring holds (the new one while a rotation is pending).
    pub fn generation(&self) -> u64 {
        self.keks.read().generation
    }

    /// A copy of the current KEK, for tests that check what an old KEK can still unwrap.
    /// Never call this outside tests: the KEK must not leave the keyring.
    #[doc(hidden)]
    pub fn kek_for_tests(&self) -> Kek {
        Kek::from_slice(self.keks.read().current.expose()).expect("a KEK is KEK-sized")
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
        let keks = self.keks.read();
        let kek = &keks.current;
        match kind {
            SlotKind::Password => {
                SlotRecord::new_password(slot_id, label, secret, kdf, kek, &self.volume_id)
            }
            SlotKind::Keyfile => {
                SlotRecord::new_keyfile(slot_id, label, secret, kek, &self.volume_id)
            }
            // A secret alone does not make one: see `add_transit_slot`.
            SlotKind::Transit => Err(KeystoreError::Crypto(
                crate::crypto::CryptoError::Malformed("a Transit slot needs its Vault parameters"),
            )),
            // Nor here: see `add_pkcs11_slot`.
            SlotKind::Pkcs11 => Err(KeystoreError::Crypto(
                crate::crypto::CryptoError::Malformed("a PKCS#11 slot needs its token parameters"),
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
        self.add_slot_with_params("Transit", |id, kek| {
            SlotRecord::new_transit(id, label, slot_key, params, kek, &self.volume_id)
        })
    }

    /// Adds a PKCS#11 slot in the lowest free slot id: `slot_key` is the random key the
    /// token's key encrypted into `params.blob`; it wraps this KEK. Refused on a schema-1
    /// store, as a Transit slot is.
    pub fn add_pkcs11_slot(
        &self,
        label: &str,
        slot_key: &[u8],
        params: &Pkcs11Params,
    ) -> Result<u32> {
        self.add_slot_with_params("PKCS#11", |id, kek| {
            SlotRecord::new_pkcs11(id, label, slot_key, params, kek, &self.volume_id)
        })
    }

    /// Adds the slot `make` builds for the lowest free id around the current KEK, on a store
    /// with `slots.params`.
    fn add_slot_with_params(
        &self,
        kind: &str,
        make: impl FnOnce(u32, &Kek) -> Result<SlotRecord>,
    ) -> Result<u32> {
        if !self.store.has_v3_schema() {
            return Err(super::store::corrupt(format!(
                "{kind} slots need a format v3 store: mount the volume read-write once to \
                 upgrade it"
            )));
        }
        let _one_at_a_time = self.slot_ids.lock();
        let id = self.store.free_slot_id()?;
        let keks = self.keks.read();
        self.store.add_slot(&make(id, &keks.current)?)?;
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
        let _one_at_a_time = self.slot_ids.lock();
        let id = self.store.free_slot_id()?;
        let slot = self.new_slot(id, kind, label, secret, kdf)?;
        self.store.add_slot(&slot)?;
        Ok(id)
    }

    /// Re-wraps slot `slot_id` under a new secret (fresh salt): O(1), nothing else changes.
    pub fn rewrap_slot(&self, slot_id: u32, secret: &[u8], kdf: KdfParams) -> Result<()> {
        let old = self.slot(slot_id)?;
        let keks = self.keks.read();
        let new = old.rebuilt(secret, kdf, &keks.current, &self.volume_id)?;
        self.store.replace_slot_secret(&new)
    }

    /// Slot `id`'s record.
    pub fn slot(&self, id: u32) -> Result<SlotRecord> {
        self.store
            .slots()?
            .into_iter()
            .find(|s| s.slot_id == id)
            .ok_or(KeystoreError::NoSuchSlot(id))
    }

    /// Slot `slot_id` rebuilt around `new_kek` under the same `secret` (fresh salt, same
    /// Argon2id parameters, label and creation time), for [`begin_rotation`](Self::begin_rotation).
    /// The caller has proven `secret` opens the slot (by unlocking with it). A Transit slot
    /// should rather get a fresh slot key through Vault ([`SlotRecord::new_transit`]), so a
    /// slot key learnt before the rotation opens nothing after it.
    pub fn rebuilt_slot(&self, slot_id: u32, secret: &[u8], new_kek: &Kek) -> Result<SlotRecord> {
        let old = self.slot(slot_id)?;
        old.rebuilt(secret, old.kdf, new_kek, &self.volume_id)
    }

    /// The rotation begun and not finished yet, if any.
    pub fn rotation_pending(&self) -> Option<PendingRotation> {
        self.keks.read().pending()
    }

    /// Rows per generation of the pending rotation (a full scan of the key rows: for `info`
    /// and `status`, not for every step).
    pub fn rotation_counts(&self) -> Result<Option<RotationCounts>> {
        self.store.rotation_counts()
    }

    /// Begins a rotation to `new_kek` (step 1 of the [module's API](self)): one short
    /// transaction. `kept` are the slots that stay, each already rebuilt around `new_kek`
    /// (password, key file, Transit alike); every other slot is deleted when `drop_others`,
    /// and the rotation is refused otherwise ([`KeystoreError::OtherSlots`]), as nothing else
    /// could open the new KEK. Refused while a rotation is pending
    /// ([`KeystoreError::RotationPending`]: finish it first) and on a schema 1 store
    /// ([`KeystoreError::RotationNeedsV3`]: see [`rotate`](Self::rotate)).
    pub fn begin_rotation(
        &self,
        new_kek: Kek,
        kept: Vec<SlotRecord>,
        drop_others: bool,
    ) -> Result<RotationBegun> {
        if !self.store.has_v3_schema() {
            return Err(KeystoreError::RotationNeedsV3);
        }
        let mut pass = self.rotation.lock();
        let mut keks = self.keks.write();
        if let Some(p) = keks.pending() {
            return Err(KeystoreError::RotationPending {
                from: p.from,
                to: p.to,
            });
        }
        let dropped = self.slots_dropped_by(&kept, drop_others)?;
        let params = self.store.params()?;
        let from = keks.generation;
        if params.kek_generation != from {
            return Err(super::store::corrupt(format!(
                "the store is at KEK generation {}, the keyring at {from}",
                params.kek_generation
            )));
        }
        let name_key = params.unwrap_name_key(&keks.current)?;
        let wrapped_name_key = params.wrap_name_key(&new_kek, &name_key)?;
        let previous =
            wrap::wrap_previous_kek(&new_kek, &keks.current, &self.volume_id, from, from + 1)?;
        self.store
            .begin_rotation(from, &wrapped_name_key, &previous, &kept, &dropped)?;
        let old = std::mem::replace(&mut keks.current, new_kek);
        keks.previous = Some(old);
        keks.generation = from + 1;
        *pass = RotationPass::default();
        Ok(RotationBegun {
            rotation: PendingRotation { from, to: from + 1 },
            dropped_slots: dropped,
        })
    }

    /// One step of the pending rotation (step 2 and 3 of the [module's API](self)): one
    /// `BEGIN IMMEDIATE` transaction re-wrapping at most `max_rows` key rows (0 counts as 1),
    /// or, once a pass found nothing left, the transaction that ends the rotation. Safe to call
    /// from a background thread while others use the keyring; steps are serialized. With no
    /// rotation pending it does nothing and reports `finished`. A live key row that does not
    /// unwrap fails the step with [`KeystoreError::TamperedKey`] and the rotation stays
    /// pending (`fsck` reports the row; the volume works meanwhile).
    pub fn rotation_step(&self, max_rows: usize) -> Result<RotationProgress> {
        let max_rows = max_rows.max(1);
        let mut pass = self.rotation.lock();
        let keks = self.keks.read();
        let Some(rotation) = keks.pending() else {
            return Ok(RotationProgress {
                rotation: None,
                rewrapped: 0,
                rewrapped_total: 0,
                finished: true,
            });
        };
        if !pass.started {
            pass.started = true;
            pass.table = 0;
            pass.after.clear();
            pass.moves_at_start = key_row_moves();
        }
        let mut progress = RotationProgress {
            rotation: Some(rotation),
            rewrapped: 0,
            rewrapped_total: pass.rewrapped,
            finished: false,
        };
        if let Some(&table) = KEY_ROW_TABLES.get(pass.table) {
            let old = keks.previous.as_ref().expect("pending");
            let b = self.store.rewrap_batch(
                table,
                &pass.after,
                old,
                &keks.current,
                rotation.from,
                rotation.to,
                max_rows,
            )?;
            match b.last {
                Some(last) if b.visited == max_rows => pass.after = last,
                _ => {
                    pass.table += 1;
                    pass.after.clear();
                }
            }
            pass.rewrapped += b.rewrapped;
            progress.rewrapped = b.rewrapped;
            progress.rewrapped_total = pass.rewrapped;
            return Ok(progress);
        }
        // The pass is over. It proves every row is at the new generation unless a row moved
        // between the tables meanwhile (behind the pass): checked under the connection's lock,
        // which the moves take too.
        drop(keks);
        let mut keks = self.keks.write();
        let moves = pass.moves_at_start;
        if !self
            .store
            .finish_rotation(rotation.to, || key_row_moves() == moves)?
        {
            log::info!("key rows moved during the rotation pass: another pass");
            pass.started = false;
            return Ok(progress);
        }
        // Zeroized as it drops.
        keks.previous = None;
        drop(keks);
        *pass = RotationPass::default();
        self.store.checkpoint()?;
        progress.finished = true;
        Ok(progress)
    }

    /// Steps the pending rotation to its end, `batch_rows` rows per transaction; `progress`
    /// gets (rows re-wrapped, rows to re-wrap). Returns the rows re-wrapped (0 when none was
    /// pending). For an offline command; a daemon calls [`rotation_step`](Self::rotation_step)
    /// itself, between which it may sleep.
    pub fn run_rotation(&self, batch_rows: usize, progress: Progress<'_>) -> Result<u64> {
        let total = self.rotation_counts()?.map_or(0, |c| c.left);
        progress(0, total);
        loop {
            let p = self.rotation_step(batch_rows)?;
            progress(p.rewrapped_total.min(total), total);
            if p.finished {
                return Ok(p.rewrapped_total);
            }
        }
    }

    /// A whole rotation to `new_kek` for an offline command: [`begin_rotation`]
    /// (Self::begin_rotation) then [`run_rotation`](Self::run_rotation); on a schema 1 store
    /// the one-transaction rotation ([`HeaderStore::rotate_at_once`]). `kept` and
    /// `drop_others` as for [`begin_rotation`](Self::begin_rotation), which also refuses while
    /// a rotation is pending.
    pub fn rotate(
        &self,
        new_kek: Kek,
        kept: Vec<SlotRecord>,
        drop_others: bool,
        batch_rows: usize,
        progress: Progress<'_>,
    ) -> Result<RotateReport> {
        if !self.store.has_v3_schema() {
            return self.rotate_at_once(new_kek, kept, drop_others, progress);
        }
        let begun = self.begin_rotation(new_kek, kept, drop_others)?;
        let file_keys = self.run_rotation(batch_rows, progress)?;
        Ok(RotateReport {
            file_keys,
            generation: begun.rotation.to,
            dropped_slots: begun.dropped_slots,
        })
    }

    /// The rotation of a schema 1 store: one transaction (see [`HeaderStore::rotate_at_once`]).
    fn rotate_at_once(
        &self,
        new_kek: Kek,
        kept: Vec<SlotRecord>,
        drop_others: bool,
        progress: Progress<'_>,
    ) -> Result<RotateReport> {
        let _pass = self.rotation.lock();
        let mut keks = self.keks.write();
        let dropped = self.slots_dropped_by(&kept, drop_others)?;
        let params = self.store.params()?;
        let name_key = params.unwrap_name_key(&keks.current)?;
        let wrapped_name_key = params.wrap_name_key(&new_kek, &name_key)?;
        let file_keys = self.store.rotate_at_once(
            &keks.current,
            &new_kek,
            &wrapped_name_key,
            &kept,
            &dropped,
            progress,
        )?;
        keks.current = new_kek;
        keks.generation += 1;
        Ok(RotateReport {
            file_keys,
            generation: keks.generation,
            dropped_slots: dropped,
        })
    }

    /// The slots a rotation keeping `kept` deletes; refused when there are some and not
    /// `drop_others`, or when `kept` names no slot or a slot twice or one that does not exist.
    fn slots_dropped_by(&self, kept: &[SlotRecord], drop_others: bool) -> Result<Vec<u32>> {
        if kept.is_empty() {
            return Err(KeystoreError::NoSlotKept);
        }
        let slots = self.store.slots()?;
        for (i, k) in kept.iter().enumerate() {
            if !slots.iter().any(|s| s.slot_id == k.slot_id)
                || kept[..i].iter().any(|o| o.slot_id == k.slot_id)
            {
                return Err(KeystoreError::NoSuchSlot(k.slot_id));
            }
        }
        let dropped: Vec<u32> = slots
            .iter()
            .map(|s| s.slot_id)
            .filter(|id| !kept.iter().any(|k| k.slot_id == *id))
            .collect();
        if !dropped.is_empty() && !drop_others {
            return Err(KeystoreError::OtherSlots(dropped));
        }
        Ok(dropped)
    }
}

impl Keks {
    fn pending(&self) -> Option<PendingRotation> {
        self.previous.as_ref().map(|_| PendingRotation {
            from: self.generation - 1,
            to: self.generation,
        })
    }

    /// The KEK that wraps rows of `generation`, if this keyring has it.
    fn for_generation(&self, generation: u64) -> Option<&Kek> {
        if generation == self.generation {
            Some(&self.current)
        } else if generation + 1 == self.generation {
            self.previous.as_ref()
        } else {
            None
        }
    }
}
