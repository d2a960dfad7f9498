//! What `cofferfs mount` tells its user (issue 12, item 8): one line per failed mount, "already
//! mounted" for a live mountpoint or volume, what to check when `/dev/fuse` is refused,
//! systemd-style `--idle` durations, a "ready" line in the foreground, and a quiet SIGTERM.
//! Real mounts, real signals, a real `/dev/fuse` made unusable in a private mount namespace.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::mount::{
    Mounted, PASSWORD, bin, init_volume, is_mounted, run_with_stdin, wait_timeout,
};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Lines of /proc/self/mountinfo that mount something on `mnt`.
fn mounts_on(mnt: &Path) -> usize {
    let mnt = s(mnt).replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(mnt.as_str()))
        .count()
}

/// A fresh volume `name` in `dir` and an empty mountpoint `name.mnt`.
fn volume(dir: &Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let c = dir.join(name);
    init_volume(&c, &[]);
    let mnt = dir.join(format!("{name}.mnt"));
    std::fs::create_dir(&mnt).unwrap();
    (c, mnt)
}

#[test]
fn a_failed_mount_says_why_once() {
    let dir = tempfile::tempdir().unwrap();
    let (c, mnt) = volume(dir.path(), "v");
    // Background mode: the daemon child fails to open the volume and reports to its parent.
    let (code, out, err) = run_with_stdin(&["mount", s(&c), s(&mnt)], "wrong password\n");
    assert_eq!(code, 12, "{out}{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("cofferfs: wrong password"), "{err:?}");
    assert!(!err.contains("[ERROR"), "{err:?}");
    assert!(!is_mounted(&mnt));
}

#[test]
fn mounting_on_a_live_mountpoint_says_already_mounted() {
    let mut m = Mounted::new();
    std::fs::write(m.path("file"), "x").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (other, _) = volume(dir.path(), "other");
    for (cipherdir, mode) in [(&other, "-f"), (&m.cipherdir, "--ro")] {
        let (code, out, err) = run_with_stdin(
            &["mount", mode, s(cipherdir), s(&m.mnt)],
            &format!("{PASSWORD}\n"),
        );
        assert_eq!(code, 20, "{out}{err}");
        assert!(
            err.contains(&format!("{} is already a mount point", s(&m.mnt))),
            "{err}"
        );
        assert!(
            err.contains(s(&m.cipherdir)),
            "names what is mounted there: {err}"
        );
        assert!(!err.contains("not empty"), "{err}");
    }
    // An empty mount too: nothing is stacked on top of it.
    std::fs::remove_file(m.path("file")).unwrap();
    let (code, _, err) = run_with_stdin(&["mount", s(&other), s(&m.mnt)], &format!("{PASSWORD}\n"));
    assert_eq!(code, 20, "{err}");
    assert_eq!(mounts_on(&m.mnt), 1, "nothing mounted over the live mount");
    // The same volume on a second mountpoint: where it is mounted already.
    let second = dir.path().join("second");
    std::fs::create_dir(&second).unwrap();
    let (code, _, err) = run_with_stdin(
        &["mount", s(&m.cipherdir), s(&second)],
        &format!("{PASSWORD}\n"),
    );
    assert_eq!(code, 15, "{err}");
    assert!(
        err.contains(&format!("is already mounted at {}", s(&m.mnt))),
        "{err}"
    );
    m.unmount();
}

#[test]
fn a_refused_dev_fuse_says_what_to_check() {
    let dir = tempfile::tempdir().unwrap();
    let (c, mnt) = volume(dir.path(), "v");
    let fake = dir.path().join("fuse-node");
    // In a private mount namespace, /dev/fuse becomes a node of mode 0000, and the mount runs
    // without CAP_DAC_OVERRIDE: open("/dev/fuse") fails with EACCES, as for a user who may not
    // use FUSE.
    let script = format!(
        "mknod '{f}' c 10 229 && chmod 000 '{f}' && mount --bind '{f}' /dev/fuse && \
         exec setpriv --bounding-set=-dac_override,-dac_read_search '{bin}' mount -f '{c}' '{m}'",
        f = s(&fake),
        bin = bin(),
        c = s(&c),
        m = s(&mnt)
    );
    let mut child = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(20), "{err}");
    assert!(err.contains("/dev/fuse"), "names what was refused: {err}");
    assert!(err.contains("ls -l /dev/fuse"), "says what to check: {err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(!is_mounted(&mnt));
}

/// `cofferfs mount -f ARGS…` with the password piped and stderr captured (and RUST_LOG as
/// given), waiting for the mount to appear.
fn mount_foreground(c: &Path, mnt: &Path, extra: &[&str], rust_log: Option<&str>) -> Daemon {
    let mut cmd = Command::new(bin());
    cmd.arg("mount").arg("-f").args(extra).arg(c).arg(mnt);
    match rust_log {
        Some(v) => cmd.env("RUST_LOG", v),
        None => cmd.env_remove("RUST_LOG"),
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let daemon = Daemon {
        child,
        mnt: mnt.to_owned(),
    };
    while !is_mounted(mnt) {
        assert!(Instant::now() < deadline, "mount did not appear");
        std::thread::sleep(Duration::from_millis(20));
    }
    daemon
}

/// A foreground mount daemon that a failing test does not leave behind: `Drop` unmounts and
/// reaps it.
struct Daemon {
    child: Child,
    mnt: std::path::PathBuf,
}

impl std::ops::Deref for Daemon {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl std::ops::DerefMut for Daemon {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new(bin()).arg("umount").arg(&self.mnt).status();
            if wait_timeout(&mut self.child, Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

fn sigterm(child: &Child) {
    rustix::process::kill_process(
        rustix::process::Pid::from_child(child),
        rustix::process::Signal::TERM,
    )
    .unwrap();
}

/// The lines of a child's stderr, read by a thread so that a test can wait with a timeout.
fn stderr_lines(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    rx
}

#[test]
fn foreground_mount_says_ready_and_a_sigterm_unmounts_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let (c, mnt) = volume(dir.path(), "v");
    for rust_log in [None, Some("info")] {
        let mut child = mount_foreground(&c, &mnt, &[], rust_log);
        let lines = stderr_lines(child.stderr.take().unwrap());
        // The ready line comes once the mount answers (log lines, with RUST_LOG, start '[').
        let ready = loop {
            let line = lines
                .recv_timeout(Duration::from_secs(30))
                .expect("a ready line on stderr within 30 s");
            if !line.starts_with('[') {
                break line;
            }
        };
        assert_eq!(
            ready,
            format!(
                "cofferfs: {} mounted on {}: ready (Ctrl-C or `cofferfs umount {}` unmounts)",
                s(&c),
                s(&mnt),
                s(&mnt)
            ),
            "RUST_LOG={rust_log:?}"
        );
        std::fs::write(mnt.join("f"), "data").unwrap();
        sigterm(&child);
        let status = wait_timeout(&mut child, Duration::from_secs(30));
        assert!(status.is_some_and(|s| s.success()), "{status:?}");
        let rest: Vec<String> = lines.iter().collect();
        let rest = rest.join("\n");
        assert!(
            !rest.contains("Unmount failed"),
            "RUST_LOG={rust_log:?}: {rest}"
        );
        assert!(!rest.contains("WARN") && !rest.contains("ERROR"), "{rest}");
        if rust_log.is_none() {
            assert_eq!(rest, "", "nothing after the ready line");
        }
        assert!(!is_mounted(&mnt));
    }
}

#[test]
fn idle_takes_compound_and_fractional_durations() {
    let dir = tempfile::tempdir().unwrap();
    let (c, mnt) = volume(dir.path(), "v");
    // Accepted by the command line (the mount is then stopped by a signal).
    let mut child = mount_foreground(&c, &mnt, &["--idle", "1h30m"], None);
    sigterm(&child);
    assert!(wait_timeout(&mut child, Duration::from_secs(30)).is_some_and(|s| s.success()));
    // A fraction of a second: the mount goes away by itself, soon, and cleanly.
    let started = Instant::now();
    let mut child = mount_foreground(&c, &mnt, &["--idle", "0.5s"], None);
    let status = wait_timeout(&mut child, Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    assert!(started.elapsed() < Duration::from_secs(15));
    assert!(!is_mounted(&mnt));
    // A bad one is a usage error that says what is accepted.
    let (code, _, err) = run_with_stdin(&["mount", "--idle", "5 parsecs", s(&c), s(&mnt)], "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("1h30m"), "shows an example: {err}");
}

/// Names of the daemon `pid`'s request threads (fuser calls them `fuser-0`, `fuser-1`, …).
fn request_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|c| {
            c.trim()
                .strip_prefix("fuser-")
                .is_some_and(|n| n.parse::<u32>().is_ok())
        })
        .count()
}

#[test]
fn threads_sets_how_many_threads_serve_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (c, mnt) = volume(dir.path(), "v");
    let cpus = std::thread::available_parallelism().unwrap().get();
    for (flags, want) in [
        (vec![], cpus.clamp(2, 8)),
        (vec!["--threads", "1"], 1),
        (vec!["--threads", "3"], 3),
    ] {
        let mut child = mount_foreground(&c, &mnt, &flags, None);
        assert_eq!(request_threads(child.id()), want, "{flags:?}");
        std::fs::write(mnt.join("f"), b"served").unwrap();
        assert_eq!(std::fs::read(mnt.join("f")).unwrap(), b"served");
        sigterm(&child);
        assert!(wait_timeout(&mut child, Duration::from_secs(30)).is_some_and(|s| s.success()));
    }
    let (code, _, err) = run_with_stdin(&["mount", "--threads", "0", s(&c), s(&mnt)], "");
    assert_eq!(code, 2, "{err}");
    assert!(!is_mounted(&mnt));
}
