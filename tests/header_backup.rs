//! `cofferfs header backup` / `header restore` (issue 12, item 11) on real mounts: a backup
//! taken while a mount writes is a consistent store of mode 0600 with no secret in it; a
//! restore refuses a mounted volume and another volume's backup, keeps the replaced store
//! aside, and the files created before the backup read back while later ones are reported.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::mount::{Mounted, PASSWORD, init_volume, run_with_stdin as run};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn content(i: usize) -> Vec<u8> {
    format!("file {i} content, unmistakable plaintext marker QX7 ")
        .repeat(200)
        .into_bytes()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `PRAGMA integrity_check` of a standalone SQLite file.
fn integrity(path: &Path) -> String {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

fn key_rows(path: &Path) -> u64 {
    let c = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.query_row("SELECT count(*) FROM file_keys", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64
}

#[test]
fn backup_while_a_mount_writes_then_restore_reads_the_files_from_before() {
    let mut m = Mounted::new();
    let backups = m.dir.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    // A writer creates files through the mount without pause; `done` lists the files
    // closed so far.
    let done = Arc::new(Mutex::new(Vec::<usize>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (done, stop, mnt) = (done.clone(), stop.clone(), m.mnt.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                std::fs::write(mnt.join(format!("f{i}")), content(i)).unwrap();
                done.lock().unwrap().push(i);
                i += 1;
            }
        })
    };
    // Backups taken while it writes: each a consistent store.
    let mut taken: Vec<(PathBuf, Vec<usize>)> = Vec::new();
    for n in 0..5 {
        std::thread::sleep(std::time::Duration::from_millis(150));
        let before = done.lock().unwrap().clone();
        let file = backups.join(format!("b{n}.db"));
        let (code, out, err) = run(&["header", "backup", s(&m.cipherdir), s(&file)], "");
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("mode 0600"), "{out}");
        taken.push((file, before));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let total = done.lock().unwrap().len();
    for (file, before) in &taken {
        let meta = std::fs::metadata(file).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file:?}");
        assert_eq!(integrity(file), "ok", "{file:?}");
        assert!(
            key_rows(file) >= before.len() as u64,
            "{file:?}: every file closed before the backup has its key row"
        );
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !contains(&bytes, PASSWORD.as_bytes()),
            "password in {file:?}"
        );
        assert!(!contains(&bytes, b"QX7"), "plaintext in {file:?}");
        assert!(
            !Path::new(&format!("{}-wal", s(file))).exists(),
            "standalone file"
        );
    }
    let (code, _, err) = run(&["header", "backup", s(&m.cipherdir), s(&taken[0].0)], "");
    assert_eq!(code, 35, "never overwrites: {err}");
    // Restore refuses a mounted volume, and changes nothing.
    let store = m.cipherdir.join("cofferfs.db");
    let (code, _, err) = run(&["header", "restore", s(&m.cipherdir), s(&taken[2].0)], "");
    assert_eq!(code, 15, "{err}");
    m.unmount();
    assert_eq!(key_rows(&store), total as u64);

    // Restore the third backup; the store it replaces is kept aside.
    let (backup, before) = &taken[2];
    let (code, out, err) = run(&["header", "restore", s(&m.cipherdir), s(backup)], "");
    assert_eq!(code, 0, "{out}{err}");
    let aside: Vec<PathBuf> = std::fs::read_dir(&m.cipherdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| s(p).contains("cofferfs.db.before-restore-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert!(out.contains(s(&aside[0])), "{out}");
    assert_eq!(
        key_rows(&aside[0]),
        total as u64,
        "the replaced store, intact"
    );
    let later = key_rows(&store);
    assert!(
        later < total as u64,
        "the backup is older than the last files"
    );
    let missing = total as u64 - later;
    assert!(
        err.contains(&format!(
            "warning: {missing} file(s) in the cipherdir have no key row"
        )),
        "{err}"
    );

    // Mounted again: the files from before the backup read back; the later ones are EIO.
    m.mount(&[]);
    for &i in before {
        assert_eq!(
            std::fs::read(m.path(&format!("f{i}"))).unwrap(),
            content(i),
            "f{i}"
        );
    }
    let last = total - 1;
    let e = std::fs::read(m.path(&format!("f{last}"))).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "f{last}");
    // The aside copy is not a file of the volume.
    let names: Vec<String> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| n.starts_with('f')), "{names:?}");
    m.unmount();
}

#[test]
fn restore_refuses_another_volumes_backup_unless_forced_and_brings_back_a_lost_store() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    init_volume(&a, &[]);
    init_volume(&b, &[]);
    let (ba, bb) = (dir.path().join("a.db"), dir.path().join("b.db"));
    for (c, f) in [(&a, &ba), (&b, &bb)] {
        let (code, out, err) = run(&["header", "backup", s(c), s(f)], "");
        assert_eq!(code, 0, "{out}{err}");
    }
    let store = a.join("cofferfs.db");
    let before = std::fs::read(&store).unwrap();
    let (code, _, err) = run(&["header", "restore", s(&a), s(&bb)], "");
    assert_eq!(code, 22, "{err}");
    assert!(err.contains("does not belong to"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&store).unwrap(), before, "unchanged");
    // Not a store at all.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "not sqlite").unwrap();
    let (code, _, err) = run(&["header", "restore", s(&a), s(&junk)], "");
    assert_eq!(code, 35, "{err}");
    assert_eq!(std::fs::read(&store).unwrap(), before, "unchanged");
    // Lost store: the backup brings the volume back.
    std::fs::remove_file(&store).unwrap();
    let (code, _, err) = run(&["fsck", s(&a)], &format!("{PASSWORD}\n"));
    assert_eq!(code, 9, "{err}");
    let (code, out, err) = run(&["header", "restore", s(&a), s(&ba)], "");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("There was no store to replace"), "{out}");
    let (code, out, err) = run(&["fsck", s(&a)], &format!("{PASSWORD}\n"));
    assert_eq!(code, 0, "{out}{err}");
    // --force takes another volume's store (the marker keeps its own id: the volume then
    // refuses to open, as for any store of another volume; nothing is lost: it is aside).
    let (code, out, err) = run(&["header", "restore", "--force", s(&a), s(&bb)], "");
    assert_eq!(code, 0, "{out}{err}");
    let (code, _, err) = run(&["info", s(&a)], "");
    assert_eq!(code, 22, "{err}");
    let (code, _, err) = run(&["header", "restore", s(&a), s(&ba)], "");
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = run(&["info", s(&a)], "");
    assert_eq!(code, 0, "{err}");
}
