//! Long names and long symlink targets (`long_names`, `long_targets`): the full encoded form
//! of a name or target too long for the lower filesystem, stored under its digest (the entry
//! on disk carries the digest alone).

use rusqlite::{OptionalExtension, params};

use super::store::{HeaderStore, corrupt};
use super::{KeystoreError, Result};

impl HeaderStore {
    /// Records the full encoded form of a long name under its digest.
    pub fn put_long_name(&self, digest: &[u8; 32], encoded: &str) -> Result<()> {
        self.write_retrying_when_full(|conn| {
            conn.prepare_cached("INSERT OR REPLACE INTO long_names (digest, name) VALUES (?1, ?2)")?
                .execute(params![&digest[..], encoded])
        })?;
        Ok(())
    }

    /// The full encoded form of a long name.
    pub fn long_name(&self, digest: &[u8; 32]) -> Result<Option<String>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached("SELECT name FROM long_names WHERE digest = ?1")?;
        Ok(stmt.query_row([&digest[..]], |r| r.get(0)).optional()?)
    }

    /// Every digest with a long-name row, for fsck.
    pub fn long_name_digests(&self) -> Result<Vec<[u8; 32]>> {
        let conn = self.conn.lock();
        let mut stmt = conn.prepare("SELECT digest FROM long_names")?;
        let digests = stmt
            .query_map([], |r| r.get::<_, Vec<u8>>(0))?
            .map(|r| {
                r.map_err(KeystoreError::from)
                    .and_then(|v| v.try_into().map_err(|_| corrupt("long name digest length")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(digests)
    }

    /// Forgets a long name whose entry is gone.
    pub fn delete_long_name(&self, digest: &[u8; 32]) -> Result<()> {
        self.write_retrying_when_full(|conn| {
            conn.prepare_cached("DELETE FROM long_names WHERE digest = ?1")?
                .execute([&digest[..]])
        })?;
        Ok(())
    }

    /// Records the full encoded form of a long symlink target under its digest (format v3).
    pub fn put_long_target(&self, digest: &[u8; 32], encoded: &str) -> Result<()> {
        if !self.has_v3_schema() {
            return Err(corrupt(
                "long symlink targets need a v3 store (migrate first)",
            ));
        }
        self.write_retrying_when_full(|conn| {
            conn.prepare_cached(
                "INSERT OR REPLACE INTO long_targets (digest, target) VALUES (?1, ?2)",
            )?
            .execute(params![&digest[..], encoded])
        })?;
        Ok(())
    }

    /// The full encoded form of a long symlink target.
    pub fn long_target(&self, digest: &[u8; 32]) -> Result<Option<String>> {
        if !self.has_v3_schema() {
            return Ok(None);
        }
        let conn = self.conn.lock();
        let mut stmt = conn.prepare_cached("SELECT target FROM long_targets WHERE digest = ?1")?;
        Ok(stmt.query_row([&digest[..]], |r| r.get(0)).optional()?)
    }
}
