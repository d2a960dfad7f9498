//! The mount daemon's answers on its control socket. Every request that changes keys or
//! reads content first proves its secret against the slots exactly as an unlock does (the
//! same slot kinds, `--slot`, the same bound on Argon2id work), one proof at a time so that
//! clients cannot make the daemon run many Argon2id hashes at once next to the mount's I/O.
//! Nothing here touches the FUSE session: key changes go through the volume's keyring, whose
//! store the mount shares (one SQLite connection behind a mutex, short statements).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::json;

use crate::cli::{CliError, exit};
use crate::control::protocol::{Kdf, NewSecret, Proof, ProofKind, Reply, Request};
use crate::control::server::{Handler, Peer};
use crate::crypto::{KdfParams, Kek};
use crate::keystore::{KeystoreError, Pkcs11Params, SlotKind, TransitParams};
use crate::volume::{Volume, VolumeError};

/// What the daemon knows about itself, and the volume it serves.
pub struct DaemonControl {
    /// The opened volume (shared with the filesystem).
    pub vol: Arc<Volume>,
    /// Where it is mounted (absolute).
    pub mountpoint: PathBuf,
    /// The cipherdir as given at mount.
    pub cipherdir: PathBuf,
    /// The control socket this daemon answers on.
    pub socket: PathBuf,
    /// Mounted `--ro`: the store is read-only, keys cannot change.
    pub read_only: bool,
    /// Mounted without `--no-xattr`. An online `reencrypt` copies each file through the mount,
    /// and a mount without extended attributes would drop the file's: it is refused then.
    pub xattrs: bool,
    /// Open files and directories of the mount now.
    pub open_files: Box<dyn Fn() -> i64 + Send + Sync>,
    /// When the mount came up.
    pub started: SystemTime,
    /// The same, for the uptime.
    pub started_at: Instant,
    /// The rotation thread.
    pub rotation: Arc<super::rotation::Rotation>,
    /// Held while a secret is checked: one Argon2id at a time.
    proofs: Mutex<()>,
}

impl DaemonControl {
    /// The control state of a daemon that just mounted `vol` at `mountpoint`.
    pub fn new(
        vol: Arc<Volume>,
        cipherdir: PathBuf,
        mountpoint: PathBuf,
        socket: PathBuf,
        read_only: bool,
        open_files: Box<dyn Fn() -> i64 + Send + Sync>,
    ) -> Self {
        DaemonControl {
            vol,
            mountpoint,
            cipherdir,
            socket,
            read_only,
            xattrs: true,
            open_files,
            started: SystemTime::now(),
            started_at: Instant::now(),
            rotation: Arc::default(),
            proofs: Mutex::new(()),
        }
    }

    /// Checks `auth` against the slots; returns the slot it opens.
    fn prove(&self, auth: &Proof) -> Result<u32, CliError> {
        let _one_at_a_time = self.proofs.lock();
        let kind = slot_kind(auth.kind);
        let (slot, _kek) = self
            .vol
            .keyring()
            .store()
            .unlock_with(kind, auth.secret.expose(), auth.slot)
            .map_err(VolumeError::from)?;
        Ok(slot)
    }

    /// Refuses a change on a read-only mount.
    fn writable(&self) -> Result<(), CliError> {
        if self.read_only {
            return Err(CliError::new(
                exit::LOCKED,
                format!(
                    "{} is mounted read-only: key changes need a read-write mount, or the \
                     volume unmounted",
                    self.cipherdir.display()
                ),
            ));
        }
        Ok(())
    }

    fn status(&self) -> Result<Reply, CliError> {
        let keyring = self.vol.keyring();
        let generation = keyring.generation();
        let uptime = self.started_at.elapsed().as_secs();
        let started = self
            .started
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let open = (self.open_files)();
        let rows = keyring.store().file_count().map_err(VolumeError::from)?;
        let data = json!({
            "cipherdir": self.cipherdir,
            "header_store": keyring.store().path(),
            "mountpoint": self.mountpoint,
            "pid": std::process::id(),
            "control_socket": self.socket,
            "started": started,
            "uptime_secs": uptime,
            "open_files": open,
            "read_only": self.read_only,
            "kek_generation": generation,
            "key_rows": rows,
            "rotation": self.rotation_status(),
        });
        Ok(Reply::done(
            format!(
                "{} mounted on {}",
                self.cipherdir.display(),
                self.mountpoint.display()
            ),
            data,
        ))
    }

    /// The rotation thread's report, or a rotation pending that no thread drives (a
    /// read-only mount of a volume left mid-rotation).
    fn rotation_status(&self) -> serde_json::Value {
        let shown = self.rotation.status();
        match self.vol.keyring().rotation_pending() {
            Some(p) if shown.is_null() => json!({
                "state": "pending",
                "from_generation": p.from,
                "to_generation": p.to,
            }),
            _ => shown,
        }
    }

    fn rotate(
        &self,
        auth: &Proof,
        drop_others: bool,
        batch_rows: Option<usize>,
    ) -> Result<Reply, CliError> {
        self.writable()?;
        let keep = self.prove(auth)?;
        let keyring = self.vol.keyring();
        if let Some(p) = keyring.rotation_pending() {
            if !self.rotation.running() {
                self.rotation.start(&self.vol, batch_rows.unwrap_or(0));
            }
            return Err(CliError::new(
                exit::ROTATION_RUNNING,
                format!(
                    "a rotation to KEK generation {} is still running: `cofferfs status {}` \
                     follows it; rotate again once it has finished",
                    p.to,
                    self.cipherdir.display()
                ),
            ));
        }
        let own = keyring.slot(keep).map_err(VolumeError::from)?;
        if matches!(own.kind, SlotKind::Transit | SlotKind::Pkcs11) {
            return Err(CliError::new(
                exit::KEY_SLOT,
                format!(
                    "slot {keep} is a {} slot, which a rotation re-wraps with a fresh slot key \
                     from its service: rotate a mounted volume with a password or key file, \
                     or rotate it unmounted",
                    own.kind
                ),
            ));
        }
        let others: Vec<u32> = keyring
            .store()
            .slots()
            .map_err(VolumeError::from)?
            .iter()
            .map(|s| s.slot_id)
            .filter(|&id| id != keep)
            .collect();
        if !others.is_empty() && !drop_others {
            return Err(VolumeError::from(KeystoreError::OtherSlots(others)).into());
        }
        let old_generation = keyring.generation();
        let new_kek = Kek::generate().map_err(|e| CliError::new(exit::OTHER, e.to_string()))?;
        let kept = vec![
            keyring
                .rebuilt_slot(keep, auth.secret.expose(), &new_kek)
                .map_err(VolumeError::from)?,
        ];
        let begun = keyring
            .begin_rotation(new_kek, kept, drop_others)
            .map_err(VolumeError::from)?;
        self.rotation.start(&self.vol, batch_rows.unwrap_or(0));
        let mut message = format!(
            "Rotation begun: KEK generation {old_generation} -> {}; slot {keep} holds the new \
             KEK; the key rows are re-wrapped in the background (`cofferfs status {}` follows \
             it).",
            begun.rotation.to,
            self.cipherdir.display()
        );
        if !begun.dropped_slots.is_empty() {
            let ids: Vec<String> = begun.dropped_slots.iter().map(u32::to_string).collect();
            message.push_str(&format!("\nRemoved key slot(s) {}.", ids.join(", ")));
        }
        Ok(Reply::done(
            message,
            json!({ "to_generation": begun.rotation.to, "dropped": begun.dropped_slots }),
        ))
    }

    fn passwd(
        &self,
        auth: &Proof,
        slot: Option<u32>,
        new: &[u8],
        kdf: Kdf,
    ) -> Result<Reply, CliError> {
        self.writable()?;
        let opened = self.prove(auth)?;
        let target = slot.unwrap_or(opened);
        let keyring = self.vol.keyring();
        let record = crate::cli::passwd::password_slot(keyring, target)?;
        let kdf = resolve_kdf(kdf, record.kdf)?;
        let started = Instant::now();
        keyring
            .rewrap_slot(target, new, kdf)
            .map_err(VolumeError::from)?;
        Ok(Reply::done(
            format!(
                "Changed the password of key slot {target} (argon2id m={} KiB t={} p={}, {:.2} s).",
                kdf.m_kib,
                kdf.t,
                kdf.p,
                started.elapsed().as_secs_f64()
            ),
            json!({ "slot": target }),
        ))
    }

    fn keys_add(&self, auth: &Proof, label: &str, new: &NewSecret) -> Result<Reply, CliError> {
        self.writable()?;
        self.prove(auth)?;
        let keyring = self.vol.keyring();
        let (id, what) = match new {
            NewSecret::Password { secret, kdf } => {
                let kdf = resolve_kdf(*kdf, KdfParams::default())?;
                let id = keyring
                    .add_slot(SlotKind::Password, label, secret.expose(), kdf)
                    .map_err(VolumeError::from)?;
                (id, "password".to_owned())
            }
            NewSecret::Keyfile { secret } => {
                let id = keyring
                    .add_slot(
                        SlotKind::Keyfile,
                        label,
                        secret.expose(),
                        KdfParams::default(),
                    )
                    .map_err(VolumeError::from)?;
                (id, "keyfile".to_owned())
            }
            NewSecret::Pkcs11 { secret, params } => {
                let params = Pkcs11Params::decode(params)
                    .map_err(|e| CliError::new(exit::USAGE, format!("PKCS#11 parameters: {e}")))?;
                let id = keyring
                    .add_pkcs11_slot(label, secret.expose(), &params)
                    .map_err(VolumeError::from)?;
                (
                    id,
                    format!(
                        "pkcs11 token {:?} serial {}, key {:?}",
                        params.token, params.serial, params.key
                    ),
                )
            }
            NewSecret::Transit { secret, params } => {
                let params = TransitParams::decode(params)
                    .map_err(|e| CliError::new(exit::USAGE, format!("Transit parameters: {e}")))?;
                let id = keyring
                    .add_transit_slot(label, secret.expose(), &params)
                    .map_err(VolumeError::from)?;
                (
                    id,
                    format!(
                        "transit {}/{} version {}",
                        params.mount,
                        params.key,
                        params.key_version().unwrap_or(0)
                    ),
                )
            }
        };
        Ok(Reply::done(
            format!("Added key slot {id} ({what}, label {label:?})."),
            json!({ "slot": id }),
        ))
    }

    fn keys_remove(&self, auth: &Proof, doomed: u32) -> Result<Reply, CliError> {
        self.writable()?;
        // The secret first, as offline: a wrong one is 12 whatever the slot asked for.
        let opened = self.prove(auth)?;
        let store = self.vol.keyring().store();
        let slots = store.slots().map_err(VolumeError::from)?;
        if !slots.iter().any(|s| s.slot_id == doomed) {
            return Err(VolumeError::from(KeystoreError::NoSuchSlot(doomed)).into());
        }
        if slots.len() == 1 {
            return Err(VolumeError::from(KeystoreError::LastSlot(doomed)).into());
        }
        // The secret must open a slot that stays (as offline: `keys remove`).
        if opened == doomed {
            let kind = slot_kind(auth.kind);
            let _one_at_a_time = self.proofs.lock();
            let opens_another = slots
                .iter()
                .filter(|s| s.slot_id != doomed && s.kind == kind)
                .filter(|s| auth.slot.is_none_or(|only| only == s.slot_id))
                .any(|s| {
                    store
                        .unlock_with(kind, auth.secret.expose(), Some(s.slot_id))
                        .is_ok()
                });
            if !opens_another {
                return Err(CliError::new(
                    exit::KEY_SLOT,
                    format!(
                        "the secret given opens only slot {doomed} itself: give the secret of \
                         a slot that stays (removing a slot must leave you a way in)"
                    ),
                ));
            }
        }
        store.remove_slot(doomed).map_err(VolumeError::from)?;
        Ok(Reply::done(
            format!("Removed key slot {doomed}."),
            json!({ "slot": doomed }),
        ))
    }

    fn reencrypt(&self, auth: &Proof, paths: &[String]) -> Result<Reply, CliError> {
        self.writable()?;
        if !self.xattrs {
            return Err(CliError::new(
                exit::LOCKED,
                format!(
                    "{} is mounted --no-xattr: a rewrite through this mount would drop the \
                     files' extended attributes; remount without --no-xattr, or unmount and \
                     run reencrypt on the cipherdir",
                    self.cipherdir.display()
                ),
            ));
        }
        self.prove(auth)?;
        let (mut lines, mut done, mut left) = (Vec::new(), 0u64, 0u64);
        for p in paths {
            let line = super::reencrypt::reencrypt_one(&self.vol, &self.mountpoint, p);
            if line.done {
                done += 1;
            } else {
                left += 1;
            }
            lines.push(line.text);
        }
        let summary = format!("{done} files re-encrypted, {left} left alone");
        let data = json!({ "lines": lines, "done": done, "left": left });
        Ok(if left == 0 {
            Reply::done(summary, data)
        } else {
            Reply {
                data,
                ..Reply::error(exit::REENCRYPT_INCOMPLETE, summary)
            }
        })
    }

    fn fsck(&self, auth: &Proof) -> Result<Reply, CliError> {
        self.prove(auth)?;
        let report = crate::volume::fsck::fsck_with(&self.vol, false, false, &mut |_| {})?;
        let text = crate::cli::fsck::report_text(&report);
        let data = json!({ "text": text, "problems": report.problems.len() });
        Ok(match crate::cli::fsck::verdict(&report, false) {
            Ok(line) => Reply::done(line, data),
            Err(e) => Reply {
                data,
                ..Reply::error(e.code, e.message)
            },
        })
    }
}

/// The keystore's slot kind of a proof.
fn slot_kind(kind: ProofKind) -> SlotKind {
    match kind {
        ProofKind::Password => SlotKind::Password,
        ProofKind::Keyfile => SlotKind::Keyfile,
        ProofKind::Transit => SlotKind::Transit,
        ProofKind::Pkcs11 => SlotKind::Pkcs11,
    }
}

/// `kdf`'s set parameters over `base`, within the bounds a slot may have (as `--argon2-*`).
fn resolve_kdf(kdf: Kdf, base: KdfParams) -> Result<KdfParams, CliError> {
    crate::cli::unlock::KdfArgs {
        argon2_memory: kdf.m_kib,
        argon2_time: kdf.t,
        argon2_lanes: kdf.p,
    }
    .resolve(base)
}

/// What the control socket's listener holds: the daemon's state until the unmount, which
/// [`close`](Self::close)s it so that the volume (and with it the header store, whose WAL is
/// folded back when the last reference goes) is dropped when the daemon ends, whatever the
/// listener thread still holds. A request after that is told the volume is going away.
pub struct ControlHandle(Mutex<Option<Arc<DaemonControl>>>);

impl ControlHandle {
    /// A handle on `control`.
    pub fn new(control: DaemonControl) -> Self {
        ControlHandle(Mutex::new(Some(Arc::new(control))))
    }

    /// The daemon's state, while it serves.
    pub fn get(&self) -> Option<Arc<DaemonControl>> {
        self.0.lock().clone()
    }

    /// Lets go of the daemon's state (unmount).
    pub fn close(&self) {
        self.0.lock().take();
    }
}

impl Handler for ControlHandle {
    fn handle(&self, request: Request, _peer: Peer) -> Reply {
        match self.get() {
            Some(control) => control.answer(request),
            None => Reply::error(exit::CONTROL, "the volume is being unmounted"),
        }
    }
}

impl DaemonControl {
    /// Answers one request.
    pub fn answer(&self, request: Request) -> Reply {
        let result = match &request {
            Request::Status => self.status(),
            Request::Passwd {
                auth,
                slot,
                new_secret,
                kdf,
            } => self.passwd(auth, *slot, new_secret.expose(), *kdf),
            Request::KeysAdd { auth, label, new } => self.keys_add(auth, label, new),
            Request::KeysRemove { auth, slot } => self.keys_remove(auth, *slot),
            Request::Fsck { auth } => self.fsck(auth),
            Request::Reencrypt { auth, paths } => self.reencrypt(auth, paths),
            Request::Rotate {
                auth,
                drop_other_slots,
                batch_rows,
            } => self.rotate(auth, *drop_other_slots, *batch_rows),
        };
        result.unwrap_or_else(|e| Reply::error(e.code, e.message))
    }
}
