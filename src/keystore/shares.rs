//! The record of shares (`shares`, format v3): which files were shared with whom and when, so
//! that `cofferfs shares list` can show them and `reencrypt` can say which shares a new key
//! ends. Only public data: recipients are public keys, and no key of any kind is stored.

use rusqlite::params;

use super::Result;
use super::store::{HeaderStore, corrupt};
use crate::format::{FILE_ID_LEN, FileId};

/// One recorded share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareRecord {
    /// 16 random bytes naming the share.
    pub share_id: [u8; 16],
    /// The recipients as given (age or ssh public keys), stored one a line.
    pub recipients: Vec<String>,
    /// The shared files' ids.
    pub file_ids: Vec<FileId>,
    /// When, seconds since the epoch.
    pub created: i64,
}

impl ShareRecord {
    /// The share id as lower-case hex, as `shares list` shows it.
    pub fn id_hex(&self) -> String {
        crate::hex::encode(&self.share_id)
    }
}

impl HeaderStore {
    /// Records a share (one transaction).
    pub fn record_share(&self, rec: &ShareRecord) -> Result<()> {
        if !self.has_v3_schema() {
            return Err(corrupt(
                "recording a share needs a v3 store (migrate first)",
            ));
        }
        let ids: Vec<u8> = rec.file_ids.iter().flat_map(|id| id.0).collect();
        let recipients = rec.recipients.join("\n");
        self.write_retrying_when_full(|conn| {
            conn.prepare_cached(
                "INSERT INTO shares (share_id, recipient, file_ids, created) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![&rec.share_id[..], recipients, ids, rec.created])
        })?;
        Ok(())
    }

    /// Every recorded share, oldest first (none in a store older than v3).
    pub fn shares(&self) -> Result<Vec<ShareRecord>> {
        if !self.has_v3_schema() {
            return Ok(Vec::new());
        }
        let conn = self.conn.lock();
        let mut stmt = conn.prepare(
            "SELECT share_id, recipient, file_ids, created FROM shares ORDER BY created, share_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Vec<u8>>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, recipients, ids, created) = row?;
            if ids.len() % FILE_ID_LEN != 0 {
                return Err(corrupt("shares.file_ids length"));
            }
            out.push(ShareRecord {
                share_id: id.try_into().map_err(|_| corrupt("share_id length"))?,
                recipients: recipients.lines().map(str::to_owned).collect(),
                file_ids: ids
                    .chunks(FILE_ID_LEN)
                    .map(|c| FileId::from_slice(c).expect("FILE_ID_LEN bytes"))
                    .collect(),
                created,
            });
        }
        Ok(out)
    }

    /// The recorded shares that include `file_id`.
    pub fn shares_of(&self, file_id: &FileId) -> Result<Vec<ShareRecord>> {
        Ok(self
            .shares()?
            .into_iter()
            .filter(|s| s.file_ids.contains(file_id))
            .collect())
    }
}
