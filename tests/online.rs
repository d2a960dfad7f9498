//! Management commands against a mounted volume, through the daemon's control socket: each
//! online command while a writer process works in the mount, a wrong secret refused with
//! nothing changed, `status`, the socket's mode, two clients at once, and `reencrypt` of an
//! open file waiting for its last close. Real mounts, real processes.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::mount::{
    CHEAP_KDF as CHEAP, Mounted, bin, run_with_stdin as run, spawn_with_stdin, wait_timeout,
};
use common::rng::Rng;

const PW: &str = "correct horse";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(args: &[&str], stdin: &str) -> String {
    let (code, out, err) = run(args, stdin);
    assert_eq!(code, 0, "cofferfs {args:?} failed: {out}{err}");
    out
}

/// A shell that rewrites 20 existing files of `dir` (4 KiB each, truncate and write) in a loop
/// until killed: I/O that goes on while the commands run, without creating or deleting
/// anything (so that `fsck` has nothing transient to see).
struct Writer(Child);

impl Writer {
    fn start(dir: &Path) -> Writer {
        std::fs::create_dir_all(dir).unwrap();
        for i in 0..20 {
            std::fs::write(dir.join(format!("w{i}")), vec![b'a'; 4096]).unwrap();
        }
        let script = "i=0; while :; do i=$((i+1)); head -c 4096 /dev/urandom > w$((i % 20)); done";
        let child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Writer(child)
    }

    /// Stops the writer; it must have been running all along (no write error ended it).
    fn stop(mut self) {
        assert!(
            self.0.try_wait().unwrap().is_none(),
            "the writer stopped by itself"
        );
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `cofferfs status --json` of a mounted volume.
fn status(path: &Path) -> serde_json::Value {
    let out = ok(&["status", "--json", s(path)], "");
    serde_json::from_str(&out).unwrap()
}

fn slots(c: &Path) -> usize {
    let list = ok(&["keys", "list", s(c)], "");
    list.lines().count() - 1
}

#[test]
fn every_online_command_works_while_a_writer_runs() {
    let mut m = Mounted::new();
    let c = m.cipherdir.clone();
    std::fs::write(m.path("keep"), b"kept content").unwrap();
    std::fs::write(m.path("doc"), vec![7u8; 100_000]).unwrap();
    let writer = Writer::start(&m.path("w"));
    let kf = m.dir.path().join("kf");
    ok(&["keys", "new-keyfile", s(&kf)], "");

    // status: through the cipherdir and through the mountpoint.
    let st = status(&c);
    assert_eq!(st["pid"].as_u64(), m.daemon_pid().map(u64::from));
    assert_eq!(st["mountpoint"].as_str(), Some(s(&m.mnt)));
    assert_eq!(status(&m.mnt)["pid"], st["pid"]);
    let text = ok(&["status", s(&c)], "");
    assert!(text.contains("KEK generation: 1"), "{text}");

    // keys add (a key file, then a password), passwd, keys remove: online, exit 0.
    let out = ok(
        &["keys", "add", s(&c), "--keyfile", s(&kf)],
        &format!("{PW}\n"),
    );
    assert!(out.contains("Added key slot 1"), "{out}");
    let mut add = vec!["keys", "add", s(&c), "--label", "second"];
    add.extend_from_slice(&CHEAP);
    ok(&add, &format!("{PW}\nsecond pw\n"));
    assert_eq!(slots(&c), 3);
    let mut pw = vec!["passwd", s(&c)];
    pw.extend_from_slice(&CHEAP);
    let out = ok(&pw, &format!("{PW}\nnew pw\n"));
    assert!(out.contains("Changed the password of key slot 0"), "{out}");
    ok(&["keys", "remove", s(&c), "2"], "new pw\n");
    assert_eq!(slots(&c), 2);

    // fsck: a check, online.
    let out = ok(&["fsck", s(&c)], "new pw\n");
    assert!(out.ends_with("clean\n"), "{out}");
    let (code, _, err) = run(&["fsck", "--repair", s(&c)], "new pw\n");
    assert_eq!(code, 15, "{err}");

    // reencrypt: a new file id, the same content.
    let out = ok(&["reencrypt", s(&c), "/doc"], "new pw\n");
    assert!(out.contains("re-encrypted /doc (file id"), "{out}");
    let ids: Vec<&str> = out
        .split("file id ")
        .nth(1)
        .unwrap()
        .trim_end_matches(|c| c != ')')
        .trim_end_matches(')')
        .split(" -> ")
        .collect();
    assert_eq!(ids.len(), 2, "{out}");
    assert_ne!(ids[0], ids[1], "{out}");
    assert_eq!(std::fs::read(m.path("doc")).unwrap(), vec![7u8; 100_000]);
    let out = ok(&["fsck", s(&c)], "new pw\n");
    assert!(out.ends_with("clean\n"), "{out}");

    writer.stop();
    m.unmount();
    // Offline: the changes are there. The old password is gone, the new one and the key
    // file open it, and the removed slot's password does not.
    let (code, _, _) = run(&["fsck", s(&c)], &format!("{PW}\n"));
    assert_eq!(code, 12);
    let (code, _, _) = run(&["fsck", s(&c)], "second pw\n");
    assert_eq!(code, 12);
    m.password = "new pw".into();
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("keep")).unwrap(), b"kept content");
    m.unmount();
    m.mount(&["--keyfile", s(&kf)]);
    assert_eq!(std::fs::read(m.path("doc")).unwrap(), vec![7u8; 100_000]);
    m.unmount();
}

#[test]
fn a_wrong_secret_over_the_socket_changes_nothing() {
    let mut m = Mounted::new();
    let c = m.cipherdir.clone();
    std::fs::write(m.path("f"), b"x").unwrap();
    let before = ok(&["keys", "list", s(&c)], "");
    let writer = Writer::start(&m.path("w"));
    let mut pw = vec!["passwd", s(&c)];
    pw.extend_from_slice(&CHEAP);
    for (args, stdin) in [
        (pw.clone(), "wrong\nnew\n"),
        (vec!["keys", "add", s(&c)], "wrong\nnew\n"),
        (vec!["keys", "remove", s(&c), "0"], "wrong\n"),
        (vec!["fsck", s(&c)], "wrong\n"),
        (vec!["reencrypt", s(&c), "/f"], "wrong\n"),
    ] {
        let (code, out, err) = run(&args, stdin);
        assert_eq!(code, 12, "{args:?}: {out}{err}");
    }
    // The last slot is refused with the right secret too (16), and stays.
    let (code, _, err) = run(&["keys", "remove", s(&c), "0"], &format!("{PW}\n"));
    assert_eq!(code, 16, "{err}");
    assert_eq!(ok(&["keys", "list", s(&c)], ""), before);
    writer.stop();
    m.unmount();
    // The password is still the old one.
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("f")).unwrap(), b"x");
    m.unmount();
}

#[test]
fn status_of_an_unmounted_volume_is_exit_60_and_the_socket_is_private() {
    let mut m = Mounted::new();
    let c = m.cipherdir.clone();
    let sock = status(&c)["control_socket"].as_str().unwrap().to_owned();
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(meta.uid(), rustix::process::geteuid().as_raw());
    let dir = std::fs::metadata(Path::new(&sock).parent().unwrap()).unwrap();
    assert_eq!(dir.mode() & 0o077, 0);
    assert!(
        !std::fs::read_dir(&c).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("sock")),
        "no runtime file in the cipherdir"
    );
    m.unmount();
    assert!(
        std::fs::symlink_metadata(&sock).is_err(),
        "socket left behind"
    );
    let (code, _, err) = run(&["status", s(&c)], "");
    assert_eq!(code, 60, "{err}");
    assert!(err.contains("is not mounted"), "{err}");
}

#[test]
fn ctlsock_puts_the_socket_where_asked_and_commands_still_find_it() {
    let mut m = Mounted::new();
    m.unmount();
    let sock = m.dir.path().join("my.sock");
    m.mount(&["--ctlsock", s(&sock)]);
    let st = status(&m.cipherdir);
    assert_eq!(st["control_socket"].as_str(), Some(s(&sock)));
    let meta = std::fs::symlink_metadata(&sock).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    m.unmount();
    assert!(std::fs::symlink_metadata(&sock).is_err());
}

#[test]
fn two_clients_at_once_are_both_served() {
    let mut m = Mounted::new();
    let c = m.cipherdir.clone();
    let spawn = |label: &str| {
        let mut args = vec!["keys", "add", s(&c), "--label", label];
        args.extend_from_slice(&CHEAP);
        spawn_with_stdin(bin(), &args, &format!("{PW}\npw {label}\n"))
    };
    let (a, b) = (spawn("a"), spawn("b"));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(slots(&c), 3);
    m.unmount();
    m.password = "pw a".into();
    m.mount(&[]);
    m.unmount();
    m.password = "pw b".into();
    m.mount(&[]);
    m.unmount();
}

#[test]
fn reencrypt_of_an_open_file_waits_for_its_last_close() {
    let mut m = Mounted::new();
    let c = m.cipherdir.clone();
    std::fs::write(m.path("busy"), b"in use").unwrap();
    let held = std::fs::File::open(m.path("busy")).unwrap();
    let mut child = spawn_with_stdin(bin(), &["reencrypt", s(&c), "/busy"], &format!("{PW}\n"));
    // While the file is open the command does not finish (it is not refused either).
    assert!(wait_timeout(&mut child, Duration::from_secs(2)).is_none());
    drop(held);
    let status = wait_timeout(&mut child, Duration::from_secs(60)).expect("reencrypt hangs");
    let out = child.wait_with_output().unwrap();
    assert!(status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-encrypted /busy"));
    assert_eq!(std::fs::read(m.path("busy")).unwrap(), b"in use");
    m.unmount();
}

/// Makes `n` small files in `dir` through the mount (one key row each).
fn make_files(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for i in 0..n {
        std::fs::write(dir.join(format!("f{i}")), format!("file {i}")).unwrap();
    }
}

fn check_files(dir: &Path, n: usize) {
    for i in 0..n {
        assert_eq!(
            std::fs::read_to_string(dir.join(format!("f{i}"))).unwrap(),
            format!("file {i}")
        );
    }
}

/// Polls `status` until the rotation is no longer running; returns its last report.
fn rotation_settles(path: &Path) -> serde_json::Value {
    for _ in 0..3000 {
        let r = status(path)["rotation"].clone();
        if r["state"] != "running" {
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the rotation did not end");
}

#[test]
fn online_rotate_rewraps_every_row_while_a_writer_runs() {
    let mut m = Mounted::new();
    let c = m.cipherdir.clone();
    make_files(&m.path("d"), 300);
    let kf = m.dir.path().join("kf");
    ok(&["keys", "new-keyfile", s(&kf)], "");
    ok(
        &["keys", "add", s(&c), "--keyfile", s(&kf)],
        &format!("{PW}\n"),
    );
    let writer = Writer::start(&m.path("w"));
    // Other slots would keep the old KEK usable: refused (16) without --drop-other-slots.
    let (code, _, err) = run(&["rotate", s(&c)], &format!("{PW}\n"));
    assert_eq!(code, 16, "{err}");
    let out = ok(
        &[
            "rotate",
            s(&c),
            "--drop-other-slots",
            "--wait",
            "--batch-rows",
            "7",
        ],
        &format!("{PW}\n"),
    );
    assert!(out.contains("KEK generation 1 -> 2"), "{out}");
    assert!(out.contains("Removed key slot(s) 1."), "{out}");
    assert!(out.contains("Rotation finished"), "{out}");
    let st = status(&c);
    assert_eq!(st["kek_generation"], 2);
    assert_eq!(st["rotation"]["state"], "finished");
    assert!(st["rotation"]["done"].as_u64().unwrap() >= 300, "{st}");
    // A second rotation, returning at once, then followed with status.
    let out = ok(&["rotate", s(&c), "--batch-rows", "5"], &format!("{PW}\n"));
    assert!(out.contains("KEK generation 2 -> 3"), "{out}");
    assert_eq!(rotation_settles(&c)["state"], "finished");
    check_files(&m.path("d"), 300);
    writer.stop();
    m.unmount();
    let info = ok(&["info", s(&c)], "");
    assert!(info.contains("kek generation:  3"), "{info}");
    assert!(!info.contains("rotation"), "{info}");
    m.mount(&[]);
    check_files(&m.path("d"), 300);
    let out = ok(&["fsck", s(&c)], &format!("{PW}\n"));
    assert!(out.ends_with("clean\n"), "{out}");
    m.unmount();
}

#[test]
fn kill_9_during_an_online_rotation_under_writes_then_it_resumes_and_completes() {
    let mut m = Mounted::new();
    let c = m.cipherdir.clone();
    let kf = m.dir.path().join("kf");
    ok(&["keys", "new-keyfile", s(&kf)], "");
    make_files(&m.path("d"), 1500);
    // The random kill points (`ONLINE_SEED=…` replays a failure).
    let mut rng = Rng::from_env_or_clock("ONLINE_SEED");
    let mut killed_mid_rotation = 0;
    for round in 0..4 {
        // Each round keeps two slots: the password, and the key file added again.
        ok(
            &["keys", "add", s(&c), "--keyfile", s(&kf)],
            &format!("{PW}\n"),
        );
        let writer = Writer::start(&m.path(&format!("w{round}")));
        ok(
            &["rotate", s(&c), "--drop-other-slots", "--batch-rows", "3"],
            &format!("{PW}\n"),
        );
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        let was = status(&c)["rotation"].clone();
        m.kill_daemon();
        killed_mid_rotation += usize::from(was["state"] == "running");
        drop(writer);
        m.cleanup_dead();
        // The volume opens with its slot, every file reads, the rotation resumes (in the
        // mount's thread) and completes.
        m.mount(&[]);
        check_files(&m.path("d"), 1500);
        let after = rotation_settles(&c);
        assert!(
            after["state"] == "finished" || (after.is_null() && was["state"] == "finished"),
            "round {round}: before the kill {was}, after the mount {after}"
        );
        assert_eq!(status(&c)["kek_generation"], round + 2);
        check_files(&m.path("d"), 1500);
        for i in 0..20 {
            // The writer's files read (content is random; no EIO).
            std::fs::read(m.path(&format!("w{round}/w{i}"))).unwrap();
        }
    }
    // 500 batches take far longer than the longest delay: most kills hit a running rotation.
    assert!(killed_mid_rotation > 0, "no kill hit a running rotation");
    m.unmount();
    // Offline too: the password opens it, every key row is at the last generation.
    let info = ok(&["info", s(&c)], "");
    assert!(info.contains("kek generation:  5"), "{info}");
    m.mount(&[]);
    check_files(&m.path("d"), 1500);
    m.unmount();
}
