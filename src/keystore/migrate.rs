//! The migration of a format v1/v2 header store (schema 1) to format v3 (schema 2): one
//! `BEGIN IMMEDIATE` transaction adds the v3 columns and tables, records the owner of every
//! key row the volume layer could attribute to exactly one entry, re-wraps the name key under
//! the v3 associated data (which authenticates the volume parameters) and sets
//! `format_version` = 3 and `user_version` = 2. A crash leaves the store entirely as it was
//! or entirely migrated.

use rusqlite::{TransactionBehavior, params};

use super::Result;
use super::owners::Owner;
use super::schema::{MIGRATE_1_TO_2, SCHEMA_VERSION};
use super::store::HeaderStore;
use crate::crypto::Kek;
use crate::format::FileId;

/// What a migration did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The format version before.
    pub from_version: u16,
    /// Key rows that got an owner.
    pub owned_rows: u64,
}

impl HeaderStore {
    /// Migrates the store to format `to_version` (3) if it is older: see the module doc.
    /// `owners` are the rows carried by exactly one entry, with that entry's owner digest;
    /// every other row keeps an unknown owner. The name key is unwrapped under the old
    /// associated data first, so a store whose parameters were changed is refused here too.
    /// Returns `None` when there was nothing to do.
    pub fn migrate_to_v3(
        &self,
        kek: &Kek,
        to_version: u16,
        owners: &[(FileId, Owner)],
    ) -> Result<Option<MigrationReport>> {
        let old = self.params()?;
        if old.format_version >= to_version && self.has_v3_schema() {
            return Ok(None);
        }
        let name_key = old.unwrap_name_key(kek)?;
        let mut new = old.clone();
        new.format_version = to_version;
        let wrapped = new.wrap_name_key(kek, &name_key)?;
        let mut conn = self.conn.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let schema: u32 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if schema < SCHEMA_VERSION {
            tx.execute_batch(MIGRATE_1_TO_2)?;
        }
        let mut owned_rows = 0u64;
        {
            let mut set = tx.prepare("UPDATE file_keys SET owner = ?2 WHERE file_id = ?1")?;
            for (id, owner) in owners {
                owned_rows += set.execute(params![&id.0[..], &owner[..]])? as u64;
            }
        }
        // Guarded by the values read above: a concurrent change (there is none: the volume
        // lock is held) would make the update miss instead of binding a wrong parameter.
        let n = tx.execute(
            "UPDATE volume SET format_version = ?1, wrapped_name_key = ?2
             WHERE id = 1 AND format_version = ?3 AND chunk_len = ?4 AND plaintext_names = ?5",
            params![
                to_version,
                wrapped,
                old.format_version,
                old.chunk_len,
                old.plaintext_names
            ],
        )?;
        if n != 1 {
            return Err(super::store::corrupt(
                "volume row changed during the migration",
            ));
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        drop(conn);
        self.schema
            .store(SCHEMA_VERSION, std::sync::atomic::Ordering::Release);
        self.make_durable()?;
        Ok(Some(MigrationReport {
            from_version: old.format_version,
            owned_rows,
        }))
    }
}
