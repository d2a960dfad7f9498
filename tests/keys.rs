//! Key lifecycle from the command line on real volumes: key slots (list, add, remove,
//! new-keyfile), key-file unlock (also for `mount`), `passwd`, `rotate` (content untouched,
//! old KEK useless), key changes on a mounted volume (through its daemon), and kill -9 in the middle of `rotate`.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use cofferfs::crypto::{CryptoError, Kek, wrap};
use cofferfs::keystore::{KeystoreError, SlotKind};
use cofferfs::volume::{Volume, VolumeError};
use common::kill;
use common::mount::{CHEAP_KDF as CHEAP, Mounted, bin, init_volume, run_with_stdin as run};
use common::{PASSWORD, TestVolume, read_file};

const PW: &str = "correct horse";

fn ok(args: &[&str], stdin: &str) -> String {
    let (code, out, err) = run(args, stdin);
    assert_eq!(code, 0, "cofferfs {args:?} failed: {out}{err}");
    out
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn new_volume(dir: &Path) -> PathBuf {
    let c = dir.join("c");
    init_volume(&c, &[]);
    c
}

fn add_keyfile_slot(c: &Path, kf: &Path) {
    ok(&["keys", "new-keyfile", s(kf)], "");
    ok(
        &["keys", "add", s(c), "--keyfile", s(kf), "--label", "backup"],
        &format!("{PW}\n"),
    );
}

fn add_password_slot(c: &Path, current: &str, new: &str) -> String {
    let mut args = vec!["keys", "add", s(c), "--label", "second"];
    args.extend_from_slice(&CHEAP);
    ok(&args, &format!("{current}\n{new}\n"))
}

fn open_err(c: &Path, pw: &str) -> VolumeError {
    common::open_volume(c, pw.as_bytes()).unwrap_err()
}

fn write_files(vol: &Volume, c: &Path, n: usize) -> BTreeMap<String, Vec<u8>> {
    common::write_files(vol, c, "f", n)
}

/// Bytes and mtime of every file in the cipherdir except the header store.
fn snapshot(c: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    std::fs::read_dir(c)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().starts_with("cofferfs.db"))
        .map(|e| {
            let m = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                (std::fs::read(e.path()).unwrap(), m.modified().unwrap()),
            )
        })
        .collect()
}

#[test]
fn new_keyfile_is_random_private_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let kf = dir.path().join("kf");
    let out = ok(&["keys", "new-keyfile", s(&kf)], "");
    assert!(out.contains("64-byte key file"), "{out}");
    let meta = std::fs::metadata(&kf).unwrap();
    assert_eq!(meta.len(), 64);
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let before = std::fs::read(&kf).unwrap();
    let (code, out, err) = run(&["keys", "new-keyfile", s(&kf)], "");
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("File exists"), "{err}");
    assert_eq!(std::fs::read(&kf).unwrap(), before);
    let kf2 = dir.path().join("kf2");
    ok(&["keys", "new-keyfile", s(&kf2)], "");
    assert_ne!(std::fs::read(&kf2).unwrap(), before);
}

#[test]
fn slots_are_listed_added_and_removed_as_luks_does() {
    let dir = tempfile::tempdir().unwrap();
    let c = new_volume(dir.path());
    let kf = dir.path().join("kf");
    add_keyfile_slot(&c, &kf);
    let out = add_password_slot(&c, PW, "second pw");
    assert!(out.contains("Added key slot 2 (password"), "{out}");

    let list = ok(&["keys", "list", s(&c)], "");
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 4, "{list}");
    assert!(lines[0].starts_with("SLOT  KIND"), "{list}");
    assert!(lines[1].starts_with("0     password  argon2id m=1024 KiB t=1 p=1"));
    assert!(
        lines[2].starts_with("1     keyfile   hkdf-sha256"),
        "{list}"
    );
    assert!(lines[2].ends_with("backup"), "{list}");
    assert!(lines[3].contains("password") && lines[3].ends_with("second"));

    // Every slot unlocks, each with its own kind of secret only.
    let key = std::fs::read(&kf).unwrap();
    assert_eq!(common::open_volume(&c, PW.as_bytes()).unwrap().slot_id(), 0);
    assert_eq!(common::open_volume(&c, b"second pw").unwrap().slot_id(), 2);
    let v = Volume::open_with(&c, SlotKind::Keyfile, &key, None).unwrap();
    assert_eq!(v.slot_id(), 1);
    drop(v);
    assert!(matches!(
        common::open_volume(&c, &key).unwrap_err(),
        VolumeError::Keystore(KeystoreError::WrongPassword)
    ));

    // Wrong current secret, short key file.
    let (code, _, err) = run(&["keys", "add", s(&c), "--keyfile", s(&kf)], "nope\n");
    assert_eq!(code, 12, "{err}");
    let short = dir.path().join("short");
    std::fs::write(&short, [1u8; 31]).unwrap();
    let (code, _, err) = run(
        &["keys", "add", s(&c), "--keyfile", s(&short)],
        &format!("{PW}\n"),
    );
    assert_eq!(code, 10, "{err}");
    assert!(err.contains("at least 32"), "{err}");

    // Removing needs the secret of a slot that stays.
    let (code, _, err) = run(&["keys", "remove", s(&c), "0"], &format!("{PW}\n"));
    assert_eq!(code, 16, "{err}");
    assert!(err.contains("opens only slot 0"), "{err}");
    let (code, _, err) = run(&["keys", "remove", s(&c), "7"], &format!("{PW}\n"));
    assert_eq!(code, 16, "{err}");
    assert!(err.contains("key slot 7 does not exist"), "{err}");
    let out = ok(&["keys", "remove", s(&c), "0"], "second pw\n");
    assert_eq!(out, "Removed key slot 0.\n");
    assert!(matches!(
        open_err(&c, PW),
        VolumeError::Keystore(KeystoreError::WrongPassword)
    ));
    ok(&["keys", "remove", s(&c), "2", "--keyfile", s(&kf)], "");
    // The last slot stays, whoever asks.
    let (code, out, err) = run(&["keys", "remove", s(&c), "1", "--keyfile", s(&kf)], "");
    assert_eq!((code, out.as_str()), (16, ""), "{err}");
    assert!(err.contains("key slot 1 is the last one"), "{err}");
    let list = ok(&["keys", "list", s(&c)], "");
    assert_eq!(list.lines().count(), 2, "{list}");
    // The lowest free id is reused, and a key file can unlock `keys add`.
    let mut args = vec!["keys", "add", s(&c), "--unlock-keyfile", s(&kf)];
    args.extend_from_slice(&CHEAP);
    let out = ok(&args, "third pw\n");
    assert!(out.contains("Added key slot 0"), "{out}");
    assert_eq!(common::open_volume(&c, b"third pw").unwrap().slot_id(), 0);
}

#[test]
fn passwd_rewraps_one_slot_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let c = new_volume(dir.path());
    add_password_slot(&c, PW, "other pw");
    let kf = dir.path().join("kf");
    add_keyfile_slot(&c, &kf);
    let files = {
        let vol = common::open_volume(&c, PW.as_bytes()).unwrap();
        write_files(&vol, &c, 5)
    };
    let before = snapshot(&c);
    let slots_before = cofferfs::volume::open_store_read_only(&c)
        .unwrap()
        .slots()
        .unwrap();

    let new_pw = dir.path().join("newpw");
    std::fs::write(&new_pw, "brand new\n").unwrap();
    let mut args = vec!["passwd", s(&c), "--new-passfile", s(&new_pw)];
    args.extend_from_slice(&CHEAP[..2]);
    let out = ok(&args, &format!("{PW}\n"));
    assert!(out.starts_with("Changed the password of key slot 0 (argon2id m=1024 KiB t=1 p=1"));

    assert!(matches!(
        open_err(&c, PW),
        VolumeError::Keystore(KeystoreError::WrongPassword)
    ));
    let (code, _, err) = run(&["passwd", s(&c)], &format!("{PW}\nx\n"));
    assert_eq!(code, 12, "{err}");
    let slots_after = cofferfs::volume::open_store_read_only(&c)
        .unwrap()
        .slots()
        .unwrap();
    assert_ne!(slots_after[0].salt, slots_before[0].salt);
    assert_eq!(slots_after[0].label, slots_before[0].label);
    assert_eq!(slots_after[1..], slots_before[1..], "other slots untouched");
    assert_eq!(snapshot(&c), before, "ciphertext untouched");
    {
        let vol = common::open_volume(&c, b"brand new").unwrap();
        assert_eq!(vol.slot_id(), 0);
        for (name, data) in &files {
            assert_eq!(&read_file(&vol, &c.join(name)), data);
        }
    }
    assert_eq!(common::open_volume(&c, b"other pw").unwrap().slot_id(), 1);
    let key = std::fs::read(&kf).unwrap();
    drop(Volume::open_with(&c, SlotKind::Keyfile, &key, None).unwrap());

    // Via the key file, slot 1 can be reset (both passwords from stdin: current, then new).
    let out = ok(
        &["passwd", s(&c), "--slot", "1", "--keyfile", s(&kf)],
        "reset pw\n",
    );
    assert!(out.contains("key slot 1"), "{out}");
    assert_eq!(common::open_volume(&c, b"reset pw").unwrap().slot_id(), 1);
    let (code, _, err) = run(&["passwd", s(&c), "--slot", "2"], "brand new\nx\n");
    assert_eq!(code, 16, "{err}");
    assert!(err.contains("not a password slot"), "{err}");
}

#[test]
fn rotate_rewraps_every_key_and_leaves_ciphertext_alone() {
    let tv = TestVolume::new();
    let c = tv.cipherdir();
    let (files, old_kek, ids) = {
        let vol = tv.open();
        let files = write_files(&vol, &c, 20);
        let old = Kek::from_slice(vol.keyring().kek_for_tests().expose()).unwrap();
        (files, old, vol.keyring().store().file_ids().unwrap())
    };
    assert_eq!(ids.len(), 20);
    // mtimes must be able to differ from "now" if something rewrote a file.
    std::thread::sleep(Duration::from_millis(20));
    let before = snapshot(&c);
    let passfile = tv.dir.path().join("pw");
    std::fs::write(&passfile, PASSWORD).unwrap();
    // Private, as a passfile should be (others' read access draws a warning on stderr).
    std::fs::set_permissions(
        &passfile,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();

    let (code, out, err) = run(&["rotate", s(&c), "--passfile", s(&passfile)], "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("Rotated the KEK: generation 1 -> 2, 20 file keys and the name key"),
        "{out}"
    );
    assert!(out.contains("slot 0 holds the new KEK"), "{out}");
    assert_eq!(err, "", "quiet when stderr is not a terminal");

    assert_eq!(
        snapshot(&c),
        before,
        "ciphertext bytes and mtimes unchanged"
    );
    let wal = c.join("cofferfs.db-wal");
    assert!(
        !wal.exists() || std::fs::metadata(&wal).unwrap().size() == 0,
        "WAL checkpointed"
    );
    let vol = tv.open();
    assert_eq!(vol.keyring().generation(), 2);
    let store = vol.keyring().store();
    for id in &ids {
        let (wrapped, generation) = store.file_key(id).unwrap().unwrap();
        assert_eq!(generation, 2);
        assert_eq!(
            wrap::unwrap_fek(&old_kek, &wrapped, id).unwrap_err(),
            CryptoError::AuthFailed,
            "the old KEK still unwraps {id}"
        );
    }
    let params = store.params().unwrap();
    assert!(wrap::unwrap_name_key(&old_kek, &params.wrapped_name_key, &params.volume_id).is_err());
    // Format v3: the name key is wrapped bound to the parameters, under the new KEK only.
    let binding = params.binding();
    assert!(wrap::unwrap_name_key_bound(&old_kek, &params.wrapped_name_key, &binding).is_err());
    assert!(
        wrap::unwrap_name_key_bound(
            &vol.keyring().kek_for_tests(),
            &params.wrapped_name_key,
            &binding
        )
        .is_ok()
    );
    for (name, data) in &files {
        assert_eq!(&read_file(&vol, &c.join(name)), data, "{name}");
    }
}

#[test]
fn rotate_refuses_to_leave_other_slots_with_the_old_kek() {
    let dir = tempfile::tempdir().unwrap();
    let c = new_volume(dir.path());
    add_password_slot(&c, PW, "other pw");
    let kf = dir.path().join("kf");
    add_keyfile_slot(&c, &kf);
    let (code, out, err) = run(&["rotate", s(&c)], &format!("{PW}\n"));
    assert_eq!((code, out.as_str()), (16, ""), "{err}");
    assert!(
        err.contains("3 key slots: 0 (password \"password\"), 1 (password \"second\"), 2 (keyfile \"backup\")"),
        "{err}"
    );
    assert!(err.contains("--drop-other-slots"), "{err}");
    assert_eq!(
        cofferfs::volume::open_store_read_only(&c)
            .unwrap()
            .params()
            .unwrap()
            .kek_generation,
        1
    );
    // Keep the key-file slot; the password slots go.
    let out = ok(
        &["rotate", s(&c), "--drop-other-slots", "--keyfile", s(&kf)],
        "",
    );
    assert!(out.contains("slot 2 holds the new KEK"), "{out}");
    assert!(out.contains("Removed key slot(s) 0, 1."), "{out}");
    assert!(matches!(
        open_err(&c, "other pw"),
        VolumeError::Keystore(KeystoreError::WrongPassword)
    ));
    let key = std::fs::read(&kf).unwrap();
    let v = Volume::open_with(&c, SlotKind::Keyfile, &key, None).unwrap();
    assert_eq!(v.keyring().generation(), 2);
}

#[test]
fn management_commands_work_on_a_mounted_volume_through_its_daemon() {
    let mut m = Mounted::new();
    std::fs::write(m.path("a"), b"hello").unwrap();
    let c = m.cipherdir.clone();
    let dir = m.dir.path().to_owned();
    let kf = dir.join("kf");
    ok(&["keys", "new-keyfile", s(&kf)], "");
    // Once refused with exit 15 ("in use by another cofferfs process"); now the daemon does
    // them over its control socket (tests/online.rs has the rest).
    let mut add = vec!["keys", "add", s(&c)];
    add.extend_from_slice(&CHEAP);
    let mut passwd = vec!["passwd", s(&c), "--slot", "1"];
    passwd.extend_from_slice(&CHEAP);
    for (args, stdin, says) in [
        (add, format!("{PW}\nnew\n"), "Added key slot 1"),
        (
            vec!["keys", "add", s(&c), "--keyfile", s(&kf)],
            format!("{PW}\n"),
            "Added key slot 2",
        ),
        (
            passwd,
            format!("{PW}\nnewer\n"),
            "Changed the password of key slot 1",
        ),
        (
            vec!["keys", "remove", s(&c), "2"],
            "newer\n".to_owned(),
            "Removed key slot 2",
        ),
    ] {
        let (code, out, err) = run(&args, &stdin);
        assert_eq!(code, 0, "{args:?}: {out}{err}");
        assert!(out.contains(says), "{args:?}: {out}");
    }
    // Listing only reads, like `info`.
    let list = ok(&["keys", "list", s(&c)], "");
    assert_eq!(list.lines().count(), 3, "{list}");

    // After unmounting, a key file slot mounts the volume.
    m.unmount();
    ok(
        &["keys", "add", s(&c), "--keyfile", s(&kf)],
        &format!("{PW}\n"),
    );
    m.mount(&["--keyfile", s(&kf)]);
    assert_eq!(std::fs::read(m.path("a")).unwrap(), b"hello");
    std::fs::write(m.path("b"), b"via key file").unwrap();
    m.unmount();
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("b")).unwrap(), b"via key file");
}

/// A small PRNG for kill delays (xorshift64*, seeded from the clock and printed on failure).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// After a crash: the volume opens, every row has the volume's generation (or the one before
/// while a rotation is pending), every FEK unwraps and every file reads back.
fn check_consistent(c: &Path, files: &BTreeMap<String, Vec<u8>>, rows: usize, what: &str) -> u64 {
    let vol = common::open_volume(c, PASSWORD).unwrap_or_else(|e| panic!("{what}: {e}"));
    let generation = vol.keyring().generation();
    let store = vol.keyring().store();
    let ids = store.file_ids().unwrap();
    assert_eq!(ids.len(), rows, "{what}");
    // An interrupted incremental rotation leaves rows of the generation before too; nothing
    // older, and none of them once it is finished.
    let pending = vol.keyring().rotation_pending();
    for id in &ids {
        let (_, g) = store.file_key(id).unwrap().unwrap();
        assert!(
            g == generation || (pending.is_some() && g + 1 == generation),
            "{what}: row {id} of generation {g}, volume at {generation}, pending {pending:?}"
        );
        vol.keyring()
            .fek(id)
            .unwrap_or_else(|e| panic!("{what}: {id}: {e}"));
        vol.keyring().clear_cache();
    }
    for (name, data) in files {
        assert_eq!(&read_file(&vol, &c.join(name)), data, "{what}: {name}");
    }
    generation
}

#[test]
fn kill_9_during_rotate_leaves_the_old_or_the_new_kek() {
    const ROWS: usize = 50_000;
    let tv = TestVolume::new();
    let c = tv.cipherdir();
    let files = {
        let vol = tv.open();
        let files = write_files(&vol, &c, 3);
        for _ in files.len()..ROWS {
            vol.keyring().new_file_key(None).unwrap();
        }
        files
    };
    let passfile = tv.dir.path().join("pw");
    std::fs::write(&passfile, PASSWORD).unwrap();
    let rotate = || {
        Command::new(bin())
            .args(["rotate", s(&c), "--passfile", s(&passfile)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // One uninterrupted run gives the time scale for the kills.
    let full = kill::full_run(&rotate);
    let mut generation = check_consistent(&c, &files, ROWS, "after a full rotation");
    assert_eq!(generation, 2);

    let seed = kill::clock_seed();
    let mut rng = Rng(seed);
    let mut completed = 0;
    for rep in 0..12 {
        // Delays spread over the whole run, process start-up and the commit included.
        let delay = kill::random_delay(full, rng.next());
        let status = kill::kill_after(&rotate, delay);
        let what = format!("seed {seed:#x}, rep {rep}, SIGKILL after {delay:?} of {full:?}");
        let g = check_consistent(&c, &files, ROWS, &what);
        assert!(
            g == generation || g == generation + 1,
            "{what}: generation {g}"
        );
        if g == generation + 1 {
            completed += 1;
        }
        if status.success() {
            assert_eq!(g, generation + 1, "{what}");
        }
        generation = g;
    }
    eprintln!("{completed} of 12 interrupted rotations had committed (full run {full:?})");
}
