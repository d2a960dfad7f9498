//! The command line's rough edges a new user hits (issue 12, items 4-7): one unlock path
//! (`--keyfile`) for every command that opens a volume, a closed stdout pipe ending a command
//! quietly, `init` checking its arguments before it asks for a password, and exit codes that
//! match the README's table. Real binary, real pipes, real volumes.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::mount::{CHEAP_KDF, PASSWORD, bin, init_volume, run_with_stdin as run};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(args: &[&str], stdin: &str) -> String {
    let (code, out, err) = run(args, stdin);
    assert_eq!(code, 0, "cofferfs {args:?} failed: {out}{err}");
    out
}

fn pw() -> String {
    format!("{PASSWORD}\n")
}

/// A volume in `dir/c` with one file, `/blob`, written through the volume layer (plaintext
/// names, so that the file's name on disk is its name in the volume).
fn volume_with_a_file(dir: &Path) -> PathBuf {
    let c = dir.join("c");
    init_volume(&c, &["--plaintext-names"]);
    let vol = common::open_volume(&c, PASSWORD.as_bytes()).unwrap();
    let f = vol
        .create_file(common::rw(&c.join("blob")))
        .expect("create a file");
    f.write_at(b"some content", 0).unwrap();
    f.sync(false).unwrap();
    c
}

/// The README's recipe: a key file added, then `rotate --drop-other-slots --keyfile`, so the
/// key file's slot is the only one left.
fn keyfile_only_volume(dir: &Path) -> (PathBuf, PathBuf) {
    let c = volume_with_a_file(dir);
    let kf = dir.join("vault.key");
    ok(&["keys", "new-keyfile", s(&kf)], "");
    ok(&["keys", "add", s(&c), "--keyfile", s(&kf)], &pw());
    ok(
        &["rotate", s(&c), "--drop-other-slots", "--keyfile", s(&kf)],
        "",
    );
    let list = ok(&["keys", "list", s(&c)], "");
    assert_eq!(list.lines().count(), 2, "one slot left: {list}");
    assert!(list.contains("keyfile"), "{list}");
    (c, kf)
}

#[test]
fn fsck_and_reencrypt_unlock_with_a_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let (c, kf) = keyfile_only_volume(dir.path());
    let out = ok(&["fsck", s(&c), "--keyfile", s(&kf)], "");
    assert!(out.ends_with("clean\n"), "{out}");
    let out = ok(&["reencrypt", s(&c), "--all", "--keyfile", s(&kf)], "");
    assert!(out.contains("1 files re-encrypted, 0 left alone"), "{out}");
    // The password slot is gone: a password no longer opens it, for fsck as for mount.
    let (code, _, err) = run(&["fsck", s(&c)], &pw());
    assert_eq!(code, 12, "{err}");
    // A key file that is too short is a password-input error, as for every other command.
    let short = dir.path().join("short");
    std::fs::write(&short, [7u8; 16]).unwrap();
    let (code, _, err) = run(&["fsck", s(&c), "--keyfile", s(&short)], "");
    assert_eq!(code, 10, "{err}");
    assert!(err.contains("at least 32"), "{err}");
    // --keyfile and --passfile exclude each other, as for mount.
    let (code, _, err) = run(
        &[
            "reencrypt",
            s(&c),
            "--all",
            "--keyfile",
            s(&kf),
            "--passfile",
            s(&kf),
        ],
        "",
    );
    assert_eq!(code, 2, "{err}");
}

/// `fsck` and `reencrypt` open the volume through the same unlock as every other management
/// command: `--keyfile` with `--slot`, `fsck --repair --keyfile` (read-write), a check that
/// writes nothing (read-only open), and `reencrypt PATH --keyfile`.
#[test]
fn fsck_and_reencrypt_key_file_options_work_as_for_other_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (c, kf) = keyfile_only_volume(dir.path());
    let list = ok(&["keys", "list", s(&c)], "");
    let slot = list
        .lines()
        .find(|l| l.contains("keyfile"))
        .and_then(|l| l.split_whitespace().next())
        .expect("the key-file slot's id")
        .to_owned();
    let store = c.join("cofferfs.db");
    let before = std::fs::read(&store).unwrap();
    let out = ok(&["fsck", s(&c), "--keyfile", s(&kf), "--slot", &slot], "");
    assert!(out.ends_with("clean\n"), "{out}");
    assert_eq!(
        std::fs::read(&store).unwrap(),
        before,
        "a check without --repair writes nothing to the header store"
    );
    assert!(!c.join("cofferfs.db-wal").exists(), "nor leaves a log");
    // Another slot id: no key-file slot there to open.
    let other = if slot == "0" { "1" } else { "0" };
    let (code, _, err) = run(&["fsck", s(&c), "--keyfile", s(&kf), "--slot", other], "");
    assert_eq!(code, 12, "{err}");
    let out = ok(&["reencrypt", s(&c), "/blob", "--keyfile", s(&kf)], "");
    assert!(out.contains("1 files re-encrypted, 0 left alone"), "{out}");
    // `/blob` was written through the volume API without an owner, so its old key row stays
    // for fsck (see the reencrypt message): a repair with the key file, read-write, sets it
    // aside.
    assert!(out.contains("kept the key row"), "{out}");
    let (code, out, err) = run(&["fsck", s(&c), "--repair", "--keyfile", s(&kf)], "");
    assert_eq!(code, 27, "{out}{err}");
    assert!(out.contains("orphan key row"), "{out}");
    let out = ok(&["fsck", s(&c), "--keyfile", s(&kf)], "");
    assert!(out.ends_with("clean\n"), "{out}");
    assert!(
        out.contains("1 key rows wait in the key quarantine"),
        "{out}"
    );
}

/// Runs `cofferfs args…` with its stdout a pipe whose reading end is already closed (`cmd |
/// head -0`, deterministic), and the password on stdin.
fn run_into_closed_pipe(args: &[&str], stdin: &str) -> (std::process::ExitStatus, String) {
    use std::io::Write;
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = Command::new(bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Ended quietly, as `ls | head` ends `ls`: killed by SIGPIPE (or exited 0), nothing on stderr.
fn assert_quiet_end(what: &str, status: std::process::ExitStatus, err: &str) {
    assert!(
        status.signal() == Some(libc::SIGPIPE) || status.code() == Some(0),
        "{what}: {status:?}, stderr: {err}"
    );
    assert_eq!(err, "", "{what}: nothing on stderr");
}

#[test]
fn a_closed_stdout_pipe_ends_commands_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let c = volume_with_a_file(dir.path());
    for args in [
        vec!["info", s(&c)],
        vec!["keys", "list", s(&c)],
        vec!["fsck", s(&c)],
        vec!["speed", "--quick"],
    ] {
        let (status, err) = run_into_closed_pipe(&args, &pw());
        assert_quiet_end(&format!("{args:?}"), status, &err);
    }
    // The volume is not left locked by a command that ended that way.
    ok(&["fsck", s(&c)], &pw());
}

/// Runs `cofferfs init` with `stdin` (`None`: /dev/null, no terminal) and an `--extpass` that
/// leaves `asked` behind when it is run: whether the password was asked for at all.
fn init_with_probe(args: &[&str], stdin: Option<&str>, asked: &Path) -> (i32, String) {
    use std::io::Write;
    let extpass = format!("touch '{}'; echo '{PASSWORD}'", s(asked));
    let mut full = vec!["init"];
    full.extend_from_slice(&CHEAP_KDF);
    full.extend_from_slice(args);
    let with_extpass = [full.clone(), vec!["--extpass", &extpass]].concat();
    // Twice: once with --extpass (must not run), once reading stdin (must not be read).
    let mut codes = Vec::new();
    let mut errs = String::new();
    for argv in [with_extpass, full] {
        let mut child = Command::new(bin())
            .args(&argv)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(text) = stdin {
            let _ = child.stdin.take().unwrap().write_all(text.as_bytes());
        }
        let out = child.wait_with_output().unwrap();
        codes.push(out.status.code().unwrap());
        errs.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(codes[0], codes[1], "same answer both ways: {errs}");
    (codes[0], errs)
}

#[test]
fn init_refuses_a_non_empty_dir_before_asking_for_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c");
    std::fs::create_dir(&c).unwrap();
    std::fs::write(c.join("precious"), "keep me").unwrap();
    let asked = dir.path().join("asked");
    for stdin in [None, Some("a password\na password\n")] {
        let (code, err) = init_with_probe(&[s(&c)], stdin, &asked);
        assert_eq!(code, 6, "stdin {stdin:?}: {err}");
        assert!(err.contains("is not empty"), "{err}");
        assert!(
            !asked.exists(),
            "the password was asked for (stdin {stdin:?})"
        );
    }
    assert_eq!(std::fs::read_dir(&c).unwrap().count(), 1);
    assert_eq!(std::fs::read(c.join("precious")).unwrap(), b"keep me");
}

#[test]
fn init_refuses_an_existing_header_store_before_asking_for_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c");
    let store = dir.path().join("store.db");
    std::fs::write(&store, "not mine to overwrite").unwrap();
    let missing_dir = dir.path().join("nowhere/store.db");
    let asked = dir.path().join("asked");
    for stdin in [None, Some("a password\na password\n")] {
        for (target, why) in [
            (&store, "exists already"),
            (&missing_dir, "its directory does not exist"),
        ] {
            let (code, err) = init_with_probe(&[s(&c), "--header-store", s(target)], stdin, &asked);
            assert_eq!(code, 23, "stdin {stdin:?}: {err}");
            assert!(err.contains(why), "{err}");
            assert!(
                !asked.exists(),
                "the password was asked for (stdin {stdin:?})"
            );
        }
    }
    assert!(!c.exists(), "nothing created");
    assert_eq!(std::fs::read(&store).unwrap(), b"not mine to overwrite");
}

#[test]
fn reencrypt_of_a_missing_path_is_left_alone_with_code_28() {
    let dir = tempfile::tempdir().unwrap();
    let c = volume_with_a_file(dir.path());
    let (code, out, err) = run(&["reencrypt", s(&c), "/missing"], &pw());
    assert_eq!(code, 28, "{out}{err}");
    assert!(err.contains("/missing"), "{err}");
    assert!(out.contains("0 files re-encrypted, 1 left alone"), "{out}");
    // A missing path among good ones: the good ones are done.
    let (code, out, err) = run(&["reencrypt", s(&c), "/missing", "/blob"], &pw());
    assert_eq!(code, 28, "{out}{err}");
    assert!(out.contains("re-encrypted /blob"), "{out}");
    assert!(out.contains("1 files re-encrypted, 1 left alone"), "{out}");
}

#[test]
fn removing_a_slot_with_its_own_secret_is_a_refused_slot_operation() {
    let dir = tempfile::tempdir().unwrap();
    let c = dir.path().join("c");
    init_volume(&c, &[]);
    let mut args = vec!["keys", "add", s(&c), "--label", "second"];
    args.extend_from_slice(&CHEAP_KDF);
    ok(&args, &format!("{PASSWORD}\nsecond pw\n"));
    let (code, out, err) = run(&["keys", "remove", s(&c), "1"], "second pw\n");
    assert_eq!((code, out.as_str()), (16, ""), "{err}");
    assert!(err.contains("opens only slot 1"), "{err}");
    // A wrong secret stays a wrong password.
    let (code, _, err) = run(&["keys", "remove", s(&c), "1"], "nope\n");
    assert_eq!(code, 12, "{err}");
    assert_eq!(ok(&["keys", "list", s(&c)], "").lines().count(), 3);
}
