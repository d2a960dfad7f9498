//! Review of format v3's key-row owners: `reencrypt` deletes the old key row by file id alone,
//! without the owner check an unlink makes, so re-encrypting a copy of a ciphertext file (a
//! sync tool's duplicate, `cp` in the cipherdir, a hard link split by `rsync -a` without `-H`)
//! destroys the original's key. These tests fail until `reencrypt_files` only shreds a row its
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

/// Copies the directory tree `from` to `to` (as `cp -a` of a backup would).
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    let ok = std::process::Command::new("cp")
        .args(["-a"])
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn removing_an_old_copy_of_a_restored_directory_keeps_the_restored_files_keys() {
    let mut m = Mounted::new();
    std::fs::create_dir(m.path("d")).unwrap();
    std::fs::write(m.path("d/f"), b"restored from backup").unwrap();
    m.unmount();
    // A backup of the directory's ciphertext, taken while the volume is at rest.
    let d = cipher_path(&m.cipherdir, "/d");
    let backup = tempfile::tempdir().unwrap();
    copy_tree(&d, &backup.path().join("d"));
    // Later: the directory is renamed aside, the backup put back under its old name, and the
    // old one removed. Both carry the same directory id, so every child has the same on-disk
    // name, hence the same owner digest, in both.
    m.mount(&[]);
    std::fs::rename(m.path("d"), m.path("old")).unwrap();
    m.unmount();
    copy_tree(&backup.path().join("d"), &d);
    m.mount(&[]);
    assert_eq!(
        std::fs::read(m.path("d/f")).unwrap(),
        b"restored from backup"
    );
    std::fs::remove_dir_all(m.path("old")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400));
    m.unmount();
    m.mount(&[]);
    assert_eq!(
        std::fs::read(m.path("d/f")).map_err(|e| e.to_string()),
        Ok(b"restored from backup".to_vec()),
        "removing the old copy shredded the restored file's key"
    );
}

#[test]
fn an_open_original_removed_then_replaced_by_its_copy_keeps_the_key() {
    // FORMAT.md, Key-row owners: "a copy renamed onto the old name in between (`rm B; mv A B`
    // while B is open) keeps its key". Here B is the original (its row's owner), A the copy.
    let mut m = Mounted::new();
    std::fs::write(m.path("b"), b"the original").unwrap();
    std::fs::write(m.path("a"), b"x").unwrap();
    m.unmount();
    let b = cipher_path(&m.cipherdir, "/b");
    std::fs::copy(&b, cipher_path(&m.cipherdir, "/a")).unwrap();
    m.mount(&[]);
    let open = std::fs::File::open(m.path("b")).unwrap();
    std::fs::remove_file(m.path("b")).unwrap();
    std::fs::rename(m.path("a"), m.path("b")).unwrap();
    drop(open);
    std::thread::sleep(std::time::Duration::from_millis(400));
    m.unmount();
    m.mount(&[]);
    assert_eq!(
        std::fs::read(m.path("b")).map_err(|e| e.to_string()),
        Ok(b"the original".to_vec())
    );
}
