//! `rename(2)` of a directory over an existing empty directory (issue 12, point 1). POSIX and
//! ext4 replace the empty target; cofferfs failed with ENOTEMPTY because the backing target
//! still holds its id file (`.cofferfs.dirid`), which is not a user entry. Through a real
//! mount: into the same and another parent, long names, `RENAME_EXCHANGE`,
//! `RENAME_NOREPLACE`, the errors that must stay, plaintext names, the state a crash in the
//! middle leaves, and kill -9 of the daemon during a loop of such renames.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cofferfs::volume::reencrypt::resolve;
use common::damage::open_unmounted;
use common::mount::{Mounted, cofferfs, is_mounted};
use common::rng::Rng;

const DIR_ID_FILE: &str = ".cofferfs.dirid";

/// `renameat2(AT_FDCWD, from, AT_FDCWD, to, flags)`.
fn renameat2(from: &Path, to: &Path, flags: u32) -> std::io::Result<()> {
    let (f, t) = (
        CString::new(from.as_os_str().as_bytes()).unwrap(),
        CString::new(to.as_os_str().as_bytes()).unwrap(),
    );
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            f.as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            flags,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn errno(r: std::io::Result<()>) -> Option<i32> {
    r.unwrap_err().raw_os_error()
}

/// The sorted names in directory `p`.
fn names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// The ciphertext directory of plaintext path `plain` (volume unmounted).
fn cipher_dir(m: &Mounted, plain: &str) -> PathBuf {
    let vol = open_unmounted(&m.cipherdir);
    m.cipherdir.join(resolve(&vol, Path::new(plain)).unwrap())
}

fn dir_id(cipher_dir: &Path) -> Vec<u8> {
    std::fs::read(cipher_dir.join(DIR_ID_FILE)).unwrap()
}

/// Every directory below `root` in the cipherdir (the root itself excluded).
fn cipher_dirs(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(cipher_dirs(&p));
            out.push(p);
        }
    }
    out
}

fn long_name_rows(m: &Mounted) -> usize {
    let db = rusqlite::Connection::open_with_flags(
        m.cipherdir.join("cofferfs.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    db.query_row("SELECT count(*) FROM long_names", [], |r| {
        r.get::<_, i64>(0)
    })
    .unwrap() as usize
}

fn fsck_clean(m: &Mounted) {
    let (code, out, err) = cofferfs(&["fsck", m.cipherdir.to_str().unwrap()]);
    assert!(code == 0 && out.contains("clean"), "fsck: {out}{err}");
}

/// Unmounts, checks that the backing directory of `to` now carries `id` (the moved directory
/// kept its id) and that `dirs` ciphertext directories remain, runs fsck, and mounts again.
fn check_moved(m: &mut Mounted, to: &str, id: &[u8], dirs: usize) {
    m.unmount();
    assert_eq!(
        dir_id(&cipher_dir(m, to)),
        id,
        "{to} lost the moved directory's id"
    );
    assert_eq!(
        cipher_dirs(&m.cipherdir).len(),
        dirs,
        "the replaced directory is still there"
    );
    fsck_clean(m);
    m.mount(&[]);
}

/// The id of the backing directory of `plain`, read with the volume unmounted.
fn id_of(m: &mut Mounted, plain: &str) -> Vec<u8> {
    m.unmount();
    let id = dir_id(&cipher_dir(m, plain));
    m.mount(&[]);
    id
}

#[test]
fn a_directory_replaces_an_empty_one_in_the_same_parent() {
    let mut m = Mounted::new();
    // Both empty (os.rename, as the issue reports it).
    std::fs::create_dir(m.path("a")).unwrap();
    std::fs::create_dir(m.path("b")).unwrap();
    let id = id_of(&mut m, "a");
    std::fs::rename(m.path("a"), m.path("b")).unwrap();
    assert_eq!(names(&m.mnt), ["b"]);
    assert!(names(&m.path("b")).is_empty());
    check_moved(&mut m, "b", &id, 1);

    // With content, by `mv -T`; the moved entries still decrypt after a remount.
    std::fs::create_dir(m.path("c")).unwrap();
    std::fs::write(m.path("b/f"), b"moved with its directory").unwrap();
    std::fs::create_dir(m.path("b/sub")).unwrap();
    std::fs::write(m.path("b/sub/g"), b"deeper").unwrap();
    let id = id_of(&mut m, "b");
    let out = Command::new("mv")
        .arg("-T")
        .arg(m.path("b"))
        .arg(m.path("c"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mv -T: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(names(&m.mnt), ["c"]);
    check_moved(&mut m, "c", &id, 2);
    assert_eq!(names(&m.path("c")), ["f", "sub"]);
    assert_eq!(
        std::fs::read(m.path("c/f")).unwrap(),
        b"moved with its directory"
    );
    assert_eq!(std::fs::read(m.path("c/sub/g")).unwrap(), b"deeper");
}

#[test]
fn a_directory_replaces_an_empty_one_in_another_parent() {
    let mut m = Mounted::new();
    for d in ["p", "q", "p/a", "q/b"] {
        std::fs::create_dir(m.path(d)).unwrap();
    }
    std::fs::write(m.path("p/a/f"), b"across parents").unwrap();
    let id = id_of(&mut m, "p/a");
    std::fs::rename(m.path("p/a"), m.path("q/b")).unwrap();
    assert!(names(&m.path("p")).is_empty());
    assert_eq!(names(&m.path("q")), ["b"]);
    assert_eq!(std::fs::read(m.path("q/b/f")).unwrap(), b"across parents");
    // The replaced directory was looked up by the kernel: it is gone, not just hidden.
    assert!(std::fs::metadata(m.path("q/b/f")).is_ok());
    check_moved(&mut m, "q/b", &id, 3);
    assert_eq!(std::fs::read(m.path("q/b/f")).unwrap(), b"across parents");
    // The moved directory still takes new entries under its (kept) id.
    std::fs::write(m.path("q/b/new"), b"after").unwrap();
    m.unmount();
    m.mount(&[]);
    assert_eq!(names(&m.path("q/b")), ["f", "new"]);
}

#[test]
fn long_names_keep_exactly_the_rows_still_in_use() {
    let mut m = Mounted::new();
    let (la, lb, lf) = ("a".repeat(200), "b".repeat(200), "f".repeat(200));
    std::fs::create_dir(m.path("p")).unwrap();
    std::fs::create_dir(m.path(&la)).unwrap();
    std::fs::create_dir(m.path(&format!("p/{lb}"))).unwrap();
    std::fs::write(m.path(&format!("{la}/{lf}")), b"long inside").unwrap();
    m.unmount();
    assert_eq!(long_name_rows(&m), 3);
    m.mount(&[]);
    let id = id_of(&mut m, &la);
    std::fs::rename(m.path(&la), m.path(&format!("p/{lb}"))).unwrap();
    assert_eq!(names(&m.mnt), ["p"]);
    // The source's name row is gone, the target's name now names the moved directory, the
    // row of the entry inside stays; nothing of the replaced directory is left (fsck).
    check_moved(&mut m, &format!("p/{lb}"), &id, 2);
    m.unmount();
    assert_eq!(long_name_rows(&m), 2);
    m.mount(&[]);
    assert_eq!(
        std::fs::read(m.path(&format!("p/{lb}/{lf}"))).unwrap(),
        b"long inside"
    );
}

#[test]
fn exchange_swaps_two_directories_with_their_contents() {
    let mut m = Mounted::new();
    let long = "x".repeat(200);
    for d in ["a", "p", "a/in-a"] {
        std::fs::create_dir(m.path(d)).unwrap();
    }
    std::fs::create_dir(m.path(&format!("p/{long}"))).unwrap();
    std::fs::write(m.path("a/f"), b"was a").unwrap();
    std::fs::write(m.path(&format!("p/{long}/g")), b"was long").unwrap();
    renameat2(
        &m.path("a"),
        &m.path(&format!("p/{long}")),
        libc::RENAME_EXCHANGE,
    )
    .unwrap();
    let check = |m: &Mounted| {
        assert_eq!(names(&m.path("a")), ["g"]);
        assert_eq!(std::fs::read(m.path("a/g")).unwrap(), b"was long");
        assert_eq!(names(&m.path(&format!("p/{long}"))), ["f", "in-a"]);
        assert_eq!(
            std::fs::read(m.path(&format!("p/{long}/f"))).unwrap(),
            b"was a"
        );
    };
    check(&m);
    m.unmount();
    fsck_clean(&m);
    m.mount(&[]);
    check(&m);
    // An empty directory exchanged with a full one: nothing is removed.
    std::fs::create_dir(m.path("e")).unwrap();
    renameat2(&m.path("e"), &m.path("a"), libc::RENAME_EXCHANGE).unwrap();
    assert!(names(&m.path("a")).is_empty());
    assert_eq!(names(&m.path("e")), ["g"]);
    m.unmount();
    fsck_clean(&m);
}

#[test]
fn noreplace_a_full_target_and_mismatched_types_are_still_refused() {
    let mut m = Mounted::new();
    for d in ["a", "empty", "full"] {
        std::fs::create_dir(m.path(d)).unwrap();
    }
    std::fs::write(m.path("a/f"), b"stays").unwrap();
    std::fs::write(m.path("full/g"), b"stays too").unwrap();
    std::fs::write(m.path("file"), b"a file").unwrap();

    assert_eq!(
        errno(renameat2(
            &m.path("a"),
            &m.path("empty"),
            libc::RENAME_NOREPLACE
        )),
        Some(libc::EEXIST)
    );
    assert_eq!(
        errno(std::fs::rename(m.path("a"), m.path("full"))),
        Some(libc::ENOTEMPTY)
    );
    assert_eq!(
        errno(std::fs::rename(m.path("a"), m.path("file"))),
        Some(libc::ENOTDIR)
    );
    assert_eq!(
        errno(std::fs::rename(m.path("file"), m.path("empty"))),
        Some(libc::EISDIR)
    );
    // Every refused target still works, its id included (a new entry decrypts after a
    // remount).
    std::fs::write(m.path("empty/new"), b"n").unwrap();
    m.unmount();
    fsck_clean(&m);
    m.mount(&[]);
    assert_eq!(names(&m.mnt), ["a", "empty", "file", "full"]);
    assert_eq!(std::fs::read(m.path("a/f")).unwrap(), b"stays");
    assert_eq!(std::fs::read(m.path("full/g")).unwrap(), b"stays too");
    assert_eq!(std::fs::read(m.path("empty/new")).unwrap(), b"n");
    assert_eq!(std::fs::read(m.path("file")).unwrap(), b"a file");
}

#[test]
fn plaintext_names_volumes_replace_an_empty_directory_too() {
    let mut m = Mounted::with(&["--plaintext-names"], &[]);
    for d in ["a", "b", "p", "p/c"] {
        std::fs::create_dir(m.path(d)).unwrap();
    }
    std::fs::write(m.path("a/f"), b"plain").unwrap();
    std::fs::rename(m.path("a"), m.path("b")).unwrap();
    std::fs::rename(m.path("b"), m.path("p/c")).unwrap();
    assert_eq!(names(&m.mnt), ["p"]);
    assert_eq!(std::fs::read(m.path("p/c/f")).unwrap(), b"plain");
    assert_eq!(
        errno(std::fs::rename(m.path("p"), m.path("p/c"))),
        Some(libc::EINVAL)
    );
    m.unmount();
    assert!(!m.cipherdir.join("p/c").join(DIR_ID_FILE).exists());
    fsck_clean(&m);
}

/// The replace runs in two steps: the target's id file goes, then the backing rename replaces
/// the (now truly empty) target. A crash after the first step leaves an empty target without
/// an id, beside the untouched source: both must stay usable, and the rename must still work.
#[test]
fn a_crash_between_the_two_steps_leaves_both_directories_usable() {
    let mut m = Mounted::new();
    std::fs::create_dir(m.path("a")).unwrap();
    std::fs::create_dir(m.path("b")).unwrap();
    std::fs::write(m.path("a/f"), b"source").unwrap();
    m.unmount();
    let a_id = dir_id(&cipher_dir(&m, "a"));
    std::fs::remove_file(cipher_dir(&m, "b").join(DIR_ID_FILE)).unwrap();
    // A read-only mount cannot give it a new id, and needs none: it lists as empty.
    m.mount(&["--ro"]);
    assert_eq!(names(&m.mnt), ["a", "b"]);
    assert!(names(&m.path("b")).is_empty());
    assert!(!m.path("b/x").exists());
    assert_eq!(std::fs::read(m.path("a/f")).unwrap(), b"source");
    m.unmount();
    assert!(
        !cipher_dir(&m, "b").join(DIR_ID_FILE).exists(),
        "--ro wrote an id"
    );
    m.mount(&[]);
    assert_eq!(names(&m.mnt), ["a", "b"]);
    assert!(names(&m.path("b")).is_empty());
    assert_eq!(std::fs::read(m.path("a/f")).unwrap(), b"source");
    std::fs::rename(m.path("a"), m.path("b")).unwrap();
    check_moved(&mut m, "b", &a_id, 1);
    assert_eq!(std::fs::read(m.path("b/f")).unwrap(), b"source");
}

/// kill -9 of the daemon while a loop moves a directory with content back and forth over an
/// empty directory made for it. After each kill: the content is intact under one of the two
/// names, the other name is absent or an empty directory that takes new entries, and at the
/// end fsck finds nothing.
#[test]
fn kill_9_during_a_loop_of_directory_replaces_loses_nothing() {
    let mut m = Mounted::new();
    let names_ = ["d0", "d1"];
    std::fs::create_dir(m.path("d0")).unwrap();
    std::fs::write(m.path("d0/f"), b"survivor").unwrap();
    std::fs::create_dir(m.path("d0/sub")).unwrap();
    std::fs::write(m.path("d0/sub/g"), vec![7u8; 10_000]).unwrap();
    let seed = std::env::var("COFFERFS_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed {seed}");
    let mut rng = Rng(seed);
    let mut renames = 0u64;
    for round in 0..6 {
        let mnt = m.mnt.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop2 = stop.clone();
        let load = std::thread::spawn(move || {
            let mut done = 0u64;
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let (cur, other) = if mnt.join("d0/f").exists() {
                    ("d0", "d1")
                } else {
                    ("d1", "d0")
                };
                match std::fs::create_dir(mnt.join(other)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(_) => break,
                }
                match std::fs::rename(mnt.join(cur), mnt.join(other)) {
                    Ok(()) => done += 1,
                    Err(e) if e.raw_os_error() == Some(libc::ENOTEMPTY) => {
                        panic!("rename over an empty directory: {e}")
                    }
                    Err(_) => break,
                }
            }
            done
        });
        std::thread::sleep(std::time::Duration::from_millis(100 + rng.below(400)));
        m.kill_daemon();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        renames += load.join().unwrap();
        m.cleanup_dead();
        assert!(!is_mounted(&m.mnt));
        m.mount(&[]);
        let listed = names(&m.mnt);
        let full: Vec<&str> = names_
            .iter()
            .copied()
            .filter(|n| m.path(&format!("{n}/f")).exists())
            .collect();
        assert_eq!(full.len(), 1, "round {round}: {listed:?}");
        let d = full[0];
        assert_eq!(names(&m.path(d)), ["f", "sub"], "round {round}");
        assert_eq!(
            std::fs::read(m.path(&format!("{d}/f"))).unwrap(),
            b"survivor"
        );
        assert_eq!(
            std::fs::read(m.path(&format!("{d}/sub/g"))).unwrap(),
            vec![7u8; 10_000]
        );
        for other in names_.iter().filter(|n| **n != d) {
            if listed.iter().any(|l| l == other) {
                assert!(names(&m.path(other)).is_empty(), "round {round}");
                std::fs::write(m.path(&format!("{other}/probe")), b"p").unwrap();
                std::fs::remove_file(m.path(&format!("{other}/probe"))).unwrap();
            }
        }
    }
    eprintln!("{renames} directory replaces completed across the kills");
    assert!(renames > 0, "the load never replaced a directory");
    m.unmount();
    fsck_clean(&m);
}
