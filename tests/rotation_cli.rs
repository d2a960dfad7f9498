//! `cofferfs rotate` as a real process on real volumes: kill -9 at random points of an
//! incremental rotation, after each of which every slot left opens, every row unwraps and
//! every file reads byte-identical through a real mount (which also creates files while the
//! rotation is pending); the next `rotate` finishes an interrupted one first; `info` shows a
//! pending rotation; `fsck` accepts rows of the previous generation while one is pending and
//! flags any other; the v2 fixture rotates before and after its migration.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use cofferfs::crypto::Kek;
use cofferfs::keystore::SlotKind;
use cofferfs::volume::Volume;
use common::damage::{cipher_path, db_exec, header_id};
use common::kill;
use common::mount::{Mounted, PASSWORD, bin, run_with_stdin};
use common::pattern;
use common::rng::Rng;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(args: &[&str], stdin: &str) -> String {
    let (code, out, err) = run_with_stdin(args, stdin);
    assert_eq!(code, 0, "cofferfs {args:?} failed: {out}{err}");
    out
}

/// A volume with `files` written through a real mount (then unmounted) and `rows` more key
/// rows added through the keyring (what a create does, without the files: fast).
fn volume_with_rows(files: usize, rows: usize) -> (Mounted, BTreeMap<String, Vec<u8>>) {
    let mut m = Mounted::new();
    let mut contents = BTreeMap::new();
    for i in 0..files {
        let name = format!("f{i}");
        let data = pattern(i * 3001 + 1, i as u8);
        std::fs::write(m.path(&name), &data).unwrap();
        contents.insert(name, data);
    }
    m.unmount();
    let vol = common::open_volume(&m.cipherdir, PASSWORD.as_bytes()).unwrap();
    for _ in 0..rows {
        vol.keyring().new_file_key(None).unwrap();
    }
    vol.keyring().store().checkpoint().unwrap();
    (m, contents)
}

/// Begins a rotation through the library and re-wraps `steps` batches of `batch` rows, then
/// lets go: a rotation interrupted at a known point.
fn leave_pending(c: &Path, steps: usize, batch: usize) {
    let vol = common::open_volume(c, PASSWORD.as_bytes()).unwrap();
    let new_kek = Kek::generate().unwrap();
    let kept = vec![
        vol.keyring()
            .rebuilt_slot(vol.slot_id(), PASSWORD.as_bytes(), &new_kek)
            .unwrap(),
    ];
    vol.keyring().begin_rotation(new_kek, kept, true).unwrap();
    for _ in 0..steps {
        assert!(!vol.keyring().rotation_step(batch).unwrap().finished);
    }
}

/// Every file reads byte-identical through a real mount; the mount then creates one more
/// (added to `files`).
fn check_through_mount(m: &mut Mounted, files: &mut BTreeMap<String, Vec<u8>>, new: &str) {
    m.mount(&[]);
    for (name, data) in files.iter() {
        assert_eq!(&std::fs::read(m.path(name)).unwrap(), data, "{name}");
    }
    let data = pattern(5000, new.len() as u8);
    std::fs::write(m.path(new), &data).unwrap();
    files.insert(new.to_owned(), data);
    m.unmount();
}

/// `Volume::open_with` slot `id` alone, retried while the volume lock is still held for a
/// moment (see `common::open_volume`).
fn open_slot(c: &Path, kind: SlotKind, secret: &[u8], id: u32) -> cofferfs::volume::Result<Volume> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match Volume::open_with(c, kind, secret, Some(id)) {
            Err(cofferfs::volume::VolumeError::Locked(_))
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            r => return r,
        }
    }
}

/// Every slot of the volume opens with its secret (password or key file), and through each
/// every key row unwraps. Returns (generation, rotation pending).
fn check_slots_and_rows(c: &Path, keyfile: &[u8], rows: usize, what: &str) -> (u64, bool) {
    let store = cofferfs::volume::open_store_read_only(c).unwrap();
    let slots = store.slots().unwrap();
    drop(store);
    assert!(!slots.is_empty(), "{what}");
    let mut seen = None;
    for slot in &slots {
        let secret = match slot.kind {
            SlotKind::Password => PASSWORD.as_bytes(),
            SlotKind::Keyfile => keyfile,
            SlotKind::Transit | SlotKind::Pkcs11 => {
                unreachable!("only password and key-file slots here")
            }
        };
        let vol = open_slot(c, slot.kind, secret, slot.slot_id)
            .unwrap_or_else(|e| panic!("{what}: slot {}: {e}", slot.slot_id));
        assert_eq!(vol.slot_id(), slot.slot_id, "{what}");
        let ids = vol.keyring().store().file_ids().unwrap();
        assert_eq!(ids.len(), rows, "{what}");
        for id in &ids {
            vol.keyring()
                .fek(id)
                .unwrap_or_else(|e| panic!("{what}: slot {}: {id}: {e}", slot.slot_id));
        }
        seen = Some((
            vol.keyring().generation(),
            vol.keyring().rotation_pending().is_some(),
        ));
    }
    seen.unwrap()
}

#[test]
fn kill_9_at_random_points_of_a_rotation_then_every_slot_opens_and_every_file_reads() {
    const EXTRA_ROWS: usize = 20_000;
    let (mut m, mut files) = volume_with_rows(12, EXTRA_ROWS);
    let c = m.cipherdir.clone();
    let dir = m.dir.path().to_owned();
    let kf = dir.join("kf");
    ok(&["keys", "new-keyfile", s(&kf)], "");
    let key = std::fs::read(&kf).unwrap();
    let add_keyfile_slot = || {
        ok(
            &["keys", "add", s(&c), "--keyfile", s(&kf), "--label", "kf"],
            &format!("{PASSWORD}\n"),
        )
    };
    add_keyfile_slot();
    let passfile = dir.join("pw");
    std::fs::write(&passfile, format!("{PASSWORD}\n")).unwrap();
    // Keeps the password slot, drops the key-file slot, 50 rows per transaction.
    let rotate = || {
        Command::new(bin())
            .args([
                "rotate",
                s(&c),
                "--drop-other-slots",
                "--passfile",
                s(&passfile),
                "--batch-rows",
                "50",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let full = kill::full_run(&rotate);
    let mut rows = files.len() + EXTRA_ROWS;
    let (mut generation, pending) = check_slots_and_rows(&c, &key, rows, "after a full run");
    assert_eq!((generation, pending), (2, false));

    let seed = kill::clock_seed();
    let mut rng = Rng(seed);
    let mut interrupted = 0;
    for rep in 0..12 {
        // Dropped by the last run, unless it was killed before its first transaction.
        let store = cofferfs::volume::open_store_read_only(&c).unwrap();
        if store.slots().unwrap().len() == 1 {
            add_keyfile_slot();
        }
        drop(store);
        let delay = kill::random_delay(full, rng.next());
        let status = kill::kill_after(&rotate, delay);
        let what = format!("seed {seed:#x}, rep {rep}, SIGKILL after {delay:?} of {full:?}");
        let (g, pending) = check_slots_and_rows(&c, &key, rows, &what);
        assert!(
            g == generation || g == generation + 1,
            "{what}: generation {g} after {generation}"
        );
        if status.success() {
            assert_eq!((g, pending), (generation + 1, false), "{what}");
        }
        interrupted += usize::from(pending);
        // The mount reads everything and creates a file, pending rotation or not.
        check_through_mount(&mut m, &mut files, &format!("new{rep}"));
        rows += 1;
        generation = g;
    }
    eprintln!("{interrupted} of 12 kills left a rotation pending (full run {full:?})");
    // One more, uninterrupted: whatever was pending is finished, and a new rotation done.
    let (code, out, err) = run_with_stdin(
        &[
            "rotate",
            s(&c),
            "--drop-other-slots",
            "--passfile",
            s(&passfile),
        ],
        "",
    );
    assert_eq!(code, 0, "{out}{err}");
    let (g, pending) = check_slots_and_rows(&c, &key, rows, "last run");
    assert!(!pending);
    assert!(g == generation + 1, "{g} after {generation}: {out}");
    check_through_mount(&mut m, &mut files, "last");
}

#[test]
fn rotate_finishes_an_interrupted_rotation_first_and_info_shows_it() {
    let (mut m, mut files) = volume_with_rows(4, 3000);
    let c = m.cipherdir.clone();
    leave_pending(&c, 5, 200);
    let out = ok(&["info", s(&c)], "");
    assert!(out.contains("kek generation:  2"), "{out}");
    assert!(
        out.contains("rotation:        in progress, generation 1 -> 2: 1000 of 3004 key rows"),
        "{out}"
    );
    // A key row made while it is pending (what a create does) is of the new generation. Made
    // through the library: a read-write mount would resume the rotation in its daemon thread
    // (tests/online.rs covers that), and this test is about `rotate` finishing it.
    {
        let vol = common::open_volume(&c, PASSWORD.as_bytes()).unwrap();
        vol.keyring().new_file_key(None).unwrap();
    }
    let out = ok(&["info", s(&c)], "");
    assert!(out.contains("1001 of 3005 key rows"), "{out}");

    let out = ok(&["rotate", s(&c)], &format!("{PASSWORD}\n"));
    assert!(
        out.starts_with("Finished the interrupted rotation to generation 2: 2004 file keys"),
        "{out}"
    );
    assert!(
        out.contains("Rotated the KEK: generation 2 -> 3, 3005 file keys"),
        "{out}"
    );
    let out = ok(&["info", s(&c)], "");
    assert!(out.contains("kek generation:  3"), "{out}");
    assert!(!out.contains("rotation:"), "{out}");
    check_through_mount(&mut m, &mut files, "after");
}

#[test]
fn fsck_accepts_the_previous_generation_while_pending_and_flags_any_other() {
    // No extra rows: fsck would report them as orphans.
    let (m, _files) = volume_with_rows(3, 0);
    let c = m.cipherdir.clone();
    let id = header_id(&cipher_path(&c, "/f1"));
    // One row of the three re-wrapped: both generations are present.
    leave_pending(&c, 1, 1);
    let (code, out, err) = run_with_stdin(&["fsck", s(&c)], &format!("{PASSWORD}\n"));
    assert_eq!(code, 0, "{out}{err}");

    db_exec(
        &c,
        &format!("UPDATE file_keys SET kek_generation = 9 WHERE lower(hex(file_id)) = '{id}'"),
    );
    let (code, out, err) = run_with_stdin(&["fsck", s(&c)], &format!("{PASSWORD}\n"));
    assert_eq!(code, 26, "{out}{err}");
    assert!(
        out.contains(&format!(
            "key row of file {id} is of KEK generation 9, but the volume is at generation 2 \
             with a rotation pending"
        )),
        "{out}"
    );
}

#[test]
fn the_v2_fixture_rotates_before_and_after_its_migration() {
    let (_dir, c) = common::fixture_copy("v2");
    let pw = format!("{}\n", common::FIXTURE_PASSWORD);
    // Schema 1 (not migrated): the one-transaction rotation.
    let out = ok(&["rotate", s(&c)], &pw);
    assert!(
        out.starts_with("Rotated the KEK: generation 1 -> 2"),
        "{out}"
    );
    let mut m = Mounted::adopt(c.clone());
    m.password = common::FIXTURE_PASSWORD.to_owned();
    m.mount(&[]);
    common::mount::check_v2_fixture_contents(&m);
    m.unmount();
    // The read-write mount migrated it to format v3: incremental from now on.
    let out = ok(&["rotate", s(&c), "--batch-rows", "2"], &pw);
    assert!(
        out.starts_with("Rotated the KEK: generation 2 -> 3"),
        "{out}"
    );
    let conn = rusqlite::Connection::open(c.join("cofferfs.db")).unwrap();
    let (prev, stale): (Option<Vec<u8>>, i64) = conn
        .query_row(
            "SELECT previous_kek, (SELECT count(*) FROM file_keys WHERE kek_generation != 3)
             FROM volume",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((prev, stale), (None, 0));
    drop(conn);
    m.mount(&[]);
    common::mount::check_v2_fixture_contents(&m);
    m.unmount();
}
