//! Issue 15, item 6: two ways to move names around that the name AEAD alone does not catch.
//! A directory id file copied into another directory lets entries move between the two
//! unnoticed (fsck called it clean), and a long-name row swapped with another in the header
//! store swapped the two names (a store-only attack). fsck must find both, naming the entries;
//! the mount must refuse a long name whose row does not match its digest.

mod common;

use std::path::Path;

use common::damage::cipher_path;
use common::mount::{Mounted, cofferfs};

fn fsck(cipherdir: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["fsck"];
    args.extend_from_slice(extra);
    args.push(cipherdir.to_str().unwrap());
    cofferfs(&args)
}

fn cipher_rel(c: &Path, plain: &str) -> String {
    let p = cipher_path(c, plain);
    p.strip_prefix(c).unwrap().to_str().unwrap().to_owned()
}

/// The lines of an fsck report that carry `needle`.
fn lines_with<'a>(out: &'a str, needle: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.contains(needle)).collect()
}

#[test]
fn a_directory_id_copied_into_another_directory_is_found_naming_both() {
    let mut m = Mounted::new();
    std::fs::create_dir(m.path("inbox")).unwrap();
    std::fs::create_dir(m.path("vault")).unwrap();
    std::fs::write(m.path("vault/secret"), b"moved").unwrap();
    std::fs::write(m.path("vault/stays"), b"stays").unwrap();
    std::fs::create_dir(m.path("other")).unwrap();
    m.unmount();
    let c = m.cipherdir.clone();
    let (fsck_clean, out, err) = fsck(&c, &[]);
    assert_eq!(fsck_clean, 0, "{out}{err}");

    // The attack: give `inbox` the id of `vault`, then move an entry of `vault` into it. Its
    // name still decrypts, now under /inbox.
    let inbox = cipher_path(&c, "/inbox");
    let vault = cipher_path(&c, "/vault");
    let secret = cipher_path(&c, "/vault/secret");
    std::fs::remove_file(inbox.join(".cofferfs.dirid")).unwrap();
    std::fs::copy(vault.join(".cofferfs.dirid"), inbox.join(".cofferfs.dirid")).unwrap();
    std::fs::rename(&secret, inbox.join(secret.file_name().unwrap())).unwrap();
    let before = std::fs::read(inbox.join(".cofferfs.dirid")).unwrap();

    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 26, "{out}{err}");
    let found = lines_with(&out, "the same id as");
    assert_eq!(found.len(), 1, "one finding for the pair:\n{out}");
    let line = found[0];
    assert!(
        line.contains("  /inbox: directory id: the same id as /vault")
            || line.contains("  /vault: directory id: the same id as /inbox"),
        "{out}"
    );
    assert!(line.contains("copied .cofferfs.dirid"), "{out}");
    assert!(!out.contains("/other"), "{out}");

    // Repair reports and changes nothing: it cannot tell which directory the entries belong
    // to, and re-encrypting every name of one of them is not crash-safe.
    let (code, out, err) = fsck(&c, &["--repair"]);
    assert_eq!(code, 26, "{out}{err}");
    assert!(out.contains("1 problems found, 1 not repaired"), "{out}");
    assert_eq!(
        std::fs::read(inbox.join(".cofferfs.dirid")).unwrap(),
        before
    );

    // The documented way out: move the entries through the mount into a fresh directory.
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("inbox/secret")).unwrap(), b"moved");
    std::fs::create_dir(m.path("inbox2")).unwrap();
    std::fs::rename(m.path("inbox/secret"), m.path("inbox2/secret")).unwrap();
    std::fs::remove_dir(m.path("inbox")).unwrap();
    m.unmount();
    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn the_root_id_copied_into_a_subdirectory_is_found() {
    let mut m = Mounted::new();
    std::fs::create_dir(m.path("sub")).unwrap();
    m.unmount();
    let c = m.cipherdir.clone();
    let sub = cipher_path(&c, "/sub");
    std::fs::remove_file(sub.join(".cofferfs.dirid")).unwrap();
    std::fs::copy(c.join(".cofferfs.dirid"), sub.join(".cofferfs.dirid")).unwrap();
    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 26, "{out}{err}");
    assert!(
        out.contains("  /sub: directory id: the same id as /"),
        "{out}"
    );
}

/// Swaps the `name` columns of the two rows of the `long_names` table.
fn swap_long_name_rows(cipherdir: &Path) {
    let conn = rusqlite::Connection::open(cipherdir.join("cofferfs.db")).unwrap();
    let rows: Vec<(Vec<u8>, String)> = conn
        .prepare("SELECT digest, name FROM long_names ORDER BY digest")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 2);
    for (i, (digest, _)) in rows.iter().enumerate() {
        conn.execute(
            "UPDATE long_names SET name = ?1 WHERE digest = ?2",
            rusqlite::params![rows[1 - i].1, digest],
        )
        .unwrap();
    }
}

#[test]
fn swapped_long_name_rows_are_found_by_fsck_and_refused_by_the_mount() {
    let (long_a, long_b) = ("L".repeat(200), "M".repeat(200));
    let mut m = Mounted::new();
    std::fs::write(m.path(&long_a), b"content of L").unwrap();
    std::fs::write(m.path(&long_b), b"content of M").unwrap();
    std::fs::write(m.path("short"), b"short").unwrap();
    m.unmount();
    let c = m.cipherdir.clone();
    let (ca, cb) = (
        cipher_rel(&c, &format!("/{long_a}")),
        cipher_rel(&c, &format!("/{long_b}")),
    );
    assert!(ca.starts_with("cofferfs.long.") && cb.starts_with("cofferfs.long."));
    swap_long_name_rows(&c);

    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 26, "{out}{err}");
    for rel in [&ca, &cb] {
        let line = format!(
            "  cipher:{rel}: long name's row in the header store does not match its digest"
        );
        assert!(out.contains(&line), "missing {line:?} in:\n{out}");
    }
    assert!(!out.contains("/short"), "{out}");

    // The mount lists neither (readdir skips them with a warning) and a lookup is EIO; other
    // entries are unaffected.
    m.mount(&[]);
    let names: Vec<_> = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["short".to_owned()]);
    for name in [&long_a, &long_b] {
        let e = std::fs::metadata(m.path(name)).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{name}: {e}");
    }
    assert_eq!(std::fs::read(m.path("short")).unwrap(), b"short");
    m.unmount();

    // Each row still holds a genuine long name, only under the wrong digest: repair files each
    // under its own digest, which gives both entries back.
    let (code, out, err) = fsck(&c, &["--repair"]);
    assert_eq!(code, 27, "{out}{err}");
    assert!(out.contains("moved the long-name row"), "{out}");
    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 0, "{out}{err}");
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path(&long_a)).unwrap(), b"content of L");
    assert_eq!(std::fs::read(m.path(&long_b)).unwrap(), b"content of M");
}

#[test]
fn an_altered_long_name_row_is_found_and_quarantined_by_repair() {
    let long = "N".repeat(200);
    let mut m = Mounted::new();
    std::fs::write(m.path(&long), b"n").unwrap();
    m.unmount();
    let c = m.cipherdir.clone();
    let rel = cipher_rel(&c, &format!("/{long}"));
    let conn = rusqlite::Connection::open(c.join("cofferfs.db")).unwrap();
    // A well-formed name of the same length that hashes to another digest.
    conn.execute_batch(
        "UPDATE long_names SET name = \
         (CASE WHEN substr(name, 1, 1) = 'A' THEN 'B' ELSE 'A' END) || substr(name, 2)",
    )
    .unwrap();
    drop(conn);
    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 26, "{out}{err}");
    assert!(
        out.contains(&format!(
            "  cipher:{rel}: long name's row in the header store does not match its digest"
        )),
        "{out}"
    );
    let (code, out, err) = fsck(&c, &["--repair"]);
    assert_eq!(code, 27, "{out}{err}");
    assert!(out.contains(&format!("quarantined cipher:{rel} ")), "{out}");
    let (code, out, err) = fsck(&c, &[]);
    assert_eq!(code, 0, "{out}{err}");
}
