//! Review of format v3's key-row owners: `reencrypt` deletes the old key row by file id alone,
//! without the owner check an unlink makes, so re-encrypting a copy of a ciphertext file (a
//! sync tool's duplicate, `cp` in the cipherdir, a hard link split by `rsync -a` without `-H`)
//! destroys the original's key. These tests fail until `reencrypt_file` only shreds a row its
//! entry owns.

mod common;

use common::damage::{cipher_path, header_id, key_row_ids};
use common::mount::{Mounted, cofferfs};

#[test]
fn reencrypting_a_copy_keeps_the_originals_key() {
    let mut m = Mounted::new();
    std::fs::write(m.path("a"), b"the original").unwrap();
    std::fs::write(m.path("b"), b"x").unwrap();
    m.unmount();
    let a = cipher_path(&m.cipherdir, "/a");
    // `cp A B` in the cipherdir: b now carries a's file id (a's row is owned by a).
    std::fs::copy(&a, cipher_path(&m.cipherdir, "/b")).unwrap();
    let id = header_id(&a);
    let (code, out, err) = cofferfs(&["reencrypt", m.cipherdir.to_str().unwrap(), "/b"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        key_row_ids(&m.cipherdir).contains(&id),
        "re-encrypting the copy b deleted the key row of a, which b does not own"
    );
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("b")).unwrap(), b"the original");
    assert_eq!(
        std::fs::read(m.path("a")).map_err(|e| e.to_string()),
        Ok(b"the original".to_vec())
    );
}

#[test]
fn reencrypt_all_keeps_both_halves_of_a_split_hard_link() {
    let mut m = Mounted::new();
    std::fs::write(m.path("a"), b"linked").unwrap();
    std::fs::hard_link(m.path("a"), m.path("b")).unwrap();
    m.unmount();
    // What `rsync -a` without -H makes of a hard link: two files carrying one id.
    let b = cipher_path(&m.cipherdir, "/b");
    let bytes = std::fs::read(&b).unwrap();
    std::fs::remove_file(&b).unwrap();
    std::fs::write(&b, bytes).unwrap();
    let (code, out, err) = cofferfs(&["reencrypt", m.cipherdir.to_str().unwrap(), "--all"]);
    m.mount(&[]);
    let read = |p: &str| std::fs::read(m.path(p)).map_err(|e| e.to_string());
    assert_eq!(
        (read("a"), read("b")),
        (Ok(b"linked".to_vec()), Ok(b"linked".to_vec())),
        "reencrypt --all (exit {code}): {out}{err}"
    );
}

/// The file ids (lower-case hex) of every row of the key quarantine.
fn quarantined_ids(c: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(c.join("cofferfs.db")).unwrap();
    let mut st = conn
        .prepare("SELECT lower(hex(file_id)) FROM quarantined_keys ORDER BY 1")
        .unwrap();
    st.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_file_whose_row_was_quarantined_loses_its_key_when_removed() {
    let mut m = Mounted::new();
    std::fs::write(m.path("b"), b"away and back").unwrap();
    m.unmount();
    let c = m.cipherdir.clone();
    let b = cipher_path(&c, "/b");
    let id = header_id(&b);
    let outside = tempfile::tempdir().unwrap();
    let away = outside.path().join("away");
    std::fs::rename(&b, &away).unwrap();
    let (code, out, err) = cofferfs(&["fsck", "--repair", c.to_str().unwrap()]);
    assert_eq!(code, 27, "{out}{err}");
    assert_eq!(quarantined_ids(&c), vec![id.clone()]);
    // The file comes back and is used, then removed, through the mount, before any repair.
    std::fs::rename(&away, &b).unwrap();
    m.mount(&[]);
    assert_eq!(std::fs::read(m.path("b")).unwrap(), b"away and back");
    std::fs::remove_file(m.path("b")).unwrap();
    m.unmount();
    assert!(!key_row_ids(&c).contains(&id));
    assert!(
        !quarantined_ids(&c).contains(&id),
        "the FEK of the removed file is still in the header store (quarantined_keys)"
    );
}

#[test]
fn fsck_purge_keeps_the_key_of_a_file_it_cannot_open() {
    let mut m = Mounted::new();
    std::fs::write(m.path("secret"), b"chmod 000 through the mount").unwrap();
    m.unmount();
    let c = m.cipherdir.clone();
    let blob = cipher_path(&c, "/secret");
    let id = header_id(&blob);
    // What `chmod 000 /mnt/secret` does to the backing file; fsck then runs as the volume's
    // (non-root) owner, here nobody.
    let top = m.dir.path().to_str().unwrap();
    assert!(
        std::process::Command::new("chown")
            .args(["-R", "65534:65534", top])
            .status()
            .unwrap()
            .success()
    );
    std::fs::set_permissions(&blob, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    use std::io::Write;
    let mut child = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(common::mount::bin())
        .args([
            "fsck",
            "--repair",
            "--purge-quarantine",
            c.to_str().unwrap(),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _ = writeln!(child.stdin.take().unwrap(), "{}", common::mount::PASSWORD);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        key_row_ids(&c).contains(&id) || quarantined_ids(&c).contains(&id),
        "fsck destroyed the key of a file it could not open: {text}"
    );
}
