//! Issue 12 item 2: symlink targets up to `PATH_MAX - 1` = 4095 bytes, as ext4 takes. Targets
//! whose encoded form does not fit in a backing link use the long-target scheme (format v3):
//! the backing link holds `cofferfs.longlink.<digest>`, the encoded target is a
//! `long_targets` row checked against its digest.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::damage::{cipher_path, db_exec};
use common::mount::{Mounted, cofferfs};

/// A relative target of exactly `len` bytes (`a/b/…`), distinct per `seed`.
fn target(len: usize, seed: char) -> String {
    let mut t = String::new();
    while t.len() < len {
        t.push(if t.len().is_multiple_of(2) { seed } else { '/' });
    }
    t.truncate(len);
    t
}

fn rows(c: &Path) -> i64 {
    let conn = rusqlite::Connection::open(c.join("cofferfs.db")).unwrap();
    conn.query_row("SELECT count(*) FROM long_targets", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn symlink_targets_up_to_4095_bytes_work_and_survive_a_remount() {
    let mut m = Mounted::new();
    let cases = [
        ("short", target(20, 's')),
        ("edge", target(3055, 'e')),
        ("long", target(3100, 'l')),
        ("max", target(4095, 'm')),
    ];
    for (name, t) in &cases {
        std::os::unix::fs::symlink(t, m.path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // One byte more than PATH_MAX - 1 is refused, as on ext4.
    let e = std::os::unix::fs::symlink(target(4096, 'x'), m.path("over")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENAMETOOLONG), "{e}");
    let check = |m: &Mounted| {
        for (name, t) in &cases {
            let got = std::fs::read_link(m.path(name)).unwrap();
            assert_eq!(got.to_str().unwrap(), t, "{name}");
            let st = std::fs::symlink_metadata(m.path(name)).unwrap();
            assert_eq!(
                st.size(),
                t.len() as u64,
                "{name}: lstat size is the target length"
            );
        }
        std::fs::create_dir_all(m.path("d")).unwrap();
    };
    check(&m);
    m.unmount();
    assert_eq!(
        rows(&m.cipherdir),
        2,
        "long and max take rows; short and edge do not"
    );
    let backing = std::fs::read_link(cipher_path(&m.cipherdir, "/max")).unwrap();
    let backing = backing.to_str().unwrap();
    assert!(backing.starts_with("cofferfs.longlink."), "{backing}");
    assert_eq!(backing.len(), 18 + 43);
    assert!(!backing.contains("mmm"), "no plaintext in the backing link");
    let (code, out, err) = cofferfs(&["fsck", m.cipherdir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    m.mount(&[]);
    check(&m);
    // Rename and unlink work; a symlink with the same target shares the row.
    std::fs::rename(m.path("max"), m.path("d/max2")).unwrap();
    assert_eq!(
        std::fs::read_link(m.path("d/max2"))
            .unwrap()
            .to_str()
            .unwrap(),
        cases[3].1
    );
    std::os::unix::fs::symlink(&cases[2].1, m.path("long-again")).unwrap();
    std::fs::remove_file(m.path("long")).unwrap();
    assert_eq!(
        std::fs::read_link(m.path("long-again"))
            .unwrap()
            .to_str()
            .unwrap(),
        cases[2].1
    );
    m.unmount();
    assert_eq!(rows(&m.cipherdir), 2);
}

#[test]
fn a_long_target_whose_row_is_missing_or_swapped_reads_as_eio_and_fsck_finds_it() {
    let mut m = Mounted::new();
    std::os::unix::fs::symlink(target(4000, 'a'), m.path("a")).unwrap();
    std::os::unix::fs::symlink(target(4000, 'b'), m.path("b")).unwrap();
    m.unmount();
    // Swap the two rows' targets: each row no longer matches its digest.
    {
        let conn = rusqlite::Connection::open(m.cipherdir.join("cofferfs.db")).unwrap();
        let rows: Vec<(Vec<u8>, String)> = conn
            .prepare("SELECT digest, target FROM long_targets")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(rows.len(), 2);
        for (i, (digest, _)) in rows.iter().enumerate() {
            conn.execute(
                "UPDATE long_targets SET target = ?2 WHERE digest = ?1",
                rusqlite::params![digest, rows[1 - i].1],
            )
            .unwrap();
        }
    }
    m.mount(&[]);
    let e = std::fs::read_link(m.path("a")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    m.unmount();
    db_exec(&m.cipherdir, "DELETE FROM long_targets");
    let (code, out, err) = cofferfs(&["fsck", m.cipherdir.to_str().unwrap()]);
    assert_eq!(code, 26, "{out}{err}");
    assert!(out.contains("/a: symlink target does not decrypt"), "{out}");
    assert!(out.contains("/b: symlink target does not decrypt"), "{out}");
}
