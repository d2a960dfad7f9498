//! Format v3: the volume parameters are authenticated by the name-key wrap (issue 15 item 1),
//! and older volumes migrate on their first read-write mount. Every attack edits the header
//! store of an unmounted volume with SQLite, as an attacker with write access to it can; the
//! mount must refuse (exit code 30) and write nothing.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use common::mount::{Mounted, check_v2_fixture_contents, cofferfs_with};

const PARAMS_UNVERIFIED: i32 = 30;

/// Every file under `dir` (path → content or link target, mode, mtime), SQLite's transient
/// `-wal`/`-shm` files left out: what "nothing written" compares.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32, i64, i64)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let m = std::fs::symlink_metadata(&d).unwrap();
        out.insert(d.clone(), (Vec::new(), m.mode(), m.mtime(), m.mtime_nsec()));
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.ends_with("-wal") || name.ends_with("-shm") {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p);
            } else if m.file_type().is_symlink() {
                let t = std::fs::read_link(&p).unwrap();
                let t = t.as_os_str().as_encoded_bytes().to_vec();
                out.insert(p, (t, m.mode(), m.mtime(), m.mtime_nsec()));
            } else {
                let b = std::fs::read(&p).unwrap();
                out.insert(p, (b, m.mode(), m.mtime(), m.mtime_nsec()));
            }
        }
    }
    out
}

fn sql(db: &Path, statements: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch(statements).unwrap();
}

fn query(db: &Path, q: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.query_row(q, [], |r| r.get(0)).unwrap()
}

/// `cofferfs mount -f` that is expected to fail: (exit code, stderr).
fn mount_fails(m: &Mounted, password: &str) -> (i32, String) {
    let (code, out, err) = cofferfs_with(
        &[
            "mount",
            "-f",
            m.cipherdir.to_str().unwrap(),
            m.mnt.to_str().unwrap(),
        ],
        password,
    );
    assert!(!common::mount::is_mounted(&m.mnt), "mounted: {out}{err}");
    (code, err)
}

/// A volume with a file, a directory, a symlink and a long name, unmounted.
fn populated() -> Mounted {
    let mut m = Mounted::new();
    std::fs::write(m.path("secret-name.txt"), b"content").unwrap();
    std::fs::create_dir(m.path("dir")).unwrap();
    std::os::unix::fs::symlink("secret-target", m.path("dir/link")).unwrap();
    m.unmount();
    m
}

#[test]
fn new_volumes_are_format_3_with_schema_2() {
    let m = populated();
    let db = m.cipherdir.join("cofferfs.db");
    assert_eq!(query(&db, "SELECT format_version FROM volume"), 3);
    assert_eq!(query(&db, "PRAGMA user_version"), 2);
    // The reserved columns and tables exist, empty.
    assert_eq!(
        query(
            &db,
            "SELECT count(*) FROM volume WHERE previous_kek IS NULL"
        ),
        1
    );
    assert_eq!(
        query(&db, "SELECT count(*) FROM slots WHERE params IS NOT NULL"),
        0
    );
    assert_eq!(query(&db, "SELECT count(*) FROM shares"), 0);
    assert_eq!(query(&db, "SELECT count(*) FROM quarantined_keys"), 0);
    assert_eq!(query(&db, "SELECT count(*) FROM long_targets"), 0);
    // File headers stay at 2: v3 changed the header store only.
    let blob = std::fs::read_dir(&m.cipherdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .contains("cofferfs")
        })
        .unwrap();
    assert_eq!(common::header_version(&blob), 2);
}

#[test]
fn changed_volume_parameters_are_refused_and_nothing_is_written() {
    let mut m = populated();
    let db = m.cipherdir.join("cofferfs.db");
    let attacks = [
        (
            "UPDATE volume SET plaintext_names = 1",
            "UPDATE volume SET plaintext_names = 0",
        ),
        (
            "UPDATE volume SET chunk_len = 8192",
            "UPDATE volume SET chunk_len = 4096",
        ),
        (
            "UPDATE volume SET format_version = 2",
            "UPDATE volume SET format_version = 3",
        ),
        (
            "UPDATE volume SET format_version = 1",
            "UPDATE volume SET format_version = 3",
        ),
    ];
    for (attack, undo) in attacks {
        sql(&db, attack);
        let before = snapshot(&m.cipherdir);
        let (code, err) = mount_fails(&m, common::mount::PASSWORD);
        assert_eq!(code, PARAMS_UNVERIFIED, "{attack}: {err}");
        assert!(
            err.contains("volume parameters do not verify: header store tampered with?"),
            "{attack}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{attack}: one line: {err}");
        assert_eq!(
            snapshot(&m.cipherdir),
            before,
            "{attack}: something was written"
        );
        // fsck and a read-only mount refuse it as well.
        let (code, out, err) = cofferfs_with(
            &["fsck", m.cipherdir.to_str().unwrap()],
            common::mount::PASSWORD,
        );
        assert_eq!(code, PARAMS_UNVERIFIED, "{attack}: fsck: {out}{err}");
        assert_eq!(
            mount_fails(&m, common::mount::PASSWORD).0,
            PARAMS_UNVERIFIED
        );
        sql(&db, undo);
    }
    // Undone, the volume mounts and reads as before.
    m.mount(&[]);
    assert_eq!(
        std::fs::read(m.path("secret-name.txt")).unwrap(),
        b"content"
    );
    assert_eq!(
        std::fs::read_link(m.path("dir/link")).unwrap().to_str(),
        Some("secret-target")
    );
}

#[test]
fn a_name_key_from_another_parameter_set_is_refused() {
    // Two volumes; the second's wrapped name key, bound to its own volume id, copied into the
    // first: refused as well (the id is bound too).
    let a = populated();
    let b = populated();
    let wnk: Vec<u8> = {
        let conn = rusqlite::Connection::open(b.cipherdir.join("cofferfs.db")).unwrap();
        conn.query_row("SELECT wrapped_name_key FROM volume", [], |r| r.get(0))
            .unwrap()
    };
    let conn = rusqlite::Connection::open(a.cipherdir.join("cofferfs.db")).unwrap();
    conn.execute("UPDATE volume SET wrapped_name_key = ?1", [wnk])
        .unwrap();
    drop(conn);
    assert_eq!(
        mount_fails(&a, common::mount::PASSWORD).0,
        PARAMS_UNVERIFIED
    );
}

#[test]
fn a_v2_fixture_whose_name_mode_was_flipped_is_refused() {
    let (_dir, c) = common::fixture_copy("v2");
    sql(
        &c.join("cofferfs.db"),
        "UPDATE volume SET plaintext_names = 1",
    );
    let m = Mounted::adopt(c.clone());
    let before = snapshot(&c);
    let (code, err) = mount_fails(&m, common::FIXTURE_PASSWORD);
    assert_eq!(code, PARAMS_UNVERIFIED, "{err}");
    assert!(err.contains(".cofferfs.dirid"), "{err}");
    assert_eq!(snapshot(&c), before);
}

#[test]
fn a_v2_fixture_migrates_on_its_first_read_write_mount_only() {
    let (_dir, c) = common::fixture_copy("v2");
    let db = c.join("cofferfs.db");
    let pristine = snapshot(&c);
    let mut m = Mounted::adopt(c.clone());
    m.password = common::FIXTURE_PASSWORD.to_owned();

    m.mount(&["--ro"]);
    assert_eq!(
        std::fs::read(m.path("hello.txt")).unwrap(),
        b"hello, cofferfs v2\n"
    );
    m.unmount();
    assert_eq!(
        snapshot(&c),
        pristine,
        "a read-only mount changed the v2 volume"
    );
    assert_eq!(query(&db, "SELECT format_version FROM volume"), 2);
    assert_eq!(query(&db, "PRAGMA user_version"), 1);

    m.mount(&[]);
    check_v2_fixture_contents(&m);
    m.unmount();
    assert_eq!(query(&db, "SELECT format_version FROM volume"), 3);
    assert_eq!(query(&db, "PRAGMA user_version"), 2);
    // Every key row is carried by exactly one entry in the fixture: each got its owner.
    assert_eq!(
        query(&db, "SELECT count(*) FROM file_keys WHERE owner IS NULL"),
        0
    );
    assert!(query(&db, "SELECT count(*) FROM file_keys") >= 4);

    // Migrated, it mounts and reads as v3, and its parameters are now bound.
    m.mount(&[]);
    check_v2_fixture_contents(&m);
    m.unmount();
    let (code, out, err) = cofferfs_with(&["fsck", c.to_str().unwrap()], common::FIXTURE_PASSWORD);
    assert_eq!(code, 0, "{out}{err}");
    sql(&db, "UPDATE volume SET format_version = 2");
    assert_eq!(
        mount_fails(&m, common::FIXTURE_PASSWORD).0,
        PARAMS_UNVERIFIED
    );
}

#[test]
fn rotate_keeps_the_parameters_bound() {
    let mut m = populated();
    let c = m.cipherdir.to_str().unwrap().to_owned();
    let (code, out, err) = cofferfs_with(&["rotate", &c], common::mount::PASSWORD);
    assert_eq!(code, 0, "{out}{err}");
    let db = m.cipherdir.join("cofferfs.db");
    sql(&db, "UPDATE volume SET plaintext_names = 1");
    assert_eq!(
        mount_fails(&m, common::mount::PASSWORD).0,
        PARAMS_UNVERIFIED
    );
    sql(&db, "UPDATE volume SET plaintext_names = 0");
    m.mount(&[]);
    assert_eq!(
        std::fs::read(m.path("secret-name.txt")).unwrap(),
        b"content"
    );
}
