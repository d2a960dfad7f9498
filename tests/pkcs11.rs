//! PKCS#11 key slots against real SoftHSM2 tokens (`apt-get install softhsm2`): init and mount
//! through a token with the PIN from a file or a command, a volume with two tokens and a
//! password fallback where each opens it, `keys list`/`info` naming token, serial, key and
//! module and no secret, `keys remove` keeping the luksKillSlot rule, and each failure (wrong
//! PIN, PIN locked, token absent, key missing, module not loadable) with its exit code and
//! nothing changed on disk. Each test has its own SOFTHSM2_CONF and token directory, passed
//! to every cofferfs it runs.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::mount::{CHEAP_KDF, DaemonMount, run_env, top_level_files as snapshot};
use common::softhsm::{MODULE, SoftHsm};

/// The user PIN of token t1: long enough that finding it in the store or a log by chance is
/// out of the question.
const PIN: &str = "4711-coffer-pin";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A file holding `pin` (mode 0600), for --pin-file.
fn pin_file(dir: &Path, name: &str, pin: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, format!("{pin}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

fn env(hsm: &SoftHsm) -> Vec<(&'static str, String)> {
    vec![("SOFTHSM2_CONF", hsm.conf().to_str().unwrap().to_owned())]
}

fn run(hsm: &SoftHsm, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let e = env(hsm);
    let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_env(&e, args, stdin)
}

fn ok(hsm: &SoftHsm, args: &[&str], stdin: Option<&str>) -> String {
    let (code, out, err) = run(hsm, args, stdin);
    assert_eq!(code, 0, "cofferfs {args:?}: {out}{err}");
    out
}

fn mount(hsm: &SoftHsm, c: &Path, mnt: &Path, extra: &[&str]) -> DaemonMount {
    let e = env(hsm);
    let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
    DaemonMount::new(&e, c, mnt, extra)
}

/// A volume whose only slot is key `k` on token `t1` (PIN [`PIN`]), made by `init`.
fn token_volume(hsm: &SoftHsm, dir: &Path) -> (PathBuf, PathBuf) {
    hsm.init_token("t1", PIN);
    let pin = pin_file(dir, "pin", PIN);
    let c = dir.join("c");
    let (code, out, err) = run(
        hsm,
        &[
            "init",
            "--pkcs11-module",
            MODULE,
            "--pkcs11-token",
            "t1",
            "--pkcs11-key",
            "k",
            "--pin-file",
            s(&pin),
            s(&c),
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("made AES-256 key \"k\" on token \"t1\""),
        "{err}"
    );
    assert!(
        out.contains("Key slot 0 is key \"k\" on PKCS#11 token \"t1\""),
        "{out}"
    );
    (c, pin)
}

#[test]
fn init_on_a_token_then_mount_with_the_pin() {
    let hsm = SoftHsm::new();
    let dir = tempfile::tempdir().unwrap();
    let (c, pin) = token_volume(&hsm, dir.path());
    let serial = hsm.serial("t1").unwrap();

    let list = ok(&hsm, &["keys", "list", s(&c)], None);
    let want = format!("pkcs11 token=t1 serial={serial} key=k module={MODULE}");
    assert!(list.contains(&want), "{list}");
    assert!(list.contains("pkcs11:t1/k"), "{list}");
    let info = ok(&hsm, &["info", s(&c)], None);
    assert!(info.contains(&want), "{info}");

    // No PIN and no slot key in the store: the PIN is nowhere, the blob is all there is.
    let db = std::fs::read(c.join("cofferfs.db")).unwrap();
    assert!(
        !db.windows(PIN.len()).any(|w| w == PIN.as_bytes()),
        "the PIN is in the store"
    );

    let mnt = dir.path().join("m");
    {
        let m = mount(&hsm, &c, &mnt, &["--pin-file", s(&pin)]);
        std::fs::write(m.mnt.join("f"), b"through the token").unwrap();
    }
    {
        // --slot N with the PIN from a command; the unlock logs its time and never the PIN.
        std::fs::create_dir_all(&mnt).unwrap();
        let mut e = env(&hsm);
        e.push(("RUST_LOG", "debug".into()));
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let m = DaemonMount::new(
            &e,
            &c,
            &mnt,
            &["--slot", "0", "--pin-extpass", "echo 4711-coffer-pin"],
        );
        assert_eq!(
            std::fs::read(m.mnt.join("f")).unwrap(),
            b"through the token"
        );
    }
    let (code, out, err) = run(
        &hsm,
        &["fsck", "--pin-extpass", "echo 4711-coffer-pin", s(&c)],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    let e = env(&hsm);
    let mut e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (*k, v.as_str())).collect();
    e.push(("RUST_LOG", "debug"));
    let (code, _, err) = run_env(&e, &["fsck", "--pin-file", s(&pin), s(&c)], None);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("PKCS#11: slot 0 decrypted by key \"k\" on token \"t1\""),
        "{err}"
    );
    assert!(!err.contains(PIN), "the PIN is logged: {err}");

    // A token-only volume without a PIN source and without a terminal: a clear refusal.
    let (code, _, err) = run(&hsm, &["fsck", s(&c)], None);
    assert_eq!(code, 10, "{err}");
    assert!(err.contains("needs its PIN: --pin-file FILE"), "{err}");
}

#[test]
fn each_failure_has_its_code_and_changes_nothing() {
    let hsm = SoftHsm::new();
    let dir = tempfile::tempdir().unwrap();
    let (c, _pin) = token_volume(&hsm, dir.path());
    let wrong = pin_file(dir.path(), "wrong", "9999");
    let mnt = dir.path().join("m");
    std::fs::create_dir_all(&mnt).unwrap();
    let before = snapshot(&c);
    let try_mount = |hsm: &SoftHsm, pin: &Path| {
        let (code, out, err) = run(hsm, &["mount", "--pin-file", s(pin), s(&c), s(&mnt)], None);
        assert!(!common::mount::is_mounted(&mnt), "{out}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        (code, err)
    };

    let (code, err) = try_mount(&hsm, &wrong);
    assert_eq!(code, 55, "{err}");
    assert!(err.contains("token \"t1\" refused the PIN"), "{err}");
    assert_eq!(snapshot(&c), before);

    // The token directory moved away: no token of that label and serial.
    let other = SoftHsm::new();
    let (code, err) = try_mount(&other, &wrong);
    assert_eq!(code, 57, "{err}");
    assert!(err.contains("token \"t1\" (serial "), "{err}");
    assert!(err.contains("is not present"), "{err}");
    // A new token of the same label is another token (another serial): still absent.
    other.init_token("t1", PIN);
    let (code, err) = try_mount(&other, &pin_file(dir.path(), "p2", PIN));
    assert_eq!(code, 57, "{err}");
    assert_eq!(snapshot(&c), before);

    // The key is gone from the token (its object deleted from the token's store).
    let copy = SoftHsm::new();
    hsm.copy_token_to("t1", &copy);
    copy.delete_objects("t1");
    let (code, err) = try_mount(&copy, &pin_file(dir.path(), "p3", PIN));
    assert_eq!(code, 58, "{err}");
    assert!(err.contains("has no AES key labelled \"k\""), "{err}");
    assert_eq!(snapshot(&c), before);

    // PIN locked: SoftHSM2 itself never locks a user PIN (tests/pkcs11_token.rs shows twenty
    // wrong tries are each "wrong PIN"), so the token is made to report CKF_USER_PIN_LOCKED
    // as a real token does after its retry limit. The right PIN is then refused too.
    let locked = SoftHsm::new();
    hsm.copy_token_to("t1", &locked);
    locked.lock_user_pin("t1");
    let (code, err) = try_mount(&locked, &pin_file(dir.path(), "p4", PIN));
    assert_eq!(code, 56, "{err}");
    assert!(err.contains("user PIN is locked"), "{err}");
    assert_eq!(snapshot(&c), before);

    // The module cannot be loaded: missing, not a PKCS#11 library, or writable by others.
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "pw\n").unwrap();
    let writable = dir.path().join("lib.so");
    std::fs::copy(MODULE, &writable).unwrap();
    std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o666)).unwrap();
    let pw_c = dir.path().join("pwvol");
    common::mount::init_volume(&pw_c, &[]);
    let pw_before = snapshot(&pw_c);
    for module in [
        "/nonexistent/libpkcs11.so",
        "/usr/lib/x86_64-linux-gnu/libz.so.1",
        s(&writable),
    ] {
        let (code, out, err) = run(
            &hsm,
            &[
                "keys",
                "add",
                "--pkcs11-module",
                module,
                "--pkcs11-token",
                "t1",
                "--pin-file",
                s(&wrong),
                s(&pw_c),
            ],
            Some(&format!("{}\n", common::mount::PASSWORD)),
        );
        assert_eq!(code, 59, "{module}: {out}{err}");
        assert!(err.contains("cannot be loaded"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    assert_eq!(snapshot(&pw_c), pw_before);
    // keys add with a wrong PIN for the new token: 55, no slot added.
    let (code, _, err) = run(
        &hsm,
        &[
            "keys",
            "add",
            "--pkcs11-module",
            MODULE,
            "--pkcs11-token",
            "t1",
            "--pin-file",
            s(&wrong),
            s(&pw_c),
        ],
        Some(&format!("{}\n", common::mount::PASSWORD)),
    );
    assert_eq!(code, 55, "{err}");
    assert_eq!(snapshot(&pw_c), pw_before);
}

#[test]
fn two_tokens_and_a_password_each_open_the_volume() {
    let hsm = SoftHsm::new();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    hsm.init_token("alpha", "1111");
    hsm.init_token("beta", "2222");
    let pa = pin_file(d, "pa", "1111");
    let pb = pin_file(d, "pb", "2222");
    let pw = d.join("pw");
    std::fs::write(&pw, format!("{}\n", common::mount::PASSWORD)).unwrap();
    let c = d.join("c");
    let mut init = vec!["init"];
    init.extend_from_slice(&CHEAP_KDF);
    init.extend(["--passfile", s(&pw), s(&c)]);
    ok(&hsm, &init, None);
    for (token, pin) in [("alpha", &pa), ("beta", &pb)] {
        let out = ok(
            &hsm,
            &[
                "keys",
                "add",
                "--passfile",
                s(&pw),
                "--pkcs11-module",
                MODULE,
                "--pkcs11-token",
                token,
                "--pin-file",
                s(pin),
                s(&c),
            ],
            None,
        );
        assert!(out.contains(&format!("pkcs11 token \"{token}\"")), "{out}");
    }
    let list = ok(&hsm, &["keys", "list", s(&c)], None);
    assert!(list.contains("pkcs11 token=alpha"), "{list}");
    assert!(list.contains("pkcs11 token=beta"), "{list}");
    assert!(list.contains("argon2id"), "{list}");

    let mnt = d.join("m");
    let write_read = |extra: &[&str], name: &str| {
        let m = mount(&hsm, &c, &mnt, extra);
        std::fs::write(m.mnt.join(name), name).unwrap();
        for seen in ["pw", "a", "b"] {
            if m.mnt.join(seen).exists() {
                assert_eq!(std::fs::read_to_string(m.mnt.join(seen)).unwrap(), seen);
            }
        }
    };
    write_read(&["--passfile", s(&pw)], "pw");
    write_read(&["--slot", "1", "--pin-file", s(&pa)], "a");
    write_read(&["--slot", "2", "--pin-file", s(&pb)], "b");
    // Without --slot the first token present is asked: alpha, which refuses beta's PIN and
    // names the way out. No other token spends a try on it.
    let (code, _, err) = run(&hsm, &["fsck", "--pin-file", s(&pb), s(&c)], None);
    assert_eq!(code, 55, "{err}");
    assert!(err.contains("`--slot N` picks another"), "{err}");
    // With only beta plugged in (its token directory alone), beta's PIN opens without --slot.
    let only_beta = SoftHsm::new();
    hsm.copy_token_to("beta", &only_beta);
    let m = mount(&only_beta, &c, &mnt, &["--pin-file", s(&pb)]);
    assert_eq!(std::fs::read_to_string(m.mnt.join("a")).unwrap(), "a");
    drop(m);
    // No token at all, a passfile given too: the password opens, with a warning.
    let none = SoftHsm::new();
    let (code, _, err) = run(
        &none,
        &["fsck", "--pin-file", s(&pa), "--passfile", s(&pw), s(&c)],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("trying a password slot instead"), "{err}");

    // keys remove keeps the luksKillSlot rule: it never unlocks through the slot it removes,
    // so alpha's PIN alone goes to beta, the token that stays, which refuses it; beta's PIN
    // removes alpha's slot.
    let (code, _, err) = run(
        &hsm,
        &["keys", "remove", s(&c), "1", "--pin-file", s(&pa)],
        None,
    );
    assert_eq!(code, 55, "{err}");
    assert!(err.contains("token \"beta\" refused the PIN"), "{err}");
    assert!(ok(&hsm, &["keys", "list", s(&c)], None).contains("token=alpha"));
    ok(
        &hsm,
        &["keys", "remove", s(&c), "1", "--pin-file", s(&pb)],
        None,
    );
    let list = ok(&hsm, &["keys", "list", s(&c)], None);
    assert!(!list.contains("token=alpha"), "{list}");
    assert!(list.contains("token=beta"), "{list}");
}

/// `keys add` of token t2 (PIN in `pin2`), the current secret being t1's PIN in `pin`.
fn add_token_t2(hsm: &SoftHsm, c: &Path, pin: &Path, pin2: &Path) -> String {
    ok(
        hsm,
        &[
            "keys",
            "add",
            "--unlock-pin-file",
            s(pin),
            "--pkcs11-module",
            MODULE,
            "--pkcs11-token",
            "t2",
            "--pin-file",
            s(pin2),
            s(c),
        ],
        None,
    )
}

/// The `slots.params` of slot `id`, read with SQLite.
fn params_of(c: &Path, id: u32) -> String {
    let db = rusqlite::Connection::open(c.join("cofferfs.db")).unwrap();
    db.query_row("SELECT params FROM slots WHERE slot_id = ?1", [id], |r| {
        r.get(0)
    })
    .unwrap()
}

#[test]
fn rotate_reseals_token_slots_when_the_pin_is_at_hand() {
    let hsm = SoftHsm::new();
    let dir = tempfile::tempdir().unwrap();
    let (c, pin) = token_volume(&hsm, dir.path());
    let mnt = dir.path().join("m");
    {
        let m = mount(&hsm, &c, &mnt, &["--pin-file", s(&pin)]);
        std::fs::write(m.mnt.join("f"), b"kept").unwrap();
    }
    // The token slot alone: a fresh slot key sealed by the token.
    let before = params_of(&c, 0);
    let out = ok(&hsm, &["rotate", "--pin-file", s(&pin), s(&c)], None);
    assert!(out.contains("generation 1 -> 2"), "{out}");
    assert_ne!(params_of(&c, 0), before, "the blob is the same");

    // A password slot added; rotating with the password keeps the token slot too when its
    // PIN is given, and refuses without it (nothing changed).
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "second way in\n").unwrap();
    let mut add = vec![
        "keys",
        "add",
        "--pin-file",
        s(&pin),
        "--new-passfile",
        s(&pw),
    ];
    add.extend_from_slice(&CHEAP_KDF);
    add.push(s(&c));
    ok(&hsm, &add, None);
    let snap = snapshot(&c);
    let (code, _, err) = run(&hsm, &["rotate", "--passfile", s(&pw), s(&c)], None);
    assert_eq!(code, 16, "{err}");
    assert_eq!(snapshot(&c), snap);
    // `--slot 1` says the password is the secret that opens (with a PIN source alone the
    // token slot would be the one opened, and the password slot the one to drop).
    let before = params_of(&c, 0);
    let out = ok(
        &hsm,
        &[
            "rotate",
            "--slot",
            "1",
            "--passfile",
            s(&pw),
            "--pin-file",
            s(&pin),
            s(&c),
        ],
        None,
    );
    assert!(out.contains("generation 2 -> 3"), "{out}");
    assert!(out.contains("Slot(s) 0 hold the new KEK too"), "{out}");
    assert_ne!(params_of(&c, 0), before);
    for extra in [["--pin-file", s(&pin)], ["--passfile", s(&pw)]] {
        let m = mount(&hsm, &c, &mnt, &extra);
        assert_eq!(std::fs::read(m.mnt.join("f")).unwrap(), b"kept");
    }
}

#[test]
fn a_second_token_joins_a_token_only_volume() {
    let hsm = SoftHsm::new();
    let dir = tempfile::tempdir().unwrap();
    let (c, pin) = token_volume(&hsm, dir.path());
    hsm.init_token("t2", "5678");
    let pin2 = pin_file(dir.path(), "pin2", "5678");
    // The current secret is t1's PIN (--unlock-pin-file), the new token's is --pin-file.
    let out = add_token_t2(&hsm, &c, &pin, &pin2);
    assert!(
        out.contains("Added key slot 1 (pkcs11 token \"t2\""),
        "{out}"
    );
    // Without the current PIN (no terminal either) nothing is added.
    let snap = snapshot(&c);
    let (code, _, err) = run(
        &hsm,
        &[
            "keys",
            "add",
            "--pkcs11-module",
            MODULE,
            "--pkcs11-token",
            "t2",
            "--pkcs11-key",
            "other",
            "--pin-file",
            s(&pin2),
            s(&c),
        ],
        None,
    );
    assert_eq!(code, 10, "{err}");
    assert_eq!(snapshot(&c), snap);
    let mnt = dir.path().join("m");
    let m = mount(&hsm, &c, &mnt, &["--slot", "1", "--pin-file", s(&pin2)]);
    std::fs::write(m.mnt.join("g"), b"second token").unwrap();
}

/// A mounted volume takes a second token through the daemon's control socket: the current
/// token's slot key proves the request (the PIN stays with the client), the new token seals
/// the new slot's key client-side, and the daemon adds the slot while the mount serves. An
/// online rotate asked with a token's proof is refused (a token slot gets a fresh slot key
/// only offline), and nothing changes.
#[test]
fn a_mounted_volume_takes_a_second_token_over_the_control_socket() {
    let hsm = SoftHsm::new();
    let dir = tempfile::tempdir().unwrap();
    let (c, pin) = token_volume(&hsm, dir.path());
    hsm.init_token("t2", "5678");
    let pin2 = pin_file(dir.path(), "pin2", "5678");
    let mnt = dir.path().join("m");
    let m = mount(&hsm, &c, &mnt, &["--pin-file", s(&pin)]);
    std::fs::write(m.mnt.join("during"), b"written while a token joined").unwrap();
    let out = add_token_t2(&hsm, &c, &pin, &pin2);
    assert!(
        out.contains("Added key slot 1 (pkcs11 token \"t2\""),
        "{out}"
    );
    let (code, _, err) = run(
        &hsm,
        &["rotate", "--drop-other-slots", "--pin-file", s(&pin), s(&c)],
        None,
    );
    assert_eq!(code, 16, "{err}");
    assert!(err.contains("rotate it unmounted"), "{err}");
    assert_eq!(
        std::fs::read(m.mnt.join("during")).unwrap(),
        b"written while a token joined"
    );
    drop(m);
    let list = ok(&hsm, &["keys", "list", s(&c)], None);
    assert!(list.contains("pkcs11 token=t2"), "{list}");
    let m = mount(&hsm, &c, &mnt, &["--slot", "1", "--pin-file", s(&pin2)]);
    assert_eq!(
        std::fs::read(m.mnt.join("during")).unwrap(),
        b"written while a token joined"
    );
}
