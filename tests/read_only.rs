//! Read-only media and read-only use (issue 12, point 3). A cipherdir on a read-only
//! filesystem (a backup disk, a snapshot, a read-only NFS export; here a read-only bind mount
//! of a copy) must mount with `--ro` and pass `fsck`; and on a writable cipherdir a read-only
//! mount and `fsck` without `--repair` must change no byte and no timestamp (mtime, ctime) of
//! the cipherdir or its header store: no `cofferfs.db-wal`/`-shm` appear. A store left with
//! its write-ahead log by a crash must be read with the log's commits, or refused with a
//! message that says why.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::mount::{Mounted, cofferfs, run_with_stdin};

/// What a path is, byte for byte and time for time (atime aside: reads may move it).
#[derive(PartialEq, Eq)]
struct Entry {
    mode: u32,
    uid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    /// File bytes, or a symlink's target.
    bytes: Vec<u8>,
}

/// Every path below `root` (and `root` itself), by path relative to it.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    fn walk(root: &Path, p: &Path, out: &mut BTreeMap<PathBuf, Entry>) {
        let m = std::fs::symlink_metadata(p).unwrap();
        let bytes = if m.file_type().is_symlink() {
            std::fs::read_link(p)
                .unwrap()
                .into_os_string()
                .into_encoded_bytes()
        } else if m.is_file() {
            std::fs::read(p).unwrap()
        } else {
            Vec::new()
        };
        out.insert(
            p.strip_prefix(root).unwrap().to_owned(),
            Entry {
                mode: m.mode(),
                uid: m.uid(),
                size: m.size(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
                bytes,
            },
        );
        if m.is_dir() {
            for e in std::fs::read_dir(p).unwrap() {
                walk(root, &e.unwrap().path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn assert_same(before: &BTreeMap<PathBuf, Entry>, after: &BTreeMap<PathBuf, Entry>, what: &str) {
    let paths = |s: &BTreeMap<PathBuf, Entry>| s.keys().cloned().collect::<Vec<_>>();
    assert_eq!(paths(after), paths(before), "{what}: paths differ");
    for (p, e) in before {
        let a = &after[p];
        if a != e {
            let meta = |e: &Entry| (e.mode, e.uid, e.size, e.mtime, e.ctime);
            panic!(
                "{what}: {} changed: {:?} -> {:?}, bytes {}",
                p.display(),
                meta(e),
                meta(a),
                if a.bytes == e.bytes { "same" } else { "differ" }
            );
        }
    }
}

/// The plaintext tree every test builds: small, multi-chunk and empty files, nested
/// directories, a long name, a symlink, a hard link.
fn populate(m: &Mounted) {
    std::fs::create_dir_all(m.path("d/sub")).unwrap();
    std::fs::write(m.path("small"), b"small file\n").unwrap();
    std::fs::write(m.path("d/big"), pattern(200_000)).unwrap();
    std::fs::write(m.path("d/sub/empty"), b"").unwrap();
    std::fs::write(m.path(&"l".repeat(200)), b"long name").unwrap();
    std::os::unix::fs::symlink("d/big", m.path("link")).unwrap();
    std::fs::hard_link(m.path("small"), m.path("d/hard")).unwrap();
    std::fs::set_permissions(m.path("d/sub"), std::fs::Permissions::from_mode(0o750)).unwrap();
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 % 251) as u8).collect()
}

/// Reads back everything `populate` wrote, through the mount, and lists it as `ls -lR` does.
fn read_everything(m: &Mounted) {
    assert_eq!(std::fs::read(m.path("small")).unwrap(), b"small file\n");
    assert_eq!(std::fs::read(m.path("d/big")).unwrap(), pattern(200_000));
    assert_eq!(std::fs::read(m.path("d/sub/empty")).unwrap(), b"");
    assert_eq!(
        std::fs::read(m.path(&"l".repeat(200))).unwrap(),
        b"long name"
    );
    assert_eq!(
        std::fs::read_link(m.path("link")).unwrap(),
        Path::new("d/big")
    );
    assert_eq!(std::fs::read(m.path("link")).unwrap(), pattern(200_000));
    assert_eq!(std::fs::read(m.path("d/hard")).unwrap(), b"small file\n");
    let ls = Command::new("ls").arg("-lRa").arg(&m.mnt).output().unwrap();
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    let ls = String::from_utf8_lossy(&ls.stdout);
    assert!(
        ls.contains("big") && ls.contains("empty") && ls.contains("link -> d/big"),
        "{ls}"
    );
}

fn sqlite_sidecars(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with("-wal") || n.ends_with("-shm") || n.ends_with("-journal"))
        .collect()
}

/// A read-only bind mount of `src` at `at` (`mount --bind`, then a read-only remount), undone
/// in `Drop`.
struct ReadOnlyBind {
    at: PathBuf,
}

impl ReadOnlyBind {
    fn new(src: &Path, at: &Path) -> Self {
        std::fs::create_dir(at).unwrap();
        run("mount", &["--bind", s(src), s(at)]);
        let bind = ReadOnlyBind { at: at.to_owned() };
        run("mount", &["-o", "remount,bind,ro", s(at)]);
        let err = std::fs::write(at.join("probe"), b"x").unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(libc::EROFS),
            "the bind is not read-only"
        );
        bind
    }
}

impl Drop for ReadOnlyBind {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.at).status();
        if !ok.is_ok_and(|s| s.success()) {
            let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        }
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn cp_a(from: &Path, to: &Path) {
    run("cp", &["-a", s(from), s(to)]);
}

fn fsck_clean(cipherdir: &Path, extra: &[&str]) {
    let mut args = vec!["fsck"];
    args.extend_from_slice(extra);
    args.push(s(cipherdir));
    let (code, out, err) = cofferfs(&args);
    assert!(
        code == 0 && out.contains("clean"),
        "fsck: {code} {out}{err}"
    );
}

/// The directories whose bytes and times must not change: the cipherdir, and the store's
/// directory when the store lives elsewhere.
fn volume_dirs(m: &Mounted) -> Vec<PathBuf> {
    let mut dirs = vec![m.cipherdir.clone()];
    if let Some(store) = &m.header_store {
        dirs.push(store.parent().unwrap().to_owned());
    }
    dirs
}

#[test]
fn a_read_only_mount_and_fsck_change_no_byte_or_time_of_the_volume() {
    for external in [false, true] {
        let mut m = if external {
            Mounted::with_header_store(&[], &[])
        } else {
            Mounted::new()
        };
        populate(&m);
        m.unmount();
        let store = m.header_store.clone();
        let store_flag: Vec<&str> = match &store {
            Some(p) => vec!["--header-store", s(p)],
            None => vec![],
        };
        let before: Vec<_> = volume_dirs(&m).iter().map(|d| snapshot(d)).collect();
        let check = |m: &Mounted, what: &str| {
            for (d, b) in volume_dirs(m).iter().zip(&before) {
                assert_same(
                    b,
                    &snapshot(d),
                    &format!("{what} (external store: {external})"),
                );
            }
        };

        m.mount(&["--ro"]);
        for d in volume_dirs(&m) {
            assert_eq!(
                sqlite_sidecars(&d),
                Vec::<String>::new(),
                "while mounted --ro"
            );
        }
        read_everything(&m);
        m.unmount();
        check(&m, "mount --ro");

        m.mount(&["-o", "ro"]);
        read_everything(&m);
        m.unmount();
        check(&m, "mount -o ro");

        fsck_clean(&m.cipherdir, &store_flag);
        check(&m, "fsck");

        let mut info = vec!["info"];
        info.extend_from_slice(&store_flag);
        info.push(s(&m.cipherdir));
        let (code, out, err) = cofferfs(&info);
        assert_eq!(code, 0, "{out}{err}");
        check(&m, "info");
    }
}

#[test]
fn a_copy_on_read_only_media_mounts_with_ro_and_passes_fsck() {
    let mut m = Mounted::new();
    populate(&m);
    m.unmount();
    let copy = m.dir.path().join("copy");
    cp_a(&m.cipherdir, &copy);
    let bind = ReadOnlyBind::new(&copy, &m.dir.path().join("ro"));

    let mut ro = Mounted::adopt(bind.at.clone());
    ro.mount(&["--ro"]);
    read_everything(&ro);
    let err = std::fs::write(ro.path("new"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
    ro.unmount();
    fsck_clean(&bind.at, &[]);
    let (code, out, err) = cofferfs(&["info", s(&bind.at)]);
    assert_eq!(code, 0, "{out}{err}");

    // What needs to write says so, and why, instead of SQLite's "unable to open database
    // file"; before it asks for the password (none is given here).
    for args in [
        vec!["mount", "-f", s(&bind.at), s(&ro.mnt)],
        vec!["fsck", "--repair", s(&bind.at)],
    ] {
        let (code, out, err) = run_with_stdin(&args, "");
        assert_eq!(code, 1, "{args:?}: {out}{err}");
        assert!(
            err.contains("is on a read-only filesystem") && err.contains("mount --ro"),
            "{args:?}: {err}"
        );
        assert!(!common::mount::is_mounted(&ro.mnt));
    }
    drop(bind);
    assert_eq!(sqlite_sidecars(&copy), Vec::<String>::new());
}

#[test]
fn a_volume_with_its_store_elsewhere_mounts_from_read_only_media() {
    let mut m = Mounted::with_header_store(&[], &[]);
    populate(&m);
    m.unmount();
    let store = m.header_store.clone().unwrap();
    let (copy, keys) = (m.dir.path().join("copy"), m.dir.path().join("keys-copy"));
    cp_a(&m.cipherdir, &copy);
    cp_a(store.parent().unwrap(), &keys);
    let blobs = ReadOnlyBind::new(&copy, &m.dir.path().join("ro"));
    let vault = ReadOnlyBind::new(&keys, &m.dir.path().join("ro-keys"));
    let ro_store = vault.at.join(store.file_name().unwrap());

    let mut ro = Mounted::adopt_with_store(blobs.at.clone(), ro_store.clone());
    ro.mount(&["--ro"]);
    read_everything(&ro);
    ro.unmount();
    fsck_clean(&blobs.at, &["--header-store", s(&ro_store)]);
    // Only the store on read-only media: a read-write mount is refused all the same.
    let mnt = m.dir.path().join("mnt2");
    std::fs::create_dir(&mnt).unwrap();
    let args = [
        "mount",
        "-f",
        "--header-store",
        s(&ro_store),
        s(&m.cipherdir),
        s(&mnt),
    ];
    let (code, out, err) = run_with_stdin(&args, "");
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!(
            "{} is on a read-only filesystem",
            ro_store.display()
        )),
        "{err}"
    );
    assert!(!common::mount::is_mounted(&mnt));
}

/// File key rows in the main database file alone, as a reader that ignores the WAL sees them.
fn key_rows_without_wal(store: &Path) -> i64 {
    let uri = format!("file:{}?immutable=1", store.display());
    let db = rusqlite::Connection::open_with_flags(
        uri,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_URI,
    )
    .unwrap();
    db.query_row("SELECT count(*) FROM file_keys", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn a_store_left_with_its_wal_by_a_crash_is_read_with_the_wal_or_refused() {
    let mut m = Mounted::new();
    populate(&m);
    // kill -9: the key rows written since the mount are only in the write-ahead log.
    m.kill_daemon();
    m.cleanup_dead();
    let store = m.cipherdir.join("cofferfs.db");
    let wal = m.cipherdir.join("cofferfs.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0, "no WAL left");
    assert!(m.cipherdir.join("cofferfs.db-shm").exists());
    assert_eq!(
        key_rows_without_wal(&store),
        0,
        "the test needs key rows that only the WAL holds"
    );
    let copy = m.dir.path().join("copy");
    cp_a(&m.cipherdir, &copy);

    // Writable media: the log is read, and left for the next read-write open to recover
    // (a read-only open folds nothing into the store).
    let (db, log) = (std::fs::read(&store).unwrap(), std::fs::read(&wal).unwrap());
    m.mount(&["--ro"]);
    read_everything(&m);
    m.unmount();
    assert!(
        std::fs::read(&store).unwrap() == db,
        "the store file changed"
    );
    assert!(std::fs::read(&wal).unwrap() == log, "the WAL changed");

    // Read-only media, -wal and -shm copied: SQLite reads the log from heap memory.
    {
        let bind = ReadOnlyBind::new(&copy, &m.dir.path().join("ro"));
        let mut ro = Mounted::adopt(bind.at.clone());
        ro.mount(&["--ro"]);
        read_everything(&ro);
        ro.unmount();
        fsck_clean(&bind.at, &[]);
    }

    // Read-only media, a copy without its -shm: the log cannot be read there. Refused with
    // the reason, never read without its newest commits.
    std::fs::remove_file(copy.join("cofferfs.db-shm")).unwrap();
    let bind = ReadOnlyBind::new(&copy, &m.dir.path().join("ro2"));
    let mnt = m.dir.path().join("mnt2");
    std::fs::create_dir(&mnt).unwrap();
    for args in [
        vec!["mount", "--ro", s(&bind.at), s(&mnt)],
        vec!["fsck", s(&bind.at)],
        vec!["info", s(&bind.at)],
    ] {
        let (code, out, err) = cofferfs(&args);
        assert_eq!(code, 9, "{args:?}: {out}{err}");
        assert!(
            err.contains("write-ahead log") && err.contains("cofferfs.db-shm"),
            "{args:?}: {err}"
        );
        assert!(!common::mount::is_mounted(&mnt));
    }
    drop(bind);
    // Once on writable storage, the same copy mounts with every file.
    let mut rw = Mounted::adopt(copy);
    rw.mount(&["--ro"]);
    read_everything(&rw);
    rw.unmount();
    m.mount(&[]);
    read_everything(&m);
}
