//! The mount daemon in the background logs to syslog: the warning behind a tampered name
//! arrives there, without the plaintext name or the password; `--nosyslog` keeps it off. The
//! test binds its own syslog socket (the hidden `--syslog-socket` option) instead of /dev/log.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::mount::{Mounted, PASSWORD, cofferfs, is_mounted};

const PLAIN_NAME: &str = "plaintext-name-never-logged.txt";

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The one ciphertext entry (not a dot file) in the ciphertext directory `dir`.
fn only_entry(dir: &Path) -> PathBuf {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_str().unwrap().starts_with('.'))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    names.pop().unwrap()
}

/// Unmounts on drop if the test fails midway.
struct Unmount<'a>(&'a Path);

impl Drop for Unmount<'_> {
    fn drop(&mut self) {
        if is_mounted(self.0) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(self.0)
                .status();
        }
    }
}

/// Every datagram that arrives on `sock` within `wait`, until one contains `until`.
fn collect(sock: &UnixDatagram, wait: Duration, until: &str) -> Vec<String> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            if got.last().unwrap().contains(until) {
                break;
            }
        }
    }
    got
}

#[test]
fn background_daemon_logs_a_tampered_name_to_syslog_without_plaintext() {
    // A directory with one file, written through a foreground mount.
    let mut m = Mounted::new();
    std::fs::create_dir(m.path("d")).unwrap();
    std::fs::write(m.path(&format!("d/{PLAIN_NAME}")), b"x").unwrap();
    m.unmount();
    let cipherdir = m.cipherdir.clone();
    let subdir = std::fs::read_dir(&cipherdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    // Tamper with the file's encrypted name: it no longer decrypts.
    let enc = only_entry(&subdir);
    let mut name = enc.file_name().unwrap().to_str().unwrap().to_owned();
    let flipped = if name.as_bytes()[5] == b'A' { "B" } else { "A" };
    name.replace_range(5..6, flipped);
    std::fs::rename(&enc, subdir.join(&name)).unwrap();

    let sock_path = m.dir.path().join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let mount = |extra: &[&str]| {
        let mut args = vec!["mount", "--syslog-socket", s(&sock_path)];
        args.extend_from_slice(extra);
        args.extend([s(&cipherdir), s(&m.mnt)]);
        let (code, out, err) = cofferfs(&args);
        assert_eq!(code, 0, "{out}{err}");
    };
    let _guard = Unmount(&m.mnt);

    // In the background (no -f): the warning goes to syslog.
    mount(&[]);
    let listed: Vec<_> = std::fs::read_dir(m.path("d")).unwrap().collect();
    assert!(listed.is_empty(), "the tampered entry is skipped");
    let got = collect(&sock, Duration::from_secs(10), "skipping entry");
    let warning = got
        .iter()
        .find(|l| l.contains("skipping entry"))
        .unwrap_or_else(|| panic!("no warning over syslog: {got:?}"));
    // <28>: facility daemon (3), severity warning (4); tagged cofferfs[PID].
    assert!(warning.starts_with("<28>"), "{warning}");
    assert!(warning.contains("cofferfs["), "{warning}");
    assert!(
        warning.contains(&name),
        "names the on-disk entry: {warning}"
    );
    for line in &got {
        assert!(!line.contains(PLAIN_NAME), "plaintext name logged: {line}");
        assert!(!line.contains(PASSWORD), "password logged: {line}");
    }
    let (code, out, err) = cofferfs(&["umount", s(&m.mnt)]);
    assert_eq!(code, 0, "{out}{err}");

    // --nosyslog: nothing arrives.
    mount(&["--nosyslog"]);
    let _ = std::fs::read_dir(m.path("d")).unwrap().count();
    let got = collect(&sock, Duration::from_secs(2), "skipping entry");
    assert!(got.is_empty(), "{got:?}");
    let (code, out, err) = cofferfs(&["umount", s(&m.mnt)]);
    assert_eq!(code, 0, "{out}{err}");
}
