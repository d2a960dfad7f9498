//! A hostile cipherdir against a daemon that often runs as root (issue 15, items 5 and 9):
//! control files that are FIFOs or symlinks, and names that decrypt to `/`, NUL, `.`, `..` or
//! nothing. Each is damage: EIO or a skipped entry in the mount, a finding for fsck, a clear
//! refusal at mount time; never a blocked worker, and never a file opened through a symlink.

mod common;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::mount::{Mounted, PASSWORD, bin, cofferfs, init_volume, is_mounted, wait_timeout};

/// The directories directly in `cipherdir` (its encrypted names).
fn cipher_dirs(cipherdir: &Path) -> BTreeSet<PathBuf> {
    std::fs::read_dir(cipherdir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.path())
        .collect()
}

/// Runs `op` in a thread; its result, or `None` when it has not finished within `t` (the
/// thread is left blocked: the mount's Drop detaches it).
fn within<T: Send + 'static>(t: Duration, op: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(op());
    });
    rx.recv_timeout(t).ok()
}

/// The errno of listing `dir`, or `None` when the listing works.
fn list_errno(dir: PathBuf) -> Option<i32> {
    match std::fs::read_dir(&dir) {
        Ok(mut entries) => entries
            .try_for_each(|e| e.map(|_| ()))
            .err()
            .map(|e| e.raw_os_error().unwrap()),
        Err(e) => Some(e.raw_os_error().unwrap()),
    }
}

/// A mounted volume with a good directory `ok/` and `bad` more directories `d0/`, `d1/`, …
/// each holding a file; returns it unmounted, with the cipher paths of the bad directories.
fn volume_with_dirs(bad: usize) -> (Mounted, Vec<PathBuf>) {
    let mut m = Mounted::new();
    std::fs::create_dir(m.path("ok")).unwrap();
    std::fs::write(m.path("ok/f"), b"fine").unwrap();
    m.unmount();
    let before = cipher_dirs(&m.cipherdir);
    m.mount(&[]);
    for i in 0..bad {
        std::fs::create_dir(m.path(&format!("d{i}"))).unwrap();
        std::fs::write(m.path(&format!("d{i}/f")), b"x").unwrap();
    }
    m.unmount();
    let bad_dirs: Vec<PathBuf> = cipher_dirs(&m.cipherdir)
        .difference(&before)
        .cloned()
        .collect();
    assert_eq!(bad_dirs.len(), bad);
    (m, bad_dirs)
}

/// Replaces the id file of the cipher directory `dir` by what `make` creates at its path.
fn replace_dir_id(dir: &Path, make: impl Fn(&Path)) {
    let id = dir.join(".cofferfs.dirid");
    std::fs::remove_file(&id).unwrap();
    make(&id);
}

fn mkfifo(p: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
}

#[test]
fn fifo_dir_ids_do_not_block_the_mount() {
    // More FIFO directories than the daemon has workers (4): listed at once, each must fail
    // promptly, and the good directory must keep working.
    let (mut m, bad) = volume_with_dirs(6);
    for d in &bad {
        replace_dir_id(d, mkfifo);
    }
    m.mount(&[]);
    let started = Instant::now();
    let listings: Vec<_> = (0..6)
        .map(|i| {
            let p = m.path(&format!("d{i}"));
            std::thread::spawn(move || list_errno(p))
        })
        .collect();
    let ok_dir = m.path("ok");
    let good = within(Duration::from_secs(5), move || {
        std::fs::read(ok_dir.join("f")).map(|b| b == b"fine")
    });
    assert!(
        matches!(good, Some(Ok(true))),
        "the good directory is blocked or broken: {good:?}"
    );
    for (i, l) in listings.into_iter().enumerate() {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(l.join().unwrap());
        });
        let errno = rx
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("listing d{i} blocked"));
        assert_eq!(errno, Some(libc::EIO), "d{i}");
    }
    let stat = within(Duration::from_secs(5), {
        let p = m.path("d0/f");
        move || std::fs::metadata(p).map_err(|e| e.raw_os_error())
    });
    assert!(matches!(stat, Some(Err(Some(libc::EIO)))), "{stat:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    m.unmount();

    // fsck names the damage instead of hanging on it.
    let c = m.cipherdir.clone();
    let mut child = Command::new(bin())
        .args(["fsck", c.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let _ = child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PASSWORD}\n").as_bytes());
    }
    let status = wait_timeout(&mut child, Duration::from_secs(20));
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(status.is_some(), "fsck blocked on a FIFO: {text}");
    assert_eq!(out.status.code(), Some(26), "{text}");
    assert!(text.contains("not a regular file"), "{text}");
}

#[test]
fn symlinked_dir_ids_are_never_followed() {
    let (mut m, bad) = volume_with_dirs(3);
    // A 16-byte file elsewhere: the right size, so only the symlink can be the reason.
    let elsewhere = m.dir.path().join("sixteen");
    std::fs::write(&elsewhere, [0u8; 16]).unwrap();
    let targets = [
        PathBuf::from("/dev/zero"),
        PathBuf::from("/etc/shadow"),
        elsewhere,
    ];
    for (d, t) in bad.iter().zip(&targets) {
        replace_dir_id(d, |p| std::os::unix::fs::symlink(t, p).unwrap());
    }
    m.mount(&[]);
    for i in 0..targets.len() {
        let p = m.path(&format!("d{i}"));
        let errno = within(Duration::from_secs(5), move || list_errno(p));
        assert_eq!(errno, Some(Some(libc::EIO)), "d{i}, one of {targets:?}");
    }
    assert_eq!(std::fs::read(m.path("ok/f")).unwrap(), b"fine");
}

#[test]
fn a_symlinked_or_fifo_marker_or_store_is_refused_at_mount() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("m");
    std::fs::create_dir(&mnt).unwrap();
    // In the background, so that a mount that wrongly succeeds returns and is undone.
    let mount = |c: &Path| {
        let r = within(Duration::from_secs(10), {
            let (c, mnt) = (c.to_owned(), mnt.clone());
            move || cofferfs(&["mount", c.to_str().unwrap(), mnt.to_str().unwrap()])
        });
        let mounted = is_mounted(&mnt);
        if mounted {
            cofferfs(&["umount", mnt.to_str().unwrap()]);
        }
        assert!(!mounted, "mounted: {r:?}");
        r.expect("mount blocked")
    };

    // cofferfs.volume a symlink to the real marker, moved aside.
    let c = dir.path().join("c1");
    init_volume(&c, &[]);
    std::fs::rename(c.join("cofferfs.volume"), dir.path().join("marker")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("marker"), c.join("cofferfs.volume")).unwrap();
    let (code, out, err) = mount(&c);
    assert_eq!(code, 6, "{out}{err}");
    assert!(
        err.contains("cofferfs.volume: is a symbolic link; refused"),
        "{err}"
    );

    // cofferfs.volume a FIFO: refused at once, not waited on.
    std::fs::remove_file(c.join("cofferfs.volume")).unwrap();
    mkfifo(&c.join("cofferfs.volume"));
    let (code, _, err) = mount(&c);
    assert_eq!(code, 6, "{err}");
    assert!(err.contains("cofferfs.volume: is a FIFO; refused"), "{err}");

    // cofferfs.db a symlink to the real store, moved aside.
    let c = dir.path().join("c2");
    init_volume(&c, &[]);
    std::fs::rename(c.join("cofferfs.db"), dir.path().join("store.db")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("store.db"), c.join("cofferfs.db")).unwrap();
    let (code, out, err) = mount(&c);
    assert_eq!(code, 6, "{out}{err}");
    assert!(
        err.contains("cofferfs.db: is a symbolic link; refused"),
        "{err}"
    );
    // And fsck refuses it the same way, before asking for a password.
    let (code, _, err) = cofferfs(&["fsck", c.to_str().unwrap()]);
    assert_eq!(code, 6, "{err}");
}

#[test]
fn names_that_decrypt_to_slash_nul_dot_dotdot_or_nothing_are_skipped() {
    let mut m = Mounted::new();
    std::fs::write(m.path("good"), b"g").unwrap();
    m.unmount();
    {
        let vol = common::open_volume(&m.cipherdir, PASSWORD.as_bytes()).unwrap();
        let root = std::fs::File::open(&m.cipherdir).unwrap();
        let root_id = cofferfs::volume::names::read_dir_id(root.as_fd()).unwrap();
        let good_blob = std::fs::read_dir(&m.cipherdir)
            .unwrap()
            .flatten()
            .find(|e| {
                !e.file_name().as_bytes().starts_with(b"cofferfs")
                    && e.file_type().unwrap().is_file()
                    && !e.file_name().as_bytes().starts_with(b".")
            })
            .unwrap()
            .path();
        for bad in [&b"a/b"[..], b"x\0y", b".", b"..", b""] {
            let dn = vol
                .names()
                .disk_name(&root_id, OsStr::from_bytes(bad), true)
                .unwrap();
            assert!(dn.long.is_none());
            std::fs::copy(&good_blob, m.cipherdir.join(&dn.name)).unwrap();
        }
    }
    m.mount(&[]);
    let names: BTreeSet<String> = std::fs::read_dir(&m.mnt)
        .expect("the root lists despite the bad names")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, BTreeSet::from(["good".to_owned()]));
    assert_eq!(std::fs::read(m.path("good")).unwrap(), b"g");
    m.unmount();

    let (code, out, err) = cofferfs(&["fsck", m.cipherdir.to_str().unwrap()]);
    assert_eq!(code, 26, "{out}{err}");
    let text = out + &err;
    assert!(
        text.matches("name does not decrypt in its directory")
            .count()
            >= 5,
        "{text}"
    );
}

#[test]
fn umount_does_not_block_on_a_fifo_swapped_in_for_the_marker() {
    let m = Mounted::new();
    let marker = m.cipherdir.join("cofferfs.volume");
    std::fs::rename(&marker, m.dir.path().join("marker")).unwrap();
    mkfifo(&marker);
    let mnt = m.mnt.clone();
    let r = within(Duration::from_secs(15), move || {
        cofferfs(&["umount", mnt.to_str().unwrap()])
    });
    let (code, out, err) = r.expect("umount blocked on the FIFO");
    assert_eq!(code, 0, "{out}{err}");
    assert!(!is_mounted(&m.mnt));
    // Drop waits for the daemon to exit.
}
