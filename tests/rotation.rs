//! Incremental KEK rotation through the keyring API (what `cofferfs rotate` and the daemon
//! drive), on real volumes and real SQLite: an interrupted rotation resumes, rows of both
//! generations read meanwhile, new rows take the new generation, steps run on a background
//! thread while other threads create and read keys, quarantined rows follow (also one that
//! moves between the tables during a pass), and the old KEK is gone at the end.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use cofferfs::crypto::{CryptoError, Kek, wrap};
use cofferfs::format::FileId;
use cofferfs::keystore::KeystoreError;
use cofferfs::volume::Volume;
use common::damage::db_exec;
use common::{PASSWORD, TestVolume, read_file, write_files};

fn check_files(vol: &Volume, c: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (name, data) in files {
        assert_eq!(&read_file(vol, &c.join(name)), data, "{name}");
    }
}

/// A copy of the keyring's current KEK.
fn kek_of(vol: &Volume) -> Kek {
    vol.keyring().kek_for_tests()
}

/// Begins a rotation keeping the password slot 0.
fn begin(vol: &Volume) -> Kek {
    let new_kek = Kek::generate().unwrap();
    let copy = Kek::from_slice(new_kek.expose()).unwrap();
    let kept = vec![vol.keyring().rebuilt_slot(0, PASSWORD, &new_kek).unwrap()];
    vol.keyring().begin_rotation(new_kek, kept, false).unwrap();
    copy
}

/// (rows of generation `g`, rows of any other generation) over both key-row tables.
fn generations(c: &Path, g: u64) -> (i64, i64) {
    let conn = rusqlite::Connection::open(c.join("cofferfs.db")).unwrap();
    let mut at = 0;
    let mut other = 0;
    for t in ["file_keys", "quarantined_keys"] {
        let (a, o): (i64, i64) = conn
            .query_row(
                &format!(
                    "SELECT count(*) FILTER (WHERE kek_generation = ?1),
                            count(*) FILTER (WHERE kek_generation != ?1) FROM {t}"
                ),
                [g as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        at += a;
        other += o;
    }
    (at, other)
}

fn previous_kek_column(c: &Path) -> Option<Vec<u8>> {
    let conn = rusqlite::Connection::open(c.join("cofferfs.db")).unwrap();
    conn.query_row("SELECT previous_kek FROM volume WHERE id = 1", [], |r| {
        r.get(0)
    })
    .unwrap()
}

#[test]
fn an_interrupted_rotation_resumes_and_every_row_reads_meanwhile() {
    let tv = TestVolume::new();
    let c = tv.cipherdir();
    let (mut files, old_kek) = {
        let vol = tv.open();
        let files = write_files(&vol, &c, "f", 12);
        for _ in 0..3000 {
            vol.keyring().new_file_key(None).unwrap();
        }
        (files, kek_of(&vol))
    };
    let rows = 3012;
    {
        let vol = tv.open();
        assert_eq!(vol.keyring().rotation_pending(), None);
        let step = vol.keyring().rotation_step(100).unwrap();
        assert!(step.finished && step.rotation.is_none(), "{step:?}");
        begin(&vol);
        let pending = vol.keyring().rotation_pending().unwrap();
        assert_eq!((pending.from, pending.to), (1, 2));
        // A second begin is refused while this one is pending.
        let again = Kek::generate().unwrap();
        let kept = vec![vol.keyring().rebuilt_slot(0, PASSWORD, &again).unwrap()];
        assert!(matches!(
            vol.keyring().begin_rotation(again, kept, false),
            Err(KeystoreError::RotationPending { from: 1, to: 2 })
        ));
        let mut done = 0;
        for _ in 0..10 {
            let p = vol.keyring().rotation_step(100).unwrap();
            assert!(!p.finished);
            done += p.rewrapped;
        }
        assert_eq!(done, 1000);
        // New files of a pending rotation take the new generation.
        files.extend(write_files(&vol, &c, "mid", 5));
        // Interrupted here: the keyring goes away with the rotation pending.
    }
    assert!(previous_kek_column(&c).is_some());
    assert_eq!(generations(&c, 2), (1005, (rows - 1000) as i64));
    let counts = cofferfs::volume::open_store_read_only(&c)
        .unwrap()
        .rotation_counts()
        .unwrap()
        .unwrap();
    assert_eq!(
        (counts.from, counts.to, counts.done, counts.left),
        (1, 2, 1005, (rows - 1000) as u64)
    );

    let vol = tv.open();
    let pending = vol
        .keyring()
        .rotation_pending()
        .expect("found pending on open");
    assert_eq!((pending.from, pending.to), (1, 2));
    assert_eq!(vol.keyring().generation(), 2);
    // Rows of both generations open, whichever KEK wraps them.
    check_files(&vol, &c, &files);
    let ids = vol.keyring().store().file_ids().unwrap();
    assert_eq!(ids.len(), rows + 5);
    for id in &ids {
        vol.keyring().fek(id).unwrap();
    }
    vol.keyring().clear_cache();
    let mut steps = 0;
    let total = loop {
        let p = vol.keyring().rotation_step(700).unwrap();
        steps += 1;
        if p.finished {
            break p.rewrapped_total;
        }
        assert!(steps < 100, "the rotation does not end");
    };
    assert_eq!(total, (rows - 1000) as u64);
    assert_eq!(vol.keyring().rotation_pending(), None);
    assert_eq!(previous_kek_column(&c), None);
    assert_eq!(generations(&c, 2), ((rows + 5) as i64, 0));
    let wal = c.join("cofferfs.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().len() == 0,
        "WAL checkpointed at the end"
    );
    // The old KEK opens no row any more.
    let store = vol.keyring().store();
    for id in &ids {
        let (w, _) = store.file_key(id).unwrap().unwrap();
        assert_eq!(
            wrap::unwrap_fek(&old_kek, &w, id).unwrap_err(),
            CryptoError::AuthFailed
        );
    }
    check_files(&vol, &c, &files);
    drop(vol);
    let vol = tv.open();
    assert_eq!(vol.keyring().rotation_pending(), None);
    check_files(&vol, &c, &files);
}

#[test]
fn steps_on_a_background_thread_while_keys_are_created_and_read() {
    let tv = TestVolume::new();
    let c = tv.cipherdir();
    let vol = Arc::new(tv.open());
    let files = write_files(&vol, &c, "f", 8);
    let mut known: Vec<(FileId, [u8; 32])> = (0..4000)
        .map(|_| {
            let (id, fek) = vol.keyring().new_file_key(None).unwrap();
            (id, *fek.expose())
        })
        .collect();
    vol.keyring().clear_cache();
    begin(&vol);
    let stepper = {
        let vol = vol.clone();
        std::thread::spawn(move || {
            let mut steps = 0u64;
            loop {
                steps += 1;
                if vol.keyring().rotation_step(64).unwrap().finished {
                    return steps;
                }
            }
        })
    };
    let mut created = Vec::new();
    for i in 0..600 {
        let (id, fek) = vol.keyring().new_file_key(None).unwrap();
        created.push((id, *fek.expose()));
        let (id, bytes) = &known[(i * 7) % known.len()];
        vol.keyring().clear_cache();
        assert_eq!(vol.keyring().fek(id).unwrap().expose(), bytes);
    }
    let steps = stepper.join().unwrap();
    assert!(steps > 4000 / 64, "{steps} steps");
    known.extend(created);
    assert_eq!(vol.keyring().rotation_pending(), None);
    assert_eq!(generations(&c, 2), (known.len() as i64 + 8, 0));
    vol.keyring().clear_cache();
    for (id, bytes) in &known {
        assert_eq!(vol.keyring().fek(id).unwrap().expose(), bytes);
    }
    check_files(&vol, &c, &files);
}

#[test]
fn quarantined_rows_follow_even_one_that_moves_during_the_pass() {
    let tv = TestVolume::new();
    let c = tv.cipherdir();
    let vol = tv.open();
    let files = write_files(&vol, &c, "f", 3);
    let ids: Vec<FileId> = (0..50)
        .map(|_| vol.keyring().new_file_key(None).unwrap().0)
        .collect();
    let store = vol.keyring().store();
    assert_eq!(store.quarantine_file_keys(&ids[..10], "test").unwrap(), 10);
    // A garbage quarantined row (no KEK opens it) must not block the rotation.
    db_exec(
        &c,
        "INSERT INTO quarantined_keys (file_id, wrapped_fek, kek_generation, owner, reason,
            quarantined_at) VALUES (zeroblob(16), randomblob(60), 1, NULL, 'garbage', 0)",
    );
    vol.keyring().clear_cache();
    begin(&vol);
    // One step visits all the 43 live rows; then a quarantined row of the old generation
    // moves back into file_keys, behind the pass.
    let p = vol.keyring().rotation_step(1000).unwrap();
    assert_eq!(p.rewrapped, 43);
    assert!(store.restore_quarantined_key(&ids[0]).unwrap());
    let mut finished = false;
    for _ in 0..10 {
        if vol.keyring().rotation_step(1000).unwrap().finished {
            finished = true;
            break;
        }
    }
    assert!(finished);
    assert_eq!(
        generations(&c, 2),
        (54, 0),
        "the moved row was re-wrapped too"
    );
    vol.keyring().clear_cache();
    for id in &ids {
        vol.keyring().fek(id).unwrap();
    }
    check_files(&vol, &c, &files);
}

#[test]
fn a_row_of_an_unknown_generation_is_refused() {
    let tv = TestVolume::new();
    let c = tv.cipherdir();
    let vol = tv.open();
    let (id, _) = vol.keyring().new_file_key(None).unwrap();
    vol.keyring().clear_cache();
    db_exec(&c, "UPDATE file_keys SET kek_generation = 7");
    match vol.keyring().fek(&id) {
        Err(KeystoreError::KeyRowGeneration {
            row: 7,
            volume: 1,
            pending: false,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}
